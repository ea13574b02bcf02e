//! System users and groups: lookups through `getent`, and the mail user the tests and the
//! bench run the LDA and own the Maildirs as.

use std::process::Command;

/// The system user and group standing in for contrib's `vmail:vmail` (which the test machine
/// does not have): the daemons drop to it, pipe(8) runs the LDA as it, Dovecot reads the
/// Maildirs as it.
#[derive(Clone, Debug)]
pub struct MailUser {
    pub name: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
}

impl MailUser {
    /// `nobody:nogroup`; an error naming what is missing when this machine lacks either.
    pub fn nobody() -> std::io::Result<MailUser> {
        let missing = |what: &str| std::io::Error::new(std::io::ErrorKind::NotFound, what);
        let (uid, _) = lookup_user("nobody").ok_or_else(|| missing("no system user `nobody`"))?;
        let gid = lookup_group("nogroup").ok_or_else(|| missing("no system group `nogroup`"))?;
        Ok(MailUser {
            name: "nobody".into(),
            group: "nogroup".into(),
            uid,
            gid,
        })
    }
}

/// The uid and gid of a system user (`getent passwd NAME`), if it exists.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut f = line.trim().split(':').skip(2);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// The gid of a system group (`getent group NAME`), if it exists.
pub fn lookup_group(name: &str) -> Option<u32> {
    let out = Command::new("getent").args(["group", name]).output().ok()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.trim().split(':').nth(2)?.parse().ok()
}
