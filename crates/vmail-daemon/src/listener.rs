//! Listeners on UNIX sockets (with the mode and group Postfix's processes need) or loopback
//! TCP, or the sockets systemd passed for the same addresses.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::{activation, Error};

/// Where a daemon listens, as written in the config: `unix:/path` or `inet:host:port`
/// (the forms Postfix uses in `socketmap:unix:...` and `tcp:host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Inet(String),
}

impl std::str::FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |m: &str| Error::Spec {
            spec: s.to_string(),
            message: m.to_string(),
        };
        if let Some(p) = s.strip_prefix("unix:") {
            if !p.starts_with('/') {
                return Err(bad("a UNIX socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("inet:") {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or_else(|| bad("expected inet:HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("expected inet:HOST:PORT"));
            }
            return Ok(Endpoint::Inet(a.to_string()));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        Err(bad("expected unix:/path or inet:HOST:PORT"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Inet(a) => write!(f, "inet:{a}"),
        }
    }
}

/// Who may connect to a UNIX socket.
#[derive(Debug, Clone)]
pub struct SocketAccess {
    /// Permission bits, e.g. 0o660 so Postfix's group can connect and nobody else.
    pub mode: u32,
    /// Group owning the socket (e.g. `postfix`); `None` keeps the daemon's.
    pub group: Option<String>,
}

/// A bound listener.
pub enum Listener {
    /// The socket path, and the identity (device, inode) of the file we created there:
    /// removed at exit only while the path still names that file (a socket systemd bound for
    /// us, `None`, stays).
    Unix(UnixListener, PathBuf, Option<(u64, u64)>),
    Tcp(TcpListener),
}

/// An accepted connection.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Listener {
    /// Binds an endpoint. A leftover UNIX socket file from a previous run is replaced, but
    /// only when nothing answers on it (another instance running is an error, not a takeover).
    /// A socket systemd passed (socket activation) for the same address is used instead; its
    /// mode and group are the `.socket` unit's business.
    pub async fn bind(ep: &Endpoint, access: &SocketAccess) -> Result<Listener, Error> {
        match ep {
            Endpoint::Unix(path) => {
                let io = |what, source| Error::Io {
                    what,
                    path: path.display().to_string(),
                    source,
                };
                if let Some(l) = activation::take_unix(path) {
                    l.set_nonblocking(true)
                        .map_err(|e| io("using inherited socket", e))?;
                    let l =
                        UnixListener::from_std(l).map_err(|e| io("using inherited socket", e))?;
                    tracing::info!(listener = %ep, "using the socket passed by systemd");
                    return Ok(Listener::Unix(l, path.clone(), None));
                }
                if let Ok(m) = std::fs::symlink_metadata(path) {
                    // Only a leftover socket is replaced: a typo must not cost a file.
                    if !m.file_type().is_socket() {
                        return Err(io(
                            "exists and is not a socket:",
                            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                        ));
                    }
                    if UnixStream::connect(path).await.is_ok() {
                        return Err(io(
                            "socket in use by another process:",
                            std::io::Error::from(std::io::ErrorKind::AddrInUse),
                        ));
                    }
                    // Stale. Removed first, so that the socket moves in only where nothing
                    // is: two instances starting at once cannot both take the path.
                    match std::fs::remove_file(path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(io("removing stale socket", e));
                        }
                        _ => {}
                    }
                }
                let (l, id) = bind_private(path, access)?;
                l.set_nonblocking(true)
                    .map_err(|e| io("setting non-blocking", e))?;
                let l = UnixListener::from_std(l).map_err(|e| io("registering", e))?;
                Ok(Listener::Unix(l, path.clone(), Some(id)))
            }
            Endpoint::Inet(addr) => {
                if let Some(l) = activation::take_tcp(addr) {
                    let io = |e| Error::Io {
                        what: "using inherited socket",
                        path: addr.clone(),
                        source: e,
                    };
                    l.set_nonblocking(true).map_err(io)?;
                    let l = TcpListener::from_std(l).map_err(io)?;
                    tracing::info!(listener = %ep, "using the socket passed by systemd");
                    return Ok(Listener::Tcp(l));
                }
                let l = TcpListener::bind(addr).await.map_err(|e| Error::Io {
                    what: "binding",
                    path: addr.clone(),
                    source: e,
                })?;
                Ok(Listener::Tcp(l))
            }
        }
    }

    pub async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Unix(l, _, _) => Ok(Stream::Unix(l.accept().await?.0)),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_endpoint(&self) -> String {
        match self {
            Listener::Unix(_, p, _) => format!("unix:{}", p.display()),
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("inet:{a}"))
                .unwrap_or_else(|_| "inet:?".into()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p, Some(id)) = self {
            // Another instance may have taken the path since (ours looked stale to it, say
            // while we hung); its socket is not ours to remove.
            if std::fs::symlink_metadata(&p).is_ok_and(|m| (m.dev(), m.ino()) == *id) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Binds a UNIX socket at `path` that nobody can reach before it has its final mode and
/// group, without touching the umask (process-wide: another thread creating a file at that
/// instant would get the socket's mask). The socket is bound in a fresh 0700 directory next
/// to `path`, given its mode and group there, and moved into place only if nothing is at
/// `path` (another instance that got there first wins). Returns the listener and the
/// socket file's (device, inode).
fn bind_private(
    path: &Path,
    access: &SocketAccess,
) -> Result<(std::os::unix::net::UnixListener, (u64, u64)), Error> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    /// sun_path holds 108 bytes with the terminating NUL.
    const MAX_PATH: usize = 107;
    let err = |what, p: &Path, source| Error::Io {
        what,
        path: p.display().to_string(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    };
    let too_long = |p: &Path, what| {
        err(
            what,
            p,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes, a UNIX socket path has at most {MAX_PATH}",
                    p.as_os_str().len()
                ),
            ),
        )
    };
    if path.as_os_str().len() > MAX_PATH {
        return Err(too_long(path, "socket path too long:"));
    }
    // A leftover of a process killed while binding may hold a name: take the next one.
    let mut made = None;
    for _ in 0..16 {
        let dir = parent.join(format!(
            ".v{:x}.{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join("s");
        if tmp.as_os_str().len() > MAX_PATH {
            return Err(too_long(
                &tmp,
                "no room to bind via a private directory (use a shorter socket path):",
            ));
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                made = Some((dir, tmp));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err("creating private directory", &dir, e)),
        }
    }
    let Some((dir, tmp)) = made else {
        return Err(err(
            "creating private directory in",
            parent,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    };
    let bound = (|| {
        let l = std::os::unix::net::UnixListener::bind(&tmp)
            .map_err(|e| err("binding (via a private directory)", &tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(access.mode))
            .map_err(|e| err("setting mode of", &tmp, e))?;
        if let Some(g) = &access.group {
            let gid = group_id(g)?;
            nix::unistd::chown(&tmp, None, Some(gid)).map_err(|e| {
                err(
                    "changing group of",
                    &tmp,
                    std::io::Error::from_raw_os_error(e as i32),
                )
            })?;
        }
        let m = std::fs::symlink_metadata(&tmp).map_err(|e| err("inspecting", &tmp, e))?;
        move_no_replace(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                err(
                    "socket in use by another process (it appeared while binding):",
                    path,
                    std::io::Error::from(std::io::ErrorKind::AddrInUse),
                )
            } else {
                err("moving socket into place at", path, e)
            }
        })?;
        Ok((l, (m.dev(), m.ino())))
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&dir);
    bound
}

/// Moves `from` to `to` unless something is at `to` (`AlreadyExists` then).
fn move_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without the flag: a hard link also refuses an existing name (the
        // temporary name is removed by the caller).
        Err(nix::errno::Errno::EINVAL) => std::fs::hard_link(from, to),
        Err(e) => Err(std::io::Error::from_raw_os_error(e as i32)),
    }
}

fn group_id(name: &str) -> Result<nix::unistd::Gid, Error> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(Error::Privileges(format!("no such group {name:?}"))),
        Err(e) => Err(Error::Privileges(format!("looking up group {name:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:/run/x.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "inet:127.0.0.1:7000".parse::<Endpoint>().unwrap(),
            Endpoint::Inet("127.0.0.1:7000".into())
        );
        for bad in [
            "unix:rel",
            "inet:127.0.0.1",
            "inet::7",
            "tcp:1.2.3.4:5",
            "inet:h:port",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn unix_socket_gets_mode_and_stale_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sock");
        let access = SocketAccess {
            mode: 0o660,
            group: None,
        };
        let ep = Endpoint::Unix(p.clone());
        let l = Listener::bind(&ep, &access).await.unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // A live socket is not taken over.
        assert!(Listener::bind(&ep, &access).await.is_err());
        // A dead one is.
        std::mem::forget(l);
        let l2 = Listener::bind(&ep, &access).await;
        // The forgotten listener still holds the socket open, so this is "in use".
        assert!(l2.is_err());
        let p2 = d.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&p2).unwrap());
        assert!(p2.exists());
        let l3 = Listener::bind(&Endpoint::Unix(p2.clone()), &access)
            .await
            .unwrap();
        drop(l3);
        assert!(!p2.exists(), "socket removed on drop");
    }

    #[tokio::test]
    async fn unix_bind_leaves_other_files_and_the_umask_alone() {
        let d = tempfile::tempdir().unwrap();
        // A file where a socket is configured is an error, not a victim.
        let f = d.path().join("file");
        std::fs::write(&f, "keep").unwrap();
        let access = SocketAccess {
            mode: 0o600,
            group: Some(nix::unistd::getgid().as_raw().to_string()),
        };
        assert!(Listener::bind(&Endpoint::Unix(f.clone()), &access)
            .await
            .is_err());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep");

        // Directories made by another thread while sockets are bound get the usual mode:
        // binding must not change the process-wide umask (CI once saw a test's directory
        // come out 0600 when it did).
        let made = d.path().join("made");
        std::fs::create_dir(&made).unwrap();
        let m2 = made.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let (started, first) = std::sync::mpsc::channel();
        let maker = std::thread::spawn(move || {
            let mut n = 0u32;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                std::fs::create_dir(m2.join(n.to_string())).unwrap();
                if n == 0 {
                    started.send(()).unwrap();
                }
                n += 1;
            }
            n
        });
        first.recv().unwrap();
        let mut listeners = Vec::new();
        for i in 0..300 {
            let p = d.path().join(format!("s{i}"));
            listeners.push(
                Listener::bind(&Endpoint::Unix(p.clone()), &access)
                    .await
                    .unwrap(),
            );
            let m = std::fs::metadata(&p).unwrap();
            assert!(m.file_type().is_socket());
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
            assert_eq!(
                std::os::unix::fs::MetadataExt::gid(&m),
                nix::unistd::getgid().as_raw()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = maker.join().unwrap();
        assert!(n > 0);
        // Read, not set: setting it to look would be the very race this test is about.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        let expect = 0o777 & !umask;
        for e in std::fs::read_dir(&made).unwrap() {
            let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, expect);
        }
        // Nothing but the sockets, the file and the directory is left behind.
        drop(listeners);
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["file", "made"]);
    }

    #[tokio::test]
    async fn a_socket_is_never_moved_over_anything_and_drop_removes_only_its_own() {
        let d = tempfile::tempdir().unwrap();
        // The last step of a bind refuses an existing name (another instance got there).
        let from = d.path().join("from");
        let to = d.path().join("to");
        std::fs::write(&from, "new").unwrap();
        std::fs::write(&to, "old").unwrap();
        let e = move_no_replace(&from, &to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "old");
        std::fs::remove_file(&to).unwrap();
        move_no_replace(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");

        // A socket that replaced ours at the path (another instance, after ours looked
        // stale) survives our exit.
        let access = SocketAccess {
            mode: 0o600,
            group: None,
        };
        let p = d.path().join("s.sock");
        let ours = Listener::bind(&Endpoint::Unix(p.clone()), &access)
            .await
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        let theirs = std::os::unix::net::UnixListener::bind(&p).unwrap();
        drop(ours);
        assert!(p.exists(), "another process's socket was removed");
        drop(theirs);

        // Paths sun_path cannot hold are refused before anything is created.
        let long = d.path().join("x".repeat(120));
        let e = Listener::bind(&Endpoint::Unix(long.clone()), &access)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("at most 107"), "{e}");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "only to and s.sock: {names:?}");
    }
}
