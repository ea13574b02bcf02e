//! What the end-to-end tests share: the shipped `contrib/` files turned into the test's own
//! configuration (only socket paths, ports, binary paths, system users and the database
//! replaced; a replaced line that is missing from contrib fails the test loudly), the vmail
//! daemons as real processes, swaks, Maildir helpers, and one setup shared by the tests of a
//! file.

#![allow(dead_code)] // each test file uses a part

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmail_test_support::postfix::{lookup_group, lookup_user};
use vmail_test_support::{in_ci, wait_until};

pub const CONTRIB_MAIN_CF: &str = include_str!("../../../contrib/postfix/main.cf.vmail");
pub const CONTRIB_MASTER_CF: &str = include_str!("../../../contrib/postfix/master.cf.vmail");
pub const CONTRIB_VMAIL_TOML: &str = include_str!("../../../contrib/vmail/vmail.toml");
pub const CONTRIB_DICT: &str = include_str!("../../../contrib/dovecot/dovecot-dict-auth.conf.ext");
pub const CONTRIB_AUTH: &str = include_str!("../../../contrib/dovecot/conf.d/auth-vmail.conf.ext");

/// The real programs, built from their own `main.rs` as binaries of this package (see
/// `tests/Cargo.toml`), so they are always fresh.
pub const LDA: &str = env!("CARGO_BIN_EXE_e2e-vmail-lda");
pub const LOOKUPD: &str = env!("CARGO_BIN_EXE_e2e-vmail-lookupd");
pub const AUTHD: &str = env!("CARGO_BIN_EXE_e2e-vmail-authd");

/// The system user and group standing in for contrib's `vmail:vmail` (which the test machine
/// does not have): the daemons drop to it, pipe(8) runs the LDA as it, Dovecot reads the
/// Maildirs as it.
pub struct MailUser {
    pub name: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
}

pub fn mail_user() -> MailUser {
    let (uid, _) = lookup_user("nobody").expect("the system user `nobody`");
    let gid = lookup_group("nogroup").expect("the system group `nogroup`");
    MailUser {
        name: "nobody".into(),
        group: "nogroup".into(),
        uid,
        gid,
    }
}

/// Replaces `from` by `to` in `text`, insisting that `from` occurs exactly `count` times: a
/// contrib file that no longer contains what the test substitutes must fail the test, not
/// silently test something else.
pub fn replace_exact(file: &str, text: &str, from: &str, to: &str, count: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, count,
        "{file}: expected `{from}` {count} time(s), found it {found} time(s); the end-to-end \
         tests substitute it (update tests/tests/common/mod.rs together with contrib)"
    );
    text.replace(from, to)
}

/// Every parameter setting of `contrib/postfix/main.cf.vmail` as (name, value), continuation
/// lines joined, in file order, with `private/vmail-lookupd` and `private/vmail-auth` (paths
/// relative to `/var/spool/postfix`) made absolute under `spool`. Panics unless the settings
/// the tests rely on are there exactly as documented.
///
/// (The sockets cannot live in the private instance's own `queue_directory/private/`: that
/// exists only once Postfix has started, and with `smtpd_sasl_auth_enable = yes` smtpd
/// exits at its first connection — "fatal: no SASL authentication mechanisms" — when the
/// auth socket is not there yet.)
pub fn contrib_main_cf(spool: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in CONTRIB_MAIN_CF.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let last = out
                .last_mut()
                .expect("contrib/postfix/main.cf.vmail starts with a continuation line");
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or_else(|| {
            panic!("contrib/postfix/main.cf.vmail: not `name = value`: {line:?}")
        });
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
    let want = [
        (
            "virtual_mailbox_domains",
            "socketmap:unix:private/vmail-lookupd:domains",
        ),
        (
            "virtual_mailbox_maps",
            "socketmap:unix:private/vmail-lookupd:mailboxes",
        ),
        (
            "virtual_alias_maps",
            "socketmap:unix:private/vmail-lookupd:aliases",
        ),
        (
            "transport_maps",
            "socketmap:unix:private/vmail-lookupd:transport",
        ),
        (
            "smtpd_sender_login_maps",
            "socketmap:unix:private/vmail-lookupd:senders",
        ),
        (
            "smtpd_sender_restrictions",
            "reject_authenticated_sender_login_mismatch",
        ),
        ("recipient_delimiter", "+"),
        ("virtual_transport", "vmail"),
        ("vmail_destination_recipient_limit", "1"),
        ("smtpd_sasl_type", "dovecot"),
        ("smtpd_sasl_path", "private/vmail-auth"),
    ];
    for (name, value) in want {
        assert!(
            out.iter().any(|(n, v)| n == name && v == value),
            "contrib/postfix/main.cf.vmail lacks `{name} = {value}`: {out:?}"
        );
    }
    let spool = spool.display().to_string();
    for (name, value) in &mut out {
        let lookupd = "socketmap:unix:private/vmail-lookupd:";
        if value.contains(lookupd) {
            *value = value.replace(
                lookupd,
                &format!("socketmap:unix:{spool}/private/vmail-lookupd:"),
            );
        }
        if name == "smtpd_sasl_path" {
            *value = format!("{spool}/{value}");
        }
    }
    out
}

/// The `-o name=value` options of the `submission` service of
/// `contrib/postfix/master.cf.vmail` (SMTP AUTH is switched on there, not in main.cf),
/// without `syslog_name` (the harness names its submission smtpd itself). Panics unless
/// the options the tests rely on are there.
pub fn contrib_submission_options() -> Vec<String> {
    let opts: Vec<String> = CONTRIB_MASTER_CF
        .lines()
        .skip_while(|l| !l.starts_with("submission "))
        .skip(1)
        .take_while(|l| l.starts_with([' ', '\t']))
        .filter_map(|l| l.trim().strip_prefix("-o "))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.starts_with("syslog_name="))
        .collect();
    for want in [
        "smtpd_sasl_auth_enable=yes",
        "smtpd_tls_security_level=encrypt",
        "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    ] {
        assert!(
            opts.iter().any(|o| o == want),
            "contrib/postfix/master.cf.vmail: the submission service lacks `-o {want}`: {opts:?}"
        );
    }
    opts
}

/// A stand-in for `/var/spool/postfix` holding only `private/` as Debian makes it (owner
/// postfix, mode 0700), where the daemons create their sockets (group postfix, mode 0660,
/// as contrib's vmail.toml says). `parent` must be traversable by everyone.
pub fn spool_dir(parent: &Path) -> PathBuf {
    let spool = parent.join("spool");
    let private = spool.join("private");
    std::fs::create_dir_all(&private).unwrap();
    vmail_test_support::set_mode(&spool, 0o755);
    let (postfix_uid, _) = lookup_user("postfix").expect("the system user `postfix`");
    std::os::unix::fs::chown(&private, Some(postfix_uid), Some(0)).unwrap();
    vmail_test_support::set_mode(&private, 0o700);
    spool
}

/// The `vmail` service of `contrib/postfix/master.cf.vmail` (its line and continuation
/// lines), running `lda --config CFG` as `user:group` instead of `/usr/bin/vmail-lda` as
/// `vmail:vmail`. Everything else (columns, flags, argv options) as shipped.
pub fn contrib_vmail_service(lda: &str, cfg: &Path, user: &MailUser) -> String {
    let lines: Vec<&str> = CONTRIB_MASTER_CF
        .lines()
        .skip_while(|l| !l.starts_with("vmail "))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l)
        .collect();
    let service = lines.join("\n");
    let file = "contrib/postfix/master.cf.vmail";
    let first: Vec<&str> = service.split_whitespace().take(8).collect();
    assert_eq!(
        first,
        ["vmail", "unix", "-", "n", "n", "-", "-", "pipe"],
        "{file}: the vmail service line changed: {service:?}"
    );
    for want in [
        "flags=DRhu ",
        " -f ${sender} -a ${original_recipient} -d ${recipient}",
    ] {
        assert!(service.contains(want), "{file}: no `{want}` in {service:?}");
    }
    let service = replace_exact(
        file,
        &service,
        "user=vmail:vmail",
        &format!("user={}:{}", user.name, user.group),
        1,
    );
    replace_exact(
        file,
        &service,
        "argv=/usr/bin/vmail-lda ",
        &format!("argv={lda} --config {} ", cfg.display()),
        1,
    )
}

/// Where the test's vmail.toml points instead of the paths and database in contrib's.
pub struct VmailPaths<'a> {
    /// Replaces `/var/spool/postfix` (see [`spool_dir`]).
    pub spool: &'a Path,
    /// Replaces `/run/vmail/auth-dict`.
    pub dict_socket: &'a Path,
    /// Replaces `/run/mysqld/mysqld.sock`.
    pub db_socket: &'a Path,
    /// Replace `mail_admin`, `/etc/vmail/db-password` and `mail`.
    pub db_user: &'a str,
    pub db_password_file: &'a Path,
    pub db_name: &'a str,
    /// Replaces `/home/vmail` in the built-in `[mailbox]` defaults (contrib keeps them).
    pub mail_base: &'a Path,
    pub user: &'a MailUser,
}

/// `contrib/vmail/vmail.toml` with paths, database and system user replaced, and the
/// built-in `[mailbox]` defaults written out with `/home/vmail` replaced.
pub fn contrib_vmail_toml(p: &VmailPaths) -> String {
    let file = "contrib/vmail/vmail.toml";
    let mut t = CONTRIB_VMAIL_TOML.to_string();
    let subst = [
        (
            "hosts = [\"/run/mysqld/mysqld.sock\"]".to_string(),
            format!("hosts = [\"{}\"]", p.db_socket.display()),
            1,
        ),
        (
            "user = \"mail_admin\"".into(),
            format!("user = \"{}\"", p.db_user),
            1,
        ),
        (
            "password_file = \"/etc/vmail/db-password\"".into(),
            format!("password_file = \"{}\"", p.db_password_file.display()),
            1,
        ),
        (
            "dbname = \"mail\"".into(),
            format!("dbname = \"{}\"", p.db_name),
            1,
        ),
        (
            "socketmap = [\"unix:/var/spool/postfix/private/vmail-lookupd\"]".into(),
            format!(
                "socketmap = [\"unix:{}/private/vmail-lookupd\"]",
                p.spool.display()
            ),
            1,
        ),
        (
            "auth = [\"unix:/var/spool/postfix/private/vmail-auth\"]".into(),
            format!("auth = [\"unix:{}/private/vmail-auth\"]", p.spool.display()),
            1,
        ),
        (
            "dict = [\"unix:/run/vmail/auth-dict\"]".into(),
            format!("dict = [\"unix:{}\"]", p.dict_socket.display()),
            1,
        ),
        (
            "lua = [\"unix:/run/vmail/auth-lua\"]".into(),
            format!(
                "lua = [\"unix:{}\"]",
                p.dict_socket.with_file_name("auth-lua").display()
            ),
            1,
        ),
        (
            "user = \"vmail\"".into(),
            format!("user = \"{}\"", p.user.name),
            2,
        ),
        // lookupd's socket for the LDA ([lookupd] lda and [lda] lookupd), beside the dict's.
        (
            "\"unix:/run/vmail/lookupd\"".into(),
            format!(
                "\"unix:{}\"",
                p.dict_socket.with_file_name("lookupd").display()
            ),
            2,
        ),
        (
            "lda_socket_group = \"vmail\"".into(),
            format!("lda_socket_group = \"{}\"", p.user.group),
            1,
        ),
    ];
    for (from, to, n) in &subst {
        t = replace_exact(file, &t, from, to, *n);
    }
    for want in [
        "socket_group = \"postfix\"",
        "auth_socket_group = \"postfix\"",
        "dict_socket_group = \"dovecot\"",
    ] {
        assert!(t.contains(want), "{file} lacks `{want}`");
    }
    assert!(
        !t.contains("[mailbox]"),
        "{file} now has a [mailbox] section: substitute its paths instead of appending one"
    );
    let base = p.mail_base.display();
    t.push_str(&format!(
        "\n# Added by the end-to-end tests: the built-in defaults with /home/vmail replaced,\n\
         # owned by the user standing in for vmail.\n\
         [mailbox]\nhome = \"{base}/%d/%n\"\nmail = \"maildir:{base}/%d/%n/Maildir\"\n\
         uid = {}\ngid = {}\n",
        p.user.uid, p.user.gid
    ));
    t
}

/// `contrib/dovecot/dovecot-dict-auth.conf.ext` with its `uri` at `dict_socket`, and
/// `contrib/dovecot/conf.d/auth-vmail.conf.ext` pointing at that file in Dovecot's temp dir
/// (`@DIR@`, see `DovecotBuilder`).
pub fn contrib_dovecot(dict_socket: &Path) -> (String, String) {
    let dict = replace_exact(
        "contrib/dovecot/dovecot-dict-auth.conf.ext",
        CONTRIB_DICT,
        "uri = proxy:idle_msecs=30000:/run/vmail/auth-dict:auth",
        &format!(
            "uri = proxy:idle_msecs=30000:{}:auth",
            dict_socket.display()
        ),
        1,
    );
    let auth = replace_exact(
        "contrib/dovecot/conf.d/auth-vmail.conf.ext",
        CONTRIB_AUTH,
        "args = /etc/dovecot/dovecot-dict-auth.conf.ext",
        "args = @DIR@/dovecot-dict-auth.conf.ext",
        2,
    );
    (dict, auth)
}

/// A self-signed certificate and key for the submission smtpd, made the way an administrator
/// would: `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `doveadm pw -s SCHEME -p PASSWORD`, with its `{SCHEME}` prefix, as an administrator makes
/// hashes.
pub fn doveadm_pw(scheme: &str, password: &str) -> String {
    let out = Command::new("doveadm")
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("run doveadm pw");
    assert!(
        out.status.success(),
        "doveadm pw -s {scheme}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Writes the database password the way contrib says: a file of its own, mode 0640, group
/// of the mail user (contrib: `chgrp vmail`), so the LDA run by pipe(8) can read it.
pub fn write_password_file(path: &Path, password: &str, user: &MailUser) {
    std::fs::write(path, format!("{password}\n")).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(user.gid)).unwrap();
    vmail_test_support::set_mode(path, 0o640);
}

/// Fills the directory through the vmail library, with the configuration the daemons use.
pub fn with_directory<T>(
    config: &Path,
    f: impl AsyncFnOnce(&vmail_directory::Directory) -> T,
) -> T {
    let loaded = vmail_config::load(Some(config)).expect("load the test's vmail.toml");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = vmail_directory::Directory::open(&loaded.config)
            .await
            .expect("open the directory");
        f(&d).await
    })
}

/// One of the vmail daemons, running as a real process from its binary with
/// `--config FILE`, logging to a file; SIGTERM (then SIGKILL) when dropped.
pub struct DaemonProcess {
    pub name: String,
    pub log_path: PathBuf,
    child: Child,
}

impl DaemonProcess {
    /// Starts `bin --config config` (pid file under `state_dir` through `VMAIL_STATE_DIR`,
    /// working directory `state_dir`) and waits until every socket in `sockets` accepts a
    /// connection. Panics with the daemon's log if it exits or never listens.
    pub fn start(
        name: &str,
        bin: &str,
        config: &Path,
        state_dir: &Path,
        sockets: &[&Path],
    ) -> Self {
        let log_path = state_dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create daemon log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("VMAIL_STATE_DIR", state_dir)
            .env("VMAIL_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .current_dir(state_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let mut me = DaemonProcess {
            name: name.to_string(),
            log_path,
            child,
        };
        let began = Instant::now();
        let mut exited = None;
        let up = wait_until(Duration::from_secs(15), || {
            if let Ok(Some(status)) = me.child.try_wait() {
                exited = Some(status);
                return true;
            }
            sockets.iter().all(|s| UnixStream::connect(s).is_ok())
        });
        assert!(
            up && exited.is_none(),
            "{name} ({bin}) did not come up (exit: {exited:?}); log:\n{}",
            me.log()
        );
        eprintln!("{name} (pid {}) up in {:?}", me.child.id(), began.elapsed());
        me
    }

    /// The daemon's log so far (stderr and stdout), without terminal colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let gone = wait_until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The files of a Maildir's INBOX (`new/` and `cur/`: Dovecot moves what it has seen).
pub fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flat_map(|r| r.filter_map(|e| e.ok().map(|e| e.path())))
        .collect();
    v.sort();
    v
}

/// The messages in a Maildir's INBOX containing `token`, as (path, text).
pub fn messages_with(maildir: &Path, token: &str) -> Vec<(PathBuf, String)> {
    maildir_files(maildir)
        .into_iter()
        .filter_map(|p| {
            let text = String::from_utf8_lossy(&std::fs::read(&p).ok()?).into_owned();
            text.contains(token).then_some((p, text))
        })
        .collect()
}

/// Waits (up to `timeout`) until a message containing `token` is in the Maildir, then a
/// moment longer so that a duplicate would show too; returns all of them.
pub fn wait_for_message(maildir: &Path, token: &str, timeout: Duration) -> Vec<(PathBuf, String)> {
    if wait_until(timeout, || !messages_with(maildir, token).is_empty()) {
        std::thread::sleep(Duration::from_millis(300));
    }
    messages_with(maildir, token)
}

/// The header section of a stored message (up to the first empty line).
pub fn header(text: &str) -> &str {
    text.split_once("\n\n").map_or(text, |(h, _)| h)
}

/// A message with `token` in the subject and the body.
pub fn message(from: &str, to: &str, token: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {token}\nMessage-ID: <{token}@client.test.invalid>\n\n\
         Body of {token}.\n.a line starting with a dot\n"
    )
}

/// One run of swaks and its transcript.
pub struct Swaks {
    pub status: Option<i32>,
    pub transcript: String,
}

impl Swaks {
    pub fn run(args: &[&str]) -> Swaks {
        let out: Output = vmail_test_support::postfix::swaks(args);
        Swaks {
            status: out.status.code(),
            transcript: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// The first server reply after the first line swaks sent that starts with `sent`
    /// (e.g. `AUTH`, `MAIL FROM`, `RCPT TO`, `.` for the end of the message), skipping 334
    /// challenges: its code and text. swaks marks what it sends with `->` (`~>` under TLS) and
    /// what it receives with `<-`/`<~` (`<**`/`<~*` for an error reply).
    pub fn reply_after(&self, sent: &str) -> Option<(u16, String)> {
        let mut after = false;
        for line in self.transcript.lines() {
            let l = line.trim_start();
            let (marker, rest) = l.split_once(' ').unwrap_or((l, ""));
            let rest = rest.trim_start();
            if !after {
                if marker.ends_with('>') && rest.starts_with(sent) {
                    after = true;
                }
                continue;
            }
            if marker.starts_with('<') {
                let code: u16 = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code != 334 {
                    return Some((code, rest.get(4..).unwrap_or("").to_string()));
                }
            }
        }
        None
    }

    pub fn code_after(&self, sent: &str) -> u16 {
        self.reply_after(sent).map_or(0, |(c, _)| c)
    }
}

/// A client of the submission port: swaks over STARTTLS, authenticating with `mech` as
/// `user`/`password`.
pub struct Submitter<'a> {
    pub port: u16,
    pub mech: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

impl Submitter<'_> {
    /// STARTTLS and AUTH, then QUIT.
    pub fn auth_only(&self) -> Swaks {
        self.run(self.user, "postmaster@example.org", "unused", Some("AUTH"))
    }

    /// STARTTLS, AUTH, and a message from `from` to `to` with `token` in its subject and body.
    pub fn send(&self, from: &str, to: &str, token: &str) -> Swaks {
        self.run(from, to, token, None)
    }

    fn run(&self, from: &str, to: &str, token: &str, quit_after: Option<&str>) -> Swaks {
        let port = self.port.to_string();
        let subject = format!("Subject: {token}");
        let body = format!("Body of {token}.");
        let mut args = vec![
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--ehlo",
            "client.test.invalid",
            "--auth",
            self.mech,
            "--auth-user",
            self.user,
            "--auth-password",
            self.password,
            "--from",
            from,
            "--to",
            to,
            "--header",
            &subject,
            "--body",
            &body,
            "--timeout",
            "30",
        ];
        if let Some(q) = quit_after {
            args.extend(["--quit-after", q]);
        }
        Swaks::run(&args)
    }
}

/// Whether swaks can do STARTTLS (it needs Perl's Net::SSLeay, a Recommends of the Debian
/// package, which `--no-install-recommends` leaves out).
pub fn swaks_has_tls() -> bool {
    Command::new("perl")
        .args(["-MNet::SSLeay", "-e", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One setup shared by the tests of a file: built by the first test that asks, handed to
/// every test as an `Arc`, and torn down (Postfix and Dovecot stopped by pid, daemons
/// terminated, databases dropped) when the test binary exits, through `atexit(3)`: Rust never
/// drops statics, and libtest gives no hook after the last test.
pub struct Shared<T> {
    state: Mutex<State<T>>,
}

enum State<T> {
    Uninit,
    Ready(Arc<T>),
    /// The setup skipped loudly (dependency missing, outside CI).
    Skipped,
    /// The setup panicked; every test fails with this message.
    Failed(String),
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Self {
        Shared {
            state: Mutex::new(State::Uninit),
        }
    }

    /// The shared setup, built with `init` on first use; `None` when it was skipped.
    /// `teardown` must call [`Shared::teardown`] on this same static; it is registered with
    /// `atexit` once the setup exists.
    pub fn get(
        &'static self,
        init: impl FnOnce() -> Option<T>,
        teardown: extern "C" fn(),
    ) -> Option<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Uninit = *state {
            // SAFETY: registers a plain function with no captured state.
            let registered = unsafe { libc::atexit(teardown) } == 0;
            assert!(registered, "atexit failed");
            *state = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(init)) {
                Ok(Some(t)) => State::Ready(Arc::new(t)),
                Ok(None) => State::Skipped,
                Err(e) => State::Failed(
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into()),
                ),
            };
        }
        match &*state {
            State::Ready(t) => Some(t.clone()),
            State::Skipped => {
                assert!(!in_ci(), "the shared setup was skipped under CI");
                None
            }
            State::Failed(msg) => panic!("the shared setup failed: {msg}"),
            State::Uninit => unreachable!(),
        }
    }

    /// Drops the setup (if no test still holds it). Never panics: it runs inside `atexit`.
    pub fn teardown(&self) {
        let taken = match self.state.lock() {
            Ok(mut s) => std::mem::replace(&mut *s, State::Uninit),
            Err(e) => std::mem::replace(&mut *e.into_inner(), State::Uninit),
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(taken)));
    }
}
