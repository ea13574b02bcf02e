//! What every vmail daemon needs, written once: the skeleton of its `main` (command line,
//! `--check`, run and reload: `skeleton.rs`), listeners on UNIX sockets (with the mode and
//! group Postfix's processes need) or loopback TCP, privilege drop after binding, signals,
//! pid files, logging, and systemd's readiness notification.

use std::path::Path;

mod activation;
mod listener;
mod logging;
pub mod metrics;
mod pidfile;
mod serve;
mod skeleton;
mod write;
pub use activation::unused_inherited;
pub use listener::{Endpoint, Listener, SocketAccess, Stream};
pub use logging::init_logging;
pub use pidfile::{signal_reload, PidFile, Reload};
pub use serve::{Event, Lifecycle};
pub use skeleton::{
    command, main, missing_account, About, Account, Base, Daemon, Exit, Service, EX_CONFIG,
    EX_TEMPFAIL,
};
pub use write::write_all_within;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener {spec:?}: {message}")]
    Spec { spec: String, message: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Privileges(String),
    #[error("pid file {path}: {message}")]
    PidFile { path: String, message: String },
}

/// The uid of `name` (a user name, or a number taken as it is); `Ok(None)` when no such
/// user exists. For checking a peer's SO_PEERCRED uid against configured users.
pub fn user_id(name: &str) -> Result<Option<u32>, Error> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Some(n));
    }
    match nix::unistd::User::from_name(name) {
        Ok(u) => Ok(u.map(|u| u.uid.as_raw())),
        Err(e) => Err(Error::Privileges(format!("looking up user {name:?}: {e}"))),
    }
}

/// The user a root daemon drops to: `None` when `user` is empty or we are not root (nothing
/// to drop).
fn drop_target(user: &str) -> Result<Option<nix::unistd::User>, Error> {
    use nix::unistd::{Uid, User};
    if user.is_empty() || !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name(user) {
        Ok(Some(u)) => Ok(Some(u)),
        Ok(None) => Err(Error::Privileges(format!("no such user {user:?}"))),
        Err(e) => Err(Error::Privileges(format!("looking up user {user:?}: {e}"))),
    }
}

/// Drops root privileges to `user` (and its primary group, no supplementary groups) after the
/// listeners are bound. Does nothing when `user` is empty or we are not root.
pub fn drop_privileges(user: &str) -> Result<(), Error> {
    use nix::unistd::{setgid, setgroups, setuid, Uid};
    let Some(u) = drop_target(user)? else {
        return Ok(());
    };
    setgroups(&[u.gid]).map_err(|e| Error::Privileges(format!("setgroups: {e}")))?;
    setgid(u.gid).map_err(|e| Error::Privileges(format!("setgid: {e}")))?;
    setuid(u.uid).map_err(|e| Error::Privileges(format!("setuid: {e}")))?;
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::Privileges(
            "could regain root after dropping privileges".into(),
        ));
    }
    tracing::info!(
        user,
        uid = u.uid.as_raw(),
        gid = u.gid.as_raw(),
        "dropped privileges"
    );
    Ok(())
}

/// What the signal handler tells the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop accepting, finish what is in flight, exit.
    Shutdown,
    /// SIGHUP: reload configuration, flush caches.
    Reload,
}

/// Waits for the next signal that matters to a daemon.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Shutdown,
            _ = self.int.recv() => Signal::Shutdown,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// The tokio runtime of a daemon with `threads` workers: 1 is a single event loop
/// (`current_thread`; blocking work still goes to tokio's blocking pool), 0 one worker per
/// CPU.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 1 {
        b.worker_threads(threads);
    }
    b.enable_all().build()
}

/// Tells systemd about our state (`READY=1`, `RELOADING=1`, `STOPPING=1`) when started with
/// `Type=notify`; a no-op otherwise. Protocol: sd_notify(3), a datagram to `$NOTIFY_SOCKET`.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let r = if let Some(abs) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_threads() {
        use tokio::runtime::RuntimeFlavor;
        let one = runtime(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        // Blocking work (SQLite, building the address set) still has its pool.
        let seven = one.block_on(async { tokio::task::spawn_blocking(|| 7).await });
        assert_eq!(seven.unwrap(), 7);
        let three = runtime(3).unwrap();
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let all = runtime(0).unwrap();
        assert_eq!(all.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert!(all.metrics().num_workers() >= 1);
    }
}
