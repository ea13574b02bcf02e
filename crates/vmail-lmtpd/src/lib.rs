//! vmail-lmtpd: an LMTP server (RFC 2033) for Postfix's `lmtp:unix:` transport, the
//! delivery path without a process per message. Postfix keeps connections open and sends
//! many messages and recipients over each; every recipient is looked up at RCPT, every
//! message is spooled once (`spool.rs`) and written into each recipient's Maildir by
//! vmail-lda's own delivery code ([`vmail_lda::deliver_record`]: the same verdicts,
//! headers, quota rule, loop check and Sieve hand-off), each 250 only once that copy and its
//! directory are fsynced.
//!
//! The protocol is the pure codec `vmail_proto::lmtp`; this crate adds the I/O
//! (`conn.rs`), the directory and counters (`service.rs`) and the mapping of verdicts to
//! replies (`verdict.rs`). [`Lmtpd::bind`] opens the listeners (so privileges can be dropped
//! right after), and [`Lmtpd::run`] serves until SIGTERM, reloading on SIGHUP. Tests drive
//! the same two steps.

mod about;
mod checks;
mod conn;
mod inbuf;
pub mod service;
pub mod spool;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use vmail_config::{Config, Loaded};
use vmail_daemon::{Account, Base, Endpoint, Lifecycle, Listener, SocketAccess};
use vmail_directory::Directory;
use vmail_proto::lmtp::{Config as SessionConfig, LineEnds};

pub use about::ABOUT;
pub use service::Service;

/// How long deliveries in flight get to finish after SIGTERM: a 30 MiB message to many
/// recipients on a slow disk takes a while, and an unfinished one is retried by Postfix.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Refused commands tolerated per connection (Postfix makes none).
const MAX_ERRORS: u32 = 10;

/// A bound, not yet serving, lmtpd.
pub struct Lmtpd {
    listeners: Vec<Listener>,
    base: Base,
    service: Arc<Service>,
    config: Config,
}

impl Lmtpd {
    /// Opens the directory and binds every configured listener. The database may be down:
    /// it is only contacted at RCPT, which answers 451 until it is back.
    pub async fn bind(loaded: &Loaded) -> Result<Lmtpd> {
        let config = loaded.config.clone();
        let l = &config.lmtpd;
        let access = SocketAccess {
            mode: l.mode(),
            group: (!l.socket_group.is_empty()).then(|| l.socket_group.clone()),
        };
        let mut listeners = Vec::new();
        for spec in &l.listen {
            let ep: Endpoint = spec.parse()?;
            listeners.push(Listener::bind(&ep, &access).await?);
        }
        let mut base = Base::new(loaded, None);
        base.write_pid_file(&l.pid_file, &l.user);
        let dir = Directory::open(&config)
            .await
            .context("opening the directory")?;
        Ok(Lmtpd {
            listeners,
            base,
            service: Arc::new(Service::new(dir, config.clone())),
            config,
        })
    }

    /// Where each listener is bound, e.g. `unix:/path`.
    pub fn endpoints(&self) -> Vec<String> {
        self.listeners.iter().map(|l| l.local_endpoint()).collect()
    }

    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until `stop` resolves or SIGTERM; SIGHUP re-reads the directory settings and
    /// `[lda]` (listeners and `[lmtpd]` need a restart).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let l = &self.config.lmtpd;
        // Now that we run as the mail user, inside the unit's sandbox: what it must write,
        // then the spool, this instance's alone (a previous run's files are removed).
        checks::preflight(&self.config).map_err(|message| vmail_daemon::Exit {
            status: vmail_daemon::EX_CONFIG,
            message,
        })?;
        let spool_lock = spool::SpoolLock::take(&l.spool).map_err(|e| vmail_daemon::Exit {
            status: match e {
                spool::LockError::Busy(..) => vmail_daemon::EX_TEMPFAIL,
                spool::LockError::Io(..) => vmail_daemon::EX_CONFIG,
            },
            message: e.to_string(),
        })?;
        // Held until the process exits, not until `run` returns: deliveries still running
        // on the blocking pool after the shutdown grace read their spool files until the
        // runtime is dropped, and a new instance must not clean them away meanwhile. The
        // kernel releases the lock at exit.
        std::mem::forget(spool_lock);
        let mut life = Lifecycle::new("lmtpd", None).context("installing signal handlers")?;
        let hostname = match self.config.lda.hostname.as_str() {
            "" => vmail_maildir::system_hostname(),
            h => h.to_string(),
        };
        for listener in self.listeners {
            let handler = Arc::new(conn::Handler {
                svc: self.service.clone(),
                settings: conn::Settings {
                    session: SessionConfig {
                        hostname: hostname.clone(),
                        max_size: l.size_limit(),
                        max_recipients: l.max_recipients,
                        max_errors: MAX_ERRORS,
                        // vmail-lda's input form: LF, as pipe(8) gives it and Maildir keeps.
                        line_ends: LineEnds::Lf,
                    },
                    idle_timeout: Duration::from_millis(l.idle_timeout_ms),
                    read_timeout: Duration::from_millis(l.request_read_timeout_ms),
                    spool_dir: l.spool.clone(),
                    spool_memory: l.spool_memory,
                },
            });
            life.listen(listener, l.max_connections, move |stream, shut| {
                handler.clone().connection(stream, shut)
            });
        }
        self.base
            .run(life, self.service, stop, SHUTDOWN_GRACE)
            .await;
        Ok(())
    }
}

/// The skeleton's view of lmtpd (`vmail_daemon::main`).
impl vmail_daemon::Daemon for Lmtpd {
    fn threads(config: &Config) -> usize {
        config.lmtpd.threads
    }

    fn user(config: &Config) -> &str {
        &config.lmtpd.user
    }

    fn accounts(config: &Config) -> Vec<(&'static str, Account, String)> {
        let l = &config.lmtpd;
        let mut a = vec![("lmtpd.user", Account::User, l.user.clone())];
        if l.listen.iter().any(|s| s.starts_with("unix:")) {
            a.push(("lmtpd.socket_group", Account::Group, l.socket_group.clone()));
        }
        a
    }

    const PREFLIGHT: bool = true;

    fn preflight(config: &Config) -> std::result::Result<(), String> {
        checks::preflight(config)
    }

    async fn bind(loaded: &Loaded) -> Result<Lmtpd> {
        Lmtpd::bind(loaded).await
    }

    async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        Lmtpd::run(self, stop).await
    }
}

impl vmail_daemon::Service for Service {
    fn render_metrics(&self) -> String {
        self.render()
    }

    fn log_stats(&self) {
        self.log()
    }

    async fn reload(&self, path: Option<&std::path::Path>) {
        let loaded = match vmail_config::load(path) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "reload: configuration invalid; keeping the running one");
                return;
            }
        };
        // What the start checks refuse would defer every delivery from now on: keep
        // delivering where we can.
        // Off the event loop: a hung file system (NFS) must not stall a runtime thread.
        let config = loaded.config.clone();
        let checked = tokio::task::spawn_blocking(move || checks::preflight(&config))
            .await
            .unwrap_or_else(|e| Err(format!("the check task failed: {e}")));
        if let Err(why) = checked {
            tracing::error!("reload: {why}; keeping the running configuration");
            return;
        }
        match Directory::open(&loaded.config).await {
            Ok(dir) => {
                self.replace(dir, loaded.config);
                tracing::info!(config = %loaded.source, "reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: cannot open the new directory; keeping the old one")
            }
        }
    }
}
