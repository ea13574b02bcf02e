//! The vmail daemons as real processes (the end-to-end tests and `vmail-bench stack`), and
//! one setup shared by the tests of a file.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{in_ci, wait_until};

/// One of the vmail daemons, running as a real process from its binary with
/// `--config FILE`, logging to a file; SIGTERM (then SIGKILL) when dropped.
pub struct DaemonProcess {
    pub name: String,
    pub log_path: PathBuf,
    child: Child,
}

impl DaemonProcess {
    /// Starts `bin --config config` (pid file under `state_dir` through `VMAIL_STATE_DIR`,
    /// working directory `state_dir`, created if missing) with `VMAIL_LOG` set to `log_level`
    /// (or unset: the daemon's default), and waits until every socket in `sockets` accepts a
    /// connection. An error with the daemon's log if it exits or never listens.
    pub fn spawn(
        name: &str,
        bin: &Path,
        config: &Path,
        state_dir: &Path,
        sockets: &[PathBuf],
        log_level: Option<&str>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let log_path = state_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)?;
        let mut c = Command::new(bin);
        c.arg("--config")
            .arg(config)
            .env("VMAIL_STATE_DIR", state_dir);
        match log_level {
            Some(level) => c.env("VMAIL_LOG", level),
            None => c.env_remove("VMAIL_LOG"),
        };
        let child = c
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .current_dir(state_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::other(format!("spawn {}: {e}", bin.display())))?;
        let mut me = DaemonProcess {
            name: name.to_string(),
            log_path,
            child,
        };
        let mut exited = None;
        let up = wait_until(Duration::from_secs(15), || {
            if let Ok(Some(status)) = me.child.try_wait() {
                exited = Some(status);
                return true;
            }
            sockets.iter().all(|s| UnixStream::connect(s).is_ok())
        });
        if !up || exited.is_some() {
            return Err(std::io::Error::other(format!(
                "{name} ({}) did not come up (exit: {exited:?}); log:\n{}",
                bin.display(),
                me.log()
            )));
        }
        Ok(me)
    }

    /// [`DaemonProcess::spawn`] for a test: logging at `info`, panicking with the daemon's
    /// log if it exits or never listens.
    pub fn start(
        name: &str,
        bin: &str,
        config: &Path,
        state_dir: &Path,
        sockets: &[&Path],
    ) -> Self {
        let began = Instant::now();
        let sockets: Vec<PathBuf> = sockets.iter().map(|s| s.to_path_buf()).collect();
        let me = Self::spawn(
            name,
            Path::new(bin),
            config,
            state_dir,
            &sockets,
            Some("info"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{name} (pid {}) up in {:?}", me.child.id(), began.elapsed());
        me
    }

    /// The daemon's log so far (stderr and stdout), without terminal colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let gone = wait_until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// One setup shared by the tests of a file: built by the first test that asks, handed to
/// every test as an `Arc`, and torn down (Postfix and Dovecot stopped by pid, daemons
/// terminated, databases dropped) when the test binary exits, through `atexit(3)`: Rust never
/// drops statics, and libtest gives no hook after the last test.
pub struct Shared<T> {
    state: Mutex<State<T>>,
}

enum State<T> {
    Uninit,
    Ready(Arc<T>),
    /// The setup skipped loudly (dependency missing, outside CI).
    Skipped,
    /// The setup panicked; every test fails with this message.
    Failed(String),
}

/// A test file's one shared setup: a `static WORLD: Shared<T>`, the `extern "C"` teardown
/// [`Shared::get`] registers, and `fn world() -> Option<Arc<T>>`, which builds it with
/// `setup` (`fn() -> Option<T>`) on first use.
#[macro_export]
macro_rules! shared_setup {
    ($t:ty, $setup:path) => {
        static WORLD: $crate::process::Shared<$t> = $crate::process::Shared::new();

        extern "C" fn teardown() {
            WORLD.teardown();
        }

        fn world() -> Option<std::sync::Arc<$t>> {
            WORLD.get($setup, teardown)
        }
    };
}

impl<T: Send + Sync + 'static> Default for Shared<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Self {
        Shared {
            state: Mutex::new(State::Uninit),
        }
    }

    /// The shared setup, built with `init` on first use; `None` when it was skipped.
    /// `teardown` must call [`Shared::teardown`] on this same static; it is registered with
    /// `atexit` once the setup exists.
    pub fn get(
        &'static self,
        init: impl FnOnce() -> Option<T>,
        teardown: extern "C" fn(),
    ) -> Option<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Uninit = *state {
            // SAFETY: registers a plain function with no captured state.
            let registered = unsafe { libc::atexit(teardown) } == 0;
            assert!(registered, "atexit failed");
            *state = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(init)) {
                Ok(Some(t)) => State::Ready(Arc::new(t)),
                Ok(None) => State::Skipped,
                Err(e) => State::Failed(
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into()),
                ),
            };
        }
        match &*state {
            State::Ready(t) => Some(t.clone()),
            State::Skipped => {
                assert!(!in_ci(), "the shared setup was skipped under CI");
                None
            }
            State::Failed(msg) => panic!("the shared setup failed: {msg}"),
            State::Uninit => unreachable!(),
        }
    }

    /// Drops the setup (if no test still holds it). Never panics: it runs inside `atexit`.
    pub fn teardown(&self) {
        let taken = match self.state.lock() {
            Ok(mut s) => std::mem::replace(&mut *s, State::Uninit),
            Err(e) => std::mem::replace(&mut *e.into_inner(), State::Uninit),
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(taken)));
    }
}
