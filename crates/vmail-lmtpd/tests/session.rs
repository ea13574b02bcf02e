//! vmail-lmtpd in-process with an in-process client over its UNIX socket: a pipelined
//! session with mixed verdicts, a database outage at RCPT, a client stalled mid-DATA, and
//! a message over the size limit (issue 19 item 2).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmail_config::{Loaded, Source};
use vmail_test_support::daemon::{InProcess, LmtpdHandle};

/// An SQLite directory with alice, a disabled user and a user with a 10-byte quota, and
/// lmtpd serving it on a socket in the same temp dir.
struct Server {
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// The configuration it runs with.
    text: String,
    running: InProcess<LmtpdHandle>,
}

impl Server {
    /// `lmtpd_keys` go under `[lmtpd]`; `database` replaces the SQLite `[database]`.
    fn start(lmtpd_keys: &str, database: Option<&str>) -> Server {
        Server::start_with(lmtpd_keys, database, "")
    }

    /// `sections` (whole sections, e.g. `[lda]` lines) end the configuration.
    fn start_with(lmtpd_keys: &str, database: Option<&str>, sections: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        let sqlite = format!("[database]\nsqlite_path = \"{base}/v.db\"\n");
        let mailbox =
            format!("[mailbox]\nhome = \"{base}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n");
        let setup = vmail_config::parse(&format!("{sqlite}{mailbox}"), Path::new("x")).unwrap();
        vmail_test_support::example_org(
            &setup,
            &[
                ("alice@example.org", None, true),
                ("off@example.org", None, false),
                ("full@example.org", Some(10), true),
                ("bob@example.org", None, true),
            ],
        );
        let socket = dir.path().join("lmtp");
        let text = format!(
            "{}{mailbox}[lmtpd]\nlisten = [\"unix:{}\"]\nsocket_group = \"\"\nuser = \"\"\nspool = \"{base}/spool\"\npid_file = \"{base}/lmtpd.pid\"\n{lmtpd_keys}{sections}",
            database.unwrap_or(&sqlite),
            socket.display(),
        );
        let config = vmail_config::parse(&text, &dir.path().join("v.toml")).unwrap();
        let loaded = Loaded {
            config,
            source: Source::Builtin,
        };
        let running = vmail_test_support::daemon::lmtpd(loaded).expect("start lmtpd");
        Server {
            dir,
            socket,
            text,
            running,
        }
    }

    fn connect(&self) -> Client {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            s,
            pending: Vec::new(),
        };
        assert!(c.reply().starts_with("220 "));
        c
    }

    fn inbox(&self, user: &str) -> Vec<PathBuf> {
        let new = self
            .dir
            .path()
            .join(format!("vmail/example.org/{user}/Maildir/new"));
        std::fs::read_dir(new)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    fn spool_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("spool")).map_or(0, |r| r.count())
    }

    /// Starts a message to alice on `c` and sends its first half; returns when that was
    /// sent, once the spool file is there (the server needs `spool_memory = 0`).
    fn half_a_message(&self, c: &mut Client) -> Instant {
        c.send(b"LHLO t\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
        starts(&c.replies(4), &["250", "250", "250", "354"]);
        c.send(b"Subject: half\r\n\r\nthe first half\r\n");
        let sent = Instant::now();
        assert!(
            vmail_test_support::wait_until(Duration::from_secs(2), || self.spool_files() == 1),
            "the message is being spooled"
        );
        sent
    }
}

struct Client {
    s: UnixStream,
    pending: Vec<u8>,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// One whole reply (its lines joined by '\n'), or "" at EOF.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            while let Some(lf) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=lf).collect();
                let line = String::from_utf8(line).unwrap();
                let line = line.trim_end().to_string();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line);
                if last {
                    return lines.join("\n");
                }
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return lines.join("\n"),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e} (so far: {lines:?})"),
            }
        }
    }

    fn replies(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.reply()).collect()
    }
}

const MSG: &[u8] = b"From: bob@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n..dot\r\n.\r\n";

fn starts(replies: &[String], want: &[&str]) {
    assert_eq!(replies.len(), want.len(), "{replies:?}");
    for (r, w) in replies.iter().zip(want) {
        assert!(
            r.starts_with(w),
            "{r:?} should start with {w:?} (all: {replies:?})"
        );
    }
}

/// One pipelined transaction: delivered, unknown, disabled and over quota in one message,
/// one reply per accepted recipient in RCPT order, the delivered copy with vmail-lda's
/// headers and LF line ends, and no spool file left.
#[test]
fn pipelined_session_with_mixed_verdicts() {
    let srv = Server::start("", None);
    let mut c = srv.connect();
    c.send(b"LHLO postfix.test\r\n");
    let lhlo = c.reply();
    assert!(
        lhlo.contains("PIPELINING") && lhlo.contains("ENHANCEDSTATUSCODES"),
        "{lhlo}"
    );
    c.send(
        b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<off@example.org>\r\nRCPT TO:<full@example.org>\r\nDATA\r\n",
    );
    starts(
        &c.replies(6),
        &[
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1 <nobody@example.org>",
            "550 5.2.1",
            "250 2.1.5",
            "354",
        ],
    );
    c.send(MSG);
    starts(
        &c.replies(2),
        &["250 2.0.0", "552 5.2.2 <full@example.org>"],
    );
    let inbox = srv.inbox("alice");
    assert_eq!(inbox.len(), 1);
    let text = std::fs::read_to_string(&inbox[0]).unwrap();
    assert_eq!(
        text,
        "Return-Path: <bob@remote.test>\nDelivered-To: alice@example.org\nFrom: bob@remote.test\nSubject: hi\n\nHello.\n.dot\n"
    );
    assert!(srv.inbox("full").is_empty());
    assert_eq!(srv.spool_files(), 0);
    // The connection goes on: a second message, then QUIT.
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    starts(&c.replies(3), &["250", "250", "354"]);
    c.send(MSG);
    starts(&c.replies(1), &["250 2.0.0"]);
    assert_eq!(srv.inbox("alice").len(), 2);
    c.send(b"QUIT\r\n");
    starts(&c.replies(1), &["221"]);
    assert_eq!(srv.spool_files(), 0);
}

/// The database unreachable: RCPT is deferred (451 4.3.0), never refused with a 5xx.
#[test]
fn a_database_outage_defers_at_rcpt() {
    let port = vmail_test_support::free_port();
    let db = format!(
        "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{port}\"]\nconnect_timeout_ms = 300\nquery_timeout_ms = 1000\n"
    );
    let srv = Server::start("", Some(&db));
    let mut c = srv.connect();
    c.send(b"LHLO postfix.test\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n");
    starts(
        &c.replies(4),
        &["250", "250 2.1.0", "451 4.3.0", "451 4.3.0"],
    );
}

/// A client that stops mid-DATA is closed at request_read_timeout_ms; nothing reaches
/// new/ and the spool file goes.
#[test]
fn a_client_stalled_mid_data_is_closed_and_nothing_is_delivered() {
    // spool_memory = 0: the half message is in a file, which must go.
    let srv = Server::start("request_read_timeout_ms = 400\nspool_memory = 0\n", None);
    let mut c = srv.connect();
    let t = srv.half_a_message(&mut c);
    // The server closes: EOF, no reply.
    assert_eq!(c.reply(), "");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(srv.inbox("alice").is_empty());
    assert!(
        vmail_test_support::wait_until(Duration::from_secs(2), || srv.spool_files() == 0),
        "spool file left"
    );
    let tmp = srv.dir.path().join("vmail/example.org/alice/Maildir/tmp");
    assert_eq!(std::fs::read_dir(tmp).map_or(0, |r| r.count()), 0);
}

/// Over max_message_size: 552 5.3.4 for each recipient after the terminator, nothing
/// delivered, and the session goes on.
#[test]
fn a_message_over_the_limit_is_refused_and_the_session_continues() {
    let srv = Server::start("max_message_size = 1000\n", None);
    let mut c = srv.connect();
    c.send(b"LHLO t\r\n");
    let lhlo = c.reply();
    assert!(lhlo.contains("SIZE 1000"), "{lhlo}");
    c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    starts(&c.replies(3), &["250", "250", "354"]);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..40 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789012345678\r\n");
    }
    big.extend_from_slice(b".\r\n");
    c.send(&big);
    starts(&c.replies(1), &["552 5.3.4"]);
    assert!(srv.inbox("alice").is_empty());
    assert_eq!(srv.spool_files(), 0);
    c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    starts(&c.replies(3), &["250", "250", "354"]);
    c.send(MSG);
    starts(&c.replies(1), &["250 2.0.0"]);
    assert_eq!(srv.inbox("alice").len(), 1);
}

/// Issue 19: a recipient with an active Sieve script gets the message through Dovecot's LDA
/// (a stand-in recording its argv and stdin, exiting as told) with the envelope and vmail's
/// trace fields; its exit status is that recipient's reply; the others are written by vmail.
#[test]
fn sieve_users_are_handed_to_dovecot_lda_per_recipient() {
    let fake_dir = tempfile::tempdir().unwrap();
    let fake = fake_dir.path().join("dovecot-lda");
    std::fs::write(
        &fake,
        "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\n\
         if [ -f \"$d/reason\" ]; then cat \"$d/reason\" >&2; fi\n\
         exit \"$(cat \"$d/status\" 2>/dev/null || echo 0)\"\n",
    )
    .unwrap();
    vmail_test_support::set_mode(&fake, 0o755);
    let srv = Server::start_with(
        "",
        None,
        &format!("[lda]\ndovecot_lda = \"{}\"\n", fake.display()),
    );
    let home = srv.dir.path().join("vmail/example.org/alice");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".dovecot.sieve"), "keep;\n").unwrap();
    let mut c = srv.connect();
    c.send(b"LHLO t\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    starts(&c.replies(5), &["250", "250", "250", "250", "354"]);
    c.send(MSG);
    starts(&c.replies(2), &["250 2.0.0", "250 2.0.0"]);
    let argv = std::fs::read_to_string(fake_dir.path().join("argv")).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    // -e: a refusal comes back with its reason (below); -a as vmail-lda passes it.
    assert!(argv.contains(&"-e"), "{argv:?}");
    for pair in [
        ["-d", "alice@example.org"],
        ["-f", "bob@remote.test"],
        ["-a", "alice@example.org"],
    ] {
        assert!(
            argv.windows(2).any(|w| w == pair),
            "{pair:?} not in {argv:?}"
        );
    }
    let stdin = std::fs::read_to_string(fake_dir.path().join("stdin")).unwrap();
    assert!(
        stdin.starts_with("Return-Path: <bob@remote.test>\nDelivered-To: alice@example.org\nFrom: bob@remote.test\n"),
        "{stdin}"
    );
    assert!(stdin.ends_with("\nHello.\n.dot\n"), "{stdin}");
    assert!(
        srv.inbox("alice").is_empty(),
        "vmail wrote a Sieve user's copy itself"
    );
    assert_eq!(srv.inbox("bob").len(), 1);
    // Dovecot's LDA failing defers that recipient only, its refusal bounces it, and a user
    // it does not know (its userdb disagrees with ours) is vmail-lda's 4.3.5, never a bounce.
    for (status, want) in [
        ("75", "451 4.3.0"),
        ("77", "554 5.3.0"),
        ("67", "451 4.3.5"),
    ] {
        std::fs::write(fake_dir.path().join("status"), status).unwrap();
        c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
        starts(&c.replies(4), &["250", "250", "250", "354"]);
        c.send(MSG);
        starts(&c.replies(2), &[want, "250 2.0.0"]);
    }
    assert_eq!(srv.inbox("bob").len(), 4);
    // The review of issue 19: what Dovecot's LDA refuses with -e (exit 77, the reason as
    // its last line on stderr) is that recipient's reply with that reason, sanitised (one
    // line, no controls), instead of a rejection it mails itself; the lines before the last
    // are its logging (the second review: they went into the reply and a bounce). A quota
    // refusal is 552 5.2.2. (A Sieve `reject` on Dovecot 2.3.19 is mailed by Pigeonhole
    // itself even with -e: the second review ran the real one.)
    std::fs::write(fake_dir.path().join("status"), "77").unwrap();
    // (The third review: only the first 4 KiB of stderr were kept, so a chatty log hid the
    // reason; the last 4 KiB are kept now.)
    let chatty = format!(
        "{}I do not want\n",
        "lda(alice): Debug: a log line\n".repeat(500)
    );
    for (reason, want) in [
        (
            "lda(alice@example.org): Info: home=/secret/path\nI do not want\x1b[31m\n",
            "550 5.7.1 I do not want?[31m",
        ),
        (chatty.as_str(), "550 5.7.1 I do not want"),
        (
            "Quota exceeded (mailbox for user is full)\n",
            "552 5.2.2 Quota exceeded (mailbox for user is full)",
        ),
    ] {
        std::fs::write(fake_dir.path().join("reason"), reason).unwrap();
        c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
        starts(&c.replies(4), &["250", "250", "250", "354"]);
        c.send(MSG);
        let replies = c.replies(2);
        assert_eq!(replies[0], want, "{replies:?}");
        starts(&replies[1..], &["250 2.0.0"]);
    }
    assert_eq!(srv.inbox("bob").len(), 7);
    assert_eq!(srv.spool_files(), 0);
}

/// Runs the vmail-lmtpd binary with the configuration `text` (written beside it) and `args`;
/// its exit status and stderr once it exits, or `None` (killed) if it still runs after 10 s,
/// that is, if it started serving.
fn lmtpd_binary(dir: &Path, text: &str, args: &[&str]) -> Option<(i32, String)> {
    let cfg = dir.join("binary.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmail-lmtpd"))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = vmail_test_support::wait_until(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    exited.then(|| {
        (
            out.status
                .code()
                .unwrap_or(-out.status.signal().unwrap_or(0)),
            stderr,
        )
    })
}

/// The review of issue 19: a second lmtpd started on the same spool (a manual start beside
/// the service, two instances configured alike) removed the first one's live spool files
/// as a crashed run's, so the first one's message in flight was deferred. It now refuses
/// to start (75, naming the spool), and the first one's message is delivered.
#[test]
fn a_second_lmtpd_on_the_same_spool_refuses_to_start_and_leaves_the_files() {
    let srv = Server::start("spool_memory = 0\n", None);
    let mut c = srv.connect();
    srv.half_a_message(&mut c);
    let base = srv.dir.path().display().to_string();
    let second = srv
        .text
        .replace(&format!("{base}/lmtp\""), &format!("{base}/lmtp2\""))
        .replace("lmtpd.pid", "lmtpd2.pid");
    let (status, stderr) =
        lmtpd_binary(srv.dir.path(), &second, &[]).expect("a second lmtpd serves the same spool");
    assert_eq!(status, 75, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "spool {base}/spool is in use by another vmail-lmtpd"
        )),
        "{stderr}"
    );
    assert_eq!(
        srv.spool_files(),
        1,
        "the running lmtpd's spool file was removed"
    );
    c.send(b"the second half\r\n.\r\n");
    starts(&c.replies(1), &["250 2.0.0"]);
    assert_eq!(srv.inbox("alice").len(), 1);
    assert_eq!(srv.spool_files(), 0);
}

/// The review of issue 19: a Maildir base the daemon's user cannot write (a root-owned
/// directory here; /var/vmail under the unit's ProtectSystem=strict on a real host) let it
/// start and answer 451 to every delivery for ever. Now `--check` (as that user) and the
/// start itself, before any mail is accepted, exit 78 naming the path and the unit's
/// ReadWritePaths=; a spool that cannot be made is refused the same way.
#[test]
fn a_maildir_base_or_spool_the_user_cannot_write_stops_check_and_start_with_78() {
    let dir = tempfile::tempdir().unwrap();
    vmail_test_support::set_mode(dir.path(), 0o755);
    let base = dir.path().display().to_string();
    let (uid, gid) = (65534, 65534); // nobody
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::os::unix::fs::chown(&spool, Some(uid), Some(gid)).unwrap();
    let vmail = dir.path().join("vmail");
    std::fs::create_dir(&vmail).unwrap();
    let mailbox =
        format!("[mailbox]\nhome = \"{base}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n");
    let sqlite = format!("[database]\nsqlite_path = \"{base}/v.db\"\n");
    let setup = vmail_config::parse(&format!("{sqlite}{mailbox}"), Path::new("x")).unwrap();
    vmail_test_support::example_org(&setup, &[("alice@example.org", None, true)]);
    let text = |spool: &str| {
        format!(
            "{sqlite}{mailbox}[lmtpd]\nlisten = [\"unix:{base}/lmtp\"]\nsocket_group = \"\"\nuser = \"nobody\"\nspool = \"{spool}\"\npid_file = \"{base}/lmtpd.pid\"\n"
        )
    };
    let good_spool = text(&spool.display().to_string());
    for args in [&["--check"][..], &[]] {
        let (status, stderr) = lmtpd_binary(dir.path(), &good_spool, args)
            .unwrap_or_else(|| panic!("{args:?}: started with a Maildir base it cannot write"));
        assert_eq!(status, 78, "{args:?}: {stderr}");
        for want in [
            format!("Maildir base {base}/vmail/ ([mailbox] home): not writable for user nobody"),
            "ReadWritePaths=".to_string(),
        ] {
            assert!(stderr.contains(&want), "{args:?}: {want:?} not in {stderr}");
        }
    }
    // A spool under a file: refused the same way.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let (status, stderr) = lmtpd_binary(
        dir.path(),
        &text(&format!("{base}/file/spool")),
        &["--check"],
    )
    .unwrap();
    assert_eq!(status, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "[lmtpd] spool {base}/file/spool: {base}/file is not a directory"
        )),
        "{stderr}"
    );
    // The base given to the user: the check passes.
    std::os::unix::fs::chown(&vmail, Some(uid), Some(gid)).unwrap();
    let (status, stderr) = lmtpd_binary(dir.path(), &good_spool, &["--check"]).unwrap();
    assert_eq!(status, 0, "{stderr}");
}

/// The review of issue 19: with a database that accepts connections and never answers,
/// each of a transaction's pipelined RCPTs waited for the directory's whole deadline in
/// turn before any reply went out. After the first failure the rest of the transaction's
/// RCPTs are deferred at once: 10 recipients are answered within about one deadline.
#[test]
fn pipelined_rcpts_to_a_hung_directory_cost_one_deadline_not_one_each() {
    // Connections complete in the kernel's backlog; nothing ever answers them.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let deadline = Duration::from_millis(600);
    let db = format!(
        "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{port}\"]\nconnect_timeout_ms = {ms}\nquery_timeout_ms = {ms}\n",
        ms = deadline.as_millis()
    );
    let srv = Server::start("", Some(&db));
    let mut c = srv.connect();
    let mut batch = b"LHLO postfix.test\r\nMAIL FROM:<bob@remote.test>\r\n".to_vec();
    for i in 0..10 {
        batch.extend_from_slice(format!("RCPT TO:<user{i}@example.org>\r\n").as_bytes());
    }
    let t = Instant::now();
    c.send(&batch);
    let replies = c.replies(12);
    let took = t.elapsed();
    let mut want = vec!["250", "250 2.1.0"];
    want.extend(["451 4.3.0"; 10]);
    starts(&replies, &want);
    assert!(
        took < deadline * 3,
        "10 pipelined RCPTs took {took:?} with a {deadline:?} directory deadline"
    );
    // The next transaction asks the directory again (and fails again, once).
    c.send(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n");
    starts(&c.replies(4), &["250", "250", "451 4.3.0", "451 4.3.0"]);
    drop(hung);
}

/// The second review of issue 19: any temporary lookup error stopped the transaction's
/// later lookups, so one address's bad row (here a name the path guard refuses) deferred
/// every recipient after it, on every retry (Postfix keeps their order) until the queue
/// lifetime ended. Only a directory that is down or slow stops them now.
#[test]
fn one_bad_row_defers_only_its_own_recipient() {
    let srv = Server::start("", None);
    let setup = vmail_config::parse(&srv.text, Path::new("x")).unwrap();
    vmail_test_support::authd::sqlite_exec(
        &setup,
        "INSERT INTO users (email, password) VALUES ('a:b@example.org', 'x');",
    );
    let mut c = srv.connect();
    c.send(b"LHLO t\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<\"a:b\"@example.org>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n");
    starts(
        &c.replies(5),
        &["250", "250 2.1.0", "451 4.3.0", "250 2.1.5", "250 2.1.5"],
    );
}

/// The second review of issue 19: the bytes of an over-long command line are discarded as
/// they arrive, and each read of them restarted the line's deadline (and with nothing left
/// in the buffer, the idle one), so a client dribbling an endless line kept its connection
/// for ever. The line's deadline now runs from its first byte.
#[test]
fn an_endless_line_dribbled_is_closed_at_the_line_deadline() {
    let deadline = Duration::from_millis(400);
    let srv = Server::start(
        &format!("request_read_timeout_ms = {}\n", deadline.as_millis()),
        None,
    );
    let mut c = srv.connect();
    let t = Instant::now();
    c.s.write_all(&[b'A'; 1100]).unwrap();
    let closed = loop {
        std::thread::sleep(deadline / 4);
        if c.s.write_all(&[b'A'; 10]).is_err() || t.elapsed() > deadline * 10 {
            break t.elapsed();
        }
    };
    assert!(closed < deadline * 5, "still open after {closed:?}");
    assert_eq!(c.reply(), "", "no reply to a line never ended");
}

/// The second review of issue 19: SIGHUP took a configuration the start checks refuse (a
/// Maildir base nobody can create), and every delivery was deferred from then on. The
/// running configuration is kept, and mail goes on being delivered.
#[test]
fn a_reload_to_a_maildir_base_that_cannot_be_written_keeps_the_running_one() {
    use vmail_daemon::Service as _;
    let srv = Server::start("", None);
    // Under a plain file: nobody can make it, root included.
    let file = srv.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let broken = srv.text.replace(
        &format!("home = \"{}/vmail/%d/%n\"", srv.dir.path().display()),
        &format!("home = \"{}/vmail/%d/%n\"", file.display()),
    );
    assert_ne!(broken, srv.text);
    let path = srv.dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(srv.running.handle.service.reload(Some(&path)));
    let mut c = srv.connect();
    c.send(b"LHLO t\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    starts(&c.replies(4), &["250", "250", "250", "354"]);
    c.send(MSG);
    starts(&c.replies(1), &["250 2.0.0"]);
    assert_eq!(srv.inbox("alice").len(), 1);
}

/// Issue 19 asks for the LDA's lookup path: with `[lda] lookupd` set, lmtpd asks lookupd's
/// `recipient` map (its cache, its address set, its serve_stale_s, as the pipe's vmail-lda
/// does), and the directory itself only while nothing listens there. Shown by a row
/// removed with plain SQL behind lookupd's back: lookupd's cache still knows it, the
/// directory no longer does.
#[test]
fn recipients_are_looked_up_through_lookupd_when_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lookupd-lda");
    let srv = Server::start_with(
        "",
        None,
        &format!(
            "[lda]\nlookupd = \"unix:{}\"\nlookupd_timeout_ms = 2000\n",
            socket.display()
        ),
    );
    let config = vmail_config::parse(&srv.text, Path::new("l.toml")).unwrap();
    let deliver = |c: &mut Client, want: &str| {
        c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
        starts(&c.replies(3), &["250", "250", "354"]);
        c.send(MSG);
        starts(&c.replies(1), &[want]);
    };
    let mut c = srv.connect();
    c.send(b"LHLO t\r\n");
    starts(&c.replies(1), &["250"]);
    // Nothing listens yet: the directory answers.
    deliver(&mut c, "250 2.0.0");
    let lookupd =
        vmail_test_support::daemon::lda_lookupd(&config, &socket, &dir.path().join("lookupd.pid"))
            .expect("start lookupd");
    // lookupd answers now, and caches alice.
    deliver(&mut c, "250 2.0.0");
    vmail_test_support::authd::sqlite_exec(
        &config,
        "DELETE FROM users WHERE email = 'alice@example.org';",
    );
    // Through lookupd's cache she is still there (the pipe's vmail-lda would deliver too).
    deliver(&mut c, "250 2.0.0");
    assert_eq!(srv.inbox("alice").len(), 3);
    // Without lookupd the directory says she is gone.
    drop(lookupd);
    c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n");
    starts(&c.replies(2), &["250", "550 5.1.1"]);
}

/// The review of issue 19: a command line's deadline ran from the first byte of the first
/// line in the buffer, and was not reset when later lines completed, so a client whose
/// lines arrive split across writes (the next one always begun) was cut off while it kept
/// sending. Each line now has its own deadline; a client stalled mid-line is still closed.
#[test]
fn each_pipelined_line_has_its_own_deadline() {
    let deadline = Duration::from_millis(500);
    let srv = Server::start(
        &format!("request_read_timeout_ms = {}\n", deadline.as_millis()),
        None,
    );
    let mut c = srv.connect();
    c.send(b"LHLO t\r\nNO");
    starts(&c.replies(1), &["250"]);
    // A line completed and the next begun every 0.6 deadline, for 3 deadlines.
    for _ in 0..5 {
        std::thread::sleep(deadline * 6 / 10);
        c.send(b"OP\r\nNO");
        starts(&c.replies(1), &["250 2.0.0"]);
    }
    // Now it stalls mid-line: closed at the deadline.
    let t = Instant::now();
    assert_eq!(c.reply(), "");
    assert!(t.elapsed() >= deadline * 8 / 10, "{:?}", t.elapsed());
    assert!(t.elapsed() < deadline * 4, "{:?}", t.elapsed());
}
