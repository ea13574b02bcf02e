//! Finding and reading the configuration: `--config`, `VMAIL_CONFIG`, the default path,
//! or the embedded default with its state directory.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Config, Error};

/// Where programs look when neither `--config` nor `VMAIL_CONFIG` names a file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmail/vmail.toml";
/// Environment variable naming the config file (like `--config`).
pub const CONFIG_ENV: &str = "VMAIL_CONFIG";
/// Environment variable overriding the state directory of the embedded default.
pub const STATE_DIR_ENV: &str = "VMAIL_STATE_DIR";

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
