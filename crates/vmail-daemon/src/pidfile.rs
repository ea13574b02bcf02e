//! Pid files that never point `vmailctl` at the wrong process. The daemon holds an exclusive
//! `flock` on its pid file for as long as it runs and removes the file at exit (or, where it
//! may no longer remove it, empties it); `vmailctl` signals a pid only while that lock is held
//! and `/proc/PID/exe` is the daemon's binary. A file left by a crash is unlocked: stale, and
//! its pid, perhaps long since another program's, is left alone.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// A pid file we hold locked; removed (or emptied) on drop.
pub struct PidFile {
    path: PathBuf,
    /// The open file; the lock goes with it when the process ends, however it ends.
    file: Flock<File>,
    /// (device, inode) of our file: at exit the path is ours only while it still names it.
    id: (u64, u64),
}

impl PidFile {
    /// Writes our pid to `path` and locks it for our lifetime. A pid file nobody holds (left
    /// by a crash) is taken over; one another process holds is an error naming its pid.
    /// `user` is who we run as after [`crate::drop_privileges`]: a missing parent directory is
    /// created for that user, so that the file can still be removed at exit.
    pub fn create(path: &Path, user: &str) -> Result<PidFile, Error> {
        let io = |what, p: &Path, source| Error::Io {
            what,
            path: p.display().to_string(),
            source,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !d.exists() {
                std::fs::create_dir_all(d).map_err(|e| io("creating directory", d, e))?;
                give_to(d, user)?;
            }
        }
        // O_NOFOLLOW: the directory may belong to the daemon's user, and a root-started daemon
        // must not be led through a symlink into truncating, say, /etc/shadow.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io("opening pid file", path, e))?;
        let m = file
            .metadata()
            .map_err(|e| io("inspecting pid file", path, e))?;
        if !m.file_type().is_file() || m.nlink() != 1 {
            return Err(io(
                "not a plain file (or one with other names), not used as pid file:",
                path,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        let file = lock_exclusive(file).map_err(|(mut f, e)| {
            if e != Errno::EWOULDBLOCK {
                return io("locking pid file", path, std::io::Error::from(e));
            }
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            io(
                "pid file locked by another running instance:",
                path,
                std::io::Error::other(format!("pid {}", text.trim())),
            )
        })?;
        file.set_len(0)
            .and_then(|()| (&*file).write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| io("writing pid file", path, e))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
            id: (m.dev(), m.ino()),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another instance may have taken the path since (someone removed ours); its file is
        // not ours to touch.
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours && std::fs::remove_file(&self.path).is_err() {
            // No write access to the directory any more (privileges dropped): the file then
            // names nobody, for any reader. The lock goes when the process ends.
            let _ = self.file.set_len(0);
        }
    }
}

/// A starting daemon waits this long for a lock `vmailctl` holds for a moment while it looks.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

fn lock_exclusive(file: File) -> Result<Flock<File>, (File, Errno)> {
    let mut file = file;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((f, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Gives a directory we created to `user` (when we are root and will run as `user`).
fn give_to(dir: &Path, user: &str) -> Result<(), Error> {
    let Some(u) = crate::drop_target(user)? else {
        return Ok(());
    };
    nix::unistd::chown(dir, Some(u.uid), Some(u.gid)).map_err(|e| Error::Io {
        what: "giving the pid file's directory to its user:",
        path: dir.display().to_string(),
        source: std::io::Error::from_raw_os_error(e as i32),
    })
}

/// What [`signal_reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP went to this pid: the live daemon holding the pid file.
    Sent(i32),
    /// Nothing was signalled, because no daemon holds the pid file; why, for the postmaster.
    NotRunning(String),
}

/// Sends SIGHUP to the daemon `daemon` (its binary's name, e.g. `vmail-lookupd`) whose pid
/// file is `path`: how `vmailctl` asks a running daemon to reload and flush its cache. Only a
/// process that holds the pid file's lock and runs `daemon` is signalled, never whatever
/// process now has the pid a crashed daemon left behind.
pub fn signal_reload(path: &Path, daemon: &str) -> Result<Reload, Error> {
    let fail = |message: String| Error::PidFile {
        path: path.display().to_string(),
        message,
    };
    // O_NONBLOCK: whoever may write the directory (the daemon's user) could put a FIFO
    // there, and opening it for reading would hang vmailctl after every change.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Reload::NotRunning(format!(
                "no pid file {}",
                path.display()
            )));
        }
        Err(e) => return Err(fail(format!("cannot open: {e}"))),
    };
    if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return Err(fail("not a plain file; nothing signalled".into()));
    }
    // A pid is a few bytes: a huge file is not read whole.
    let pid_in = |f: &File| {
        let mut text = String::new();
        let mut f = f;
        (&mut f).take(64).read_to_string(&mut text).ok()?;
        text.trim().parse::<i32>().ok().filter(|p| *p > 0)
    };
    // A shared lock we can take means no daemon holds the exclusive one: stale.
    let file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(unlocked) => {
            let left = pid_in(&unlocked).map_or(String::new(), |p| format!(", pid {p} left alone"));
            return Ok(Reload::NotRunning(format!(
                "stale pid file {}: no process holds its lock{left}",
                path.display()
            )));
        }
        Err((f, Errno::EWOULDBLOCK)) => f,
        Err((_, e)) => return Err(fail(format!("cannot test its lock: {e}"))),
    };
    // Locked, but the pid may not be written yet (the daemon is starting).
    let mut pid = pid_in(&file);
    for _ in 0..20 {
        if pid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        pid = pid_in(&file);
    }
    let Some(pid) = pid else {
        return Ok(Reload::NotRunning(format!(
            "pid file {} is locked but names no pid (starting?)",
            path.display()
        )));
    };
    // Pin the process before checking what it runs: the pidfd names this process, not the
    // number, so a pid recycled between the check and the signal gets nothing.
    let pidfd = PidFd::open(pid);
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let exe = exe.to_string_lossy();
            // A binary replaced by a package upgrade still runs, as
            // "/usr/sbin/vmail-authd (deleted)".
            let name = exe.trim_end_matches(" (deleted)").rsplit('/').next();
            if name != Some(daemon) {
                return Err(fail(format!(
                    "pid {pid} runs {exe}, not {daemon}; not signalled"
                )));
            }
        }
        // A daemon that dropped root is not dumpable: only root may read its exe link, so
        // vmailctl run by its user (a member of group vmail) is refused. Its name is
        // readable, and enough here: a recycled pid belongs to some other program with
        // another name, and the caller, being that user, may signal the daemon anyway.
        Err(e) if e.raw_os_error() == Some(nix::libc::EACCES) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map_err(|e| fail(format!("cannot tell what pid {pid} runs: {e}")))?;
            if !same_comm(comm.trim_end_matches('\n'), daemon) {
                return Err(fail(format!(
                    "pid {pid} is {comm:?}, not {daemon}; not signalled",
                    comm = comm.trim_end()
                )));
            }
        }
        Err(e) => return Err(fail(format!("cannot tell what pid {pid} runs: {e}"))),
    }
    let sent = match &pidfd {
        Some(fd) => fd.sighup(),
        None => nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        ),
    };
    match sent {
        Ok(()) => Ok(Reload::Sent(pid)),
        Err(Errno::ESRCH) => Ok(Reload::NotRunning(format!("pid {pid} just exited"))),
        Err(e) => Err(fail(format!("signalling pid {pid}: {e}"))),
    }
}

/// Whether a process's `comm` (its program name, cut to 15 bytes by the kernel) names
/// `daemon`.
fn same_comm(comm: &str, daemon: &str) -> bool {
    const TASK_COMM_LEN: usize = 15;
    let want = &daemon.as_bytes()[..daemon.len().min(TASK_COMM_LEN)];
    comm.as_bytes() == want
}

/// A process file descriptor (pidfd_open(2), Linux 5.3): signals sent through it reach the
/// process it was opened for or none, never a later process given the same number.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// `None` where the kernel has no pidfds (then `kill(2)` is the fallback) or the process
    /// is gone already (the signal then reports it).
    fn open(pid: i32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        Some(PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn sighup(&self) -> Result<(), Errno> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0) on a descriptor we own.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                nix::libc::SIGHUP,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_the_name_cut_to_fifteen_bytes() {
        assert!(same_comm("vmail-lookupd", "vmail-lookupd"));
        assert!(!same_comm("vmail-authd", "vmail-lookupd"));
        assert!(!same_comm("vmail-lookup", "vmail-lookupd"));
        assert!(same_comm("a-very-long-dae", "a-very-long-daemon-name"));
        assert!(!same_comm("sleep", "vmail-authd"));
    }

    /// The signal goes to the process the pidfd was opened for: once that one has exited and
    /// been reaped, its number may belong to anyone, and the pidfd reaches no one (`kill(2)`
    /// on the number would hit whoever has it now).
    #[test]
    fn a_pidfd_signals_only_the_process_it_was_opened_for() {
        let mut live = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let fd = PidFd::open(live.id() as i32).expect("pidfd_open (Linux 5.3)");
        fd.sighup().unwrap();
        let status = live.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(nix::libc::SIGHUP));

        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let fd = PidFd::open(gone.id() as i32).expect("pidfd_open");
        gone.wait().unwrap();
        assert_eq!(fd.sighup(), Err(Errno::ESRCH));
    }

    #[test]
    fn pid_file_is_locked_while_held_and_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/x.pid");
        {
            let _f = PidFile::create(&p, "").unwrap();
            let pid: u32 = std::fs::read_to_string(&p).unwrap().trim().parse().unwrap();
            assert_eq!(pid, std::process::id());
            // A second instance does not take it over.
            let e = PidFile::create(&p, "").err().unwrap().to_string();
            assert!(e.contains(&format!("pid {pid}")), "{e}");
            // Held by this test binary, not by a vmail daemon: not signalled.
            let e = signal_reload(&p, "vmail-lookupd").unwrap_err().to_string();
            assert!(e.contains("not vmail-lookupd"), "{e}");
        }
        assert!(!p.exists());
        assert!(matches!(
            signal_reload(&p, "vmail-lookupd").unwrap(),
            Reload::NotRunning(_)
        ));
        // A stale file (a crash) is taken over; so is one naming a live process.
        std::fs::write(&p, "1\n").unwrap();
        match signal_reload(&p, "vmail-lookupd").unwrap() {
            Reload::NotRunning(why) => assert!(why.contains("pid 1 left alone"), "{why}"),
            r => panic!("{r:?}"),
        }
        let f = PidFile::create(&p, "").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(f);
        // Never through a symlink.
        let target = d.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(PidFile::create(&p, "").is_err());
        assert!(signal_reload(&p, "vmail-lookupd").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    /// A FIFO where the pid file belongs (the directory is the daemon user's) neither hangs
    /// `vmailctl` nor is taken for a pid file.
    #[test]
    fn a_fifo_in_place_of_the_pid_file_does_not_hang_the_reader() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.pid");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(signal_reload(&q, "vmail-lookupd").map_err(|e| e.to_string()));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("signal_reload hangs on a FIFO");
        assert!(r.unwrap_err().contains("not a plain file"));
        assert!(PidFile::create(&p, "").is_err());
    }
}
