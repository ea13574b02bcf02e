//! The configuration file shared by every vmail program (`/etc/vmail/vmail.toml`).
//!
//! With no file at all every program runs on the embedded default: an SQLite directory in the
//! state directory. Unknown keys and bad values are errors that name the key and the file, like
//! `postconf` and `doveconf` do, because a silently ignored typo on a mail server means mail
//! going where nobody meant it to.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod template;
pub use template::{expand_template, fixed_base, is_canonical_path, location_fields};

/// Where programs look when neither `--config` nor `VMAIL_CONFIG` names a file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmail/vmail.toml";
/// Environment variable naming the config file (like `--config`).
pub const CONFIG_ENV: &str = "VMAIL_CONFIG";
/// Environment variable overriding the state directory of the embedded default.
pub const STATE_DIR_ENV: &str = "VMAIL_STATE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error(
        "{path}: mode {mode:04o} lets every local user {what} the database password; \
         refusing to use it (chmod o-rwx {path}; 0640 root:vmail is the usual setting)"
    )]
    Insecure {
        path: PathBuf,
        mode: u32,
        what: &'static str,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub address: AddressConfig,
    pub mailbox: MailboxConfig,
    pub passwords: PasswordConfig,
    pub cache: CacheConfig,
    pub lookupd: LookupdConfig,
    pub lda: LdaConfig,
    pub authd: AuthdConfig,
}

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

/// `[address]`: how addresses are compared.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressConfig {
    /// Characters that separate a local part from its extension (Postfix's
    /// `recipient_delimiter`); empty disables extensions.
    pub recipient_delimiter: String,
    /// Fold local parts to lower case. The classic MySQL schema compares case-insensitively,
    /// so this is on by default; domains are always folded.
    pub fold_local_part: bool,
}

/// `[mailbox]`: what a user's mailbox looks like to Postfix, Dovecot and the LDA.
/// Templates expand `%u` (full address), `%n` (local part), `%d` (domain).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// The `virtual_mailbox_maps` answer; the classic query returns `domain/user/`.
    pub map_template: String,
    pub home: String,
    /// Dovecot mail location.
    pub mail: String,
    pub uid: u32,
    pub gid: u32,
}

impl MailboxConfig {
    /// Every template gives each account a path of its own (see `template::check_separates`);
    /// `Err` names the key.
    fn check_paths(&self) -> Result<(), (&'static str, String)> {
        let path_template =
            |t: &str| template::check_separates(t).and_then(|()| template::check_fixed_text(t));
        path_template(&self.map_template).map_err(|m| ("mailbox.map_template", m))?;
        if !self.home.is_empty() {
            if !self.home.starts_with('/') {
                return Err((
                    "mailbox.home",
                    format!("{:?}: must be an absolute path (or empty)", self.home),
                ));
            }
            path_template(&self.home).map_err(|m| ("mailbox.home", m))?;
        }
        let (path, _) = location_fields(&self.mail);
        let under_home = if path == "~" {
            Some("")
        } else {
            path.strip_prefix("~/")
        };
        let r = match under_home {
            Some(_) if self.home.is_empty() => {
                Err(format!("{:?} uses ~ but mailbox.home is empty", self.mail))
            }
            Some("") => Ok(()),
            Some(rest) => template::check_fixed_text(rest),
            None if !path.starts_with('/') => Err(format!(
                "{:?}: the path must be absolute or start with ~/",
                self.mail
            )),
            None => path_template(path),
        };
        r.map_err(|m| ("mailbox.mail", m))
    }
}

/// `[passwords]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Scheme of stored hashes without a `{SCHEME}` prefix. The classic how-to stores MySQL
    /// `ENCRYPT()` output, i.e. DES crypt, so `CRYPT`.
    pub default_scheme: String,
    /// Scheme for new passwords.
    pub hash_scheme: String,
}

/// `[cache]`: lookupd's answer cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// lookupd's answer cache; with it, lookups also share the rows they read for up to 2 s
    /// (vmail_lookupd::cache::memo). Off: every lookup reads the database.
    pub enabled: bool,
    /// Bound on cached answers; the oldest are dropped first when full.
    pub max_entries: usize,
    /// How long a found answer is reused.
    pub positive_ttl_s: u64,
    /// How long a "not found" is reused (short: a new user should not wait long).
    pub negative_ttl_s: u64,
    /// Keep every stored address (`users.email`, `forwardings.source`) in memory, re-read
    /// every few seconds while lookups come in, and answer an address outside it "not
    /// found" without a database statement: unknown recipients (typos, dictionary attacks)
    /// then cost the database nothing. Held only with the built-in queries and only while
    /// the tables have at most this many rows (55-60 bytes each: 200 000 take ~11 MB and
    /// ~0.2 s to read on MariaDB, measured); 0 = off. An address added with plain SQL is
    /// usually accepted within a few seconds, at worst after 2 × `negative_ttl_s` + 2 s
    /// (without the set: `negative_ttl_s` + 2 s); `vmailctl` changes apply at once.
    pub address_set_max: usize,
    /// While the database is down, keep answering with *found* answers up to this old
    /// (0 = off, answer TEMP). Never applied to "not found", which could bounce mail for an
    /// address created during the outage.
    pub serve_stale_s: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_entries: 100_000,
            positive_ttl_s: 60,
            negative_ttl_s: 10,
            address_set_max: 200_000,
            serve_stale_s: 0,
        }
    }
}

/// `[lookupd]`: the Postfix lookup table server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupdConfig {
    /// socketmap listeners, `unix:/path` or `inet:HOST:PORT`. Postfix names the map in each
    /// request (`socketmap:unix:/path:aliases`), so one listener serves every map. The default
    /// sits inside Postfix's chroot so chrooted smtpd processes reach it as
    /// `socketmap:unix:private/vmail-lookupd:NAME`.
    pub socketmap: Vec<String>,
    /// tcp_table listeners: tcp_table requests carry no map name, so one listener per map.
    pub tcp_table: TcpTableListeners,
    /// Octal permission bits of UNIX sockets.
    pub socket_mode: String,
    /// Group owning UNIX sockets (Postfix's processes run as `postfix`); empty keeps ours.
    pub socket_group: String,
    /// socketmap listeners for vmail-lda (`[lda] lookupd`), which runs as the mail user,
    /// outside Postfix's chroot; e.g. `unix:/run/vmail/lookupd`. Empty: none.
    pub lda: Vec<String>,
    pub lda_socket_mode: String,
    /// pipe(8) runs vmail-lda as `user=vmail:vmail`.
    pub lda_socket_group: String,
    /// Drop to this user after binding; empty keeps the starting user.
    pub user: String,
    /// Connections open at once on each listener: every socketmap, tcp_table and lda
    /// listener has a budget of its own, so clients of one (any local user can reach a
    /// loopback tcp_table port) never hold the slots of another. Earlier releases had one
    /// budget shared by all listeners; a value written for that still works, per listener
    /// now. Past it, new clients wait in the socket's backlog (as at a Postfix service's
    /// process limit) and a warning is logged at most once a minute. The daemon raises its
    /// open-files limit to the sum of all budgets (see LimitNOFILE in systemd.exec(5)).
    pub max_connections: usize,
    /// Close connections idle this long. Postfix closes its own after ~10 s idle. Counts
    /// only between requests: a request being received is under request_read_timeout_ms.
    pub idle_timeout_ms: u64,
    /// From the first byte of a request to its last: a client that sends a request more
    /// slowly (a byte now and then, to hold a connection) is closed. Postfix writes each
    /// request at once. A reply must be taken within the same time: a client that sends
    /// requests but does not read the answers is closed too.
    pub request_read_timeout_ms: u64,
    /// Answer TIMEOUT if a lookup takes longer (Postfix waits ~100 s; defer long before).
    pub request_timeout_ms: u64,
    /// Empty: `<state dir>/lookupd.pid`. `vmailctl flush` signals the pid found here, only while
    /// vmail-lookupd holds the file locked (a stale file's pid is left alone).
    pub pid_file: PathBuf,
    /// Log per-map counters this often (0 = only at shutdown).
    pub stats_interval_s: u64,
    /// Prometheus metrics endpoint, e.g. `inet:127.0.0.1:9161` (`GET /metrics`); empty: off.
    pub metrics: String,
    /// Scrapes served at once (a budget apart from the lookup listeners'); more wait.
    pub metrics_max_connections: usize,
    /// Threads answering lookups. 1: one event loop, like Postfix's own daemons: a lookup
    /// is a hash probe or a database round trip, and one thread spends less CPU per lookup
    /// than several handing connections to each other (measured: about 0.1 ms less per RCPT
    /// on a busy 2-core host, where Postfix needs that CPU). One thread answers tens of
    /// thousands of lookups a second; 0 = one per CPU.
    pub threads: usize,
}

/// `[lookupd.tcp_table]`: one listener per map.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpTableListeners {
    pub domains: Option<String>,
    pub mailboxes: Option<String>,
    pub aliases: Option<String>,
    pub senders: Option<String>,
    pub transport: Option<String>,
    /// `check_recipient_access tcp:...`: refuses a disabled mailbox with 5.2.1, as the
    /// socketmap `recipient_access` map does.
    pub recipient_access: Option<String>,
}

impl TcpTableListeners {
    /// (map name, endpoint) for every configured listener.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("domains", &self.domains),
            ("mailboxes", &self.mailboxes),
            ("aliases", &self.aliases),
            ("senders", &self.senders),
            ("transport", &self.transport),
            ("recipient_access", &self.recipient_access),
        ]
        .into_iter()
        .filter_map(|(n, e)| e.as_deref().map(|e| (n, e)))
    }
}

impl Default for LookupdConfig {
    fn default() -> Self {
        LookupdConfig {
            socketmap: vec!["unix:/var/spool/postfix/private/vmail-lookupd".into()],
            tcp_table: TcpTableListeners::default(),
            socket_mode: "0660".into(),
            socket_group: "postfix".into(),
            lda: Vec::new(),
            lda_socket_mode: "0660".into(),
            lda_socket_group: "vmail".into(),
            user: "vmail".into(),
            max_connections: 1024,
            threads: 1,
            idle_timeout_ms: 60_000,
            request_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            pid_file: PathBuf::new(),
            stats_interval_s: 3600,
            metrics: String::new(),
            metrics_max_connections: 8,
        }
    }
}

impl LookupdConfig {
    /// `socket_mode` as permission bits (validated at load).
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }

    /// `lda_socket_mode` as permission bits (validated at load).
    pub fn lda_mode(&self) -> u32 {
        u32::from_str_radix(&self.lda_socket_mode, 8).unwrap_or(0o660)
    }
}

/// `[lda]`: the delivery agent Postfix's pipe(8) runs per recipient.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdaConfig {
    /// Add `Return-Path:` when the message does not start with one (pipe flag `R` adds it).
    pub add_return_path: bool,
    /// Add `Delivered-To:` when the message does not start with one (pipe flag `D`).
    pub add_delivered_to: bool,
    /// Deliver `user+folder@domain` into the Maildir++ folder `.folder` when it exists.
    pub folder_from_extension: bool,
    /// `bounce` (Dovecot's default: "Quota exceeded") or `defer` (exit 75, retried until the
    /// queue lifetime ends).
    pub over_quota: String,
    /// Largest message accepted, in bytes; 0 for no limit (Postfix's message_size_limit
    /// normally stops big ones first).
    pub max_message_size: u64,
    /// Host name in Maildir file names; empty: the system's.
    pub hostname: String,
    /// Ask vmail-lookupd (one of its `[lookupd] lda` listeners, `unix:/path` or
    /// `inet:ADDRESS:PORT` — an IP address: a host name would be resolved without a
    /// deadline) instead of opening a database connection per message. When nothing
    /// listens there (no socket, connection refused), the LDA asks the database itself; any
    /// other trouble (permission denied, TEMP, no answer in time) defers.
    pub lookupd: String,
    /// How long to wait for lookupd's answer; longer than lookupd's own request_timeout_ms,
    /// so that its TIMEOUT (a deferral with a reason) normally arrives first.
    pub lookupd_timeout_ms: u64,
}

impl Default for LdaConfig {
    fn default() -> Self {
        LdaConfig {
            add_return_path: true,
            add_delivered_to: true,
            folder_from_extension: false,
            over_quota: "bounce".into(),
            max_message_size: 0,
            hostname: String::new(),
            lookupd: String::new(),
            lookupd_timeout_ms: 15_000,
        }
    }
}

/// `[authd]`: the Dovecot auth-protocol server (Postfix SMTP AUTH) and dict server
/// (Dovecot passdb/userdb).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthdConfig {
    /// Dovecot auth-protocol listeners. The default sits in Postfix's chroot:
    /// `smtpd_sasl_type = dovecot`, `smtpd_sasl_path = private/vmail-auth`.
    pub auth: Vec<String>,
    pub auth_socket_mode: String,
    /// Postfix's smtpd runs as `postfix`.
    pub auth_socket_group: String,
    /// Dovecot dict-proxy listeners (`uri = proxy:/run/vmail/auth-dict:auth`).
    pub dict: Vec<String>,
    pub dict_socket_mode: String,
    /// Dovecot's auth process runs as `dovecot` (`default_internal_user`).
    pub dict_socket_group: String,
    /// Lua channel listeners, for `contrib/dovecot/vmail-auth.lua` (Dovecot 2.4 has no
    /// dict passdb). `unix:` only: every connection's peer uid is checked against
    /// `lua_peers`, which a TCP socket cannot tell. Empty: off.
    pub lua: Vec<String>,
    pub lua_socket_mode: String,
    /// Dovecot's auth worker processes run as `dovecot` (or root).
    pub lua_socket_group: String,
    /// Users (names, resolved when binding, or numeric uids) whose processes may use the
    /// Lua sockets; anyone else is closed at once. File modes alone cannot keep out
    /// Dovecot's mail processes and vmail-lda, which run as authd's own user. Default
    /// `root` only: Dovecot's auth workers run as root on 2.3 and 2.4 (`service
    /// auth-worker` has no `user`), while many other Dovecot processes run as `dovecot`
    /// (imap-urlauth, indexer, stats...). Add `dovecot` only with `service auth-worker {
    /// user = dovecot }`.
    pub lua_peers: Vec<String>,
    /// Drop to this user after binding; empty keeps the starting user.
    pub user: String,
    /// Connections open at once on each auth and dict listener: each has a budget of its
    /// own, so Dovecot's dict clients (or whoever reaches an `inet:` listener) never hold
    /// the slots Postfix's smtpd processes need. Earlier releases had one budget shared
    /// by all listeners; a value written for that still works, per listener now. Past it,
    /// new clients wait in the socket's backlog and a warning is logged at most once a
    /// minute.
    pub max_connections: usize,
    /// Close idle connections after this long. Postfix keeps one auth connection per smtpd
    /// process and reconnects when it was closed. Keep it well above Dovecot's dict
    /// `idle_msecs` (contrib: 30 s): a request Dovecot sends just as authd closes the
    /// connection fails that login (temporarily) instead of being retried. Counts while no
    /// line is being received and no check runs (an auth request waiting for the client's
    /// next SASL step is idle: Postfix's smtpd_timeout, 300 s, bounds that wait).
    pub idle_timeout_ms: u64,
    /// From the first byte of a line (the auth handshake, an auth or dict request) to its
    /// end, and from connecting to the end of the client's handshake (auth `CPID`, dict
    /// hello): slower clients are closed. Dovecot and Postfix write each line at once.
    /// Each reply must be taken within the same time, or the connection is closed.
    pub request_read_timeout_ms: u64,
    /// A directory lookup slower than this is a temporary failure (Postfix: 454). Keep it
    /// below the Dovecot Lua script's timeout_ms (contrib: 6 s), so that Dovecot gets authd's
    /// temporary failure rather than its own timeout.
    pub request_timeout_ms: u64,
    /// Every failed authentication is answered after this delay (Dovecot's
    /// auth_failure_delay), so guessing is slow and failures all look alike.
    pub failure_delay_ms: u64,
    /// Ceiling of failure delay plus penalty. Postfix gives up on the auth server after
    /// about 10 s, so this must stay below that.
    pub max_delay_ms: u64,
    /// How long a failure counts towards the penalty of its remote address and user.
    pub penalty_window_s: u64,
    /// From this many failures of one remote address (within the window), its attempts
    /// fail without a password check until the window passes.
    pub penalty_block_after: u32,
    /// IPv6 remote addresses share a penalty per prefix of this length.
    pub ipv6_prefix: u8,
    /// Remote networks never penalised (CIDR), e.g. the webmail host.
    pub trusted_networks: Vec<String>,
    /// Password checks running at once (CPU bound); 0 = two per CPU.
    pub verify_concurrency: usize,
    /// Cache successful verifications (keyed by the stored hash, so a password change
    /// takes effect at once).
    pub cache_enabled: bool,
    pub cache_ttl_s: u64,
    /// With the cache on: for this long after a check that read the user's row, the same
    /// login and password are answered from memory with the row as read then, and a dict
    /// lookup of a user found within it gets that row. `vmailctl` flushes the cache with
    /// every change; a change made in SQL directly applies after at most this long. 0: read
    /// the row at every attempt.
    pub cache_recheck_s: u64,
    pub cache_max_entries: usize,
    /// After a successful login with a legacy hash (DES crypt, MD5, unsalted), store a
    /// new hash in `passwords.hash_scheme`. Off by default: anything else reading
    /// `users.password` must understand the new scheme.
    pub rehash_legacy: bool,
    /// Empty: `<state dir>/authd.pid`. `vmailctl flush` signals the pid found here, only while
    /// vmail-authd holds the file locked (a stale file's pid is left alone).
    pub pid_file: PathBuf,
    /// Prometheus metrics endpoint, e.g. `inet:127.0.0.1:9162` (`GET /metrics`); empty: off.
    pub metrics: String,
    /// Scrapes served at once (a budget apart from the auth and dict listeners'); more wait.
    pub metrics_max_connections: usize,
}

impl Default for AuthdConfig {
    fn default() -> Self {
        AuthdConfig {
            auth: vec!["unix:/var/spool/postfix/private/vmail-auth".into()],
            auth_socket_mode: "0660".into(),
            auth_socket_group: "postfix".into(),
            dict: vec!["unix:/run/vmail/auth-dict".into()],
            dict_socket_mode: "0660".into(),
            dict_socket_group: "dovecot".into(),
            lua: vec!["unix:/run/vmail/auth-lua".into()],
            lua_socket_mode: "0660".into(),
            lua_socket_group: "dovecot".into(),
            lua_peers: vec!["root".into()],
            user: "vmail".into(),
            max_connections: 1024,
            idle_timeout_ms: 3_600_000,
            request_read_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
            failure_delay_ms: 2_000,
            max_delay_ms: 8_000,
            penalty_window_s: 900,
            penalty_block_after: 100,
            ipv6_prefix: 64,
            trusted_networks: Vec::new(),
            verify_concurrency: 0,
            cache_enabled: true,
            cache_ttl_s: 300,
            cache_recheck_s: 30,
            cache_max_entries: 100_000,
            rehash_legacy: false,
            pid_file: PathBuf::new(),
            metrics: String::new(),
            metrics_max_connections: 8,
        }
    }
}

impl AuthdConfig {
    /// Permission bits of the auth sockets (validated at load).
    pub fn auth_mode(&self) -> u32 {
        u32::from_str_radix(&self.auth_socket_mode, 8).unwrap_or(0o660)
    }
    /// Permission bits of the dict sockets (validated at load).
    pub fn dict_mode(&self) -> u32 {
        u32::from_str_radix(&self.dict_socket_mode, 8).unwrap_or(0o660)
    }
    /// Permission bits of the Lua channel sockets (validated at load).
    pub fn lua_mode(&self) -> u32 {
        u32::from_str_radix(&self.lua_socket_mode, 8).unwrap_or(0o660)
    }
}

/// `inet:HOST:PORT` with a non-empty host and a valid port.
fn is_inet_endpoint(s: &str) -> bool {
    s.strip_prefix("inet:")
        .and_then(|a| a.rsplit_once(':'))
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Parses `ADDR` or `ADDR/LEN` (a network in CIDR notation) into the address and prefix
/// length, the one parser authd and the config check share.
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not an IP address or network"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
        },
    };
    Ok((addr, len))
}

fn check_cidr(s: &str) -> Result<(), String> {
    parse_cidr(s).map(|_| ())
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

impl Default for AddressConfig {
    fn default() -> Self {
        AddressConfig {
            recipient_delimiter: "+".into(),
            fold_local_part: true,
        }
    }
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            map_template: "%d/%n/".into(),
            home: "/home/vmail/%d/%n".into(),
            mail: "maildir:/home/vmail/%d/%n/Maildir".into(),
            uid: 5000,
            gid: 5000,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            default_scheme: "CRYPT".into(),
            hash_scheme: "SHA512-CRYPT".into(),
        }
    }
}

/// Where the configuration came from, for messages and `--check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// No file: the embedded default.
    Builtin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Builtin => f.write_str("(built-in defaults)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub source: Source,
}

/// Loads the configuration the way every vmail program does: an explicit path (from
/// `--config`) must exist; otherwise `VMAIL_CONFIG` must exist if set; otherwise
/// `/etc/vmail/vmail.toml` is used when present, and the built-in defaults when not.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, Error> {
    let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
    let path = match (explicit, env) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some(e)) => Some(PathBuf::from(e)),
        (None, None) => {
            let d = Path::new(DEFAULT_CONFIG_PATH);
            d.exists().then(|| d.to_path_buf())
        }
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|source| Error::Read {
                path: p.clone(),
                source,
            })?;
            let config = parse(&text, &p)?;
            Ok(Loaded {
                config,
                source: Source::File(p),
            })
        }
        None => {
            let mut config = Config::default();
            config.finish(Path::new("(built-in defaults)"))?;
            Ok(Loaded {
                config,
                source: Source::Builtin,
            })
        }
    }
}

/// Parses and validates configuration text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
    let mut config: Config = toml::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    config.finish(path)?;
    Ok(config)
}

impl Config {
    /// Validates values and fills in derived defaults (the SQLite path).
    fn finish(&mut self, path: &Path) -> Result<(), Error> {
        let invalid = |key: &'static str, message: String| Error::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let db = &mut self.database;
        if db.sqlite_path.as_os_str().is_empty() {
            db.sqlite_path = state_dir().join("vmail.db");
        }
        if db.backend == Backend::Mysql && db.hosts.is_empty() {
            return Err(invalid(
                "database.hosts",
                "needs at least one server".into(),
            ));
        }
        if db.password.is_some() && db.password_file.is_some() {
            return Err(invalid(
                "database.password",
                "set either password or password_file, not both".into(),
            ));
        }
        if db.connect_timeout_ms == 0 || db.query_timeout_ms == 0 {
            return Err(invalid(
                "database.query_timeout_ms",
                "timeouts must be greater than zero".into(),
            ));
        }
        if db.pool_max == 0 {
            return Err(invalid("database.pool_max", "must be at least 1".into()));
        }
        if db.batch_keys == 0 || db.batch_keys > 1024 {
            return Err(invalid(
                "database.batch_keys",
                "must be 1 (off) to 1024".into(),
            ));
        }
        if db.batch_in_flight == 0 {
            return Err(invalid(
                "database.batch_in_flight",
                "must be at least 1".into(),
            ));
        }
        let d = &self.address.recipient_delimiter;
        if d.chars()
            .any(|c| c.is_alphanumeric() || c == '@' || c.is_whitespace())
        {
            return Err(invalid(
                "address.recipient_delimiter",
                format!("{d:?}: delimiters must be punctuation other than '@'"),
            ));
        }
        let l = &mut self.lookupd;
        // World-writable sockets would let every local user probe the directory (lookupd)
        // or guess passwords unpenalised (authd).
        let a = &self.authd;
        for (key, mode) in [
            ("lookupd.socket_mode", &l.socket_mode),
            ("lookupd.lda_socket_mode", &l.lda_socket_mode),
            ("authd.auth_socket_mode", &a.auth_socket_mode),
            ("authd.dict_socket_mode", &a.dict_socket_mode),
            ("authd.lua_socket_mode", &a.lua_socket_mode),
        ] {
            match u32::from_str_radix(mode, 8) {
                Ok(m) if m <= 0o777 && m & 0o002 == 0 => {}
                _ => {
                    return Err(invalid(
                        key,
                        format!(
                        "{mode:?}: expected octal permission bits without o+w, such as \"0660\""
                    ),
                    ))
                }
            }
        }
        if l.max_connections == 0
            || l.metrics_max_connections == 0
            || l.idle_timeout_ms == 0
            || l.request_read_timeout_ms == 0
            || l.request_timeout_ms == 0
        {
            return Err(invalid(
                "lookupd.max_connections",
                "max_connections, metrics_max_connections, idle_timeout_ms, request_read_timeout_ms and request_timeout_ms must be greater than zero"
                    .into(),
            ));
        }
        if l.pid_file.as_os_str().is_empty() {
            l.pid_file = state_dir().join("lookupd.pid");
        }
        let a = &mut self.authd;
        if a.max_connections == 0
            || a.metrics_max_connections == 0
            || a.idle_timeout_ms == 0
            || a.request_read_timeout_ms == 0
            || a.request_timeout_ms == 0
        {
            return Err(invalid(
                "authd.max_connections",
                "max_connections, metrics_max_connections, idle_timeout_ms, request_read_timeout_ms and request_timeout_ms must be greater than zero"
                    .into(),
            ));
        }
        if a.max_delay_ms >= 10_000 || a.failure_delay_ms > a.max_delay_ms {
            return Err(invalid(
                "authd.max_delay_ms",
                format!(
                    "failure_delay_ms ({}) <= max_delay_ms ({}) < 10000 is required: Postfix gives up on the auth server after 10 s",
                    a.failure_delay_ms, a.max_delay_ms
                ),
            ));
        }
        if a.ipv6_prefix == 0 || a.ipv6_prefix > 128 {
            return Err(invalid(
                "authd.ipv6_prefix",
                format!("{}: expected 1-128", a.ipv6_prefix),
            ));
        }
        for net in &a.trusted_networks {
            check_cidr(net).map_err(|m| invalid("authd.trusted_networks", m))?;
        }
        for e in &a.lua {
            if !e.strip_prefix("unix:").is_some_and(|p| p.starts_with('/')) {
                return Err(invalid(
                    "authd.lua",
                    format!("{e:?}: expected unix:/path; the Lua channel checks each client's uid (SO_PEERCRED, authd.lua_peers), which an inet: socket cannot tell"),
                ));
            }
        }
        if !a.lua.is_empty() && a.lua_peers.iter().all(|p| p.trim().is_empty()) {
            return Err(invalid(
                "authd.lua_peers",
                "empty: nobody could use authd.lua (list Dovecot's auth worker user, e.g. [\"root\", \"dovecot\"], or set lua = [])".into(),
            ));
        }
        if a.cache_enabled && a.cache_max_entries == 0 {
            return Err(invalid(
                "authd.cache_max_entries",
                "must be at least 1 when the cache is enabled".into(),
            ));
        }
        if a.pid_file.as_os_str().is_empty() {
            a.pid_file = state_dir().join("authd.pid");
        }
        for (key, m) in [
            ("lookupd.metrics", &self.lookupd.metrics),
            ("authd.metrics", &self.authd.metrics),
        ] {
            let ok = m.is_empty() || is_inet_endpoint(m);
            if !ok {
                return Err(invalid(
                    key,
                    format!("{m:?}: expected inet:HOST:PORT (e.g. inet:127.0.0.1:9161) or empty"),
                ));
            }
        }
        if !matches!(self.lda.over_quota.as_str(), "bounce" | "defer") {
            return Err(invalid(
                "lda.over_quota",
                format!(
                    "{:?}: expected \"bounce\" or \"defer\"",
                    self.lda.over_quota
                ),
            ));
        }
        let lda = &self.lda;
        let endpoint_ok = |e: &str| {
            e.strip_prefix("unix:").is_some_and(|p| p.starts_with('/')) || is_inet_endpoint(e)
        };
        if !lda.lookupd.is_empty() && !endpoint_ok(&lda.lookupd) {
            return Err(invalid(
                "lda.lookupd",
                format!(
                    "{:?}: expected unix:/absolute/path or inet:HOST:PORT (or empty)",
                    lda.lookupd
                ),
            ));
        }
        if lda.lookupd_timeout_ms == 0 {
            return Err(invalid(
                "lda.lookupd_timeout_ms",
                "must be greater than zero".into(),
            ));
        }
        if self.cache.enabled && self.cache.max_entries == 0 {
            return Err(invalid(
                "cache.max_entries",
                "must be at least 1 when the cache is enabled".into(),
            ));
        }
        for (key, v) in [
            ("mailbox.map_template", &self.mailbox.map_template),
            ("mailbox.home", &self.mailbox.home),
            ("mailbox.mail", &self.mailbox.mail),
        ] {
            template::check_variables(v).map_err(|m| invalid(key, m))?;
        }
        self.mailbox
            .check_paths()
            .map_err(|(key, m)| invalid(key, m))?;
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked: what `--check` prints.
    pub fn to_toml_masked(&self) -> String {
        let mut c = self.clone();
        if c.database.password.is_some() {
            c.database.password = Some(Secret::new("********"));
        }
        toml::to_string(&c).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

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

/// The state directory of the embedded default: `$VMAIL_STATE_DIR`, else `/var/lib/vmail` for
/// root, else `$XDG_STATE_HOME/vmail` or `~/.local/state/vmail`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid() has no preconditions and cannot fail. (It used to be read from
    // /proc/self/status: a dozen syscalls, three times per configuration load, in an LDA
    // that Postfix starts once per message.)
    let is_root = unsafe { libc::geteuid() } == 0;
    if is_root {
        return PathBuf::from("/var/lib/vmail");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("vmail");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/vmail"),
        None => PathBuf::from("/var/lib/vmail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.toml")
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = parse("", p()).unwrap();
        assert_eq!(c.database.backend, Backend::Sqlite);
        assert!(c.database.sqlite_path.ends_with("vmail.db"));
        assert_eq!(c.address.recipient_delimiter, "+");
        assert_eq!(c.passwords.default_scheme, "CRYPT");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = parse("[database]\nbakend = \"mysql\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("bakend"), "{e}");
    }

    #[test]
    fn bad_value_names_key() {
        let e = parse("[database]\nbackend = \"oracle\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend") && e.contains("oracle"), "{e}");
        let e = parse("[address]\nrecipient_delimiter = \"a\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("address.recipient_delimiter"), "{e}");
        let e = parse("[mailbox]\nhome = \"/x/%z\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mailbox.home"), "{e}");
        let e = parse("[database]\npool_max = 0\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool_max"), "{e}");
        for (text, key) in [
            ("[database]\nbatch_keys = 0\n", "database.batch_keys"),
            ("[database]\nbatch_keys = 5000\n", "database.batch_keys"),
            (
                "[database]\nbatch_in_flight = 0\n",
                "database.batch_in_flight",
            ),
            ("[lda]\nlookupd = \"/run/vmail/lookupd\"\n", "lda.lookupd"),
            ("[lda]\nlookupd = \"unix:relative\"\n", "lda.lookupd"),
            ("[lda]\nlookupd = \"inet:127.0.0.1\"\n", "lda.lookupd"),
            ("[lda]\nlookupd_timeout_ms = 0\n", "lda.lookupd_timeout_ms"),
            (
                "[lookupd]\nlda_socket_mode = \"0666\"\n",
                "lookupd.lda_socket_mode",
            ),
        ] {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        for good in [
            "[lda]\nlookupd = \"unix:/run/vmail/lookupd\"\n",
            "[lda]\nlookupd = \"inet:127.0.0.1:7010\"\n",
        ] {
            assert!(parse(good, p()).is_ok(), "{good}");
        }
    }

    /// Files written before issue 15 load unchanged: `max_connections` now applies to each
    /// listener, and the new deadlines and metrics budget take their defaults.
    #[test]
    fn connection_limits_are_per_listener_and_old_files_load() {
        let c = parse(
            "[lookupd]\nmax_connections = 50\nidle_timeout_ms = 2000\n[authd]\nmax_connections = 60\n",
            p(),
        )
        .unwrap();
        assert_eq!(c.lookupd.max_connections, 50);
        assert_eq!(c.lookupd.request_read_timeout_ms, 5_000);
        assert_eq!(c.lookupd.metrics_max_connections, 8);
        assert_eq!(c.authd.max_connections, 60);
        assert_eq!(c.authd.request_read_timeout_ms, 5_000);
        assert_eq!(c.authd.metrics_max_connections, 8);
        for text in [
            "[lookupd]\nrequest_read_timeout_ms = 0\n",
            "[lookupd]\nmetrics_max_connections = 0\n",
            "[authd]\nrequest_read_timeout_ms = 0\n",
            "[authd]\nmetrics_max_connections = 0\n",
        ] {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(e.contains("max_connections"), "{text}: {e}");
        }
    }

    #[test]
    fn authd_limits_are_checked() {
        for (text, key) in [
            ("[authd]\nmax_delay_ms = 10000\n", "authd.max_delay_ms"),
            (
                "[authd]\nfailure_delay_ms = 9000\nmax_delay_ms = 8000\n",
                "authd.max_delay_ms",
            ),
            (
                "[authd]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
                "authd.trusted_networks",
            ),
            (
                "[authd]\ntrusted_networks = [\"example.org\"]\n",
                "authd.trusted_networks",
            ),
            (
                "[authd]\nauth_socket_mode = \"0666\"\n",
                "authd.auth_socket_mode",
            ),
            ("[authd]\nipv6_prefix = 0\n", "authd.ipv6_prefix"),
            ("[authd]\nlua = [\"inet:127.0.0.1:9000\"]\n", "authd.lua"),
            ("[authd]\nlua = [\"auth-lua\"]\n", "authd.lua"),
            ("[authd]\nlua_peers = []\n", "authd.lua_peers"),
            (
                "[authd]\nlua_socket_mode = \"0662\"\n",
                "authd.lua_socket_mode",
            ),
            ("[authd]\nrehash = true\n", "rehash"),
        ] {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        let c = parse(
            "[authd]\ntrusted_networks = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
            p(),
        )
        .unwrap();
        assert_eq!(c.authd.trusted_networks.len(), 2);
        assert_eq!(parse_cidr("2001:db8::1").unwrap().1, 128);
        assert!(c.authd.pid_file.ends_with("authd.pid"));
    }

    #[test]
    fn check_masks_the_password() {
        let c = parse(
            "[database]\nbackend = \"mysql\"\npassword = \"hunter2\"\n",
            p(),
        )
        .unwrap();
        let shown = c.to_toml_masked();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("********"));
        assert!(!format!("{c:?}").contains("hunter2"));
        // The masked rendering is itself a valid config.
        parse(&shown, p()).unwrap();
    }

    #[test]
    fn password_file_is_read_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let text = format!(
            "[database]\nbackend = \"mysql\"\npassword_file = \"{}\"\n",
            f.display()
        );
        let c = parse(&text, p()).unwrap();
        assert_eq!(c.database_password().unwrap().unwrap().expose(), "s3cret");
        let both = format!("{text}password = \"x\"\n");
        assert!(parse(&both, p()).is_err());
    }

    #[test]
    fn password_file_others_may_read_or_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("db-password");
        std::fs::write(&f, "s3cret\n").unwrap();
        let text = format!(
            "[database]\nbackend = \"mysql\"\npassword_file = \"{}\"\n",
            f.display()
        );
        let c = parse(&text, p()).unwrap();
        for (mode, what) in [
            (0o644, "read"),
            (0o602, "replace"),
            (0o666, "read and replace"),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = c.database_password().unwrap_err().to_string();
            assert!(e.contains(&f.display().to_string()), "{e}");
            assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
            assert!(e.contains(&format!("every local user {what} the")), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        // Group-readable is how the LDA (group vmail) gets it: root:vmail 0640.
        for mode in [0o640, 0o600, 0o400] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(c.database_password().unwrap().unwrap().expose(), "s3cret");
        }
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = load(Some(Path::new("/nonexistent/vmail.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/vmail.toml"));
    }

    #[test]
    fn mailbox_templates_must_separate_accounts() {
        for (text, key) in [
            ("[mailbox]\nhome = \"/home/vmail/%d\"\n", "mailbox.home"),
            ("[mailbox]\nhome = \"/home/vmail/%d%n\"\n", "mailbox.home"),
            ("[mailbox]\nhome = \"vmail/%d/%n\"\n", "mailbox.home"),
            ("[mailbox]\nhome = \"/home/../%d/%n\"\n", "mailbox.home"),
            (
                "[mailbox]\nmail = \"maildir:/var/mail/%n\"\n",
                "mailbox.mail",
            ),
            ("[mailbox]\nmail = \"maildir:Maildir\"\n", "mailbox.mail"),
            ("[mailbox]\nmail = \"maildir:~/../x\"\n", "mailbox.mail"),
            (
                "[mailbox]\nhome = \"\"\nmail = \"maildir:~/Maildir\"\n",
                "mailbox.mail",
            ),
            (
                "[mailbox]\nmap_template = \"%d/\"\n",
                "mailbox.map_template",
            ),
        ] {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        for ok in [
            "[mailbox]\nhome = \"/srv/mail/%u\"\nmail = \"maildir:~/Maildir:LAYOUT=fs\"\n",
            "[mailbox]\nhome = \"\"\nmail = \"maildir:/var/vmail/%d/%n/Maildir\"\n",
            "[mailbox]\nhome = \"/tmp/.tmpXY/%d/%n\"\n",
        ] {
            parse(ok, p()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
