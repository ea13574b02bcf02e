//! The real path: SMTP into a private Postfix, pipe(8) into vmail-lda, a Maildir that a
//! private Dovecot serves over IMAP and POP3. MariaDB is killed mid-way: the message defers
//! and is delivered after the server is back, never bounced. Postfix is configured with the
//! lines shipped in `contrib/postfix/` (only the installed paths and user replaced).

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmail_test_support::contrib::{contrib_transport_lines, contrib_vmail_service};
use vmail_test_support::dovecot::{imap_login, pop3_login, DovecotBuilder};
use vmail_test_support::postfix::{lookup_user, PostfixBuilder};
use vmail_test_support::{set_mode, wait_until, PrivateMariaDb};

mod direct;

/// A private Postfix that accepts every recipient of example.org at RCPT (static map), so
/// that the LDA's own decisions are what is tested, and routes them to `vmail_service`
/// (a master.cf service) as the contrib main.cf does.
fn postfix_for(vmail_service: &str) -> PostfixBuilder {
    let mut builder = PostfixBuilder::new()
        .main("virtual_mailbox_domains = example.org")
        .main("virtual_mailbox_maps = static:accept")
        .main("recipient_delimiter = +")
        .master(vmail_service);
    for line in contrib_transport_lines() {
        builder = builder.main(line);
    }
    builder
}

/// The uid and gid of `nobody`, whom the LDA runs as, and a temporary directory it can
/// enter; `None` after a loud skip.
fn as_nobody(test: &str) -> Option<(u32, u32, tempfile::TempDir)> {
    let Some((uid, gid)) = lookup_user("nobody") else {
        vmail_test_support::skip(test, "no user nobody");
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o755);
    Some((uid, gid, tmp))
}

/// Creates the directory of `cfg` with the domain example.org and its users alice and bob.
fn alice_and_bob(cfg: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let loaded = vmail_config::load(Some(cfg)).unwrap();
        let d = vmail_directory::Directory::open(&loaded.config)
            .await
            .unwrap();
        d.init(false).await.unwrap();
        d.add_domain("example.org").await.unwrap();
        for u in ["alice@example.org", "bob@example.org"] {
            d.add_user(u, "{PLAIN}pw", None).await.unwrap();
        }
        d.close().await;
    });
}

fn new_files(maildir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(maildir.join("new"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn message(to: &str, subject: &str) -> String {
    format!(
        "From: <sender@outside.test>\nTo: <{to}>\nSubject: {subject}\n\nHello {to}.\n.dot line\n"
    )
}

#[test]
fn smtp_to_maildir_defers_on_outage_and_reads_back_over_imap_and_pop3() {
    let test = "smtp_to_maildir_defers_on_outage_and_reads_back_over_imap_and_pop3";
    let Some(mut db) = PrivateMariaDb::start(test) else {
        return;
    };
    let Some((uid, gid, tmp)) = as_nobody(test) else {
        return;
    };
    let base = tmp.path().join("vmail");
    std::fs::create_dir(&base).unwrap();
    std::os::unix::fs::chown(&base, Some(uid), Some(gid)).unwrap();
    let cfg = tmp.path().join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\nuser = \"root\"\ndbname = \"mail\"\n\
             connect_timeout_ms = 500\nquery_timeout_ms = 2000\n\
             [mailbox]\nhome = \"{}/%d/%n\"\nmail = \"maildir:~/Maildir\"\n",
            db.port,
            base.display()
        ),
    )
    .unwrap();
    set_mode(&cfg, 0o644);
    alice_and_bob(&cfg);

    // The LDA's own decisions — deliver, bounce unknown users, defer on outage.
    let lda = env!("CARGO_BIN_EXE_vmail-lda");
    // Without lookupd, vmail-lda execs its sibling.
    direct::sibling();
    let Some(pf) = postfix_for(&contrib_vmail_service(lda, &cfg, "nobody")).start(test) else {
        return;
    };

    let alice = base.join("example.org/alice/Maildir");
    let out = pf.send(
        "sender@outside.test",
        &["alice+tag@example.org"],
        &message("alice+tag@example.org", "one"),
    );
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        wait_until(Duration::from_secs(20), || new_files(&alice).len() == 1),
        "not delivered; maillog:\n{}",
        pf.maillog()
    );
    let stored = std::fs::read(&new_files(&alice)[0]).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(
        text.starts_with("Return-Path: <sender@outside.test>\n"),
        "{text}"
    );
    assert_eq!(text.matches("Delivered-To:").count(), 1, "{text}");
    assert!(
        text.contains("\n.dot line\n"),
        "dot-stuffing undone: {text}"
    );

    // Unknown user in our domain: the LDA says 5.1.1 and Postfix bounces.
    let out = pf.send(
        "sender@outside.test",
        &["nobody@example.org"],
        &message("nobody@example.org", "two"),
    );
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        pf.wait_log("status=bounced", Duration::from_secs(20)),
        "{}",
        pf.maillog()
    );
    assert!(pf.maillog().contains("5.1.1"), "{}", pf.maillog());

    // Database down: deferred, not bounced; delivered after it is back.
    db.kill();
    let bob = base.join("example.org/bob/Maildir");
    let out = pf.send(
        "sender@outside.test",
        &["bob@example.org"],
        &message("bob@example.org", "three"),
    );
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        pf.wait_log("status=deferred", Duration::from_secs(20)),
        "{}",
        pf.maillog()
    );
    assert!(pf.maillog().contains("4.4.3"), "{}", pf.maillog());
    assert!(new_files(&bob).is_empty());
    let bounced_bob = pf
        .maillog()
        .lines()
        .any(|l| l.contains("to=<bob@example.org>") && l.contains("status=bounced"));
    assert!(
        !bounced_bob,
        "a database outage bounced mail:\n{}",
        pf.maillog()
    );
    db.resume();
    pf.flush();
    assert!(
        wait_until(Duration::from_secs(30), || {
            if new_files(&bob).len() == 1 {
                return true;
            }
            pf.flush();
            false
        }),
        "not delivered after the database came back:\n{}",
        pf.maillog()
    );
    // Each vmail-lda run says goodbye to the database: no "aborted connection" per delivery
    // (the counter restarted with the server, and a delivery ran since).
    let aborted = db.sql("SHOW GLOBAL STATUS LIKE 'Aborted_clients'");
    assert_eq!(aborted.split_whitespace().nth(1), Some("0"), "{aborted}");

    // Dovecot reads what we wrote: S= is the file size, and IMAP's RFC822.SIZE is the
    // size with CRLF line ends (the file holds bare LF).
    let Some(dc) = DovecotBuilder::new()
        .static_users("pw")
        .mail_owner(uid, gid)
        .conf(&format!(
            "mail_location = maildir:{}/%d/%n/Maildir",
            base.display()
        ))
        .start(test)
    else {
        return;
    };
    let name = new_files(&alice)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let announced: u64 = name.rsplit(",S=").next().unwrap().parse().unwrap();
    let file = std::fs::read(&new_files(&alice)[0]).unwrap();
    assert_eq!(file.len() as u64, announced);
    assert!(!file.contains(&b'\r'), "Maildir files hold LF line ends");
    let lines = file.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut imap = imap_login(dc.imap_port, "alice@example.org", "pw").unwrap();
    assert_eq!(imap.select("INBOX").unwrap(), 1);
    assert_eq!(imap.fetch_size(1).unwrap(), announced + lines);
    let body = imap.fetch_body(1).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("Subject: one"));
    imap.logout().ok();
    let mut pop = pop3_login(dc.pop3_port, "bob@example.org", "pw").unwrap();
    let (n, _) = pop.stat().unwrap();
    assert_eq!(n, 1);
    let m = pop.retr(1).unwrap();
    assert!(String::from_utf8_lossy(&m).contains("Subject: three"));
    pop.quit().ok();
}

/// Issue 15 item 8, through real Postfix with a pipe(8) transport *without* the `D` flag
/// (so Postfix's own loop check is off and the LDA writes `Delivered-To:` itself, with the
/// full recipient): a message for `alice+lists@` that already carries the
/// `Delivered-To: alice+lists@example.org` the LDA wrote has been here before and bounces as
/// a loop (5.4.6); the same message for another user is delivered.
#[test]
fn without_the_d_flag_a_message_back_at_an_extension_address_bounces_as_a_loop() {
    let test = "without_the_d_flag_a_message_back_at_an_extension_address_bounces_as_a_loop";
    let Some((uid, gid, tmp)) = as_nobody(test) else {
        return;
    };
    // The LDA runs as nobody: the SQLite directory (with its WAL files) and the Maildirs
    // are nobody's.
    let data = tmp.path().join("data");
    let base = tmp.path().join("vmail");
    let cfg = tmp.path().join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nsqlite_path = \"{}/v.db\"\n\
             [mailbox]\nhome = \"{}/%d/%n\"\nmail = \"maildir:~/Maildir\"\n",
            data.display(),
            base.display()
        ),
    )
    .unwrap();
    set_mode(&cfg, 0o644);
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&base).unwrap();
    alice_and_bob(&cfg);
    for dir in [&data, &base] {
        for entry in walk(dir) {
            std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
        }
    }

    direct::sibling();
    let service = contrib_vmail_service(env!("CARGO_BIN_EXE_vmail-lda"), &cfg, "nobody");
    let without_d = service.replace("flags=DRhu", "flags=Rhu");
    assert_ne!(without_d, service);
    let Some(pf) = postfix_for(&without_d).start(test) else {
        return;
    };
    let alice = base.join("example.org/alice/Maildir");
    let bob = base.join("example.org/bob/Maildir");

    // The first time round: delivered, with the LDA's own Delivered-To line.
    let first = message("alice+lists@example.org", "first");
    let out = pf.send("sender@outside.test", &["alice+lists@example.org"], &first);
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        wait_until(Duration::from_secs(20), || new_files(&alice).len() == 1),
        "not delivered; maillog:\n{}",
        pf.maillog()
    );
    let stored = std::fs::read_to_string(&new_files(&alice)[0]).unwrap();
    assert!(
        stored
            .lines()
            .any(|l| l == "Delivered-To: alice+lists@example.org"),
        "{stored}"
    );

    // Back again, as a forwarder would send it: a loop.
    let back = format!(
        "Delivered-To: alice+lists@example.org\n{}",
        message("alice+lists@example.org", "back")
    );
    let out = pf.send("sender@outside.test", &["alice+lists@example.org"], &back);
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        pf.wait_log("status=bounced", Duration::from_secs(20)),
        "{}",
        pf.maillog()
    );
    let log = pf.maillog();
    let bounced = log
        .lines()
        .find(|l| l.contains("to=<alice+lists@example.org>") && l.contains("status=bounced"))
        .unwrap_or_else(|| panic!("no bounce for alice+lists@:\n{log}"));
    assert!(bounced.contains("5.4.6"), "{bounced}");
    assert_eq!(new_files(&alice).len(), 1);

    // Delivered to alice before, now for bob: delivered.
    let forwarded = format!(
        "Delivered-To: alice@example.org\n{}",
        message("bob@example.org", "fwd")
    );
    let out = pf.send("sender@outside.test", &["bob@example.org"], &forwarded);
    assert!(out.accepted(), "{}", out.transcript);
    assert!(
        wait_until(Duration::from_secs(20), || new_files(&bob).len() == 1),
        "not delivered to bob; maillog:\n{}",
        pf.maillog()
    );
}

/// `dir` and everything below it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            all.extend(walk(&e.path()));
        }
    }
    all
}
