//! The life cycle every vmail daemon shares: accept loops, each under its own connection
//! limit, a main loop of signals and statistics ticks, and a graceful shutdown that lets
//! requests in flight finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
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
    /// `lookupd`, `authd`: the middle of the metric names.
    daemon: &'static str,
    shut_tx: watch::Sender<bool>,
    shut_rx: watch::Receiver<bool>,
    /// One per listener, for the metrics endpoint.
    gates: Arc<Mutex<Vec<Arc<Gate>>>>,
    acceptors: JoinSet<()>,
    /// The sum of every listener's max_connections.
    budget: u64,
    signals: Signals,
    tick: Option<tokio::time::Interval>,
}

/// The connection budget of one listener. Each listener has its own, so that clients of
/// one (a local user on a loopback tcp_table port, a flood of scrapes) can never take the
/// slots Postfix's, Dovecot's or the LDA's sockets need (issue 15).
struct Gate {
    endpoint: String,
    max: usize,
    slots: Arc<Semaphore>,
    /// Connections that found every slot taken.
    full: AtomicU64,
}

impl Gate {
    fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// How often a full listener may say so in the log: a flood must not become a log flood.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

impl Lifecycle {
    /// `daemon` names the metrics (`vmail_<daemon>_connections`); `stats_every` `None`
    /// never ticks.
    pub fn new(daemon: &'static str, stats_every: Option<Duration>) -> std::io::Result<Self> {
        let (shut_tx, shut_rx) = watch::channel(false);
        Ok(Lifecycle {
            daemon,
            shut_tx,
            shut_rx,
            gates: Arc::default(),
            acceptors: JoinSet::new(),
            budget: 0,
            signals: Signals::new()?,
            tick: stats_every.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d)),
        })
    }

    /// Serves `listener` with at most `max_connections` connections open at once: each
    /// accepted connection runs `serve(stream, shutdown)`, where `shutdown` flips to true
    /// when the daemon stops (finish the request, then return).
    pub fn listen<F, Fut>(&mut self, listener: Listener, max_connections: usize, serve: F)
    where
        F: Fn(Stream, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let endpoint = listener.local_endpoint();
        tracing::info!(listener = %endpoint, max_connections, "listening");
        self.budget += max_connections as u64;
        let gate = Arc::new(Gate {
            endpoint,
            max: max_connections,
            slots: Arc::new(Semaphore::new(max_connections)),
            full: AtomicU64::new(0),
        });
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(gate.clone());
        self.acceptors
            .spawn(accept_loop(listener, gate, self.shut_rx.clone(), serve));
    }

    /// Serves Prometheus scrapes on `listener` (at most `max_connections` at once) with
    /// `render`'s text, followed by every listener's open connections and limit hits.
    pub fn serve_metrics(
        &mut self,
        listener: Listener,
        max_connections: usize,
        render: crate::metrics::Render,
    ) {
        let (gates, daemon) = (self.gates.clone(), self.daemon);
        let render: crate::metrics::Render = Arc::new(move || {
            let mut out = render();
            let gates = gates.lock().unwrap_or_else(|e| e.into_inner());
            render_gates(daemon, &gates, &mut out);
            out
        });
        self.listen(listener, max_connections, move |stream, _| {
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
        reserve_files(self.budget);
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

/// Open files beyond the connections: listeners, database connections, the blocking
/// pool's files, logs.
const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// Raises the soft limit of open files so that every listener can fill its budget at once:
/// otherwise a listener full of a local user's connections would make accept() fail with
/// EMFILE on all the others, starving them as a shared limit did. systemd starts services
/// with a soft limit of 1024 and a hard one far above, expecting programs that need more
/// to raise it themselves (systemd.exec(5), LimitNOFILE=).
fn reserve_files(connections: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = connections + FILES_BESIDES_CONNECTIONS;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    let got = match setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard) {
        Ok(()) => want.min(hard),
        Err(_) => soft,
    };
    if got < want {
        tracing::warn!(
            open_files = got,
            needed = want,
            "the open-files limit is below the sum of every listener's max_connections: a full listener can keep the others from accepting; raise LimitNOFILE or lower max_connections"
        );
    }
}

/// `vmail_<daemon>_connections` and `vmail_<daemon>_connection_limit_reached_total`, by
/// listener.
fn render_gates(daemon: &str, gates: &[Arc<Gate>], out: &mut String) {
    use crate::metrics::{header, sample};
    let n = format!("vmail_{daemon}_connections");
    header(out, &n, "gauge", "Connections open, by listener.");
    for g in gates {
        sample(out, &n, &label(&g.endpoint), g.open() as u64);
    }
    let n = format!("vmail_{daemon}_connection_limit_reached_total");
    header(
        out,
        &n,
        "counter",
        "Connections that found their listener's max_connections in use and waited in the backlog.",
    );
    for g in gates {
        sample(out, &n, &label(&g.endpoint), g.full.load(Relaxed));
    }
}

/// `listener="..."`, escaped as the text format wants (a socket path may hold anything).
fn label(endpoint: &str) -> String {
    let mut v = String::with_capacity(endpoint.len() + 12);
    v.push_str("listener=\"");
    for c in endpoint.chars() {
        match c {
            '\\' => v.push_str("\\\\"),
            '"' => v.push_str("\\\""),
            '\n' => v.push_str("\\n"),
            c => v.push(c),
        }
    }
    v.push('"');
    v
}

async fn accept_loop<F, Fut>(
    listener: Listener,
    gate: Arc<Gate>,
    mut shut: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Stream, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    let mut warned: Option<tokio::time::Instant> = None;
    let mut unreported = 0u64;
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
        // Past the limit this connection waits here, unread, and later ones in the kernel's
        // backlog, until a connection of this listener ends, as Postfix's master(8) does at
        // a service's process limit. Closing them instead would turn a short burst into
        // failed lookups, and a flood into a loop of accept() and close() on our event
        // loop; waiting costs nothing, and other listeners are not touched either way.
        // Slow and silent clients give their slots back within request_read_timeout_ms or
        // idle_timeout_ms.
        let permit = match gate.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                gate.full.fetch_add(1, Relaxed);
                unreported += 1;
                if warned.is_none_or(|t| t.elapsed() >= FULL_WARNING_EVERY) {
                    tracing::warn!(
                        listener = %gate.endpoint,
                        max_connections = gate.max,
                        waited = unreported,
                        "listener has reached max_connections: new clients wait until one leaves"
                    );
                    warned = Some(tokio::time::Instant::now());
                    unreported = 0;
                }
                tokio::select! {
                    p = gate.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = shut.changed() => break,
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, SocketAccess};

    #[test]
    fn listener_labels_are_escaped() {
        assert_eq!(label("unix:/run/a"), "listener=\"unix:/run/a\"");
        assert_eq!(
            label("unix:/x\"y\\z\n"),
            "listener=\"unix:/x\\\"y\\\\z\\n\""
        );
    }

    /// A listener at its limit keeps new clients waiting (and counts them); another
    /// listener of the same daemon still serves at once.
    #[tokio::test]
    async fn each_listener_has_its_own_budget() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let d = tempfile::tempdir().unwrap();
        let access = SocketAccess {
            mode: 0o600,
            group: None,
        };
        let (full, free) = (d.path().join("full"), d.path().join("free"));
        let mut life = Lifecycle::new("test", None).unwrap();
        for p in [&full, &free] {
            let l = Listener::bind(&Endpoint::Unix(p.clone()), &access)
                .await
                .unwrap();
            // Echoes one byte, then holds the connection until the client leaves.
            life.listen(l, 2, |stream, _| async move {
                let Stream::Unix(mut s) = stream else { return };
                let mut b = [0u8; 1];
                while let Ok(1) = s.read(&mut b).await {
                    let _ = s.write_all(&b).await;
                }
            });
        }
        let echo = |p: std::path::PathBuf| async move {
            let mut s = tokio::net::UnixStream::connect(p).await.unwrap();
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            let got = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
            (s, matches!(got, Ok(Ok(1))))
        };
        let (_a, ok_a) = echo(full.clone()).await;
        let (_b, ok_b) = echo(full.clone()).await;
        assert!(ok_a && ok_b);
        let (_c, ok_c) = echo(full.clone()).await;
        assert!(!ok_c, "a third connection is served while two are open");
        let (_d, ok_d) = echo(free.clone()).await;
        assert!(ok_d, "the other listener is starved");
        let gates = life.gates.lock().unwrap();
        let mut out = String::new();
        render_gates("test", &gates, &mut out);
        let series = format!(
            "vmail_test_connection_limit_reached_total{{listener=\"unix:{}\"}} 1\n",
            full.display()
        );
        assert!(out.contains(&series), "{out}");
        let open = format!(
            "vmail_test_connections{{listener=\"unix:{}\"}} 1\n",
            free.display()
        );
        assert!(out.contains(&open), "{out}");
    }
}
