//! vmail-lookupd, vmail-authd and vmail-lmtpd in-process: bound from a [`Loaded`] configuration on a
//! thread of their own, on the runtime their `main` builds, and stopped (their `run` future
//! told to return, the thread joined) when dropped. Every test and the bench start the
//! daemons here, so a change of `bind`/`run` is adapted in this one place.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use vmail_authd::{Authd, Authenticator};
use vmail_config::Loaded;
use vmail_lookupd::{Lookupd, Service};

/// Why a daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("build the daemon's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The daemon's own error from `bind`, with its causes.
    #[error("{0}")]
    Bind(String),
    #[error("the daemon's thread ended before it was bound")]
    Gone,
}

/// A daemon running on its own thread until dropped.
pub struct InProcess<T> {
    /// What the bound daemon hands out (its service, its authenticator).
    pub handle: T,
    /// The thread that runs the runtime's `block_on`: with a `current_thread` runtime
    /// (`[lookupd] threads = 1`) all of the daemon's event loop.
    pub tid: i32,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl<T> Drop for InProcess<T> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a bound lookupd hands out.
pub struct LookupdHandle {
    /// Its listeners as configured, with the ports the kernel chose (see `Lookupd::endpoints`).
    pub endpoints: Vec<String>,
    pub service: Arc<Service>,
}

/// Runs lookupd with `loaded` on the runtime vmail-lookupd builds (`[lookupd] threads`).
pub fn lookupd(loaded: Loaded) -> Result<InProcess<LookupdHandle>, StartError> {
    daemon(loaded, |d: &Lookupd| LookupdHandle {
        endpoints: d.endpoints(),
        service: d.service(),
    })
}

/// lookupd in-process on `config`'s directory, serving only an `[lookupd] lda` listener at
/// `socket` (mode 0600, no group, no privilege drop: the tests run as root), its pid file at
/// `pid_file`: what vmail-lda's and vmail-lmtpd's `[lda] lookupd` ask.
pub fn lda_lookupd(
    config: &vmail_config::Config,
    socket: &std::path::Path,
    pid_file: &std::path::Path,
) -> Result<InProcess<LookupdHandle>, StartError> {
    let mut config = config.clone();
    let l = &mut config.lookupd;
    l.socketmap = Vec::new();
    l.lda = vec![format!("unix:{}", socket.display())];
    l.lda_socket_group = String::new();
    l.lda_socket_mode = "0600".into();
    l.user = String::new();
    l.pid_file = pid_file.to_path_buf();
    lookupd(Loaded {
        config,
        source: vmail_config::Source::Builtin,
    })
}

/// Runs the daemon `D` with `loaded` on the runtime its `main` builds (`D::threads`);
/// `handle` takes what the test needs from it once it is bound.
fn daemon<D, T>(loaded: Loaded, handle: fn(&D) -> T) -> Result<InProcess<T>, StartError>
where
    D: vmail_daemon::Daemon + 'static,
    T: Send + 'static,
{
    let threads = D::threads(&loaded.config);
    spawn(
        move || vmail_daemon::runtime(threads),
        move |ready, stop| async move {
            match D::bind(&loaded).await {
                Ok(d) => {
                    let _ = ready.send(Ok(handle(&d)));
                    let _ = d.run(stop).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(StartError::Bind(format!("{e:#}"))));
                }
            }
        },
    )
}

/// What a bound lmtpd hands out.
pub struct LmtpdHandle {
    /// Its listeners as configured (see `Lmtpd::endpoints`).
    pub endpoints: Vec<String>,
    pub service: Arc<vmail_lmtpd::Service>,
}

/// Runs lmtpd with `loaded` on the runtime vmail-lmtpd builds (`[lmtpd] threads`).
pub fn lmtpd(loaded: Loaded) -> Result<InProcess<LmtpdHandle>, StartError> {
    daemon(loaded, |d: &vmail_lmtpd::Lmtpd| LmtpdHandle {
        endpoints: d.endpoints(),
        service: d.service(),
    })
}

/// Runs authd with `loaded` on the runtime vmail-authd builds (multi-threaded, one worker per
/// core); `thread_name` names its threads (they show, cut to 15 bytes, in
/// `/proc/self/task/*/comm`, for CPU accounting).
pub fn authd(
    loaded: Loaded,
    thread_name: Option<String>,
) -> Result<InProcess<Arc<Authenticator>>, StartError> {
    spawn(
        move || {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(name) = thread_name {
                b.thread_name(name);
            }
            b.enable_all().build()
        },
        move |ready, stop| async move {
            match Authd::bind(&loaded).await {
                Ok(d) => {
                    let _ = ready.send(Ok(d.authenticator()));
                    let _ = d.run(stop).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(StartError::Bind(format!("{e:#}"))));
                }
            }
        },
    )
}

type Ready<T> = std::sync::mpsc::Sender<Result<T, StartError>>;

/// Builds the runtime with `runtime` on a new thread and runs `daemon` on it, which reports
/// through `ready` once bound and returns when its stop future (the second argument) does.
fn spawn<T, F>(
    runtime: impl FnOnce() -> std::io::Result<tokio::runtime::Runtime> + Send + 'static,
    daemon: impl FnOnce(Ready<T>, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F
        + Send
        + 'static,
) -> Result<InProcess<T>, StartError>
where
    T: Send + 'static,
    F: std::future::Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        let _ = tid_tx.send(crate::thread_id());
        let stop = Box::pin(async {
            let _ = stop_rx.await;
        });
        rt.block_on(daemon(ready_tx, stop));
    });
    let handle = match ready_rx.recv() {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(StartError::Gone);
        }
    };
    let tid = tid_rx.recv().map_err(|_| StartError::Gone)?;
    Ok(InProcess {
        handle,
        tid,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
