//! Where the private Postfix and Dovecot run: this host's own programs, or another Debian
//! release's, installed in a directory tree and entered with chroot(8) (docs/testing.md,
//! "Debian 13"): the Debian 13 root `scripts/test-deps` builds ([`SystemRoot::debian13`]),
//! with Postfix 3.10 and Dovecot 2.4.
//!
//! Files both sides use (configuration, sockets, Maildirs) live in a [`SharedDir`]: inside the
//! tree, and reached from the host through a symbolic link of the same name in the host's
//! `/tmp`. So one absolute path names the same file on both sides, and one configuration
//! file (vmail.toml, read by the daemons on the host and by vmail-lda run by pipe(8) in the
//! tree) serves both, as it does on a real server.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::{have, set_mode, skip};

/// Where `scripts/test-deps` builds the Debian 13 root (`VMAIL_TEST_DEBIAN13_ROOT` overrides
/// it, for trying out a rebuilt root beside the one in use).
pub const DEBIAN13_ROOT: &str = "/var/lib/vmail-test/debian13";
/// The file `scripts/test-deps` writes last into a root it built completely.
pub(crate) const MARKER: &str = ".vmail-test-root";

/// This host, or a directory tree entered with chroot(8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemRoot {
    tree: Option<PathBuf>,
}

impl SystemRoot {
    /// The host's own programs and users.
    pub fn host() -> Self {
        Self::default()
    }

    /// The programs and users of the tree at `dir` (entered with `chroot DIR PROGRAM`).
    pub fn chroot(dir: &Path) -> Self {
        SystemRoot {
            tree: Some(dir.to_path_buf()),
        }
    }

    /// The Debian 13 root (`VMAIL_TEST_DEBIAN13_ROOT`, default [`DEBIAN13_ROOT`]), or `None`
    /// after a loud [`skip`] (a failure under CI: a half that silently skips is a half
    /// nobody runs) when it is not usable. Its `/proc` and `/dev` are mounted by
    /// `scripts/test-deps` and left mounted: the tests share the root and never mount or
    /// unmount anything in it.
    pub fn debian13(test: &str) -> Option<SystemRoot> {
        let dir = std::env::var_os("VMAIL_TEST_DEBIAN13_ROOT")
            .map_or_else(|| DEBIAN13_ROOT.into(), PathBuf::from);
        if let Some(problem) = root_problem(&dir) {
            skip(
                test,
                &format!(
                    "the Debian 13 root {} is not usable: {problem} (run scripts/test-deps as \
                     root to build it)",
                    dir.display()
                ),
            );
            return None;
        }
        Some(SystemRoot::chroot(&dir))
    }

    /// The tree's directory on the host; `None` for the host itself.
    pub fn tree(&self) -> Option<&Path> {
        self.tree.as_deref()
    }

    /// A command running `program` on this side (`chroot TREE program` for a tree).
    pub fn command(&self, program: &str) -> Command {
        match &self.tree {
            None => Command::new(program),
            Some(t) => {
                let mut c = Command::new("chroot");
                c.arg(t).arg(program);
                c
            }
        }
    }

    /// The same as [`SystemRoot::command`], as words for a shell command line.
    pub fn shell_prefix(&self) -> String {
        match &self.tree {
            None => String::new(),
            Some(t) => format!("chroot '{}' ", t.display()),
        }
    }

    /// The host path of `inside`, an absolute path as this side's programs see it.
    pub fn host_path(&self, inside: &Path) -> PathBuf {
        match &self.tree {
            None => inside.to_path_buf(),
            Some(t) => t.join(inside.strip_prefix("/").unwrap_or(inside)),
        }
    }

    /// Whether this side has `program` (on the host: on PATH or in `/usr/sbin`; in a tree:
    /// in its `/usr/sbin` or `/usr/bin`, which merged-/usr Debian uses for everything).
    pub fn have(&self, program: &str) -> bool {
        match &self.tree {
            None => have(program) || have(&format!("/usr/sbin/{program}")),
            Some(t) => ["usr/sbin", "usr/bin"]
                .iter()
                .any(|d| t.join(d).join(program).is_file()),
        }
    }

    /// The uid and gid of a user of this side.
    pub fn lookup_user(&self, name: &str) -> Option<(u32, u32)> {
        match &self.tree {
            None => crate::postfix::lookup_user(name),
            Some(_) => {
                let f = self.entry("etc/passwd", name)?;
                Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
            }
        }
    }

    /// The gid of a group of this side.
    pub fn lookup_group(&self, name: &str) -> Option<u32> {
        match &self.tree {
            None => crate::postfix::lookup_group(name),
            Some(_) => self.entry("etc/group", name)?.get(2)?.parse().ok(),
        }
    }

    /// The uid and gid of `nobody`/`nogroup` of this side (65534, Debian's fixed ids, where
    /// missing): the default mail owner.
    pub fn nobody(&self) -> (u32, u32) {
        (
            self.lookup_user("nobody").map_or(65534, |(u, _)| u),
            self.lookup_group("nogroup").unwrap_or(65534),
        )
    }

    /// The fields of `name`'s line in the tree's passwd or group file.
    fn entry(&self, file: &str, name: &str) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.tree.as_ref()?.join(file)).ok()?;
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.first().is_some_and(|n| n == name))
    }

    /// Adds a user and its group with fixed ids to the tree's passwd and group files, unless
    /// that name is there already (with other ids: a panic, the tree is not what the tests
    /// expect). Nothing on the host.
    pub fn ensure_user(&self, name: &str, uid: u32, group: &str, gid: u32) {
        let Some(t) = &self.tree else { return };
        match self.lookup_group(group) {
            Some(g) => assert_eq!(g, gid, "group {group} in {} has gid {g}", t.display()),
            None => append(&t.join("etc/group"), &format!("{group}:x:{gid}:\n")),
        }
        match self.lookup_user(name) {
            Some(u) => assert_eq!(u, (uid, gid), "user {name} in {} is {u:?}", t.display()),
            None => append(
                &t.join("etc/passwd"),
                &format!("{name}:x:{uid}:{gid}:{name}:/nonexistent:/usr/sbin/nologin\n"),
            ),
        }
    }

    /// A fresh temporary directory both sides see at the same absolute path (mode 0755, so
    /// the daemons' unprivileged users can enter it).
    pub fn shared_tempdir(&self, prefix: &str) -> SharedDir {
        let dir = match &self.tree {
            None => tempfile::Builder::new().prefix(prefix).tempdir(),
            Some(t) => tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(t.join("tmp")),
        }
        .expect("create a temp dir");
        set_mode(dir.path(), 0o755);
        let link = self.tree.as_ref().map(|_| {
            let name = dir.path().file_name().expect("a temp dir has a name");
            let link = Path::new("/tmp").join(name);
            symlink(dir.path(), &link).unwrap_or_else(|e| {
                panic!(
                    "symlink {} -> {}: {e}",
                    link.display(),
                    dir.path().display()
                )
            });
            link
        });
        SharedDir { dir, link }
    }
}

/// What is wrong with the root, if anything: the checks `scripts/test-deps` makes, plus its
/// mounts. Asked once per test binary.
fn root_problem(root: &Path) -> Option<String> {
    static PROBLEM: OnceLock<Option<String>> = OnceLock::new();
    PROBLEM
        .get_or_init(|| {
            if !root.join(MARKER).is_file() {
                return Some(format!("no {MARKER}: missing or not built to the end"));
            }
            if !root.join("proc/self").exists() {
                return Some("its /proc is not mounted".into());
            }
            if !root.join("dev/null").exists() {
                return Some("its /dev is not mounted".into());
            }
            for argv in [["dovecot", "--version"], ["postconf", "mail_version"]] {
                let ok = Command::new("chroot")
                    .arg(root)
                    .args(argv)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Some(format!("`chroot ROOT {}` fails", argv.join(" ")));
                }
            }
            None
        })
        .clone()
}

fn append(file: &Path, line: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
}

/// A temporary directory under a [`SystemRoot`] (see [`SystemRoot::shared_tempdir`]); removed
/// with its host link when dropped.
#[derive(Debug)]
pub struct SharedDir {
    dir: TempDir,
    /// `/tmp/NAME` on the host, pointing at `TREE/tmp/NAME`; `None` on the host itself.
    link: Option<PathBuf>,
}

impl SharedDir {
    /// The path both sides use.
    pub fn path(&self) -> &Path {
        self.link.as_deref().unwrap_or(self.dir.path())
    }

    /// Where the directory really is on the host (what `/proc/PID/cwd` of a process working
    /// in it shows).
    pub fn real(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}
