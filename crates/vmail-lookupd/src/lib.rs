//! vmail-lookupd: the Postfix `socketmap` and `tcp_table` server that replaces the classic
//! `mysql:` maps (`virtual_mailbox_domains`, `virtual_mailbox_maps`, `virtual_alias_maps`,
//! `smtpd_sender_login_maps`, `transport_maps`).
//!
//! [`Lookupd::bind`] opens the listeners (so privileges can be dropped right after), and
//! [`Lookupd::run`] serves until SIGTERM, reloading on SIGHUP. Tests drive the same two steps.

mod conn;
pub mod service;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use vmail_config::{Config, Loaded};
use vmail_daemon::{Endpoint, Listener, SocketAccess, Stream};
use vmail_directory::cache::MapCache;
use vmail_directory::Directory;

pub use conn::Protocol;
pub use service::{Outcome, Service};

/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// A bound, not yet serving, lookupd.
pub struct Lookupd {
    listeners: Vec<(Listener, Protocol)>,
    service: Arc<Service>,
    config: Config,
    config_path: Option<PathBuf>,
    /// Written before privileges are dropped; removed at exit.
    pid: Option<vmail_daemon::PidFile>,
}

/// Builds the directory and cache a configuration describes.
async fn service_for(config: &Config) -> Result<Service> {
    let dir = Directory::open(config)
        .await
        .context("opening the directory")?;
    let cache = config.cache.enabled.then(|| MapCache::new(&config.cache));
    Ok(Service::new(
        dir,
        cache,
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
        if listeners.is_empty() {
            anyhow::bail!(
                "{}: lookupd has no listener (lookupd.socketmap and lookupd.tcp_table are empty)",
                loaded.source
            );
        }
        let pid = vmail_daemon::PidFile::create(&l.pid_file)
            .map_err(|e| tracing::warn!(error = %e, "no pid file; `vmailctl flush` cannot reach this daemon"))
            .ok();
        Ok(Lookupd {
            pid,
            listeners,
            service: Arc::new(service_for(&config).await?),
            config_path: match &loaded.source {
                vmail_config::Source::File(p) => Some(p.clone()),
                vmail_config::Source::Builtin => None,
            },
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

    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until `stop` resolves or SIGTERM; SIGHUP reloads the configuration's directory
    /// settings and flushes the cache (listener changes need a restart).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let l = &self.config.lookupd;
        let (shut_tx, shut_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(l.max_connections));
        let settings = Arc::new(conn::ConnSettings {
            idle_timeout: Duration::from_millis(l.idle_timeout_ms),
        });
        // Each acceptor owns its connections and, once told to stop, waits for them.
        let mut acceptors = JoinSet::new();
        for (listener, proto) in self.listeners {
            tracing::info!(listener = %listener.local_endpoint(), protocol = ?proto, "listening");
            acceptors.spawn(accept_loop(
                listener,
                proto,
                self.service.clone(),
                limit.clone(),
                settings.clone(),
                shut_rx.clone(),
            ));
        }
        let mut signals = vmail_daemon::Signals::new().context("installing signal handlers")?;
        let stats_every = match l.stats_interval_s {
            0 => Duration::from_secs(u64::MAX / 4),
            s => Duration::from_secs(s),
        };
        let mut stats_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + stats_every, stats_every);
        vmail_daemon::sd_notify("READY=1");
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                s = signals.next() => match s {
                    vmail_daemon::Signal::Shutdown => break,
                    vmail_daemon::Signal::Reload => {
                        vmail_daemon::sd_notify("RELOADING=1");
                        reload(&self.service, self.config_path.as_deref()).await;
                        vmail_daemon::sd_notify("READY=1");
                    }
                },
                _ = stats_tick.tick() => self.service.stats.log(),
            }
        }
        vmail_daemon::sd_notify("STOPPING=1");
        tracing::info!("shutting down: finishing requests in flight");
        let _ = shut_tx.send(true);
        // Acceptors stop at once and wait for their connections (bounded by the grace time).
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while acceptors.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still busy after {SHUTDOWN_GRACE:?}; closing them");
        }
        self.service.stats.log();
        drop(self.pid);
        Ok(())
    }
}

async fn accept_loop(
    listener: Listener,
    proto: Protocol,
    svc: Arc<Service>,
    limit: Arc<Semaphore>,
    settings: Arc<conn::ConnSettings>,
    mut shut: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = shut.changed() => break,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The slot is taken after accepting: every listener shares the limit, and an idle
        // listener must not sit on slots while it waits in accept(). Past the limit this
        // connection waits here, unread, until another one ends.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shut.changed() => break,
        };
        let (svc, settings, shut, proto) =
            (svc.clone(), settings.clone(), shut.clone(), proto.clone());
        tasks.spawn(async move {
            let span = tracing::debug_span!("conn", proto = ?proto);
            let _enter = span.enter();
            match stream {
                Stream::Unix(s) => conn::serve(s, proto, svc, settings, shut).await,
                Stream::Tcp(s) => conn::serve(s, proto, svc, settings, shut).await,
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// SIGHUP: re-read the configuration; on success swap the directory and flush the cache. A
/// broken new configuration is logged and the running one kept, as `postfix reload` does.
async fn reload(svc: &Service, path: Option<&std::path::Path>) {
    match vmail_config::load(path) {
        Ok(loaded) => match Directory::open(&loaded.config).await {
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
