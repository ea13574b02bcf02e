//! Proves the Postfix and Dovecot helpers against the real programs: private instances start,
//! greet, refuse relaying, deliver, defer and flush; `postmap_query` classifies a socketmap
//! server's answers; IMAP and POP3 logins succeed and fail as they should.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmail_test_support::dovecot::{imap_login, pop3_login, DovecotBuilder};
use vmail_test_support::postfix::{postmap_query, PostfixBuilder, PostmapResult};
use vmail_test_support::{have, skip, wait_until};

const NOBODY: u32 = 65534;

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\n\n\
         Hello.\n.a line that starts with a dot\n..and one with two\nBye.\n"
    )
}

/// A mail base owned by the delivery uid, for `virtual(8)` to create maildirs in.
fn mail_base(dir: &Path) -> PathBuf {
    let base = dir.join("mail");
    std::fs::create_dir(&base).expect("mkdir mail");
    std::os::unix::fs::chown(&base, Some(NOBODY), Some(NOBODY)).expect("chown mail");
    base
}

fn virtual_postfix() -> PostfixBuilder {
    PostfixBuilder::new()
        .main("virtual_mailbox_domains = example.test")
        .main("virtual_mailbox_base = @DIR@/mail")
        .main("virtual_mailbox_maps = static:example.test/box/")
        .main(&format!("virtual_uid_maps = static:{NOBODY}"))
        .main(&format!("virtual_gid_maps = static:{NOBODY}"))
}

#[test]
fn postfix_greets_refuses_relay_and_delivers() {
    let test = "postfix_greets_refuses_relay_and_delivers";
    // No trusted networks: an outside client on loopback, as in production.
    let Some(mut pf) = virtual_postfix()
        .main("mynetworks =")
        .submission()
        .start(test)
    else {
        return;
    };
    assert_eq!(pf.postconf(&["-h", "myhostname"]).trim(), "test.invalid");
    assert_eq!(pf.postconf(&["-h", "mynetworks"]).trim(), "");
    let base = mail_base(pf.dir.path());

    let out = pf.send(
        "sender@outside.test",
        &["alice@example.test", "someone@nowhere.test"],
        &message("sender@outside.test", "alice@example.test", "hello"),
    );
    assert_eq!(out.greeting.code, 220, "{}", out.transcript);
    assert_eq!(out.greeting.text, "test.invalid ESMTP vmail-test");
    assert_eq!(
        out.rcpt_code("alice@example.test"),
        250,
        "{}",
        out.transcript
    );
    let (_, relay) = &out.rcpt[1];
    assert_eq!(relay.code, 454, "{}", out.transcript);
    assert!(relay.text.contains("Relay access denied"), "{relay:?}");
    assert!(out.accepted(), "{}", out.transcript);
    let id = out.queue_id.clone().expect("queue id");

    assert!(
        pf.wait_log(&format!("{id}: removed"), Duration::from_secs(20)),
        "not delivered:\n{}",
        pf.maillog()
    );
    assert!(pf.maillog().contains("status=sent (delivered to maildir)"));
    let new = base.join("example.test/box/new");
    let files: Vec<_> = std::fs::read_dir(&new).expect("maildir new").collect();
    assert_eq!(files.len(), 1);
    let stored = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        stored.contains("\n.a line that starts with a dot\n"),
        "{stored}"
    );
    assert!(stored.contains("\n..and one with two\n"), "{stored}");
    assert!(pf.queue_ids().is_empty(), "{}", pf.mailq());
    // The configuration is clean: nothing for Postfix to complain about.
    let log = pf.maillog();
    for bad in ["warning:", "error:", "fatal:", "panic:"] {
        assert!(!log.contains(bad), "{bad} in maillog:\n{log}");
    }

    // The submission listener is a second smtpd on its own port.
    let port = pf.submission_port.expect("submission port");
    assert_ne!(port, pf.smtp_port);
    let sub = vmail_test_support::postfix::smtp_send(port, "a@example.test", &[], "");
    assert_eq!(sub.greeting.code, 220, "{}", sub.transcript);
    assert!(pf.wait_log("postfix/submission/smtpd", Duration::from_secs(5)));

    let master = pf.dir.path().join("queue/pid/master.pid");
    let pid = std::fs::read_to_string(master).unwrap().trim().to_string();
    pf.stop();
    assert!(vmail_test_support::postfix::processes_under(pf.dir.path()).is_empty());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "master still alive: {stat}"
    );
    pf.stop(); // idempotent
}

#[test]
fn postfix_defers_flushes_and_lists_the_queue() {
    let test = "postfix_defers_flushes_and_lists_the_queue";
    // A pipe(8) transport that always says EX_TEMPFAIL; `{ ... }` groups an argument with
    // spaces (pipe(8), Postfix >= 3.0).
    let Some(pf) = PostfixBuilder::new()
        .main("virtual_mailbox_domains = example.test")
        .main("virtual_transport = tempfail")
        .master("tempfail unix - n n - - pipe\n  flags=q user=nobody argv=/bin/sh -c { exit 75 }")
        .start(test)
    else {
        return;
    };
    let master_cf = std::fs::read_to_string(pf.config_dir().join("master.cf")).unwrap();
    for line in master_cf.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !line.starts_with(['#', ' ', '\t']) && f.len() >= 8 {
            assert_eq!(f[4], "n", "chroot left on: {line}");
        }
    }
    assert!(master_cf.contains("postlog unix-dgram n - n - 1 postlogd"));

    let out = pf.send(
        "sender@example.test",
        &["bob@example.test"],
        &message("sender@example.test", "bob@example.test", "defer me"),
    );
    assert!(out.accepted(), "{}", out.transcript);
    let id = out.queue_id.clone().expect("queue id");
    assert!(
        pf.wait_log(&format!("{id}: "), Duration::from_secs(20))
            && pf.wait_log("status=deferred", Duration::from_secs(20)),
        "{}",
        pf.maillog()
    );
    assert!(pf.mailq().contains("bob@example.test"), "{}", pf.mailq());
    assert!(
        wait_until(Duration::from_secs(10), || pf.queue_ids()
            == vec![id.clone()]),
        "{}",
        pf.mailq()
    );
    let before = pf.maillog().matches("status=deferred").count();
    pf.flush();
    assert!(
        wait_until(Duration::from_secs(20), || {
            pf.maillog().matches("status=deferred").count() > before
        }),
        "flush did not retry:\n{}",
        pf.maillog()
    );
}

/// A socketmap server for one test: answers `found` with `OK value here`, `temp` with
/// `TEMP test`, `perm` with `PERM broken`, `empty` with `OK `, anything else with `NOTFOUND `.
/// Returns the requests it saw through the channel.
fn fake_socketmap(path: &Path) -> std::sync::mpsc::Receiver<String> {
    let listener = UnixListener::bind(path).expect("bind socketmap");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve_socketmap(conn, tx));
        }
    });
    rx
}

fn serve_socketmap(conn: UnixStream, tx: std::sync::mpsc::Sender<String>) {
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut len = Vec::new();
        if r.read_until(b':', &mut len).unwrap_or(0) == 0 {
            return;
        }
        let Ok(n) = std::str::from_utf8(&len[..len.len() - 1])
            .unwrap_or("")
            .parse::<usize>()
        else {
            return;
        };
        let mut req = vec![0; n + 1]; // the data and the trailing ','
        if r.read_exact(&mut req).is_err() || req[n] != b',' {
            return;
        }
        let req = String::from_utf8_lossy(&req[..n]).into_owned();
        let key = req.split_once(' ').map_or("", |(_, k)| k).to_string();
        let _ = tx.send(req);
        let reply = match key.as_str() {
            "found" => "OK value here",
            "temp" => "TEMP test",
            "perm" => "PERM broken",
            "empty" => "OK ",
            _ => "NOTFOUND ",
        };
        let frame = format!("{}:{reply},", reply.len());
        if w.write_all(frame.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn postmap_query_classifies_socketmap_answers() {
    let test = "postmap_query_classifies_socketmap_answers";
    if !have("postmap") && !have("/usr/sbin/postmap") {
        skip(test, "postmap is not installed (run scripts/test-deps)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("map.sock");
    let seen = fake_socketmap(&sock);
    let table = format!("socketmap:unix:{}:mymap", sock.display());

    assert_eq!(
        postmap_query("found", &table),
        PostmapResult::Found("value here".into())
    );
    assert_eq!(seen.recv().unwrap(), "mymap found");
    assert_eq!(
        postmap_query("alice@example.test", &table),
        PostmapResult::NotFound
    );
    assert_eq!(seen.recv().unwrap(), "mymap alice@example.test");

    let PostmapResult::Failed { status, stderr } = postmap_query("temp", &table) else {
        panic!("TEMP must fail the query");
    };
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains(&format!("{table} socketmap server temporary error: test")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "fatal: table {table}: query error: Application error"
        )),
        "{stderr}"
    );

    let PostmapResult::Failed { status, stderr } = postmap_query("perm", &table) else {
        panic!("PERM must fail the query");
    };
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("socketmap server permanent error: broken"),
        "{stderr}"
    );

    // An empty OK is "found" with an empty value (and two warnings).
    assert_eq!(
        postmap_query("empty", &table),
        PostmapResult::Found(String::new())
    );

    let gone = format!("socketmap:unix:{}:mymap", dir.path().join("nope").display());
    let PostmapResult::Failed { status, stderr } = postmap_query("x", &gone) else {
        panic!("a missing server must fail the query");
    };
    assert_eq!(status, Some(1));
    assert!(stderr.contains("No such file or directory"), "{stderr}");

    // Non-socketmap tables go through the same classification.
    assert_eq!(
        postmap_query("anything", "static:fixed"),
        PostmapResult::Found("fixed".into())
    );
}

#[test]
fn dovecot_logs_in_over_imap_and_pop3() {
    let test = "dovecot_logs_in_over_imap_and_pop3";
    let Some(mut dc) = DovecotBuilder::new().static_users("test").start(test) else {
        return;
    };
    assert!(dc.auth_test("bob@example.test", "test"));
    assert!(!dc.auth_test("bob@example.test", "wrong"));
    let out = dc.doveadm(&["auth", "test", "bob@example.test", "wrong"]);
    assert_eq!(out.status.code(), Some(77));
    let user = dc.doveadm(&["user", "bob@example.test"]);
    let user = String::from_utf8_lossy(&user.stdout).into_owned();
    assert!(user.contains(&format!("uid\t{}", dc.mail_uid)), "{user}");

    let mut imap = imap_login(dc.imap_port, "bob@example.test", "test").expect("imap login");
    assert_eq!(imap.select("INBOX").unwrap(), 0);
    imap.logout().unwrap();
    let err = imap_login(dc.imap_port, "bob@example.test", "wrong")
        .err()
        .unwrap();
    assert!(err.starts_with("NO [AUTHENTICATIONFAILED]"), "{err}");
    // A password a quoted string cannot carry goes as a literal (and is simply wrong here).
    let err = imap_login(dc.imap_port, "bob@example.test", "t\u{e4}st")
        .err()
        .unwrap();
    assert!(err.starts_with("NO"), "{err}");

    let mut pop = pop3_login(dc.pop3_port, "bob@example.test", "test").expect("pop3 login");
    assert_eq!(pop.stat().unwrap(), (0, 0));
    pop.quit().unwrap();
    let err = pop3_login(dc.pop3_port, "bob@example.test", "wrong")
        .err()
        .unwrap();
    assert!(err.starts_with("-ERR [AUTH]"), "{err}");

    let log = dc.log();
    assert!(!log.contains("Permission denied"), "{log}");
    assert!(!log.contains("Error:"), "{log}");
    dc.stop();
    assert!(vmail_test_support::postfix::processes_under(dc.dir.path()).is_empty());
}

#[test]
fn postfix_delivers_and_dovecot_reads_it_back() {
    let test = "postfix_delivers_and_dovecot_reads_it_back";
    let Some(pf) = virtual_postfix().start(test) else {
        return;
    };
    let base = mail_base(pf.dir.path());
    let Some(dc) = DovecotBuilder::new()
        .conf("mail_location = maildir:~")
        .passdb("driver = static\nargs = password=secret")
        .userdb(&format!(
            "driver = static\nargs = uid={NOBODY} gid={NOBODY} home={}/%d/box",
            base.display()
        ))
        .start(test)
    else {
        return;
    };
    let text = message("sender@example.test", "carol@example.test", "read me back");
    let out = pf.send("sender@example.test", &["carol@example.test"], &text);
    assert!(out.accepted(), "{}", out.transcript);
    let id = out.queue_id.unwrap();
    assert!(
        pf.wait_log(&format!("{id}: removed"), Duration::from_secs(20)),
        "{}",
        pf.maillog()
    );

    let mut imap = imap_login(dc.imap_port, "carol@example.test", "secret").expect("login");
    assert_eq!(imap.select("INBOX").unwrap(), 1);
    let body = imap.fetch_body(1).unwrap();
    let size = imap.fetch_size(1).unwrap();
    assert_eq!(size, body.len() as u64);
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("Subject: read me back\r\n"), "{body}");
    assert!(
        body.contains("\r\n.a line that starts with a dot\r\n"),
        "{body}"
    );
    imap.logout().unwrap();

    let mut pop = pop3_login(dc.pop3_port, "carol@example.test", "secret").expect("pop3");
    let (n, total) = pop.stat().unwrap();
    assert_eq!((n, total), (1, size));
    let retr = pop.retr(1).unwrap();
    assert_eq!(String::from_utf8(retr).unwrap(), body);
    pop.quit().unwrap();
}
