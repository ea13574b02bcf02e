//! Dovecot 2.4 in a Debian 13 root on this Debian 12 host (`docs/testing.md`, "Debian 13"):
//! private instances started with `chroot ROOT dovecot -c /tmp/NAME/dovecot.conf`, their
//! files under `ROOT/tmp/NAME` (a temp dir removed at the end), and `dovecot-mysql`
//! installed into the root when the SQL passdb needs it.
//!
//! The root is shared: nothing here unmounts, deletes or rebuilds it. The only changes
//! outside our own temp dir are the `dovecot-mysql` package and, while it installs, a
//! `ROOT/usr/sbin/policy-rc.d` that exits 101 (removed after; left alone when it was there).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use vmail_test_support::postfix::processes_under;
use vmail_test_support::{free_port, set_mode, wait_until};

use crate::stack::setup::{signal, MailUser};

/// `chroot ROOT ARGS...`, its output (stdout, else stderr), trimmed.
pub fn in_root(root: &Path, args: &[&str]) -> Result<(bool, String)> {
    let o = Command::new("chroot")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("chroot {} {}", root.display(), args.join(" ")))?;
    let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if s.is_empty() || !o.status.success() {
        let e = String::from_utf8_lossy(&o.stderr);
        s = format!("{s}{}", e.trim());
    }
    Ok((o.status.success(), s))
}

/// Checks that `root` is a Debian root with Dovecot and `proc` mounted; its Dovecot version.
pub fn check_root(root: &Path) -> Result<String> {
    if !root.join("usr/sbin/dovecot").exists() {
        bail!(
            "{} has no usr/sbin/dovecot (docs/testing.md, \"Debian 13\", makes one)",
            root.display()
        );
    }
    if !root.join("proc/self").exists() {
        bail!(
            "{}/proc is not mounted (mount -t proc proc {}/proc)",
            root.display(),
            root.display()
        );
    }
    let (ok, v) = in_root(root, &["dovecot", "--version"])?;
    if !ok {
        bail!("chroot {} dovecot --version: {v}", root.display());
    }
    Ok(v)
}

/// Installs `dovecot-mysql` into the root unless it is there (2.4's `sql_driver = mysql`
/// needs it). Returns what it did, for the report.
pub fn ensure_dovecot_mysql(root: &Path) -> Result<Option<String>> {
    let installed = |root: &Path| {
        in_root(root, &["dpkg-query", "-W", "-f=${Status}", "dovecot-mysql"])
            .is_ok_and(|(ok, s)| ok && s.contains("install ok installed"))
    };
    if installed(root) {
        return Ok(None);
    }
    // Keep the package scripts from (re)starting the root's system Dovecot.
    let policy = root.join("usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("write {}", policy.display()))?;
        set_mode(&policy, 0o755);
    }
    let install = |update: bool| -> Result<(bool, String)> {
        let mut out = String::new();
        if update {
            let (_, s) = in_root(root, &["apt-get", "update", "-q"])?;
            out.push_str(&s);
        }
        let o = Command::new("chroot")
            .arg(root)
            .args([
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "dovecot-mysql",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()?;
        out.push_str(&String::from_utf8_lossy(&o.stderr));
        Ok((o.status.success(), out))
    };
    let r = install(false).and_then(|(ok, out)| if ok { Ok((ok, out)) } else { install(true) });
    if ours {
        let _ = std::fs::remove_file(&policy);
    }
    let (ok, out) = r?;
    if !ok || !installed(root) {
        bail!(
            "chroot {} apt-get install -y dovecot-mysql failed:\n{out}",
            root.display()
        );
    }
    Ok(Some(format!(
        "installed dovecot-mysql into {} (chroot apt-get install, policy-rc.d 101 while installing)",
        root.display()
    )))
}

/// The run's directory inside the root, `ROOT/tmp/vmail-bench-dovecot-auth.XXXX` (removed
/// when dropped, after every instance in it stopped).
pub struct RootWork {
    pub root: PathBuf,
    pub dir: TempDir,
}

impl RootWork {
    pub fn create(root: &Path) -> Result<RootWork> {
        let dir = tempfile::Builder::new()
            .prefix("vmail-bench-dovecot-auth")
            .tempdir_in(root.join("tmp"))
            .with_context(|| format!("a temp dir in {}/tmp", root.display()))?;
        set_mode(dir.path(), 0o755);
        Ok(RootWork {
            root: root.to_path_buf(),
            dir,
        })
    }

    /// A host path under the root, as processes in the root see it.
    pub fn inside(&self, host: &Path) -> Result<String> {
        let rel = host
            .strip_prefix(&self.root)
            .with_context(|| format!("{} is not under {}", host.display(), self.root.display()))?;
        Ok(format!("/{}", rel.display()))
    }
}

/// The settings every 2.4 instance gets, as `vmail_test_support::dovecot` gives 2.3 (its
/// defaults otherwise): loopback IMAP without TLS, plaintext logins, failures answered at
/// once, the auth cache off (stated; the default). `auth_allow_weak_schemes = yes`: 2.4
/// refuses the how-to's DES hashes otherwise ("Weak password scheme 'DES-CRYPT' used and
/// refused"), as 2.3 does not.
fn common_conf(dir: &str, imap_port: u16) -> String {
    format!(
        "# written by vmail-bench dovecot-auth\n\
         dovecot_config_version = 2.4.1\n\
         dovecot_storage_version = 2.4.1\n\
         base_dir = {dir}/run\n\
         state_dir = {dir}/state\n\
         log_path = {dir}/dovecot.log\n\
         listen = 127.0.0.1\n\
         protocols = imap\n\
         ssl = no\n\
         auth_allow_cleartext = yes\n\
         auth_allow_weak_schemes = yes\n\
         mail_driver = maildir\n\
         mail_path = ~/Maildir\n\
         first_valid_uid = 1\n\
         first_valid_gid = 1\n\
         default_internal_user = dovecot\n\
         default_login_user = dovenull\n\
         auth_failure_delay = 0\n\
         auth_cache_size = 0\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n"
    )
}

/// A private Dovecot 2.4 running in the root; stopped when dropped.
pub struct RootDovecot {
    /// `ROOT/tmp/.../NAME` on the host.
    pub dir: PathBuf,
    pub imap_port: u16,
    running: bool,
}

impl RootDovecot {
    /// Writes `NAME/dovecot.conf` (the common settings, then `extra`) and `files` under
    /// `work`, with `@DIR@` replaced by the instance's directory as seen in the root, makes
    /// `NAME/mail` for the mail user, starts Dovecot and waits for its IMAP greeting.
    pub fn start(
        work: &RootWork,
        name: &str,
        user: &MailUser,
        extra: &str,
        files: &[(&str, String)],
    ) -> Result<RootDovecot> {
        let dir = work.dir.path().join(name);
        std::fs::create_dir_all(dir.join("mail"))?;
        set_mode(&dir, 0o755);
        std::os::unix::fs::chown(dir.join("mail"), Some(user.uid), Some(user.gid))?;
        let inner = work.inside(&dir)?;
        let imap_port = free_port();
        let conf = format!(
            "{}{}\n",
            common_conf(&inner, imap_port),
            extra.replace("@DIR@", &inner)
        );
        std::fs::write(dir.join("dovecot.conf"), conf)?;
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::write(&p, text.replace("@DIR@", &inner))?;
            set_mode(&p, 0o644);
        }
        let mut me = RootDovecot {
            dir: dir.clone(),
            imap_port,
            running: true,
        };
        let out_path = dir.join("dovecot.out");
        let out = File::create(&out_path)?;
        // dovecot forks into the background and keeps the starter's output: a file, so
        // waiting for the starter does not wait for the daemon.
        let st = Command::new("chroot")
            .arg(&work.root)
            .args(["dovecot", "-c", &format!("{inner}/dovecot.conf")])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("chroot ROOT dovecot")?;
        let began = Instant::now();
        let greeted = st.success() && wait_until(Duration::from_secs(30), || greets(imap_port));
        if !greeted {
            let why = format!(
                "Dovecot 2.4 in {} did not start ({st}, {:.1} s): {}\n{}",
                dir.display(),
                began.elapsed().as_secs_f64(),
                std::fs::read_to_string(&out_path)
                    .unwrap_or_default()
                    .trim(),
                std::fs::read_to_string(me.log_path())
                    .unwrap_or_default()
                    .trim()
            );
            me.stop();
            bail!(why);
        }
        Ok(me)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dovecot.log")
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM to the master, then waits until no process works under its directory
    /// (all of Dovecot's `chdir` to `base_dir` or below), killing stragglers after 10 s.
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        let master = self.master_pid();
        if let Some(pid) = master {
            signal(pid, libc::SIGTERM);
        }
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        let gone = || master.is_none_or(|p| !alive(p)) && processes_under(&self.dir).is_empty();
        if !wait_until(Duration::from_secs(10), gone) {
            for p in master.into_iter().chain(processes_under(&self.dir)) {
                signal(p, libc::SIGKILL);
            }
            wait_until(Duration::from_secs(5), gone);
        }
    }
}

impl Drop for RootDovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn greets(port: u16) -> bool {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("* OK")
}
