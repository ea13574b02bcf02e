//! `[database]` and `[database.queries]`: which backend, how to reach it, the optional
//! SELECTs for other schemas, and the password, which never shows in output.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Config, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Mysql,
}

/// `[database]`: which backend, and how to reach it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub backend: Backend,
    /// SQLite file; empty means `<state dir>/vmail.db`.
    pub sqlite_path: PathBuf,
    /// MySQL/MariaDB servers tried in order: `host:port`, `host` (port 3306) or an absolute
    /// path to a UNIX socket.
    pub hosts: Vec<String>,
    pub user: String,
    /// Prefer `password_file`: a secret in the config file is readable by whoever can read it.
    pub password: Option<Secret>,
    /// File holding the database password (first line), so it never appears in argv or env.
    /// Refused when other users may read or write it (like ssh with a private key).
    pub password_file: Option<PathBuf>,
    pub dbname: String,
    /// Per attempt to open a connection to one host.
    pub connect_timeout_ms: u64,
    /// Whole budget of one directory operation, failover and retries included. Postfix gives a
    /// socketmap server ~100 s and smtpd's SASL client ~10 s; we answer TEMP long before.
    pub query_timeout_ms: u64,
    pub pool_max: usize,
    /// MySQL: while `batch_in_flight` statements of one lookup kind (user rows, an address's
    /// row and forwardings) are running, further lookups of that kind wait and then go to the
    /// database together, up to `batch_keys` of them in one statement (their own statements
    /// joined by UNION ALL). No lookup ever waits for a timer. `batch_keys = 1` turns it
    /// off. Only the built-in queries batch.
    pub batch_keys: usize,
    pub batch_in_flight: usize,
    /// Your own SELECTs for schemas other than the classic one.
    pub queries: QueryConfig,
}

/// `[database.queries]`: optional SELECTs replacing the classic-schema defaults. Parameters
/// are written `%s` (the whole address), `%u` (local part), `%d` (domain) and are always bound
/// as SQL parameters, never spliced into the text; `'%s'` written in quotes, as in Postfix's
/// `mysql_table(5)` files, is accepted and means the same.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Returns a row when the domain is served (`virtual_mailbox_domains`).
    pub domain: Option<String>,
    /// Returns the user's row: columns named `email`, `password` and optionally `active`,
    /// `quota`, `services`, `uid`, `gid`, `home`, `mail`.
    pub user: Option<String>,
    /// Returns alias destinations (one or more rows, each comma/space separated).
    pub alias: Option<String>,
    /// Returns the transport for a domain.
    pub transport: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            backend: Backend::Sqlite,
            sqlite_path: PathBuf::new(),
            hosts: vec!["localhost".into()],
            user: "mail_admin".into(),
            password: None,
            password_file: None,
            dbname: "mail".into(),
            connect_timeout_ms: 2_000,
            query_timeout_ms: 5_000,
            pool_max: 16,
            batch_keys: 32,
            batch_in_flight: 2,
            queries: QueryConfig::default(),
        }
    }
}

/// A secret that never shows in `Debug` output or `--check`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl Config {
    /// Reads the MySQL password from `password` or `password_file`.
    pub fn database_password(&self) -> Result<Option<Secret>, Error> {
        if let Some(p) = &self.database.password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.database.password_file else {
            return Ok(None);
        };
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let read = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        // The mode of the file we read, not of whatever the path names a moment later.
        let mode = file.metadata().map_err(read)?.permissions().mode() & 0o7777;
        let what = match (mode & 0o004 != 0, mode & 0o002 != 0) {
            (true, true) => Some("read and replace"),
            (true, false) => Some("read"),
            (false, true) => Some("replace"),
            (false, false) => None,
        };
        if let Some(what) = what {
            return Err(Error::Insecure {
                path: path.clone(),
                mode,
                what,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read)?;
        Ok(Some(Secret::new(text.lines().next().unwrap_or(""))))
    }
}
