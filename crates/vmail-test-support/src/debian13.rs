//! A private Dovecot 2.4 run by `chroot` in the Debian 13 root that `scripts/test-deps`
//! builds (docs/testing.md, "Debian 13"): its config, sockets and log live in a temp dir
//! inside the root, named by the path Dovecot sees; everything else of the test stays on the
//! host.
//!
//! What Dovecot 2.4.1 needed there, as root: `/proc` and `/dev` mounted in the root (left
//! mounted: other tests use them, and `scripts/test-deps` unmounts before it removes a root);
//! `dovecot_config_version`/`dovecot_storage_version` first; `auth_allow_cleartext` (2.3's
//! `disable_plaintext_auth = no`). Stopped by SIGTERM to the master as the 2.3 instance is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::postfix::{greets, kill, process_alive, processes_under, run_daemonizing};
use crate::{free_port, in_ci, skip, wait_until};

/// Where `scripts/test-deps` builds the root.
pub const ROOT: &str = "/var/lib/vmail-test/debian13";

/// The root, with `/proc` and `/dev` mounted, or `None` after a loud [`skip`] when it is
/// missing (under `CI=true` a panic: the 2.4 half of the Dovecot tests must not vanish).
pub fn root(test: &str) -> Option<PathBuf> {
    let root = PathBuf::from(ROOT);
    if !root.join("usr/sbin/dovecot").exists() || Path::new(&format!("{ROOT}.tmp")).exists() {
        let why = format!("no Debian 13 root with Dovecot 2.4 at {ROOT} (run scripts/test-deps)");
        assert!(!in_ci(), "{test}: {why}");
        skip(test, &why);
        return None;
    }
    for (dir, args) in [
        ("proc", ["-t", "proc", "proc"]),
        ("dev", ["--bind", "/dev", ""]),
    ] {
        let at = root.join(dir);
        let mounted = Command::new("mountpoint")
            .arg("-q")
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            let ok = Command::new("mount")
                .args(&args)
                .arg(&at)
                .status()
                .is_ok_and(|s| s.success());
            // Another test may have mounted it in the meantime.
            assert!(
                ok || Command::new("mountpoint")
                    .arg("-q")
                    .arg(&at)
                    .status()
                    .is_ok_and(|s| s.success()),
                "mount {} failed",
                at.display()
            );
        }
    }
    Some(root)
}

/// A temp dir inside the root (mode 0755): `host` is its path here, `inside` the one programs
/// in the root see.
pub struct RootDir {
    pub host: TempDir,
    pub inside: String,
}

impl RootDir {
    pub fn new(root: &Path, prefix: &str) -> RootDir {
        let host = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(root.join("tmp"))
            .expect("temp dir in the Debian 13 root");
        crate::set_mode(host.path(), 0o755);
        let inside = format!(
            "/tmp/{}",
            host.path()
                .file_name()
                .unwrap()
                .to_str()
                .expect("utf-8 name")
        );
        RootDir { host, inside }
    }

    /// Writes `contents` at `relative` (mode 0644, parents 0755), with `@DIR@` replaced by the
    /// inside path.
    pub fn write(&self, relative: &str, contents: &str) {
        let contents = contents.replace(crate::postfix::DIR_PLACEHOLDER, &self.inside);
        let p = self.host.path().join(relative);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir in root dir");
            crate::set_mode(parent, 0o755);
        }
        std::fs::write(&p, &contents).expect("write in root dir");
        crate::set_mode(&p, 0o644);
    }
}

/// A running Dovecot 2.4 of the test's own in the root; stopped when dropped.
pub struct ChrootDovecot {
    pub root: PathBuf,
    pub dir: RootDir,
    pub imap_port: u16,
    running: bool,
}

impl ChrootDovecot {
    /// Writes `DIR/dovecot.conf` (the basics, then `extra`, in which `@DIR@` is the inside
    /// path of the temp dir) and starts Dovecot with IMAP on a free loopback port.
    pub fn start(root: &Path, dir: RootDir, extra: &str) -> ChrootDovecot {
        let d = dir.inside.clone();
        let imap_port = free_port();
        let conf = format!(
            "# written by vmail-test-support\n\
             dovecot_config_version = 2.4.1\n\
             dovecot_storage_version = 2.4.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             listen = 127.0.0.1\n\
             protocols = imap\n\
             ssl = no\n\
             auth_allow_cleartext = yes\n\
             auth_mechanisms = plain login\n\
             first_valid_uid = 1\n\
             first_valid_gid = 1\n\
             auth_failure_delay = 0\n\
             auth_internal_failure_delay = 0\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             {extra}\n"
        );
        dir.write("dovecot.conf", &conf);
        let mut me = ChrootDovecot {
            root: root.to_path_buf(),
            dir,
            imap_port,
            running: true,
        };
        let began = Instant::now();
        let (ok, out) = run_daemonizing(
            Command::new("chroot")
                .arg(&me.root)
                .args(["dovecot", "-c"])
                .arg(me.conf()),
            &me.dir.host.path().join("dovecot.out"),
        );
        let started =
            ok && wait_until(Duration::from_secs(10), || {
                me.master_pid().is_some_and(process_alive)
            }) && wait_until(Duration::from_secs(30), || greets(imap_port, "* OK"));
        if !started {
            let log = me.log();
            me.stop();
            panic!("chroot {ROOT} dovecot failed:\n{out}\n--- log:\n{log}");
        }
        eprintln!(
            "dovecot 2.4 in {} (imap {imap_port}) up in {:?}",
            me.dir.host.path().display(),
            began.elapsed()
        );
        me
    }

    /// `DIR/dovecot.conf` as Dovecot sees it.
    pub fn conf(&self) -> String {
        format!("{}/dovecot.conf", self.dir.inside)
    }

    /// `chroot ROOT doveadm -c DIR/dovecot.conf ARGS...`.
    pub fn doveadm(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.root)
            .args(["doveadm", "-c", &self.conf()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run chroot doveadm")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.host.path().join("dovecot.log")).unwrap_or_default()
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.host.path().join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM to the master, then waits until no process works under the temp dir.
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        let Some(pid) = self.master_pid() else {
            return;
        };
        kill(pid, "TERM");
        let dir = self.dir.host.path().to_path_buf();
        let gone = || !process_alive(pid) && processes_under(&dir).is_empty();
        if !wait_until(Duration::from_secs(10), gone) {
            kill(pid, "KILL");
            for p in processes_under(&dir) {
                kill(p, "KILL");
            }
            wait_until(Duration::from_secs(5), gone);
        }
    }
}

impl Drop for ChrootDovecot {
    fn drop(&mut self) {
        self.stop();
    }
}
