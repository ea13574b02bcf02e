//! The real Postfix `lmtp` client against vmail-lmtpd (issue 19 item 3): a private Postfix
//! with `virtual_transport = lmtp:unix:private/vmail-lmtp`, lmtpd in-process bound in its
//! queue directory. One message to a deliverable, an unknown and an over-quota recipient
//! gives one result per recipient in Postfix's log; a retry of the deferred one delivers
//! nothing twice. vmail-lmtpd (the binary) killed mid-DATA: Postfix defers and retries,
//! nothing partial reaches a Maildir, and the restarted daemon delivers the message once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmail_config::{Loaded, Source};
use vmail_test_support::postfix::{PostfixBuilder, PrivatePostfix};
use vmail_test_support::wait_until;

fn new_files(maildir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(maildir.join("new"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// The maillog lines about `rcpt`.
fn about(log: &str, rcpt: &str) -> Vec<String> {
    let needle = format!("to=<{rcpt}>");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// A private Postfix that delivers example.org through lmtpd's socket in its queue
/// directory, with `extra` main.cf lines.
fn postfix_for_lmtpd(test: &str, extra: &[&str]) -> Option<PrivatePostfix> {
    let mut b = PostfixBuilder::new()
        .main("virtual_mailbox_domains = example.org")
        .main("virtual_mailbox_maps = static:accept")
        .main("virtual_transport = lmtp:unix:private/vmail-lmtp");
    for line in extra {
        b = b.main(line);
    }
    b.start(test)
}

/// The `[mailbox]` and `[lmtpd]` sections of a test configuration: Maildirs, spool and pid
/// file under `base`, lmtpd on `socket`, run as whoever runs the test.
fn mailbox_and_lmtpd(base: &str, socket: &Path) -> String {
    format!(
        "[mailbox]\nhome = \"{base}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n\
         [lmtpd]\nlisten = [\"unix:{}\"]\nuser = \"\"\n\
         spool = \"{base}/spool\"\npid_file = \"{base}/lmtpd.pid\"\n",
        socket.display()
    )
}

#[test]
fn postfix_lmtp_client_gets_one_verdict_per_recipient() {
    let test = "postfix_lmtp_client_gets_one_verdict_per_recipient";
    let Some(pf) = postfix_for_lmtpd(test, &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().display().to_string();
    let text = format!(
        "[database]\nsqlite_path = \"{base}/v.db\"\n[lda]\nover_quota = \"defer\"\n{}",
        mailbox_and_lmtpd(&base, &pf.dir.real().join("queue/private/vmail-lmtp"))
    );
    let config = vmail_config::parse(&text, &tmp.path().join("v.toml")).unwrap();
    vmail_test_support::example_org(
        &config,
        &[
            ("alice@example.org", None, true),
            ("full@example.org", Some(10), true),
        ],
    );
    let loaded = Loaded {
        config,
        source: Source::Builtin,
    };
    let _lmtpd = vmail_test_support::daemon::lmtpd(loaded).expect("start lmtpd");

    let msg = "From: <sender@outside.test>\nSubject: three\n\nHello.\n.dot line\n";
    let out = pf.send(
        "sender@outside.test",
        &[
            "alice@example.org",
            "nobody@example.org",
            "full@example.org",
        ],
        msg,
    );
    assert!(out.accepted(), "{}", out.transcript);
    let alice = tmp.path().join("vmail/example.org/alice/Maildir");
    let settled = |log: &str| {
        ["alice", "nobody", "full"].iter().all(|u| {
            about(log, &format!("{u}@example.org"))
                .iter()
                .any(|l| l.contains("status="))
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || settled(&pf.maillog())),
        "no verdict for each recipient; maillog:\n{}",
        pf.maillog()
    );
    let log = pf.maillog();
    let line = |u: &str| about(&log, &format!("{u}@example.org")).join("\n");
    assert!(line("alice").contains("status=sent"), "{log}");
    assert!(line("alice").contains("250 2.0.0"), "{log}");
    assert!(line("nobody").contains("status=bounced"), "{log}");
    assert!(line("nobody").contains("5.1.1"), "{log}");
    assert!(line("full").contains("status=deferred"), "{log}");
    assert!(line("full").contains("4.2.2"), "{log}");
    assert_eq!(new_files(&alice).len(), 1);
    let stored = std::fs::read_to_string(&new_files(&alice)[0]).unwrap();
    assert!(
        stored.starts_with("Return-Path: <sender@outside.test>\n"),
        "{stored}"
    );
    assert_eq!(
        stored.matches("Delivered-To: alice@example.org\n").count(),
        1,
        "{stored}"
    );
    assert!(stored.contains("\n.dot line\n"), "{stored}");

    // Postfix retries only the deferred recipient: alice gets nothing twice.
    let before = log.matches("to=<full@example.org>").count();
    pf.flush();
    assert!(
        wait_until(Duration::from_secs(30), || {
            pf.maillog().matches("to=<full@example.org>").count() > before
        }),
        "no retry; maillog:\n{}",
        pf.maillog()
    );
    assert_eq!(new_files(&alice).len(), 1, "{}", pf.maillog());
    assert!(new_files(&tmp.path().join("vmail/example.org/full/Maildir")).is_empty());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("spool")).map_or(0, |r| r.count()),
        0
    );
}

/// A running vmail-lmtpd binary, killed when dropped (also when an assertion fails).
struct Running(Child);

impl Running {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The vmail-lmtpd binary with `config`, its log in `log`; returns once its socket answers.
fn spawn_lmtpd(config: &Path, socket: &Path, log: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_vmail-lmtpd"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(socket).is_ok()
        }),
        "vmail-lmtpd did not start:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    Running(child)
}

#[test]
fn lmtpd_killed_mid_data_means_a_retry_and_no_partial_file() {
    let test = "lmtpd_killed_mid_data_means_a_retry_and_no_partial_file";
    let Some(pf) = postfix_for_lmtpd(test, &["message_size_limit = 0"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().display().to_string();
    let socket = pf.dir.real().join("queue/private/vmail-lmtp");
    let text = format!(
        "[database]\nsqlite_path = \"{base}/v.db\"\n{}",
        mailbox_and_lmtpd(&base, &socket)
    );
    let cfg = tmp.path().join("vmail.toml");
    std::fs::write(&cfg, &text).unwrap();
    let config = vmail_config::parse(&text, &cfg).unwrap();
    vmail_test_support::example_org(&config, &[("alice@example.org", None, true)]);
    let log = tmp.path().join("lmtpd.log");
    let mut lmtpd = spawn_lmtpd(&cfg, &socket, &log);

    // Big enough that Postfix is still sending when the spool file appears.
    let line = "0123456789".repeat(7) + "\n";
    let body = line.repeat(48 * 1024 * 1024 / line.len());
    let msg = format!("From: <sender@outside.test>\nSubject: big\n\n{body}");
    let spool = tmp.path().join("spool");
    let spooled = || std::fs::read_dir(&spool).map_or(0, |r| r.count()) > 0;
    let sender = std::thread::spawn({
        let port = pf.smtp_port;
        move || {
            vmail_test_support::postfix::smtp_send(
                port,
                "sender@outside.test",
                &["alice@example.org"],
                &msg,
            )
        }
    });
    let began = Instant::now();
    while !spooled() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "never spooled:\n{}",
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    lmtpd.kill();
    assert!(sender.join().unwrap().accepted());
    let alice = tmp.path().join("vmail/example.org/alice/Maildir");
    assert!(
        new_files(&alice).is_empty(),
        "delivered before the kill: the race was lost"
    );
    assert!(
        pf.wait_log("status=deferred", Duration::from_secs(30)),
        "not deferred:\n{}",
        pf.maillog()
    );
    assert!(!pf.maillog().contains("status=bounced"), "{}", pf.maillog());
    assert!(new_files(&alice).is_empty());
    assert_eq!(
        std::fs::read_dir(alice.join("tmp")).map_or(0, |r| r.count()),
        0
    );

    // Restarted: the dead run's spool file goes, and Postfix's retry delivers once.
    let lmtpd = spawn_lmtpd(&cfg, &socket, &log);
    pf.flush();
    assert!(
        wait_until(Duration::from_secs(60), || new_files(&alice).len() == 1),
        "not delivered after the restart:\n{}\n{}",
        pf.maillog(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let size = std::fs::metadata(&new_files(&alice)[0]).unwrap().len();
    assert!(size > body.len() as u64, "{size}");
    assert!(
        wait_until(Duration::from_secs(5), || !spooled()),
        "spool file left"
    );
    assert_eq!(new_files(&alice).len(), 1);
    // Issue 19: memory stays flat whatever the message size (buffers are bounded; the
    // message is only ever on disk).
    let hwm = peak_rss_kib(lmtpd.0.id());
    eprintln!("vmail-lmtpd peak RSS after a 48 MiB message: {hwm} KiB");
    assert!(hwm < 24 * 1024, "peak RSS {hwm} KiB for a 48 MiB message");
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// MariaDB killed while Postfix delivers a burst: the recipients looked up meanwhile are
/// deferred (451 at RCPT), none bounced; once the server is back every message is delivered,
/// each once.
#[test]
fn a_database_killed_during_a_burst_defers_and_loses_nothing() {
    let test = "a_database_killed_during_a_burst_defers_and_loses_nothing";
    let Some(mut db) = vmail_test_support::PrivateMariaDb::start(test) else {
        return;
    };
    let Some(pf) = postfix_for_lmtpd(test, &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().display().to_string();
    let text = format!(
        "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\nuser = \"root\"\ndbname = \"mail\"\n\
         connect_timeout_ms = 500\nquery_timeout_ms = 2000\n{}",
        db.port,
        mailbox_and_lmtpd(&base, &pf.dir.real().join("queue/private/vmail-lmtp"))
    );
    let config = vmail_config::parse(&text, &tmp.path().join("v.toml")).unwrap();
    vmail_test_support::example_org(&config, &[("alice@example.org", None, true)]);
    let loaded = Loaded {
        config,
        source: Source::Builtin,
    };
    let _lmtpd = vmail_test_support::daemon::lmtpd(loaded).expect("start lmtpd");
    let alice = tmp.path().join("vmail/example.org/alice/Maildir");

    const N: usize = 30;
    let port = pf.smtp_port;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let msg = format!("From: <sender@outside.test>\nSubject: burst {i}\n\nHello {i}.\n");
            let out = vmail_test_support::postfix::smtp_send(
                port,
                "sender@outside.test",
                &["alice@example.org"],
                &msg,
            );
            assert!(out.accepted(), "{}", out.transcript);
        }
    });
    assert!(
        wait_until(Duration::from_secs(30), || new_files(&alice).len() >= 3),
        "the burst is not being delivered:\n{}",
        pf.maillog()
    );
    db.kill();
    sender.join().unwrap();
    assert!(
        pf.wait_log("status=deferred", Duration::from_secs(30)),
        "nothing deferred while the database was down:\n{}",
        pf.maillog()
    );
    assert!(new_files(&alice).len() < N, "all delivered before the kill");
    db.resume();
    assert!(
        wait_until(Duration::from_secs(60), || {
            if new_files(&alice).len() >= N {
                return true;
            }
            pf.flush();
            std::thread::sleep(Duration::from_millis(200));
            false
        }),
        "{} of {N} delivered after the database came back:\n{}",
        new_files(&alice).len(),
        pf.maillog()
    );
    assert!(!pf.maillog().contains("status=bounced"), "{}", pf.maillog());
    assert!(pf.maillog().contains("4.3.0"), "{}", pf.maillog());
    // Each message once: the subjects are all there, none twice.
    let mut subjects: Vec<String> = new_files(&alice)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), N);
    assert_eq!(new_files(&alice).len(), N);
}
