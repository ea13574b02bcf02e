//! Dovecot 2.4 in a Debian 13 root on this Debian 12 host (`docs/testing.md`, "Debian 13"):
//! `vmail_test_support::debian13`'s private instances (`chroot ROOT dovecot -c
//! /tmp/NAME/dovecot.conf`, files in a temp dir under `ROOT/tmp`, removed at the end) with
//! the settings the bench's 2.3 instances have, and `dovecot-mysql` installed into the root
//! when the SQL passdb needs it.
//!
//! The root is shared: nothing here mounts, unmounts, deletes or rebuilds it. The only
//! changes outside our own temp dirs are the `dovecot-mysql` package and, while it installs,
//! a `ROOT/usr/sbin/policy-rc.d` that exits 101 (removed after; left alone when it was
//! there).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use vmail_test_support::debian13::{ChrootDovecot, RootDir};
use vmail_test_support::set_mode;

use crate::stack::setup::{panic_text, MailUser};

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

/// What the bench's 2.3 instances have beyond `ChrootDovecot`'s basics (which match
/// `vmail_test_support::dovecot`'s: loopback IMAP, no TLS, plaintext logins, failures
/// answered at once): the anvil auth penalty off, the auth cache off (stated; the default),
/// Maildir in the home. `auth_allow_weak_schemes = yes`: 2.4 refuses the how-to's DES
/// hashes otherwise ("Weak password scheme 'DES-CRYPT' used and refused"), 2.3 does not.
const COMMON: &str = "auth_cache_size = 0\n\
    auth_allow_weak_schemes = yes\n\
    mail_driver = maildir\n\
    mail_path = ~/Maildir\n\
    service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n";

/// A private Dovecot 2.4 in the root (stopped when dropped), in a temp dir of its own.
pub struct RootDovecot {
    pub dovecot: ChrootDovecot,
}

impl RootDovecot {
    /// A temp dir `ROOT/tmp/vmail-bench-NAME*` for an instance (and whatever it needs
    /// there before it starts, such as authd's socket).
    pub fn dir(root: &Path, name: &str) -> RootDir {
        RootDir::new(root, &format!("vmail-bench-{name}"))
    }

    /// Writes `files` and a `mail` directory for the mail user (`@DIR@/mail`, for homes) into
    /// `dir`, then starts Dovecot there with [`COMMON`] and `extra` (in both, and in the
    /// files, `@DIR@` is the temp dir as the root sees it).
    pub fn start(
        root: &Path,
        dir: RootDir,
        user: &MailUser,
        extra: &str,
        files: &[(&str, String)],
    ) -> Result<RootDovecot> {
        let mail = dir.host.path().join("mail");
        std::fs::create_dir_all(&mail)?;
        std::os::unix::fs::chown(&mail, Some(user.uid), Some(user.gid))?;
        set_mode(&mail, 0o755);
        for (rel, text) in files {
            dir.write(rel, text);
        }
        let conf = format!("{COMMON}{extra}");
        // ChrootDovecot panics with Dovecot's own messages when it refuses to start.
        let dovecot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ChrootDovecot::start(root, dir, &conf)
        }))
        .map_err(|e| anyhow::anyhow!("dovecot 2.4 did not start: {}", panic_text(&e)))?;
        Ok(RootDovecot { dovecot })
    }

    pub fn imap_port(&self) -> u16 {
        self.dovecot.imap_port
    }

    pub fn log_path(&self) -> PathBuf {
        self.dovecot.dir.host.path().join("dovecot.log")
    }
}
