//! The real Postfix `lmtp` client against vmail-lmtpd (issue 19 item 3): a private Postfix
//! with `virtual_transport = lmtp:unix:private/vmail-lmtp`, lmtpd in-process bound in its
//! queue directory. One message to a deliverable, an unknown and an over-quota recipient
//! gives one result per recipient in Postfix's log; a retry of the deferred one delivers
//! nothing twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmail_config::{Loaded, Source};
use vmail_test_support::postfix::PostfixBuilder;
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

#[test]
fn postfix_lmtp_client_gets_one_verdict_per_recipient() {
    let test = "postfix_lmtp_client_gets_one_verdict_per_recipient";
    let Some(pf) = PostfixBuilder::new()
        .main("virtual_mailbox_domains = example.org")
        .main("virtual_mailbox_maps = static:accept")
        .main("virtual_transport = lmtp:unix:private/vmail-lmtp")
        .start(test)
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().display().to_string();
    let text = format!(
        "[database]\nsqlite_path = \"{base}/v.db\"\n\
         [mailbox]\nhome = \"{base}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n\
         [lda]\nover_quota = \"defer\"\n\
         [lmtpd]\nlisten = [\"unix:{}/queue/private/vmail-lmtp\"]\nuser = \"\"\n\
         spool = \"{base}/spool\"\npid_file = \"{base}/lmtpd.pid\"\n",
        pf.dir.real().display()
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
