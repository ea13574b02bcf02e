//! The skeleton of every vmail daemon, written once: the command line (`--config`,
//! `--check`), loading the configuration, logging, the runtime, binding while still root,
//! dropping privileges, then serving until SIGTERM with a reload on each SIGHUP. A daemon
//! brings only its own parts: how it binds and serves ([`Daemon`]), and the running state
//! that answers metrics scrapes, logs statistics and reloads ([`Service`]).
//!
//! This is the daemons' binary edge, so errors are `anyhow` here, as they were in each
//! `main.rs`: a start-up failure is printed as `Error: ...` and exits with status 1, except
//! a configuration that cannot be used, which exits with [`EX_CONFIG`] (78, sysexits(3), as
//! doveadm and Postfix use it) so the units' `RestartPreventExitStatus=78` stops systemd from
//! restarting a daemon that can only fail again until the admin edits the file. A usage
//! error is clap's status 2. A daemon that finds, once running as its user, a reason not to
//! serve returns an [`Exit`] with its own status (vmail-lmtpd: 78 for a Maildir base it
//! cannot write, 75 for a spool another instance holds).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use vmail_config::{Config, Loaded, Source};

use crate::{Lifecycle, Listener, PidFile};

/// The exit status of a daemon whose configuration cannot be used (sysexits(3) EX_CONFIG):
/// the file does not load or validate, its database password file is unreadable or
/// readable by others, or a user or group it names does not exist on this host (Dovecot's
/// group on a host without Dovecot: `--check` says so before a start fails). Binding stays
/// status 1 even when the configuration named the address: an address in use or a socket
/// directory not there yet are states of the host that a restart may well find mended,
/// which is what `Restart=on-failure` is for.
pub const EX_CONFIG: u8 = 78;

/// The exit status of a daemon that cannot start now but may on a later try (sysexits(3)
/// EX_TEMPFAIL): the units' `Restart=on-failure` retries it, unlike [`EX_CONFIG`].
pub const EX_TEMPFAIL: u8 = 75;

/// An error that ends a daemon's start with `status` (e.g. [`EX_CONFIG`]) rather than 1:
/// what [`Daemon::run`] returns (inside its `anyhow::Error`) when it finds, once running as
/// its user, something systemd should or should not retry.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub status: u8,
    pub message: String,
}

/// What `--help` and `--version` say about a daemon.
pub struct About {
    /// The program's name, e.g. `vmail-lookupd`.
    pub name: &'static str,
    /// The first line of `--help` (no final period, as clap prints a doc comment).
    pub about: &'static str,
    /// What follows the options in `--help`: configuration, sockets, signals.
    pub after_help: &'static str,
}

// The name, the description and the closing text are the daemon's (`About`).
#[derive(clap::Parser, Debug)]
#[command(version)]
struct Args {
    /// Configuration file [default: $VMAIL_CONFIG, else /etc/vmail/vmail.toml if present, else built-in defaults]
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    check: bool,
}

/// A user or a group a daemon's configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    User,
    Group,
}

/// A daemon as its `main` sees it: bound in one step (as root, so privileged sockets can be
/// opened), then run. Tests and benchmarks drive the same two steps in-process.
pub trait Daemon: Sized {
    /// Worker threads of the runtime, as [`crate::runtime`] takes them (0: one per CPU).
    fn threads(config: &Config) -> usize;
    /// The user to run as once the listeners are bound (empty: stay who we are).
    fn user(config: &Config) -> &str;
    /// Every user and group the configuration names that binding or the privilege drop
    /// will look up (the key, what it is, the name): resolved before anything is bound.
    fn accounts(config: &Config) -> Vec<(&'static str, Account, String)>;
    /// Checks of the host that only the daemon's user can answer (the paths it must write),
    /// which `--check` runs with that user's ids; `Err` names the path and what to do, and
    /// `--check` exits with [`EX_CONFIG`]. The daemon runs them again itself before it
    /// serves (the view from inside its systemd sandbox may differ from a shell's).
    fn preflight(_config: &Config) -> Result<(), String> {
        Ok(())
    }
    /// Whether [`Daemon::preflight`] checks anything: only then does `--check` take the
    /// daemon user's ids (a host where root may not switch them, in a restricted
    /// container, then still checks the other daemons' configuration).
    const PREFLIGHT: bool = false;
    /// Opens what the configuration describes and binds every listener.
    fn bind(loaded: &Loaded) -> impl Future<Output = anyhow::Result<Self>>;
    /// Serves until `stop` resolves or SIGTERM.
    fn run(self, stop: impl Future<Output = ()>) -> impl Future<Output = anyhow::Result<()>>;
}

/// The daemon's command line: what `main` parses, and what vmail-doc renders as its man
/// page and shell completions, so the two cannot differ.
pub fn command(about: &About) -> clap::Command {
    Args::command()
        .name(about.name)
        .about(about.about)
        .after_help(about.after_help)
}

/// The whole of a daemon's `main`: parses the command line; with `--check` prints the
/// effective configuration (secrets masked) and exits; otherwise sets up logging and the
/// runtime, binds, drops privileges and serves for ever.
pub fn main<D: Daemon>(about: &About) -> anyhow::Result<()> {
    let matches = command(about).get_matches();
    // What `Parser::parse` does with an error: clap's message and exit status 2.
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let loaded = vmail_config::load(args.config.as_deref()).unwrap_or_else(|e| config_error(e));
    // Read here, before anything is bound, only to tell a configuration error from the
    // others (and so that `--check` finds it too); the directory reads it again when it
    // opens, and only for MySQL (SQLite ignores a password file, so must this).
    if loaded.config.database.backend == vmail_config::Backend::Mysql {
        if let Err(e) = loaded.config.database_password() {
            config_error(e);
        }
    }
    if let Err(e) = missing_account(&D::accounts(&loaded.config)) {
        eprintln!("Error: {}: {e}", loaded.source);
        std::process::exit(EX_CONFIG.into())
    }
    if args.check {
        print!("# {}\n{}", loaded.source, loaded.config.to_toml_masked());
        let config = &loaded.config;
        let checked = if D::PREFLIGHT {
            as_user(D::user(config), || D::preflight(config))
        } else {
            Ok(Ok(()))
        };
        match checked {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => eprintln!("Error: {}: {e}", loaded.source),
            Err(e) => eprintln!("Error: {}: {e}", loaded.source),
        }
        std::process::exit(EX_CONFIG.into())
    }
    crate::init_logging("info");
    let rt = crate::runtime(D::threads(&loaded.config))?;
    let r = rt.block_on(async {
        let d = D::bind(&loaded).await?;
        // Listening sockets are open: from here on we need no privileges.
        crate::drop_privileges(D::user(&loaded.config))?;
        d.run(std::future::pending()).await
    });
    if let Some(exit) = r.as_ref().err().and_then(|e| e.downcast_ref::<Exit>()) {
        eprintln!("Error: {exit}");
        std::process::exit(exit.status.into())
    }
    r
}

/// Runs `f` with the effective ids `user` will have once a root daemon drops to it (its uid
/// and primary group, no supplementary groups), then becomes root again; as anyone else, or
/// for an empty `user`, runs `f` as we are. Only for a single-threaded `--check`: the ids
/// are the whole process's while `f` runs.
fn as_user<T>(user: &str, f: impl FnOnce() -> T) -> Result<T, crate::Error> {
    use nix::unistd::{getegid, getgroups, setegid, seteuid, setgroups, Uid};
    let Some(u) = crate::drop_target(user)? else {
        return Ok(f());
    };
    let failed = |what: &str, e: nix::Error| crate::Error::Privileges(format!("{what}: {e}"));
    let (gid, groups) = (getegid(), getgroups().map_err(|e| failed("getgroups", e))?);
    setgroups(&[u.gid]).map_err(|e| failed("setgroups", e))?;
    setegid(u.gid).map_err(|e| failed("setegid", e))?;
    seteuid(u.uid).map_err(|e| failed("seteuid", e))?;
    let out = f();
    seteuid(Uid::from_raw(0)).map_err(|e| failed("seteuid", e))?;
    setegid(gid).map_err(|e| failed("setegid", e))?;
    setgroups(&groups).map_err(|e| failed("setgroups", e))?;
    Ok(out)
}

/// The first of `accounts` that does not resolve on this host, as a message naming its key.
/// A number is taken as an id, as the daemons take it.
pub fn missing_account(accounts: &[(&'static str, Account, String)]) -> Result<(), String> {
    for (key, kind, name) in accounts {
        if name.is_empty() || name.parse::<u32>().is_ok() {
            continue;
        }
        let (what, found) = match kind {
            Account::User => (
                "user",
                nix::unistd::User::from_name(name).map(|u| u.is_some()),
            ),
            Account::Group => (
                "group",
                nix::unistd::Group::from_name(name).map(|g| g.is_some()),
            ),
        };
        match found {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "{key}: no such {what} {name:?} on this host (create it, or change {key})"
                ))
            }
            Err(e) => return Err(format!("{key}: looking up {what} {name:?}: {e}")),
        }
    }
    Ok(())
}

/// Prints a configuration error as anyhow's `main` prints any other (`Error: ...`) and exits
/// with [`EX_CONFIG`]. Nothing is running yet (no runtime, no listener, no pid file), so
/// there is nothing for destructors to undo, as with clap's own `exit`.
fn config_error(e: vmail_config::Error) -> ! {
    eprintln!("Error: {:?}", anyhow::Error::from(e));
    std::process::exit(EX_CONFIG.into())
}

/// The running state of a daemon, shared by its connections: what the main loop asks of
/// it besides serving them.
pub trait Service: Send + Sync + 'static {
    /// The Prometheus text of the daemon's own metrics (the listeners' are added).
    fn render_metrics(&self) -> String;
    /// Logs the statistics (each tick, and once at exit).
    fn log_stats(&self);
    /// SIGHUP: re-read the configuration at `path` (`None`: the built-in defaults) into the
    /// running service. A broken new configuration is logged and the running one kept.
    fn reload(&self, path: Option<&Path>) -> impl Future<Output = ()> + Send;
}

/// What every daemon binds and keeps besides its protocol listeners: the metrics endpoint,
/// where its configuration came from (read again on SIGHUP), and its pid file.
pub struct Base {
    /// Prometheus endpoint, when configured, with its connection limit.
    metrics: Option<(Listener, usize)>,
    config_path: Option<PathBuf>,
    /// Written before privileges are dropped; removed at exit.
    pid: Option<PidFile>,
}

impl Base {
    /// Keeps the metrics endpoint (if any) and where the configuration came from. Called
    /// once every listener is bound: a socket systemd passed that none of them took is
    /// then a mismatch between the .socket unit and the configuration, and is logged.
    pub fn new(loaded: &Loaded, metrics: Option<(Listener, usize)>) -> Base {
        for fd in crate::unused_inherited() {
            tracing::warn!(socket = %fd, "systemd passed a socket no configured listener uses; check the .socket unit against the configuration");
        }
        Base {
            metrics,
            config_path: match &loaded.source {
                Source::File(p) => Some(p.clone()),
                Source::Builtin => None,
            },
            pid: None,
        }
    }

    /// Writes the pid file `path` (for `user`, who we become). Without one the daemon
    /// still runs; only `vmailctl flush` cannot reach it.
    pub fn write_pid_file(&mut self, path: &Path, user: &str) {
        self.pid = PidFile::create(path, user)
            .map_err(|e| tracing::warn!(error = %e, "no pid file; `vmailctl flush` cannot reach this daemon"))
            .ok();
    }

    /// Where the metrics endpoint is bound, if configured.
    pub fn metrics_endpoint(&self) -> Option<String> {
        self.metrics.as_ref().map(|(l, _)| l.local_endpoint())
    }

    /// Serves the metrics endpoint, then runs `life`'s main loop for `svc` (reload on
    /// SIGHUP, statistics on each tick) until `stop` or SIGTERM, with `grace` for requests in
    /// flight; logs the statistics a last time and removes the pid file.
    pub async fn run<S: Service>(
        self,
        mut life: Lifecycle,
        svc: Arc<S>,
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) {
        if let Some((listener, max_connections)) = self.metrics {
            let svc = svc.clone();
            life.serve_metrics(
                listener,
                max_connections,
                Arc::new(move || svc.render_metrics()),
            );
        }
        let (svc, path) = (&*svc, self.config_path.as_deref());
        life.run(stop, grace, || svc.reload(path), || svc.log_stats())
            .await;
        svc.log_stats();
        drop(self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// clap's own consistency checks (flag names, value names), which otherwise run only
    /// when a daemon starts in a debug build.
    #[test]
    fn command_line_is_well_formed() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["vmail-x", "-c", "/etc/v.toml", "--check"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(Path::new("/etc/v.toml")));
        assert!(a.check);
    }
}
