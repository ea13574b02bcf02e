//! A private Postfix instance for end-to-end tests (temp dir, loopback ports, its own master),
//! `postmap -q` as tests use it, and a minimal SMTP client.
//!
//! Recipe: `docs/testing.md` ("A private Postfix instance"). Quirks found on Debian 12 /
//! Postfix 3.7 and handled here:
//! - `postfix start` does **not** create `queue_directory` itself (it fails with
//!   `fatal: chdir(DIR/queue): No such file or directory`); it does create the queue's
//!   subdirectories once the top directory exists.
//! - The `postfix` command writes its errors to stderr only when stderr is a tty, so it runs
//!   under `script -qec` (which also passes the exit status through); the same messages land in
//!   `DIR/maillog` (the command logs straight to `maillog_file`).
//! - `postfix stop` returns at once; the master exits a moment later, and with no reaping init
//!   its processes may linger as zombies. Stopping waits until no live process has its working
//!   directory under the temp dir (every Postfix daemon `chdir`s to `queue_directory`).
//! - Postfix will not read a configuration file modified within the last second: it re-reads a
//!   "hot" file every 0.3 s until it has cooled (`dict_load_file`), so a freshly written
//!   `main.cf` (or `mysql:` `.cf` file) costs up to 2 s per program start, `postmap -q`
//!   included. Every file written here is [`backdate`]d; do the same with your own files.
//! - The default `alias_maps` (`hash:/etc/aliases, nis:mail.aliases`) makes smtpd log errors
//!   about `/etc/aliases.db` and NIS; the instance sets it empty.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root::{SharedDir, SystemRoot};
pub use crate::users::{lookup_group, lookup_user};
use crate::{free_port, have, set_mode, skip, wait_until};

/// The placeholder replaced by the instance's temp dir in builder lines and files.
pub const DIR_PLACEHOLDER: &str = "@DIR@";

/// Builds a [`PrivatePostfix`]: extra `main.cf` parameters, extra `master.cf` services, an
/// optional submission listener and extra files.
///
/// In every line and file given to the builder, `@DIR@` is replaced by the instance's temp dir
/// (which does not exist before [`PostfixBuilder::start`]).
#[derive(Debug, Default, Clone)]
pub struct PostfixBuilder {
    main: Vec<String>,
    master: Vec<String>,
    submission: Option<Vec<String>>,
    files: Vec<(PathBuf, String)>,
    root: SystemRoot,
}

/// `main.cf` of every instance (`DIR` is the temp dir). A builder line setting one of these
/// parameters replaces it instead of adding a second definition (which Postfix warns about).
fn default_main(dir: &str) -> Vec<(String, String)> {
    [
        ("compatibility_level", "3.6".to_string()),
        ("queue_directory", format!("{dir}/queue")),
        ("data_directory", format!("{dir}/data")),
        ("inet_interfaces", "loopback-only".into()),
        ("inet_protocols", "ipv4".into()),
        ("myhostname", "test.invalid".into()),
        // No syslog here: postlogd (the `postlog unix-dgram` service) writes this file.
        ("maillog_file", format!("{dir}/maillog")),
        ("maillog_file_prefixes", dir.to_string()),
        // Test domains are virtual, never local.
        ("mydestination", String::new()),
        ("mynetworks", "127.0.0.0/8".into()),
        ("smtpd_banner", "$myhostname ESMTP vmail-test".into()),
        // Nothing leaves the machine and nothing asks DNS about test domains.
        ("smtp_dns_support_level", "disabled".into()),
        (
            "default_transport",
            "error:no outbound mail in tests".into(),
        ),
        ("relay_transport", "error:no outbound mail in tests".into()),
        // The Debian defaults point at /etc/aliases.db and NIS, neither of which exists.
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("biff", "no".into()),
        ("append_dot_mydomain", "no".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl PostfixBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An extra `main.cf` line (`name = value`; continuation lines allowed). It replaces a
    /// default parameter of the same name, or an earlier builder line for it.
    pub fn main(mut self, line: &str) -> Self {
        self.main.push(line.to_string());
        self
    }

    /// Extra `master.cf` text: one service, possibly with `-o`/argument continuation lines,
    /// e.g. a `pipe(8)` transport. A service with the same name and type as one in the copied
    /// `/etc/postfix/master.cf` replaces it.
    pub fn master(mut self, service: &str) -> Self {
        self.master.push(service.to_string());
        self
    }

    /// Also listen with a second smtpd on another free loopback port (a 587-style submission
    /// service, `syslog_name=postfix/submission`); see [`PrivatePostfix::submission_port`].
    pub fn submission(self) -> Self {
        self.submission_with(&[])
    }

    /// Like [`PostfixBuilder::submission`], with `-o name=value` overrides for that smtpd,
    /// e.g. `["smtpd_sasl_auth_enable=yes", "smtpd_tls_security_level=encrypt"]`.
    pub fn submission_with(mut self, options: &[&str]) -> Self {
        self.submission = Some(options.iter().map(|o| o.to_string()).collect());
        self
    }

    /// Runs the Postfix of `root` (default: the host's). The temp dir is then a
    /// [`SharedDir`] of that root, and `@DIR@` its path as both sides see it.
    pub fn root(mut self, root: &SystemRoot) -> Self {
        self.root = root.clone();
        self
    }

    /// A file written (as root, mode 0644) at `relative` under the temp dir before Postfix
    /// starts, e.g. a `mysql:` table's `.cf` file or a TLS key.
    pub fn file(mut self, relative: &str, contents: &str) -> Self {
        self.files
            .push((PathBuf::from(relative), contents.to_string()));
        self
    }

    /// Writes the configuration and starts the instance; waits until the SMTP port(s) greet
    /// with 220. `None` after a loud [`skip`] when Postfix is not installed or the test does
    /// not run as root (a failure under CI). Panics, with Postfix's own messages, when Postfix
    /// refuses to start.
    pub fn start(self, test: &str) -> Option<PrivatePostfix> {
        let root = self.root.clone();
        for p in ["postfix", "postconf", "postqueue", "postmap"] {
            if !root.have(p) {
                skip(
                    test,
                    &format!("{p} is not installed (run scripts/test-deps)"),
                );
                return None;
            }
        }
        if !is_root() {
            skip(
                test,
                "a private Postfix needs root (its master runs as root)",
            );
            return None;
        }
        let Some((postfix_uid, _)) = root.lookup_user("postfix") else {
            skip(test, "there is no `postfix` user (run scripts/test-deps)");
            return None;
        };
        let began = Instant::now();
        // Postfix daemons run as `postfix` and must traverse it (the mode is 0755).
        let dir = root.shared_tempdir("vmail-postfix");
        let d = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let subst = |s: &str| s.replace(DIR_PLACEHOLDER, &d);
        for sub in ["etc", "data", "queue"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
            // Set, not left to whatever umask the tests run under: `postfix` must enter it.
            set_mode(&dir.path().join(sub), 0o755);
        }
        std::os::unix::fs::chown(dir.path().join("data"), Some(postfix_uid), None)
            .expect("chown postfix DIR/data");

        let smtp_port = free_port();
        let submission_port = self.submission.as_ref().map(|_| free_port());

        let mut params = default_main(&d);
        for line in &self.main {
            let line = subst(line);
            let name = line.split('=').next().unwrap_or("").trim().to_string();
            let value = line
                .split_once('=')
                .map_or("", |(_, v)| v.trim())
                .to_string();
            params.retain(|(k, _)| *k != name);
            params.push((name, value));
        }
        let mut main_cf = String::from("# written by vmail-test-support\n");
        for (k, v) in &params {
            let _ = writeln!(main_cf, "{k} = {v}");
        }
        std::fs::write(dir.path().join("etc/main.cf"), main_cf).expect("write main.cf");
        set_mode(&dir.path().join("etc/main.cf"), 0o644);
        backdate(&dir.path().join("etc/main.cf"));

        let system_path = root.host_path(Path::new("/etc/postfix/master.cf"));
        let system = std::fs::read_to_string(&system_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", system_path.display()));
        let mut extra: Vec<String> = self.master.iter().map(|s| subst(s)).collect();
        let mut listener = format!("127.0.0.1:{smtp_port} inet n - n - - smtpd");
        if let (Some(port), Some(opts)) = (submission_port, &self.submission) {
            let _ = write!(
                listener,
                "\n127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/submission"
            );
            for o in opts {
                let _ = write!(listener, "\n  -o {}", subst(o));
            }
        }
        extra.insert(0, listener);
        let master_cf = private_master_cf(&system, &extra);
        std::fs::write(dir.path().join("etc/master.cf"), master_cf).expect("write master.cf");
        set_mode(&dir.path().join("etc/master.cf"), 0o644);
        backdate(&dir.path().join("etc/master.cf"));

        for (rel, contents) in &self.files {
            let p = dir.path().join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir for builder file");
                set_mode(parent, 0o755);
            }
            std::fs::write(&p, subst(contents)).expect("write builder file");
            set_mode(&p, 0o644);
            backdate(&p);
        }

        let mut me = PrivatePostfix {
            dir,
            root,
            smtp_port,
            submission_port,
            running: true,
        };
        let (ok, out) = me.postfix_cmd("start");
        if !ok {
            let log = me.maillog();
            me.stop();
            panic!(
                "postfix start failed:\n{out}\n--- {}/maillog:\n{log}",
                me.dir.path().display()
            );
        }
        let mut ports = vec![smtp_port];
        ports.extend(submission_port);
        for port in ports {
            let up = wait_until(Duration::from_secs(30), || greets(port, "220"));
            if !up {
                let log = me.maillog();
                me.stop();
                panic!("private postfix never greeted on 127.0.0.1:{port}; maillog:\n{log}");
            }
        }
        eprintln!(
            "private postfix in {} (smtp {smtp_port}{}) up in {:?}",
            me.dir.path().display(),
            submission_port.map_or(String::new(), |p| format!(", submission {p}")),
            began.elapsed()
        );
        Some(me)
    }
}

/// Returns `/etc/postfix/master.cf` rewritten for a private instance: the `smtp inet` service
/// dropped, chroot (5th column) `n` everywhere so unix sockets at absolute paths work, services
/// redefined in `extra` dropped, and `extra` appended.
fn private_master_cf(system: &str, extra: &[String]) -> String {
    let key = |line: &str| -> Option<(String, String)> {
        if line.starts_with(|c: char| c.is_whitespace() || c == '#') {
            return None;
        }
        let mut f = line.split_whitespace();
        Some((f.next()?.to_string(), f.next()?.to_string()))
    };
    let mut replaced: Vec<(String, String)> = extra
        .iter()
        .filter_map(|s| s.lines().next().and_then(key))
        .collect();
    replaced.push(("smtp".into(), "inet".into()));
    let mut out = String::from("# written by vmail-test-support from /etc/postfix/master.cf\n");
    let mut skipping = false;
    for line in system.lines() {
        if line.starts_with(|c: char| c.is_whitespace()) && !line.trim().is_empty() {
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        skipping = false;
        match key(line) {
            Some(k) if replaced.contains(&k) => skipping = true,
            Some(_) => {
                let mut fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() >= 8 {
                    fields[4] = "n";
                }
                out.push_str(&fields.join(" "));
                out.push('\n');
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for e in extra {
        out.push_str(e.trim_end());
        out.push('\n');
    }
    out
}

/// A running Postfix of the test's own (see [`PostfixBuilder`]); stopped when dropped.
///
/// Layout: `DIR/etc` (main.cf, master.cf), `DIR/queue`, `DIR/data`, `DIR/maillog`.
pub struct PrivatePostfix {
    pub dir: SharedDir,
    /// Where its programs run.
    pub root: SystemRoot,
    /// The public smtpd (`127.0.0.1:PORT inet ... smtpd`).
    pub smtp_port: u16,
    /// The second smtpd, when built with [`PostfixBuilder::submission`].
    pub submission_port: Option<u16>,
    running: bool,
}

impl PrivatePostfix {
    /// `DIR/etc`, for `-c`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Runs `postconf -c DIR/etc ARGS...` and returns its stdout; panics with stderr on failure.
    /// `postconf(&["-e", "name = value"])` edits main.cf (then [`PrivatePostfix::reload`]).
    pub fn postconf(&self, args: &[&str]) -> String {
        let out = self
            .root
            .command("postconf")
            .arg("-c")
            .arg(self.config_dir())
            .args(args)
            .output()
            .expect("run postconf");
        assert!(
            out.status.success(),
            "postconf {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // An edit (-e, -X, -#, -M, -F, -P) rewrote a file: let it cool at once.
        for f in ["main.cf", "master.cf"] {
            backdate(&self.config_dir().join(f));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The contents of `DIR/maillog` (everything every daemon and command logged).
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Polls the maillog every 50 ms until it contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.maillog().contains(needle))
    }

    /// `postqueue -c DIR/etc -p`: the queue listing ("Mail queue is empty" when empty).
    pub fn mailq(&self) -> String {
        let out = self
            .root
            .command("postqueue")
            .arg("-c")
            .arg(self.config_dir())
            .arg("-p")
            .output()
            .expect("run postqueue -p");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ids of the queued messages (from [`PrivatePostfix::mailq`]; a trailing `*` (active)
    /// or `!` (on hold) is stripped).
    pub fn queue_ids(&self) -> Vec<String> {
        parse_queue_ids(&self.mailq())
    }

    /// `postqueue -c DIR/etc -f`: retry every deferred message now.
    pub fn flush(&self) {
        let out = self
            .root
            .command("postqueue")
            .arg("-c")
            .arg(self.config_dir())
            .arg("-f")
            .output()
            .expect("run postqueue -f");
        assert!(
            out.status.success(),
            "postqueue -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postfix -c DIR/etc reload` (after editing main.cf or master.cf).
    pub fn reload(&self) {
        let (ok, out) = self.postfix_cmd("reload");
        assert!(ok, "postfix reload failed:\n{out}\n{}", self.maillog());
    }

    /// Sends one message to the public smtpd with [`smtp_send`].
    pub fn send(&self, from: &str, to: &[&str], message: &str) -> SmtpOutcome {
        smtp_send(self.smtp_port, from, to, message)
    }

    /// `postfix -c DIR/etc stop`, then waits (up to 10 s) until the master and every process
    /// working in the temp dir are gone, killing stragglers. Idempotent.
    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        let began = Instant::now();
        let pid = self.read_master_pid();
        let _ = self.postfix_cmd("stop");
        let dir = self.dir.real().to_path_buf();
        let gone = || !pid.is_some_and(process_alive) && processes_under(&dir).is_empty();
        if !wait_until(Duration::from_secs(10), gone) {
            pid.into_iter().for_each(|p| kill(p, "KILL"));
            for p in processes_under(&dir) {
                kill(p, "KILL");
            }
            wait_until(Duration::from_secs(5), gone);
        }
        eprintln!(
            "private postfix in {} stopped in {:?}",
            dir.display(),
            began.elapsed()
        );
    }

    fn read_master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs `postfix -c DIR/etc CMD` on a pseudo-terminal (so its errors are printed) and
    /// returns whether it succeeded and what it printed.
    fn postfix_cmd(&self, cmd: &str) -> (bool, String) {
        let etc = self.config_dir();
        let mut c = if have("script") {
            let mut c = Command::new("script");
            c.arg("-qec")
                .arg(format!(
                    "{}postfix -c '{}' {cmd}",
                    self.root.shell_prefix(),
                    etc.display()
                ))
                .arg("/dev/null");
            c
        } else {
            let mut c = self.root.command("postfix");
            c.arg("-c").arg(&etc).arg(cmd);
            c
        };
        let (ok, text) = run_daemonizing(&mut c, &self.dir.path().join("postfix-cmd.out"));
        (ok, text.replace('\r', ""))
    }
}

impl Drop for PrivatePostfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets a file's modification time ten minutes back, so that Postfix reads it at once instead of
/// waiting up to 2 s for a "hot" file to cool down (`dict_load_file`: a file modified within
/// the last second is re-read every 0.3 s until it is older). Use it on any file a test
/// writes for Postfix to read (main.cf edits, `mysql:` `.cf` files, texthash tables).
pub fn backdate(path: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(past))
        .unwrap_or_else(|e| panic!("backdate {}: {e}", path.display()));
}

/// Runs a command that starts a daemon, with stdout and stderr going to the file `out` rather
/// than pipes: a daemon inheriting a pipe would keep `Command::output` waiting for EOF forever
/// (Dovecot does). Returns whether it succeeded and what it printed.
pub(crate) fn run_daemonizing(cmd: &mut Command, out: &Path) -> (bool, String) {
    let file = std::fs::File::create(out).expect("create command output file");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup output file"))
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = std::fs::read_to_string(out).unwrap_or_default();
    (status.success(), text)
}

fn parse_queue_ids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric()))
        .filter(|l| !l.starts_with("Mail queue is empty"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|id| id.trim_end_matches(['*', '!']).to_string())
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Pids of the live (non-zombie) processes whose working directory is `dir` or below it.
/// Postfix daemons work in `queue_directory`, Dovecot's in `base_dir`: this is how the private
/// instances know all their processes are gone.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Whether `pid` exists and is not a zombie (with no reaping init, a daemon's exited processes
/// may stay zombies for a while).
pub(crate) fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // "pid (comm) S ...": the state follows the last ')'.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

pub(crate) fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether something on `127.0.0.1:port` sends a first line starting with `prefix`.
pub(crate) fn greets(port: u16, prefix: &str) -> bool {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with(prefix);
    let _ = (&s).write_all(b"QUIT\r\n");
    ok
}

pub use crate::postmap::*;
pub use crate::smtp::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_cf_is_rewritten() {
        let system = "smtp      inet  n       -       y       -       -       smtpd\n\
                      #submission inet n - y - - smtpd\n\
                      pickup    unix  n       -       y       60      1       pickup\n\
                      maildrop  unix  -       n       n       -       -       pipe\n  \
                      flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n\
                      postlog   unix-dgram n  -       n       -       1       postlogd\n";
        let extra = vec![
            "127.0.0.1:2525 inet n - n - - smtpd".to_string(),
            "maildrop unix - n n - - pipe\n  flags=R user=nobody argv=/bin/true".to_string(),
        ];
        let out = private_master_cf(system, &extra);
        assert!(!out.contains("smtp      inet"));
        assert!(out.contains("pickup unix n - n 60 1 pickup\n"));
        assert!(out.contains("postlog unix-dgram n - n - 1 postlogd\n"));
        assert!(!out.contains("/usr/bin/maildrop"));
        assert!(out.contains("argv=/bin/true"));
        assert!(out.contains("#submission"));
        assert!(out.contains("127.0.0.1:2525 inet n - n - - smtpd"));
    }

    #[test]
    fn queue_ids_are_parsed() {
        let listing = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
                       4B1C1E0A2F*     312 Tue Nov 25 11:48:40  b@x.test\n\
                       \x20                                        a@example.test\n\
                       \n\
                       9F00AB12C!      300 Tue Nov 25 11:48:41  b@x.test\n\
                       \x20    (deferred)\n\
                       \n\
                       -- 1 Kbytes in 2 Requests.\n";
        assert_eq!(parse_queue_ids(listing), vec!["4B1C1E0A2F", "9F00AB12C"]);
        assert!(parse_queue_ids("Mail queue is empty\n").is_empty());
    }
}
