//! vmail-lookupd: the Postfix `socketmap` and `tcp_table` server that replaces the classic
//! `mysql:` maps (`virtual_mailbox_domains`, `virtual_mailbox_maps`, `virtual_alias_maps`,
//! `smtpd_sender_login_maps`, `transport_maps`).
//!
//! [`Lookupd::bind`] opens the listeners (so privileges can be dropped right after), and
//! [`Lookupd::run`] serves until SIGTERM, reloading on SIGHUP. Tests drive the same two steps.

mod about;
pub mod cache;
mod conn;
pub mod service;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use vmail_config::{Config, Loaded};
use vmail_daemon::{Account, Base, Endpoint, Lifecycle, Listener, SocketAccess};
use vmail_directory::Directory;

use crate::cache::shared::Shared;
use crate::cache::MapCache;

pub use about::ABOUT;
pub use conn::Protocol;
pub use service::{Memo, Outcome, Service};

/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// A bound, not yet serving, lookupd.
pub struct Lookupd {
    listeners: Vec<(Listener, Protocol)>,
    /// The metrics endpoint, the configuration's path and the pid file.
    base: Base,
    service: Arc<Service>,
    config: Config,
}

/// The directory a configuration describes, with the memo `memo` says (see
/// [`Service::memo`]): with it, map lookups share the rows they read for a second or two
/// (`cache/memo.rs`), so an unknown recipient costs one query instead of four (plus its
/// domain's catch-all once); and with the address set (`[cache] address_set_max`), none.
async fn open_directory(config: &Config, memo: Option<Memo>) -> vmail_directory::Result<Shared> {
    let dir = Shared::new(Directory::open(config).await?);
    Ok(match memo {
        // The address set answers "not found" for as long as the cache may keep one.
        Some(m) => dir
            .with_memo(m.positive, m.negative, m.max_entries)
            .with_address_set(
                Duration::from_secs(config.cache.negative_ttl_s),
                config.cache.address_set_max,
            ),
        None => dir,
    })
}

/// Builds the directory and cache a configuration describes. The memo goes with the cache:
/// with the cache off, every lookup reads the database.
async fn service_for(config: &Config) -> Result<Service> {
    let c = &config.cache;
    let memo = c.enabled.then(|| Memo {
        positive: Duration::from_secs(c.positive_ttl_s),
        negative: Duration::from_secs(c.negative_ttl_s),
        // Per kind (user rows, forwardings); entries live 2 s at most, so this is only
        // reached under a flood of distinct keys.
        max_entries: c.max_entries,
    });
    let dir = open_directory(config, memo)
        .await
        .context("opening the directory")?;
    let cache = c.enabled.then(|| MapCache::new(c));
    Ok(Service::new(
        dir,
        cache,
        memo,
        Duration::from_millis(config.lookupd.request_timeout_ms),
    ))
}

impl Lookupd {
    /// Opens the directory and binds every configured listener. The database may be down: it
    /// is only contacted by lookups, which answer TEMP until it is back.
    pub async fn bind(loaded: &Loaded) -> Result<Lookupd> {
        let config = loaded.config.clone();
        let l = &config.lookupd;
        let access = SocketAccess {
            mode: l.mode(),
            group: (!l.socket_group.is_empty()).then(|| l.socket_group.clone()),
        };
        let mut listeners = Vec::new();
        for spec in &l.socketmap {
            let ep: Endpoint = spec.parse()?;
            listeners.push((Listener::bind(&ep, &access).await?, Protocol::Socketmap));
        }
        for (map, spec) in l.tcp_table.iter() {
            let ep: Endpoint = spec.parse()?;
            listeners.push((Listener::bind(&ep, &access).await?, Protocol::TcpTable(map)));
        }
        // The LDA's own sockets: same protocol, but the LDA runs as the mail user, not postfix.
        let lda_access = SocketAccess {
            mode: l.lda_mode(),
            group: (!l.lda_socket_group.is_empty()).then(|| l.lda_socket_group.clone()),
        };
        for spec in &l.lda {
            let ep: Endpoint = spec.parse()?;
            listeners.push((Listener::bind(&ep, &lda_access).await?, Protocol::Socketmap));
        }
        let metrics = match l.metrics.as_str() {
            "" => None,
            spec => Some((
                Listener::bind(&spec.parse()?, &access).await?,
                l.metrics_max_connections,
            )),
        };
        let mut base = Base::new(loaded, metrics);
        if listeners.is_empty() {
            anyhow::bail!(
                "{}: lookupd has no listener (lookupd.socketmap, lookupd.tcp_table and lookupd.lda are empty)",
                loaded.source
            );
        }
        base.write_pid_file(&l.pid_file, &l.user);
        Ok(Lookupd {
            listeners,
            base,
            service: Arc::new(service_for(&config).await?),
            config,
        })
    }

    /// Where each listener is bound, e.g. `unix:/path` or `inet:127.0.0.1:40123`.
    pub fn endpoints(&self) -> Vec<String> {
        self.listeners
            .iter()
            .map(|(l, _)| l.local_endpoint())
            .collect()
    }

    /// Where the metrics endpoint is bound, if configured.
    pub fn metrics_endpoint(&self) -> Option<String> {
        self.base.metrics_endpoint()
    }

    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until `stop` resolves or SIGTERM; SIGHUP reloads the configuration's directory
    /// settings and flushes the cache (listener changes need a restart).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let l = &self.config.lookupd;
        let stats_every = (l.stats_interval_s > 0).then(|| Duration::from_secs(l.stats_interval_s));
        let mut life =
            Lifecycle::new("lookupd", stats_every).context("installing signal handlers")?;
        for (listener, proto) in self.listeners {
            let handler = Arc::new(conn::Handler {
                svc: self.service.clone(),
                settings: conn::ConnSettings {
                    idle_timeout: Duration::from_millis(l.idle_timeout_ms),
                    request_read_timeout: Duration::from_millis(l.request_read_timeout_ms),
                },
                proto,
            });
            // A budget per listener: Postfix's socketmap socket and the LDA's keep theirs
            // whatever the clients of a loopback tcp_table port do.
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

/// The skeleton's view of lookupd (`vmail_daemon::main`).
impl vmail_daemon::Daemon for Lookupd {
    fn threads(config: &Config) -> usize {
        config.lookupd.threads
    }

    fn user(config: &Config) -> &str {
        &config.lookupd.user
    }

    fn accounts(config: &Config) -> Vec<(&'static str, Account, String)> {
        let l = &config.lookupd;
        let unix = |s: &str| s.starts_with("unix:");
        let mut a = vec![("lookupd.user", Account::User, l.user.clone())];
        // socket_group applies to every unix socket but the LDA's (see `bind`).
        if l.socketmap.iter().any(|s| unix(s))
            || l.tcp_table.iter().any(|(_, s)| unix(s))
            || unix(&l.metrics)
        {
            a.push((
                "lookupd.socket_group",
                Account::Group,
                l.socket_group.clone(),
            ));
        }
        if l.lda.iter().any(|s| unix(s)) {
            a.push((
                "lookupd.lda_socket_group",
                Account::Group,
                l.lda_socket_group.clone(),
            ));
        }
        a
    }

    async fn bind(loaded: &Loaded) -> Result<Lookupd> {
        Lookupd::bind(loaded).await
    }

    async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        Lookupd::run(self, stop).await
    }
}

impl vmail_daemon::Service for Service {
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

/// SIGHUP: re-read the configuration; on success swap the directory and flush the cache. A
/// broken new configuration is logged and the running one kept, as `postfix reload` does.
async fn reload(svc: &Service, path: Option<&std::path::Path>) {
    match vmail_config::load(path) {
        // The cache is built once at start, so the memo follows it, not the new [cache].
        Ok(loaded) => match open_directory(&loaded.config, svc.memo()).await {
            Ok(dir) => {
                svc.replace_directory(dir);
                svc.flush_cache();
                tracing::info!(config = %loaded.source, "reloaded; cache flushed");
            }
            Err(e) => {
                svc.flush_cache();
                tracing::error!(error = %e, "reload: cannot open the new directory; keeping the old one (cache flushed)");
            }
        },
        Err(e) => {
            svc.flush_cache();
            tracing::error!(error = %e, "reload: configuration invalid; keeping the running one (cache flushed)");
        }
    }
}
