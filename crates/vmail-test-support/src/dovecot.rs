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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
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
        let (uid, gid) = self.owner.unwrap_or_else(|| {
            (
                root.lookup_user("nobody").map_or(65534, |(u, _)| u),
                root.lookup_group("nogroup").unwrap_or(65534),
            )
        });
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
        let pop3_port = free_port();
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
        for (port, greeting) in [(imap_port, "* OK"), (pop3_port, "+OK")] {
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
/// and wants `dovecot_config_version` first; checked with 2.4.1's `doveconf -n`).
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
    format!(
        "{head}# written by vmail-test-support\n\
         base_dir = {d}/run\n\
         state_dir = {d}/state\n\
         log_path = {d}/dovecot.log\n\
         listen = 127.0.0.1\n\
         protocols = imap pop3\n\
         ssl = no\n\
         {auth}{mail}\
         first_valid_uid = 1\n\
         first_valid_gid = 1\n\
         default_internal_user = dovecot\n\
         default_login_user = dovenull\n\
         auth_failure_delay = 0\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3_port}\n  }}\n  \
         inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n"
    )
}

fn connect(from: Option<Ipv4Addr>, port: u16) -> Result<(BufReader<TcpStream>, TcpStream), String> {
    let s = match from {
        None => TcpStream::connect(("127.0.0.1", port)),
        Some(src) => connect_from(src, port),
    }
    .map_err(|e| format!("connect {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let r = s.try_clone().map_err(|e| e.to_string())?;
    Ok((BufReader::new(r), s))
}

/// A TCP connection to `127.0.0.1:port` from the local address `src` (e.g. 127.0.0.2: all of
/// 127/8 is loopback), so a server sees another client address (Dovecot's and vmail-authd's
/// penalties count per address). std cannot bind before connecting; libc can.
fn connect_from(src: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; it is closed on every
    // error path, or handed to the TcpStream that then owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let local = sockaddr(src, 0);
        let remote = sockaddr(Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&raw const local).cast(), len) != 0
            || libc::connect(fd, (&raw const remote).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

fn read_crlf_line(r: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(line)
}

/// An IMAP string argument: a quoted string, or a non-synchronizing literal (`{N+}`, which
/// Dovecot announces as LITERAL+) for text a quoted string cannot carry (CR, LF, NUL, 8-bit).
pub fn imap_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("{{{}+}}\r\n{s}", s.len())
    }
}

/// The response to one IMAP command.
#[derive(Debug, Clone, Default)]
pub struct ImapResponse {
    /// Untagged lines (`* ...`), literals replaced by their `{N}` marker.
    pub lines: Vec<String>,
    /// The literals' bytes, in order (e.g. the message of `FETCH n BODY[]`).
    pub literals: Vec<Vec<u8>>,
    /// The tagged status without the tag: `OK ...`, `NO ...` or `BAD ...`.
    pub status: String,
}

impl ImapResponse {
    pub fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// A logged-in IMAP connection (see [`imap_login`]).
pub struct ImapSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
    /// The server greeting (`* OK ...`).
    pub greeting: String,
}

impl ImapSession {
    /// Sends one command (without tag; arguments already quoted with [`imap_quote`]) and reads
    /// up to its tagged reply. `Err` only on I/O errors or a closed connection; `NO`/`BAD` are
    /// an `Ok` response whose [`ImapResponse::ok`] is false.
    pub fn command(&mut self, cmd: &str) -> Result<ImapResponse, String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.writer
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut resp = ImapResponse::default();
        loop {
            let line = self.logical_line(&mut resp.literals)?;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                resp.status = status.to_string();
                return Ok(resp);
            }
            resp.lines.push(line);
        }
    }

    /// One response line, with any literals (`{N}` at the end of a physical line) read into
    /// `literals` and the line continued after them.
    fn logical_line(&mut self, literals: &mut Vec<Vec<u8>>) -> Result<String, String> {
        let mut text = String::new();
        loop {
            let part = String::from_utf8_lossy(&read_crlf_line(&mut self.reader)?).into_owned();
            text.push_str(&part);
            let len = part
                .strip_suffix('}')
                .and_then(|p| p.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            let Some(len) = len else {
                return Ok(text);
            };
            let mut lit = vec![0; len];
            self.reader
                .read_exact(&mut lit)
                .map_err(|e| format!("reading a {len}-byte literal: {e}"))?;
            literals.push(lit);
        }
    }

    /// `SELECT mailbox`; returns the number of messages (`* N EXISTS`).
    pub fn select(&mut self, mailbox: &str) -> Result<u32, String> {
        let r = self.command(&format!("SELECT {}", imap_quote(mailbox)))?;
        if !r.ok() {
            return Err(r.status);
        }
        r.lines
            .iter()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .ok_or_else(|| format!("no EXISTS in {:?}", r.lines))
    }

    /// `FETCH seq RFC822.SIZE`: the message size Dovecot reports (for Maildir, the `S=` in the
    /// file name when present).
    pub fn fetch_size(&mut self, seq: u32) -> Result<u64, String> {
        let r = self.command(&format!("FETCH {seq} RFC822.SIZE"))?;
        if !r.ok() {
            return Err(r.status);
        }
        r.lines
            .iter()
            .find_map(|l| {
                let rest = l.split_once("RFC822.SIZE ")?.1;
                rest.trim_end_matches(')')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .ok_or_else(|| format!("no RFC822.SIZE in {:?}", r.lines))
    }

    /// `FETCH seq BODY.PEEK[]`: the whole message as stored (CRLF line ends), without setting
    /// `\Seen`.
    pub fn fetch_body(&mut self, seq: u32) -> Result<Vec<u8>, String> {
        let mut r = self.command(&format!("FETCH {seq} BODY.PEEK[]"))?;
        if !r.ok() {
            return Err(r.status);
        }
        if r.literals.is_empty() {
            return Err(format!("no literal in {:?}", r.lines));
        }
        Ok(r.literals.swap_remove(0))
    }

    /// `LOGOUT`.
    pub fn logout(mut self) -> Result<(), String> {
        let r = self.command("LOGOUT")?;
        if r.ok() {
            Ok(())
        } else {
            Err(r.status)
        }
    }
}

/// Connects to IMAP on `127.0.0.1:port`, reads the greeting and logs in with `LOGIN` (user and
/// password quoted with [`imap_quote`]). `Err` carries the tagged reply of a refused login
/// (Dovecot: `NO [AUTHENTICATIONFAILED] Authentication failed.`) or an I/O error.
pub fn imap_login(port: u16, user: &str, pass: &str) -> Result<ImapSession, String> {
    imap_login_from(None, port, user, pass)
}

/// [`imap_login`] from the local address `from` (see [`connect_from`]).
pub fn imap_login_from(
    from: Option<Ipv4Addr>,
    port: u16,
    user: &str,
    pass: &str,
) -> Result<ImapSession, String> {
    let (mut reader, writer) = connect(from, port)?;
    let greeting = String::from_utf8_lossy(&read_crlf_line(&mut reader)?).into_owned();
    if !greeting.starts_with("* OK") {
        return Err(format!("IMAP greeting: {greeting}"));
    }
    let mut s = ImapSession {
        reader,
        writer,
        tag: 0,
        greeting,
    };
    let r = s.command(&format!("LOGIN {} {}", imap_quote(user), imap_quote(pass)))?;
    if r.ok() {
        Ok(s)
    } else {
        Err(r.status)
    }
}

/// A logged-in POP3 connection (see [`pop3_login`]).
pub struct Pop3Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The server greeting (`+OK ...`).
    pub greeting: String,
}

impl Pop3Session {
    /// Sends one command and reads its one-line reply: `Ok` with the text after `+OK`, or `Err`
    /// with the whole `-ERR ...` line (or an I/O error).
    pub fn command(&mut self, cmd: &str) -> Result<String, String> {
        if cmd.contains(['\r', '\n']) {
            return Err(format!("POP3 command with a line break: {cmd:?}"));
        }
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&read_crlf_line(&mut self.reader)?).into_owned();
        match line.strip_prefix("+OK") {
            Some(rest) => Ok(rest.trim_start().to_string()),
            None => Err(line),
        }
    }

    /// `STAT`: (number of messages, total size in octets).
    pub fn stat(&mut self) -> Result<(u32, u64), String> {
        let r = self.command("STAT")?;
        let mut f = r.split_whitespace();
        match (
            f.next().and_then(|n| n.parse().ok()),
            f.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(format!("bad STAT reply: {r}")),
        }
    }

    /// `RETR n`: the message with CRLF line ends, dot-unstuffed, without the final `.` line.
    pub fn retr(&mut self, n: u32) -> Result<Vec<u8>, String> {
        self.command(&format!("RETR {n}"))?;
        let mut msg = Vec::new();
        loop {
            let line = read_crlf_line(&mut self.reader)?;
            if line == b"." {
                return Ok(msg);
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            msg.extend_from_slice(line);
            msg.extend_from_slice(b"\r\n");
        }
    }

    /// `QUIT`.
    pub fn quit(mut self) -> Result<(), String> {
        self.command("QUIT").map(|_| ())
    }
}

/// Connects to POP3 on `127.0.0.1:port`, reads the greeting and logs in with `USER`/`PASS`.
/// `Err` carries the server's `-ERR` line (Dovecot: `-ERR [AUTH] Authentication failed.`).
pub fn pop3_login(port: u16, user: &str, pass: &str) -> Result<Pop3Session, String> {
    let (mut reader, writer) = connect(None, port)?;
    let greeting = String::from_utf8_lossy(&read_crlf_line(&mut reader)?).into_owned();
    if !greeting.starts_with("+OK") {
        return Err(format!("POP3 greeting: {greeting}"));
    }
    let mut s = Pop3Session {
        reader,
        writer,
        greeting,
    };
    s.command(&format!("USER {user}"))?;
    s.command(&format!("PASS {pass}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_strings_are_quoted() {
        assert_eq!(imap_quote("alice@example.test"), "\"alice@example.test\"");
        assert_eq!(imap_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(imap_quote("p\u{e4}ss"), "{5+}\r\np\u{e4}ss");
        assert_eq!(imap_quote("a\nb"), "{3+}\r\na\nb");
    }
}
