//! The configuration file shared by every vmail program (`/etc/vmail/vmail.toml`).
//!
//! With no file at all every program runs on the embedded default: an SQLite directory in the
//! state directory. Unknown keys and bad values are errors that name the key and the file, like
//! `postconf` and `doveconf` do, because a silently ignored typo on a mail server means mail
//! going where nobody meant it to.
//!
//! Where things are: the sections' structs and their defaults, one file per part of the
//! system (`database.rs`, `account.rs` for `[address]`, `[mailbox]` and `[passwords]`,
//! `lookupd.rs` with `[cache]`, `lda.rs`, `authd.rs`, `lmtpd.rs`); finding and reading the file
//! (`load.rs`); the checks that make a bad value an error (`validate.rs`); and the
//! mailbox template syntax (`template.rs`). Everything is re-exported here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod account;
mod authd;
mod database;
mod lda;
mod lmtpd;
mod load;
mod lookupd;
mod template;
mod validate;

pub use account::{AddressConfig, MailboxConfig, PasswordConfig};
pub use authd::AuthdConfig;
pub use database::{Backend, DatabaseConfig, QueryConfig, Secret};
pub use lda::LdaConfig;
pub use lmtpd::LmtpdConfig;
pub use load::{
    load, parse, state_dir, Loaded, Source, CONFIG_ENV, DEFAULT_CONFIG_PATH, STATE_DIR_ENV,
};
pub use lookupd::{CacheConfig, LookupdConfig, TcpTableListeners};
pub use template::{expand_template, fixed_base, is_canonical_path, location_fields};
pub use validate::parse_cidr;

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
    pub lmtpd: LmtpdConfig,
}

impl Config {
    /// The effective configuration as TOML, secrets masked: what `--check` prints.
    pub fn to_toml_masked(&self) -> String {
        toml::to_string(&self.masked())
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// Only the settings that differ from the built-in defaults (an empty file), secrets masked: what
    /// `vmailctl --check` prints, like `doveconf -n` / `postconf -n`. A setting the file
    /// clears (an optional one whose default is set) cannot be written in TOML and is left out.
    pub fn to_toml_changed(&self) -> String {
        let render = || -> Result<String, String> {
            let ours = toml::Value::try_from(self.masked()).map_err(|e| e.to_string())?;
            // The defaults as an empty file gives them (paths filled in), not `Default`'s.
            let base =
                load::parse("", std::path::Path::new("(defaults)")).map_err(|e| e.to_string())?;
            let default = toml::Value::try_from(base).map_err(|e| e.to_string())?;
            let changed =
                changed(&ours, &default).unwrap_or(toml::Value::Table(Default::default()));
            toml::to_string(&changed).map_err(|e| e.to_string())
        };
        render().unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    fn masked(&self) -> Config {
        let mut c = self.clone();
        if c.database.password.is_some() {
            c.database.password = Some(Secret::new("********"));
        }
        c
    }
}

/// The part of `ours` that differs from `default`: tables compared key by key (a table with
/// no difference left out), anything else whole.
fn changed(ours: &toml::Value, default: &toml::Value) -> Option<toml::Value> {
    match (ours, default) {
        (toml::Value::Table(o), toml::Value::Table(d)) => {
            let t: toml::map::Map<String, toml::Value> = o
                .iter()
                .filter_map(|(k, v)| {
                    let diff = match d.get(k) {
                        Some(dv) => changed(v, dv),
                        None => Some(v.clone()),
                    };
                    diff.map(|x| (k.clone(), x))
                })
                .collect();
            (!t.is_empty()).then_some(toml::Value::Table(t))
        }
        _ => (ours != default).then(|| ours.clone()),
    }
}

#[cfg(test)]
mod tests;
