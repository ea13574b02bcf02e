//! The lane the end-to-end tests run in, from `VMAIL_TEST_LANE`:
//! - `debian12` (the default): this host's Postfix 3.7 and Dovecot 2.3;
//! - `debian13`: Postfix 3.10 and Dovecot 2.4 of the Debian 13 root `scripts/test-deps`
//!   builds (`SystemRoot::debian13`), run with chroot(8). vmail's daemons, MariaDB and the test's
//!   clients stay on the host (TCP on loopback; unix sockets in directories both sides see,
//!   `SystemRoot::shared_tempdir`), so the same tests check vmail against both releases.

use std::path::Path;

use crate::root::{SharedDir, SystemRoot};

use super::{Binaries, MailUser};

/// One lane: a name for messages, and where Postfix and Dovecot run.
#[derive(Debug, Clone)]
pub struct Lane {
    pub name: &'static str,
    pub root: SystemRoot,
}

impl Lane {
    /// The lane `VMAIL_TEST_LANE` names; `None` after a loud skip when its root is not
    /// usable (a failure under CI; a panic for a lane name nobody knows).
    pub fn from_env(test: &str) -> Option<Lane> {
        let name = std::env::var("VMAIL_TEST_LANE").unwrap_or_default();
        match name.as_str() {
            "" | "debian12" => Some(Lane {
                name: "debian12",
                root: SystemRoot::host(),
            }),
            "debian13" => Some(Lane {
                name: "debian13",
                root: SystemRoot::debian13(test)?,
            }),
            other => panic!("VMAIL_TEST_LANE={other}: the lanes are debian12 and debian13"),
        }
    }

    pub fn is_debian13(&self) -> bool {
        self.root.tree().is_some()
    }

    /// The user standing in for `vmail` (see [`super::mail_user`]), present with the same ids
    /// on both sides: pipe(8) runs the LDA as it in the root, the daemons drop to it here.
    pub fn mail_user(&self) -> MailUser {
        let u = super::mail_user();
        self.root.ensure_user(&u.name, u.uid, &u.group, u.gid);
        u
    }

    /// How a daemon on the host names the group `name` of Postfix's or Dovecot's side in
    /// its `*_socket_group` setting: by name on the host; by the root's numeric id on
    /// debian13, where the host's group of that name (if any) has another id
    /// (vmail-daemon takes a number as a gid).
    pub fn group(&self, name: &str) -> String {
        if !self.is_debian13() {
            return name.to_string();
        }
        self.root
            .lookup_group(name)
            .unwrap_or_else(|| panic!("no group {name} in the Debian 13 root"))
            .to_string()
    }

    /// A temp dir both sides see at the same path.
    pub fn tempdir(&self, prefix: &str) -> SharedDir {
        self.root.shared_tempdir(prefix)
    }

    /// The LDA binary pipe(8) runs: the test package's own (`bins`) on the host; on debian13
    /// a copy (with its `-direct` companion, which it execs by its own path) in `dir`, which
    /// both sides see, since the root cannot see the build directory.
    pub fn lda(&self, bins: &Binaries, dir: &Path) -> String {
        if !self.is_debian13() {
            return bins.lda.to_string();
        }
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        crate::set_mode(&bin, 0o755);
        for src in [bins.lda, bins.lda_direct] {
            let to = bin.join(Path::new(src).file_name().expect("a binary has a name"));
            std::fs::copy(src, &to)
                .unwrap_or_else(|e| panic!("copy {src} to {}: {e}", to.display()));
        }
        bin.join(
            Path::new(bins.lda)
                .file_name()
                .expect("a binary has a name"),
        )
        .display()
        .to_string()
    }
}
