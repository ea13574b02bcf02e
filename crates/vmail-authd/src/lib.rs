//! vmail-authd: one daemon for every password check of the mail server.
//! - A Dovecot auth-protocol server for Postfix (`smtpd_sasl_type = dovecot`), replacing
//!   saslauthd + pam_mysql: PLAIN and LOGIN, verified here with the failure penalty, the
//!   verified-credentials cache and optional re-hashing of legacy hashes.
//! - A Dovecot dict-proxy server for Dovecot's `passdb`/`userdb { driver = dict }`,
//!   replacing the classic `dovecot-sql.conf` and static userdb.
//! - A line protocol for Dovecot's Lua passdb/userdb script (Dovecot 2.4 has no dict
//!   passdb), on unix sockets whose peers' uids are checked.
//!
//! [`Authd::bind`] opens the listeners (so privileges can be dropped right after) and
//! [`Authd::run`] serves until SIGTERM, reloading on SIGHUP. Tests drive the same steps.

mod about;
pub mod auth_conn;
pub mod authenticator;
pub mod cache;
pub mod deadline;
pub mod dict_conn;
pub mod handler;
pub mod hash_costs;
pub mod lua_conn;
pub mod penalty;
pub mod records;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use vmail_config::{Config, Loaded};
use vmail_daemon::{Account, Base, Endpoint, Lifecycle, Listener, SocketAccess};
use vmail_directory::Directory;

pub use about::ABOUT;
pub use authenticator::{Authenticator, Verdict};
use deadline::ConnSettings;
pub use handler::Handler;

/// How long in-flight requests get to finish after SIGTERM (the failure delay is at most
/// 10 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(12);
const STATS_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Dovecot auth client protocol (Postfix SMTP AUTH).
    Auth,
    /// Dovecot dict proxy protocol (Dovecot passdb/userdb).
    Dict,
    /// The Lua channel (Dovecot's Lua passdb/userdb script); unix sockets only.
    Lua,
}

/// A bound, not yet serving, authd.
pub struct Authd {
    listeners: Vec<(Listener, Protocol)>,
    /// The metrics endpoint, the configuration's path and the pid file.
    base: Base,
    /// The authenticator and what each connection is served with.
    handler: Arc<Handler>,
    config: Config,
}

impl Authd {
    /// Opens the directory and binds every listener. The database may be down: requests
    /// then fail temporarily until it is back.
    pub async fn bind(loaded: &Loaded) -> Result<Authd> {
        let config = loaded.config.clone();
        let a = &config.authd;
        let mut listeners = Vec::new();
        let sets = [
            (&a.auth, a.auth_mode(), &a.auth_socket_group, Protocol::Auth),
            (&a.dict, a.dict_mode(), &a.dict_socket_group, Protocol::Dict),
            (&a.lua, a.lua_mode(), &a.lua_socket_group, Protocol::Lua),
        ];
        for (specs, mode, group, proto) in sets {
            let access = SocketAccess {
                mode,
                group: (!group.is_empty()).then(|| group.clone()),
            };
            for spec in specs {
                let ep: Endpoint = spec.parse()?;
                let l = Listener::bind(&ep, &access)
                    .await
                    .with_context(|| format!("authd: binding {spec}"))?;
                listeners.push((l, proto));
            }
        }
        let metrics = match a.metrics.as_str() {
            "" => None,
            spec => {
                let access = SocketAccess {
                    mode: 0o600,
                    group: None,
                };
                Some((
                    Listener::bind(&spec.parse()?, &access).await?,
                    a.metrics_max_connections,
                ))
            }
        };
        let mut base = Base::new(loaded, metrics);
        if listeners.is_empty() {
            anyhow::bail!(
                "{}: authd has no listener (authd.auth, authd.dict and authd.lua are empty)",
                loaded.source
            );
        }
        let dir = Directory::open(&config)
            .await
            .context("opening the directory")?;
        let auth = Arc::new(Authenticator::new(dir, &config)?);
        base.write_pid_file(&a.pid_file, &a.user);
        // Resolved now, before privileges are dropped; unknown names only warn.
        let lua_peers = if a.lua.is_empty() {
            lua_conn::Peers::resolve(&[])
        } else {
            lua_conn::Peers::resolve(&a.lua_peers)
        };
        let limits = ConnSettings {
            idle_timeout: Duration::from_millis(a.idle_timeout_ms),
            request_read_timeout: Duration::from_millis(a.request_read_timeout_ms),
        };
        Ok(Authd {
            listeners,
            base,
            handler: Arc::new(Handler::new(auth, limits, lua_peers)),
            config,
        })
    }

    /// Where each listener is bound, with its protocol.
    pub fn endpoints(&self) -> Vec<(String, Protocol)> {
        self.listeners
            .iter()
            .map(|(l, p)| (l.local_endpoint(), *p))
            .collect()
    }

    /// Where the metrics endpoint is bound, if configured.
    pub fn metrics_endpoint(&self) -> Option<String> {
        self.base.metrics_endpoint()
    }

    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.handler.authenticator().clone()
    }

    /// Serves until `stop` resolves or SIGTERM; SIGHUP re-reads the configuration's
    /// directory settings and flushes the cache (the failure penalties stay).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let a = &self.config.authd;
        let mut life =
            Lifecycle::new("authd", Some(STATS_EVERY)).context("installing signal handlers")?;
        for (listener, proto) in self.listeners {
            let handler = self.handler.clone();
            // A budget per listener: Dovecot's dict clients, or whoever reaches an inet:
            // listener, never hold the slots of Postfix's auth socket.
            life.listen(listener, a.max_connections, move |stream, shut| {
                handler.clone().connection(stream, proto, shut)
            });
        }
        let auth = self.handler.authenticator().clone();
        self.base.run(life, auth, stop, SHUTDOWN_GRACE).await;
        Ok(())
    }
}

/// The skeleton's view of authd (`vmail_daemon::main`).
impl vmail_daemon::Daemon for Authd {
    /// authd has no `threads` setting: one worker per CPU, tokio's default.
    fn threads(_: &Config) -> usize {
        0
    }

    fn user(config: &Config) -> &str {
        &config.authd.user
    }

    fn accounts(config: &Config) -> Vec<(&'static str, Account, String)> {
        let a = &config.authd;
        let mut out = vec![("authd.user", Account::User, a.user.clone())];
        for (specs, key, group) in [
            (&a.auth, "authd.auth_socket_group", &a.auth_socket_group),
            (&a.dict, "authd.dict_socket_group", &a.dict_socket_group),
            (&a.lua, "authd.lua_socket_group", &a.lua_socket_group),
        ] {
            if specs.iter().any(|s| s.starts_with("unix:")) {
                out.push((key, Account::Group, group.clone()));
            }
        }
        out
    }

    async fn bind(loaded: &Loaded) -> Result<Authd> {
        Authd::bind(loaded).await
    }

    async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        Authd::run(self, stop).await
    }
}

impl vmail_daemon::Service for Authenticator {
    fn render_metrics(&self) -> String {
        self.stats.render()
    }

    fn log_stats(&self) {
        self.stats.log()
    }

    async fn reload(&self, path: Option<&std::path::Path>) {
        reload(self, path).await
    }
}

/// SIGHUP: re-read the configuration; on success swap the directory. The cache is flushed
/// either way (that is what `vmailctl flush` asks for); penalties are kept, or every
/// `vmailctl` change would give a guesser a clean slate.
async fn reload(auth: &Authenticator, path: Option<&std::path::Path>) {
    auth.flush();
    match vmail_config::load(path) {
        Ok(loaded) => match Directory::open(&loaded.config).await {
            Ok(dir) => {
                auth.replace_directory(dir);
                // Again: checks that read the old directory meanwhile must not outlive it.
                auth.flush();
                tracing::info!(config = %loaded.source, "reloaded; auth cache flushed");
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: cannot open the new directory; keeping the old one")
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "reload: configuration invalid; keeping the running one")
        }
    }
}
