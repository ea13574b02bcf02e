//! Dovecot 2.4 in a Debian 13 root on this Debian 12 host (`docs/testing.md`, "Debian 13"):
//! `vmail_test_support::dovecot`'s private instances run in the root
//! ([`DovecotBuilder::root`]: `chroot ROOT dovecot -c /tmp/vmail-dovecotXXX/dovecot.conf`, a
//! `vmail_test_support::root::SharedDir` seen at that path from both sides, removed at the
//! end) with the settings the bench's 2.3 instances have, and `dovecot-mysql` installed into
//! the root when the SQL passdb needs it.
//!
//! The root is shared: nothing here mounts, unmounts, deletes or rebuilds it. The only
//! changes outside our own temp dirs are the `dovecot-mysql` package and, while it installs,
//! a `ROOT/usr/sbin/policy-rc.d` that exits 101 (removed after; left alone when it was
//! there).

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};
use vmail_test_support::root::SystemRoot;
use vmail_test_support::set_mode;

use crate::stack::setup::{start_dovecot, MailUser};

/// The root's directory on the host, for messages.
fn shown(root: &SystemRoot) -> String {
    root.tree().unwrap_or(Path::new("/")).display().to_string()
}

/// `PROGRAM ARGS...` in the root, its output (stdout, else stderr), trimmed.
pub fn in_root(root: &SystemRoot, program: &str, args: &[&str]) -> Result<(bool, String)> {
    let o = root
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("chroot {} {program} {}", shown(root), args.join(" ")))?;
    let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if s.is_empty() || !o.status.success() {
        let e = String::from_utf8_lossy(&o.stderr);
        s = format!("{s}{}", e.trim());
    }
    Ok((o.status.success(), s))
}

/// Checks that `root` is a Debian root with Dovecot and `proc` mounted; its Dovecot version.
pub fn check_root(root: &SystemRoot) -> Result<String> {
    let r = shown(root);
    if !root.have("dovecot") {
        bail!("{r} has no usr/sbin/dovecot (docs/testing.md, \"Debian 13\", makes one)");
    }
    if !root.host_path(Path::new("/proc/self")).exists() {
        bail!("{r}/proc is not mounted (mount -t proc proc {r}/proc)");
    }
    let (ok, v) = in_root(root, "dovecot", &["--version"])?;
    if !ok {
        bail!("chroot {r} dovecot --version: {v}");
    }
    Ok(v)
}

/// Installs `dovecot-mysql` into the root unless it is there (2.4's `sql_driver = mysql`
/// needs it). Returns what it did, for the report.
pub fn ensure_dovecot_mysql(root: &SystemRoot) -> Result<Option<String>> {
    let installed = |root: &SystemRoot| {
        in_root(root, "dpkg-query", &["-W", "-f=${Status}", "dovecot-mysql"])
            .is_ok_and(|(ok, s)| ok && s.contains("install ok installed"))
    };
    if installed(root) {
        return Ok(None);
    }
    // Keep the package scripts from (re)starting the root's system Dovecot.
    let policy = root.host_path(Path::new("/usr/sbin/policy-rc.d"));
    let ours = !policy.exists();
    if ours {
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("write {}", policy.display()))?;
        set_mode(&policy, 0o755);
    }
    let install = |update: bool| -> Result<(bool, String)> {
        let mut out = String::new();
        if update {
            let (_, s) = in_root(root, "apt-get", &["update", "-q"])?;
            out.push_str(&s);
        }
        let o = root
            .command("apt-get")
            .args([
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
    let r = shown(root);
    if !ok || !installed(root) {
        bail!("chroot {r} apt-get install -y dovecot-mysql failed:\n{out}");
    }
    Ok(Some(format!(
        "installed dovecot-mysql into {r} (chroot apt-get install, policy-rc.d 101 while installing)"
    )))
}

/// What the bench's 2.4 instances have beyond `vmail_test_support::dovecot`'s 2.4 basics
/// (loopback IMAP, no TLS, cleartext logins, Maildir in the home, failures answered at once:
/// `auth_failure_delay = 0`, the anvil auth penalty off), as they had when they ran on the
/// bench's own chroot starter: IMAP only ([`DovecotBuilder::imap_only`]), the `LOGIN`
/// mechanism besides `PLAIN`, no delay on internal failures, the auth cache off (stated; the
/// default). `auth_allow_weak_schemes = yes`: 2.4 refuses the how-to's DES hashes otherwise
/// ("Weak password scheme 'DES-CRYPT' used and refused"), 2.3 does not.
const COMMON: &str = "auth_mechanisms = plain login\n\
    auth_internal_failure_delay = 0\n\
    auth_cache_size = 0\n\
    auth_allow_weak_schemes = yes";

/// Starts Dovecot 2.4 in `root` with [`COMMON`], then `extra` and `files` (in which `@DIR@`
/// is its temp dir as both sides see it), mail owner `user` (owning `@DIR@/home`, for homes).
pub fn start(
    root: &SystemRoot,
    user: &MailUser,
    extra: &str,
    files: &[(&str, String)],
) -> Result<PrivateDovecot> {
    let mut b = DovecotBuilder::new()
        .root(root)
        .imap_only()
        .mail_owner(user.uid, user.gid)
        .conf(COMMON)
        .conf(extra);
    for (rel, text) in files {
        b = b.file(rel, text);
    }
    start_dovecot(b)
}
