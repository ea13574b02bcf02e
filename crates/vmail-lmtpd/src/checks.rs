//! What lmtpd makes sure of before it accepts mail: the directories it must write are
//! writable by the user it runs as. Without these checks a spool it cannot create, or a
//! Maildir base it cannot write (the unit's `ProtectSystem=strict` on a host whose mail is
//! in /var/vmail), shows only as a 451 on every delivery, for ever, while the daemon looks
//! healthy. `--check` runs the same checks with the daemon user's ids
//! ([`vmail_daemon::Daemon::preflight`]); the daemon runs them again once it has dropped
//! privileges, because only then does it see its systemd sandbox.
//!
//! Access is asked of the kernel (eaccess(3): the effective ids, ACLs and read-only mounts
//! included) rather than read from mode bits, which would miss both of the latter.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::AccessFlags;
use vmail_config::{fixed_base, location_fields, Config};

/// What to tell a postmaster whose unit cannot write a directory: the unit's sandbox
/// lets lmtpd write only the paths in its ReadWritePaths= and BindPaths=.
const UNIT_HINT: &str = "under systemd, vmail-lmtpd.service lets the daemon write only /home/vmail and /var/lib/vmail: allow another directory with a drop-in (systemctl edit vmail-lmtpd: [Service] ReadWritePaths=DIR, or BindPaths=DIR for one under /home)";

/// Every check; the first failure, naming the path, the key and what to do.
pub fn preflight(config: &Config) -> Result<(), String> {
    let spool = &config.lmtpd.spool;
    creatable(spool).map_err(|why| {
        format!(
            "[lmtpd] spool {}: {why} for {}; {UNIT_HINT}",
            spool.display(),
            whoami()
        )
    })?;
    for (key, base) in maildir_bases(config) {
        creatable(&base).map_err(|why| {
            format!(
                "Maildir base {} ({key}): {why} for {}, so every delivery would be deferred; {UNIT_HINT}",
                base.display(),
                whoami()
            )
        })?;
    }
    Ok(())
}

/// The fixed directories every mailbox lies in (`/home/vmail/` for `/home/vmail/%d/%n`):
/// the home template's, and the mail location's when it is not under the home. A delivery
/// makes the directories a Maildir needs, missing parents included (vmail-maildir's
/// `ensure_dir`), so a base that does not exist yet is fine as long as it can be made
/// there; what must not happen is a base nobody can write (EACCES, EROFS).
fn maildir_bases<'a>(config: &'a Config) -> Vec<(&'static str, PathBuf)> {
    let m = &config.mailbox;
    let (mail, _) = location_fields(&m.mail);
    // A template without a variable is the directory itself (every user's, oddly, but
    // then that one must be writable, not its parent: /home is hidden by the unit).
    let base = |t: &'a str| if t.contains('%') { fixed_base(t) } else { t };
    let mut bases = vec![("[mailbox] home", base(&m.home))];
    if !mail.starts_with('~') {
        bases.push(("[mailbox] mail", base(mail)));
    }
    let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
    for (key, base) in bases {
        // No fixed part ("%d/%n") or only "/": nothing to say before a delivery.
        if base.is_empty() || base == "/" || out.iter().any(|(_, b)| b == Path::new(base)) {
            continue;
        }
        out.push((key, PathBuf::from(base)));
    }
    out
}

/// `dir` is writable, or does not exist yet and its nearest existing ancestor is (the
/// spool and a Maildir base are made when first needed).
fn creatable(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                return access(at).map_err(|why| match at == dir {
                    true => why,
                    false => format!("cannot be created ({}: {why})", at.display()),
                })
            }
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            // ENOTDIR: a file on the way, which the ancestor loop then names.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(parent) => at = parent,
                    None => return Err(e.to_string()),
                }
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

/// Whether we may create and enter files in the directory `dir`.
fn access(dir: &Path) -> Result<(), String> {
    match nix::unistd::eaccess(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Ok(()),
        Err(Errno::EROFS) => Err("read-only file system".into()),
        Err(Errno::EACCES) => Err("not writable".into()),
        Err(e) => Err(e.desc().to_string()),
    }
}

/// The user the checks were made as, for the message.
fn whoami() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => format!("user {} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        vmail_config::parse(text, Path::new("x.toml")).unwrap()
    }

    #[test]
    fn bases_come_from_the_templates() {
        let c = config("[mailbox]\nhome = \"/var/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n");
        assert_eq!(
            maildir_bases(&c),
            vec![("[mailbox] home", PathBuf::from("/var/vmail/"))]
        );
        let c = config(
            "[mailbox]\nhome = \"/home/vmail/%d/%n\"\nmail = \"maildir:/srv/mail/%d/%n/Maildir\"\n",
        );
        let bases: Vec<PathBuf> = maildir_bases(&c).into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            bases,
            [PathBuf::from("/home/vmail/"), PathBuf::from("/srv/mail/")]
        );
    }

    #[test]
    fn missing_and_blocked_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(creatable(&dir.path().join("a/b")), Ok(()));
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = creatable(&file.join("spool")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = creatable(&file).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
