//! The life cycle every vmail daemon shares: accept loops under one connection limit, a
//! main loop of signals and statistics ticks, and a graceful shutdown that lets requests
//! in flight finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::{Listener, Signal, Signals, Stream};

/// What the main loop of a daemon reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM/SIGINT or the caller's stop future: shut down.
    Stop,
    /// SIGHUP: reload and flush caches.
    Reload,
    /// Time to log statistics.
    Tick,
}

pub struct Lifecycle {
    shut_tx: watch::Sender<bool>,
    shut_rx: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    acceptors: JoinSet<()>,
    signals: Signals,
    tick: Option<tokio::time::Interval>,
}

impl Lifecycle {
    /// `max_connections` is shared by every listener; `stats_every` `None` never ticks.
    pub fn new(max_connections: usize, stats_every: Option<Duration>) -> std::io::Result<Self> {
        let (shut_tx, shut_rx) = watch::channel(false);
        Ok(Lifecycle {
            shut_tx,
            shut_rx,
            limit: Arc::new(Semaphore::new(max_connections)),
            acceptors: JoinSet::new(),
            signals: Signals::new()?,
            tick: stats_every.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d)),
        })
    }

    /// Serves `listener`: each accepted connection runs `serve(stream, shutdown)`, where
    /// `shutdown` flips to true when the daemon stops (finish the request, then return).
    pub fn listen<F, Fut>(&mut self, listener: Listener, serve: F)
    where
        F: Fn(Stream, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(listener = %listener.local_endpoint(), "listening");
        self.acceptors.spawn(accept_loop(
            listener,
            self.limit.clone(),
            self.shut_rx.clone(),
            serve,
        ));
    }

    /// Serves Prometheus scrapes on `listener` with `render`'s text.
    pub fn serve_metrics(&mut self, listener: Listener, render: crate::metrics::Render) {
        self.listen(listener, move |stream, _| {
            crate::metrics::serve(stream, render.clone())
        });
    }

    /// The main loop of a daemon whose listeners are set up: tells systemd it is ready,
    /// runs `reload` on SIGHUP (between RELOADING and READY) and `tick` on each statistics
    /// tick, and on SIGTERM or `stop` shuts down within `grace`.
    pub async fn run<S, R, Fut>(mut self, stop: S, grace: Duration, mut reload: R, tick: impl Fn())
    where
        S: Future<Output = ()>,
        R: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        crate::sd_notify("READY=1");
        tokio::pin!(stop);
        loop {
            match self.next(stop.as_mut()).await {
                Event::Stop => break,
                Event::Reload => {
                    crate::sd_notify("RELOADING=1");
                    reload().await;
                    crate::sd_notify("READY=1");
                }
                Event::Tick => tick(),
            }
        }
        self.shutdown(grace).await;
    }

    /// Waits for the next event; `stop` is the caller's own stop condition (tests).
    async fn next<S: Future<Output = ()>>(&mut self, stop: Pin<&mut S>) -> Event {
        let tick = async {
            match &mut self.tick {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stop => Event::Stop,
            s = self.signals.next() => match s {
                Signal::Shutdown => Event::Stop,
                Signal::Reload => Event::Reload,
            },
            _ = tick => Event::Tick,
        }
    }

    /// Stops accepting and waits up to `grace` for connections to finish their requests.
    async fn shutdown(mut self, grace: Duration) {
        crate::sd_notify("STOPPING=1");
        tracing::info!("shutting down: finishing requests in flight");
        let _ = self.shut_tx.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.acceptors.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still busy after {grace:?}; closing them");
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: Listener,
    limit: Arc<Semaphore>,
    mut shut: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Stream, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
        let conn = serve(stream, shut.clone());
        tasks.spawn(async move {
            conn.await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}
