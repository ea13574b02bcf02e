//! A private Dovecot instance for end-to-end tests (temp dir, loopback IMAP and POP3 ports, its
//! own master), and minimal IMAP and POP3 clients to log in and read delivered mail back.
//!
//! Recipe: `docs/testing.md` ("A private Dovecot instance"). What Dovecot 2.3.19 needed here,
//! as root with no syslog:
//! - `listen = 127.0.0.1`, `ssl = no` with `disable_plaintext_auth = no`, `imaps`/`pop3s`
//!   listeners at port 0; `default_internal_user = dovecot`, `default_login_user = dovenull`.
//! - `first_valid_uid`/`first_valid_gid = 1`, so mail users may be any non-root uid (a static
//!   `vmail`-like uid such as 5000 need not exist in `/etc/passwd`).
//! - Auth failures are answered at once here: `auth_failure_delay = 0` and the anvil
//!   `anvil-auth-penalty` listener at mode 0 (penalty tracking off; see the wiki page
//!   `Authentication.Penalty`). Dovecot's defaults delay each failure 2 s and double the delay
//!   (4, 8, 15 s) for repeated failures without a remote IP, as `doveadm auth test` sends.
//!   Give `conf("auth_failure_delay = 2s")` to test with the real delay.
//! - `dovecot -c` forks into the background and the daemon keeps the starter's stdout and
//!   stderr: `Command::output()` on it never returns. It is started with its output going to
//!   `DIR/dovecot.out` instead (shown in the panic when it refuses to start).
//! - The daemon is stopped by SIGTERM to the pid in
//!   `DIR/run/master.pid` (the master takes ~1.1 s to exit; `doveadm stop` takes ~2.4 s), then
//!   waited for until no process works under the temp dir (all `chdir` to `base_dir` or below).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::postfix::DIR_PLACEHOLDER;
use crate::postfix::{greets, kill, process_alive, processes_under, run_daemonizing};
use crate::root::{SharedDir, SystemRoot};
use crate::{free_port, set_mode, skip, wait_until};

/// Builds a [`PrivateDovecot`]. In every line, block and file given, `@DIR@` is replaced by
/// the instance's temp dir.
#[derive(Debug, Default, Clone)]
pub struct DovecotBuilder {
    conf: Vec<String>,
    passdb: Vec<String>,
    userdb: Vec<String>,
    owner: Option<(u32, u32)>,
    files: Vec<(PathBuf, String)>,
    root: SystemRoot,
    imap_only: bool,
}

impl DovecotBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An extra `dovecot.conf` line or block, written after the defaults (a later setting
    /// overrides an earlier one), e.g. `mail_location = maildir:~/Maildir:LAYOUT=fs`.
    pub fn conf(mut self, line: &str) -> Self {
        self.conf.push(line.to_string());
        self
    }

    /// A `passdb { ... }` block; `body` is what goes between the braces, e.g.
    /// `"driver = dict\nargs = @DIR@/dict-auth.conf"`. Several blocks are tried in order.
    pub fn passdb(mut self, body: &str) -> Self {
        self.passdb.push(body.to_string());
        self
    }

    /// A `userdb { ... }` block; `body` is what goes between the braces.
    pub fn userdb(mut self, body: &str) -> Self {
        self.userdb.push(body.to_string());
        self
    }

    /// Every user has `password` (`passdb static`) and is the mail owner with home
    /// `DIR/home/%u` (`userdb static`).
    pub fn static_users(self, password: &str) -> Self {
        // The uid and gid are filled in by `start` once the mail owner is known.
        self.passdb(&format!("driver = static\nargs = password={password}"))
            .userdb("driver = static\nargs = uid=@UID@ gid=@GID@ home=@DIR@/home/%u")
    }

    /// The uid and gid mail users run as (default: `nobody`/`nogroup`); `DIR/home` is owned by
    /// them so Dovecot can create homes and maildirs there.
    pub fn mail_owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Runs the Dovecot of `root` (default: the host's). The temp dir is then a
    /// [`SharedDir`] of that root, and `@DIR@` its path as both sides see it. A Dovecot 2.4
    /// gets the 2.4 names of the default settings (see [`base_conf`]).
    pub fn root(mut self, root: &SystemRoot) -> Self {
        self.root = root.clone();
        self
    }

    /// IMAP only: `protocols = imap` and no POP3 listener (`pop3_port` is then 0), for a
    /// benchmark that wants no process it does not use.
    pub fn imap_only(mut self) -> Self {
        self.imap_only = true;
        self
    }

    /// A file written (as root, mode 0644) at `relative` under the temp dir before Dovecot
    /// starts, e.g. the `dict-auth.conf` a `driver = dict` passdb names.
    pub fn file(mut self, relative: &str, contents: &str) -> Self {
        self.files
            .push((PathBuf::from(relative), contents.to_string()));
        self
    }

    /// Writes the configuration, starts Dovecot and waits until IMAP and POP3 greet. `None`
    /// after a loud [`skip`] when Dovecot (or its `dovecot`/`dovenull` users) is missing;
    /// panics with Dovecot's own messages when it refuses to start.
    pub fn start(self, test: &str) -> Option<PrivateDovecot> {
        let root = self.root.clone();
        for p in ["dovecot", "doveadm"] {
            if !root.have(p) {
                skip(
                    test,
                    &format!("{p} is not installed (run scripts/test-deps)"),
                );
                return None;
            }
        }
        for u in ["dovecot", "dovenull"] {
            if root.lookup_user(u).is_none() {
                skip(
                    test,
                    &format!("there is no `{u}` user (run scripts/test-deps)"),
                );
                return None;
            }
        }
        let began = Instant::now();
        let (uid, gid) = self.owner.unwrap_or_else(|| root.nobody());
        let dir = root.shared_tempdir("vmail-dovecot");
        let d = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let subst = |s: &str| {
            s.replace(DIR_PLACEHOLDER, &d)
                .replace("@UID@", &uid.to_string())
                .replace("@GID@", &gid.to_string())
        };
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("mkdir home");
        // Modes are set, not left to whatever umask the tests run under: Dovecot's
        // processes run as other users and must enter these.
        set_mode(&home, 0o755);
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown home");

        let imap_port = free_port();
        let pop3_port = if self.imap_only { 0 } else { free_port() };
        let version = dovecot_version(&root);
        let mut conf = base_conf(&version, &d, imap_port, pop3_port);
        for line in &self.conf {
            conf.push_str(&subst(line));
            conf.push('\n');
        }
        for (kind, bodies) in [("passdb", &self.passdb), ("userdb", &self.userdb)] {
            for body in bodies {
                let _ = writeln!(conf, "{kind} {{");
                for l in subst(body).lines() {
                    let _ = writeln!(conf, "  {}", l.trim());
                }
                conf.push_str("}\n");
            }
        }
        let conf_path = dir.path().join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("write dovecot.conf");
        set_mode(&conf_path, 0o644);
        for (rel, contents) in &self.files {
            let p = dir.path().join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir for builder file");
                set_mode(parent, 0o755);
            }
            std::fs::write(&p, subst(contents)).expect("write builder file");
            set_mode(&p, 0o644);
        }

        let mut me = PrivateDovecot {
            dir,
            root,
            version,
            imap_port,
            pop3_port,
            mail_uid: uid,
            mail_gid: gid,
            running: true,
        };
        let (ok, out) = run_daemonizing(
            me.root.command("dovecot").arg("-c").arg(&conf_path),
            &me.dir.path().join("dovecot.out"),
        );
        let pid_file = me.dir.path().join("run/master.pid");
        let started = ok
            && wait_until(Duration::from_secs(10), || {
                me.read_master_pid().is_some_and(process_alive)
            });
        if !started {
            let log = me.log();
            me.stop();
            panic!(
                "dovecot -c {} failed:\n{out}\n--- log:\n{log}\n(pid file {})",
                conf_path.display(),
                pid_file.display()
            );
        }
        let listeners = [(imap_port, "* OK"), (pop3_port, "+OK")];
        for (port, greeting) in listeners.into_iter().filter(|(p, _)| *p != 0) {
            if !wait_until(Duration::from_secs(30), || greets(port, greeting)) {
                let log = me.log();
                me.stop();
                panic!("private dovecot never greeted on 127.0.0.1:{port}; log:\n{log}");
            }
        }
        eprintln!(
            "private dovecot in {} (imap {imap_port}, pop3 {pop3_port}) up in {:?}",
            me.dir.path().display(),
            began.elapsed()
        );
        Some(me)
    }
}

/// A running Dovecot of the test's own (see [`DovecotBuilder`]); stopped when dropped.
///
/// Layout: `DIR/dovecot.conf`, `DIR/run` (base_dir), `DIR/state`, `DIR/dovecot.log`,
/// `DIR/home` (owned by the mail owner).
pub struct PrivateDovecot {
    pub dir: SharedDir,
    /// Where its programs run.
    pub root: SystemRoot,
    /// What `dovecot --version` printed, e.g. `2.3.19.1 (9b53102964)`.
    pub version: String,
    pub imap_port: u16,
    /// 0 when started [`DovecotBuilder::imap_only`].
    pub pop3_port: u16,
    /// The uid and gid of `DIR/home` (and of `static_users`).
    pub mail_uid: u32,
    pub mail_gid: u32,
    running: bool,
}

impl PrivateDovecot {
    /// `DIR/dovecot.conf`, for `-c`.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// `DIR/home`, where `static_users` homes live (`DIR/home/USER`).
    pub fn home_dir(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Runs `doveadm -c DIR/dovecot.conf ARGS...`, e.g. `["user", "alice@example.test"]`.
    pub fn doveadm(&self, args: &[&str]) -> Output {
        self.root
            .command("doveadm")
            .arg("-c")
            .arg(self.conf_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm")
    }

    /// `doveadm auth test USER PASS` succeeded (exit 0: "passdb: USER auth succeeded"; a wrong
    /// password or unknown user exits 77 with "auth failed"; see `doveadm(&["auth", "test",
    /// ...])` for the output).
    pub fn auth_test(&self, user: &str, pass: &str) -> bool {
        self.doveadm(&["auth", "test", user, pass]).status.success()
    }

    /// The contents of `DIR/dovecot.log` (all services log there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Polls the log every 50 ms until it contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// SIGTERM to the master, then waits (up to 10 s) until it and every process working under
    /// the temp dir are gone, killing stragglers. Idempotent.
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        let Some(pid) = self.read_master_pid() else {
            return;
        };
        let began = Instant::now();
        kill(pid, "TERM");
        let dir = self.dir.real().to_path_buf();
        let gone = || !process_alive(pid) && processes_under(&dir).is_empty();
        if !wait_until(Duration::from_secs(10), gone) {
            kill(pid, "KILL");
            for p in processes_under(&dir) {
                kill(p, "KILL");
            }
            wait_until(Duration::from_secs(5), gone);
        }
        eprintln!(
            "private dovecot in {} stopped in {:?}",
            dir.display(),
            began.elapsed()
        );
    }

    fn read_master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PrivateDovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `dovecot --version` of `root` (empty if it cannot be run; the start then fails loudly).
pub fn dovecot_version(root: &SystemRoot) -> String {
    root.command("dovecot")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The settings every private instance starts with (`d` its temp dir), in the names of the
/// Dovecot `version` (2.4 renamed many: `auth_allow_cleartext`, `mail_driver`/`mail_path`,
/// and wants `dovecot_config_version` first; checked with 2.4.1's `doveconf -n`). IMAP only
/// when `pop3_port` is 0.
fn base_conf(version: &str, d: &str, imap_port: u16, pop3_port: u16) -> String {
    let v24 = version.starts_with("2.4");
    let (head, auth, mail) = if v24 {
        (
            "dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n",
            "auth_allow_cleartext = yes\n",
            "mail_driver = maildir\nmail_path = ~/Maildir\n",
        )
    } else {
        (
            "",
            "disable_plaintext_auth = no\n",
            "mail_location = maildir:~/Maildir\n",
        )
    };
    let (protocols, pop3) = if pop3_port == 0 {
        ("imap", String::new())
    } else {
        (
            "imap pop3",
            format!(
                "service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3_port}\n  }}\n  \
                 inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
            ),
        )
    };
    format!(
        "{head}# written by vmail-test-support\n\
         base_dir = {d}/run\n\
         state_dir = {d}/state\n\
         log_path = {d}/dovecot.log\n\
         listen = 127.0.0.1\n\
         protocols = {protocols}\n\
         ssl = no\n\
         {auth}{mail}\
         first_valid_uid = 1\n\
         first_valid_gid = 1\n\
         default_internal_user = dovecot\n\
         default_login_user = dovenull\n\
         auth_failure_delay = 0\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         {pop3}\
         service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n"
    )
}

pub use crate::imap_pop3::*;
