//! systemd socket activation (`sd_listen_fds(3)`): sockets a `.socket` unit bound for us
//! arrive as file descriptors 3.. with `LISTEN_PID`/`LISTEN_FDS` set. A configured listener
//! whose address matches an inherited socket takes it instead of binding (so the daemon can
//! be restarted without refusing a single connection, and need not start as root).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::sys::socket::{getsockname, SockaddrLike, SockaddrStorage};

/// `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;

#[derive(Default)]
struct Inherited {
    unix: Vec<(PathBuf, std::os::unix::net::UnixListener)>,
    tcp: Vec<(SocketAddr, std::net::TcpListener)>,
}

fn inherited() -> &'static Mutex<Inherited> {
    static INHERITED: OnceLock<Mutex<Inherited>> = OnceLock::new();
    INHERITED.get_or_init(|| Mutex::new(collect()))
}

/// Takes the sockets passed by systemd, once per process. The variables are removed so
/// programs we might start do not believe the sockets are theirs.
fn collect() -> Inherited {
    let mut found = Inherited::default();
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !pid_ok || n <= 0 {
        return found;
    }
    for fd in FIRST_FD..FIRST_FD + n {
        // Ours now: not to be inherited by anything we exec.
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        let addr = match getsockname::<SockaddrStorage>(fd) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(fd, error = %e, "inherited file descriptor is not a socket; ignored");
                continue;
            }
        };
        if let Some(path) = addr.as_unix_addr().and_then(|u| u.path()) {
            // SAFETY: systemd handed this descriptor to us; nothing else owns it.
            let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            found.unix.push((path.to_path_buf(), l));
        } else if let Some(sa) = addr
            .as_sockaddr_in()
            .map(|a| SocketAddr::from((a.ip(), a.port())))
            .or_else(|| {
                addr.as_sockaddr_in6()
                    .map(|a| SocketAddr::from((a.ip(), a.port())))
            })
        {
            // SAFETY: as above.
            let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            found.tcp.push((sa, l));
        } else {
            tracing::warn!(fd, family = ?addr.family(), "inherited socket of an unsupported family; ignored");
        }
    }
    found
}

/// The inherited UNIX listener bound at `path`, if systemd passed one.
pub(crate) fn take_unix(path: &Path) -> Option<std::os::unix::net::UnixListener> {
    let mut i = inherited().lock().ok()?;
    let at = i.unix.iter().position(|(p, _)| p == path)?;
    Some(i.unix.swap_remove(at).1)
}

/// The inherited TCP listener bound to `addr` (`host:port`), if systemd passed one.
pub(crate) fn take_tcp(addr: &str) -> Option<std::net::TcpListener> {
    let wanted: Vec<SocketAddr> = addr.to_socket_addrs().ok()?.collect();
    let mut i = inherited().lock().ok()?;
    let at = i.tcp.iter().position(|(a, _)| wanted.contains(a))?;
    Some(i.tcp.swap_remove(at).1)
}

/// Inherited sockets no configured listener asked for (logged: a unit/config mismatch).
pub fn unused_inherited() -> Vec<String> {
    let Ok(i) = inherited().lock() else {
        return Vec::new();
    };
    i.unix
        .iter()
        .map(|(p, _)| format!("unix:{}", p.display()))
        .chain(i.tcp.iter().map(|(a, _)| format!("inet:{a}")))
        .collect()
}
