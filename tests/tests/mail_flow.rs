//! The whole path of a mail server built from vmail, wired exactly as `contrib/` documents
//! (`vmail_test_support::e2e::stack`): mail in over SMTP through Postfix and vmail-lookupd,
//! delivered by vmail-lda run by pipe(8), read back over IMAP and POP3 from a Dovecot whose Lua
//! passdb/userdb asks vmail-authd; SMTP AUTH on the submission port through vmail-authd; a
//! MariaDB database of its own. Only socket paths, ports, binary paths, the system user
//! (`nobody` for `vmail`), Postfix's and Dovecot's groups and the database are replaced.
//! Runs on both lanes (`VMAIL_TEST_LANE`, `common/lane.rs`).
//!
//! One setup serves every test of this file (about 3 s to build); the tests run in parallel
//! and tell their messages apart by a token in the subject.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmail_test_support::dovecot::{imap_login, pop3_login};
use vmail_test_support::e2e::*;
use vmail_test_support::postfix::smtp_send;
use vmail_test_support::root::SystemRoot;
use vmail_test_support::TestDb;

const ALICE: (&str, &str) = ("alice@example.org", "alice-pw");
/// Stored as the how-to's `ENCRYPT('secret')` (DES crypt, no scheme prefix).
const BOB: (&str, &str) = ("bob@example.org", "secret");
const CAROL: (&str, &str) = ("carol@example.org", "carol-pw");
/// The target of the catch-all `@example.com`.
const DAVE: (&str, &str) = ("dave@example.org", "dave-pw");
/// A mailbox in the catch-all domain: mailboxes win over the catch-all.
const SALES: (&str, &str) = ("sales@example.com", "sales-pw");
/// An alias with two destinations.
const TEAM: &str = "team@example.org";
const OUTSIDER: &str = "someone@outside.test";
/// Users with a Sieve script (issue 19): their messages go through Dovecot's LDA and
/// Pigeonhole. Erin files list mail into a folder; Frank is on vacation, and Grace, another
/// local user, writes to him and gets the reply.
const ERIN: (&str, &str) = ("erin@example.org", "erin-pw");
const FRANK: (&str, &str) = ("frank@example.org", "frank-pw");
const GRACE: (&str, &str) = ("grace@example.org", "grace-pw");

shared_setup!(World, setup);

fn setup() -> Option<World> {
    World::start("vmail-e2e mail_flow (shared setup)", e2e_binaries!(), fill)
}

/// The schema, then the rows: one user the how-to's way (MariaDB's ENCRYPT()), the rest
/// with hashes from `doveadm pw`.
fn fill(db: &TestDb, config: &Path, root: &SystemRoot) {
    with_directory(config, async |d| {
        d.init(false).await.unwrap();
        d.migrate().await.unwrap();
    });
    db.sql(&format!(
        "INSERT INTO domains (domain) VALUES ('example.org'), ('example.com');\n\
         INSERT INTO users (email, password) VALUES ('{}', ENCRYPT('{}'));",
        BOB.0, BOB.1
    ));
    let users: Vec<(&str, String)> = [ALICE, CAROL, DAVE, SALES, ERIN, FRANK, GRACE]
        .iter()
        .map(|(u, p)| (*u, doveadm_pw(root, "SHA512-CRYPT", p)))
        .collect();
    with_directory(config, async |d| {
        for (u, h) in &users {
            d.add_user(u, h, None).await.unwrap();
        }
        d.add_alias(TEAM, &[ALICE.0.into(), BOB.0.into()])
            .await
            .unwrap();
        d.add_alias("@example.com", &[DAVE.0.into()]).await.unwrap();
    });
}

/// Sends over port 25 from outside and insists the message was queued.
fn send_ok(w: &World, to: &str, token: &str) {
    w.send_ok(OUTSIDER, to, token);
}

/// Waits for the one copy of the message with `token` in `email`'s Maildir.
fn delivered_once(w: &World, email: &str, token: &str) -> (PathBuf, String) {
    w.delivered_once(email, token)
}

#[test]
fn mail_lands_in_the_maildir_and_is_read_over_imap_and_pop3() {
    let Some(w) = world() else { return };
    let token = "token-imap-pop3";
    send_ok(&w, CAROL.0, token);
    let (path, text) = delivered_once(&w, CAROL.0, token);

    // What pipe(8)'s flags=DRhu and the LDA put in front of the message.
    let h = header(&text);
    assert!(
        text.starts_with(&format!("Return-Path: <{OUTSIDER}>\n")),
        "{text}"
    );
    assert_eq!(
        h.matches(&format!("Delivered-To: {}\n", CAROL.0)).count(),
        1,
        "{text}"
    );
    assert_came_through_smtpd(&text);

    // The stored file: bare LF line ends, and S= in its name is its size.
    let stored = std::fs::read(&path).unwrap();
    assert!(!stored.contains(&b'\r'), "Maildir files hold LF line ends");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let s_size: u64 = name
        .split(",S=")
        .nth(1)
        .and_then(|s| s.split([',', ':']).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no S= in {name}"));
    assert_eq!(s_size, stored.len() as u64, "{name}");
    // What IMAP and POP3 serve: the same bytes with CRLF line ends.
    let crlf: Vec<u8> = stored
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    let size = crlf.len() as u64;

    // IMAP, logging in through Dovecot's Lua passdb (vmail-authd) with the contrib files.
    let wrong = imap_login(w.dovecot.imap_port, CAROL.0, "not-the-password");
    assert!(
        wrong
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("AUTHENTICATIONFAILED")),
        "wrong IMAP password: {:?}",
        wrong.as_ref().map(|_| "logged in")
    );
    let mut imap = imap_login(w.dovecot.imap_port, CAROL.0, CAROL.1)
        .unwrap_or_else(|e| panic!("IMAP login: {e}\n{}", w.logs()));
    assert_eq!(imap.select("INBOX").unwrap(), 1);
    assert_eq!(imap.fetch_size(1).unwrap(), size, "IMAP RFC822.SIZE");
    assert_eq!(
        String::from_utf8_lossy(&imap.fetch_body(1).unwrap()),
        String::from_utf8_lossy(&crlf),
        "IMAP BODY[]"
    );
    imap.logout().unwrap();

    let mut pop = pop3_login(w.dovecot.pop3_port, CAROL.0, CAROL.1)
        .unwrap_or_else(|e| panic!("POP3 login: {e}\n{}", w.logs()));
    assert_eq!(pop.stat().unwrap(), (1, size), "POP3 STAT");
    assert_eq!(
        String::from_utf8_lossy(&pop.retr(1).unwrap()),
        String::from_utf8_lossy(&crlf),
        "POP3 RETR"
    );
    pop.quit().unwrap();
}

#[test]
fn an_alias_with_two_destinations_reaches_both() {
    let Some(w) = world() else { return };
    let token = "token-alias-two-destinations";
    send_ok(&w, TEAM, token);
    for user in [ALICE.0, BOB.0] {
        let (_, text) = delivered_once(&w, user, token);
        assert!(
            header(&text).contains(&format!("Delivered-To: {user}\n")),
            "{user}: {text}"
        );
    }
}

#[test]
fn a_catch_all_reaches_its_target_and_mailboxes_win_over_it() {
    let Some(w) = world() else { return };
    let token = "token-catch-all";
    send_ok(&w, "whoever@example.com", token);
    let (_, text) = delivered_once(&w, DAVE.0, token);
    assert!(
        header(&text).contains(&format!("Delivered-To: {}\n", DAVE.0)),
        "{text}"
    );

    // sales@example.com is a mailbox: it gets its mail, the catch-all target does not.
    let token = "token-mailbox-beats-catch-all";
    send_ok(&w, SALES.0, token);
    delivered_once(&w, SALES.0, token);
    assert!(
        messages_with(&w.maildir(DAVE.0), token).is_empty(),
        "the catch-all took mail of an existing mailbox"
    );
}

#[test]
fn an_address_extension_reaches_the_user() {
    let Some(w) = world() else { return };
    let token = "token-plus-tag";
    send_ok(&w, "alice+tag@example.org", token);
    let (_, text) = delivered_once(&w, ALICE.0, token);
    // pipe(8) names the recipient with its extension; the LDA found alice without it.
    assert!(
        header(&text).contains("Delivered-To: alice+tag@example.org\n"),
        "{text}"
    );
}

#[test]
fn an_unknown_user_of_a_known_domain_is_rejected_at_rcpt() {
    let Some(w) = world() else { return };
    let to = "nobody@example.org";
    let out = w.postfix.send(
        OUTSIDER,
        &[to],
        &message(OUTSIDER, to, "token-unknown-user"),
    );
    assert_refused_as_unknown(&out, to);
    assert!(out.data.is_none(), "DATA sent without a recipient");
}

#[test]
fn an_unknown_domain_is_relay_denied() {
    let Some(w) = world() else { return };
    let to = "someone@unknown.test";
    let out = w
        .postfix
        .send(OUTSIDER, &[to], &message(OUTSIDER, to, "token-relay"));
    let (_, reply) = &out.rcpt[0];
    assert_eq!(reply.code, 554, "{}", out.transcript);
    assert_eq!(
        reply.text,
        format!("5.7.1 <{to}>: Relay access denied"),
        "{}",
        out.transcript
    );
    assert!(out.data.is_none());
}

#[test]
fn smtp_auth_plain_and_login_over_starttls_on_submission() {
    let Some(w) = world() else { return };
    let port = w.submission_port();

    // Before STARTTLS the submission smtpd neither offers AUTH nor takes mail.
    let plain = smtp_send(port, ALICE.0, &[BOB.0], "Subject: x\n\nx\n");
    assert_eq!(plain.ehlo.code, 250, "{}", plain.transcript);
    assert!(
        plain.ehlo.text.contains("STARTTLS") && !plain.ehlo.text.contains("AUTH"),
        "{}",
        plain.transcript
    );
    assert_eq!(plain.mail.code, 530, "{}", plain.transcript);

    let auth = |mech: &str, user: &str, pw: &str| -> Swaks {
        Submitter {
            port,
            mech,
            user,
            password: pw,
        }
        .auth_only()
    };
    for (mech, (user, pw)) in [
        ("PLAIN", ALICE),
        ("LOGIN", ALICE),
        // The how-to's DES crypt, through Postfix.
        ("PLAIN", BOB),
        ("LOGIN", BOB),
    ] {
        let r = auth(mech, user, pw);
        let reply = r.reply_after("AUTH");
        assert_eq!(
            reply.as_ref().map(|(c, _)| *c),
            Some(235),
            "AUTH {mech} {user} with the right password: {reply:?}\n{}\n{}",
            r.transcript,
            w.logs()
        );
        // TLS was really used for the AUTH (swaks marks TLS lines with `~`).
        assert!(
            r.transcript.contains("~> AUTH"),
            "AUTH not sent over TLS:\n{}",
            r.transcript
        );
    }
    // Wrong passwords and an unknown user: 535 (after authd's 2 s failure delay and its
    // doubling penalty, still inside Postfix's wait), never 454.
    for (mech, user, pw) in [
        ("PLAIN", ALICE.0, "wrong"),
        ("LOGIN", ALICE.0, "wrong"),
        ("PLAIN", "nobody@example.org", "wrong"),
    ] {
        let r = auth(mech, user, pw);
        let reply = r.reply_after("AUTH");
        assert_eq!(
            reply.as_ref().map(|(c, _)| *c),
            Some(535),
            "AUTH {mech} {user} {pw}: {reply:?}\n{}\n{}",
            r.transcript,
            w.logs()
        );
        assert!(reply.unwrap().1.starts_with("5.7.8"), "{}", r.transcript);
    }
    // The right password still works after failures (and clears the penalty).
    let r = auth("PLAIN", ALICE.0, ALICE.1);
    assert_eq!(r.code_after("AUTH"), 235, "{}", r.transcript);

    // authd logged the failures the way fail2ban matches them, with Postfix's client address.
    let log = w.authd.log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("alice@example.org") && l.contains("rip=127.0.0.1")),
        "no fail2ban line for alice from 127.0.0.1 in the authd log:\n{log}"
    );
}

#[test]
fn an_authenticated_user_may_send_only_as_her_own_addresses() {
    let Some(w) = world() else { return };
    let port = w.submission_port();
    let submit = |(user, pw): (&str, &str), from: &str, token: &str| {
        let r = Submitter {
            port,
            mech: "PLAIN",
            user,
            password: pw,
        }
        .send(from, BOB.0, token);
        assert_eq!(
            r.code_after("AUTH"),
            235,
            "AUTH {user}:\n{}\n{}",
            r.transcript,
            w.logs()
        );
        r
    };

    // alice as bob: refused (smtpd_delay_reject: at RCPT, where sender restrictions run).
    let r = submit(ALICE, BOB.0, "token-forged-sender");
    let (code, text) = r.reply_after("RCPT TO").expect("a RCPT reply");
    assert_eq!(code, 553, "{}", r.transcript);
    assert!(
        text.starts_with(&format!(
            "5.7.1 <{}>: Sender address rejected: not owned by user {}",
            BOB.0, ALICE.0
        )),
        "{}",
        r.transcript
    );
    // And bob as alice.
    let r = submit(BOB, ALICE.0, "token-forged-sender-2");
    assert_eq!(r.code_after("RCPT TO"), 553, "{}", r.transcript);

    // alice as herself, and as an alias that delivers to her: accepted and delivered.
    for (from, token) in [(ALICE.0, "token-own-sender"), (TEAM, "token-alias-sender")] {
        let r = submit(ALICE, from, token);
        assert_eq!(r.code_after("RCPT TO"), 250, "{}", r.transcript);
        assert_eq!(r.code_after("."), 250, "{}", r.transcript);
        let (_, text) = delivered_once(&w, BOB.0, token);
        assert!(
            text.starts_with(&format!("Return-Path: <{from}>\n")),
            "{text}"
        );
    }
    for token in ["token-forged-sender", "token-forged-sender-2"] {
        assert!(
            messages_with(&w.maildir(BOB.0), token).is_empty(),
            "a refused message was delivered"
        );
    }
}

#[test]
fn the_daemons_run_unprivileged_behind_the_documented_socket_permissions() {
    let Some(w) = world() else { return };
    let user = mail_user();
    for d in [&w.lookupd, &w.authd] {
        assert_runs_as(d, &user);
    }
    // contrib: every socket 0660; groups postfix, dovecot, and the LDA's (vmail, here nogroup).
    // authd's Lua socket is Dovecot's too.
    let spool = w.work.path().join("spool/private");
    // Postfix's and Dovecot's groups of the lane's side (the root's ids on debian13).
    let postfix = w.lane.root.lookup_group("postfix").unwrap();
    let dovecot = w.lane.root.lookup_group("dovecot").unwrap();
    for (sock, gid) in [
        (spool.join("vmail-lookupd"), postfix),
        (spool.join("vmail-auth"), postfix),
        (w.work.path().join("run/auth-dict"), dovecot),
        (w.work.path().join("run/auth-lua"), dovecot),
        (w.work.path().join("run/lookupd"), user.gid),
    ] {
        assert_socket(&sock, gid);
    }
}

#[test]
fn case_does_not_matter_in_recipients_and_logins() {
    let Some(w) = world() else { return };
    // Like the classic MySQL maps (case-insensitive collations), and to one canonical
    // recipient: lookupd answers alice@example.org for ALICE@EXAMPLE.ORG.
    send_ok(&w, "ALICE@EXAMPLE.ORG", "token-upper-case-user");
    let (_, text) = delivered_once(&w, ALICE.0, "token-upper-case-user");
    assert!(
        header(&text).contains("Delivered-To: alice@example.org\n"),
        "{text}"
    );
    send_ok(&w, "Team@Example.ORG", "token-upper-case-alias");
    delivered_once(&w, ALICE.0, "token-upper-case-alias");
    delivered_once(&w, BOB.0, "token-upper-case-alias");

    // authd hands Postfix the canonical login, which is what smtpd_sender_login_maps
    // answers are compared with: alice logging in as ALICE@Example.ORG owns her address.
    let r = Submitter {
        port: w.submission_port(),
        mech: "PLAIN",
        user: "ALICE@Example.ORG",
        password: ALICE.1,
    }
    .send(ALICE.0, BOB.0, "token-upper-case-login");
    assert_eq!(r.code_after("AUTH"), 235, "{}", r.transcript);
    assert_eq!(r.code_after("RCPT TO"), 250, "{}", r.transcript);
    assert_eq!(r.code_after("."), 250, "{}", r.transcript);
    delivered_once(&w, BOB.0, "token-upper-case-login");
}

/// Issue 19 item 1: a user's `fileinto` rule still works behind vmail-lda (which hands the
/// message to Dovecot's LDA), and the message arrives once, in the folder only.
#[test]
fn a_sieve_fileinto_rule_files_the_message_into_its_folder() {
    let Some(w) = world() else { return };
    if !w.have_pigeonhole("a_sieve_fileinto_rule_files_the_message_into_its_folder") {
        return;
    }
    w.give_sieve_script(
        ERIN.0,
        // :create, as contrib does not let Dovecot's LDA create folders for everybody.
        "require [\"fileinto\", \"mailbox\", \"envelope\", \"subaddress\"];\n\
         if anyof (header :contains \"subject\" \"token-sieve-list\",\n\
                   envelope :detail \"to\" \"lists\") {\n  fileinto :create \"Lists\";\n}\n",
    );
    send_ok(&w, ERIN.0, "token-sieve-list");
    let lists = w.maildir(ERIN.0).join(".Lists");
    let got = wait_for_message(&lists, "token-sieve-list", Duration::from_secs(30));
    assert_eq!(got.len(), 1, "not filed into Lists\n{}", w.logs());
    let text = &got[0].1;
    let h = header(text);
    assert_eq!(
        h.matches(&format!("Delivered-To: {}\n", ERIN.0)).count(),
        1,
        "{text}"
    );
    assert_eq!(h.matches("Return-Path: ").count(), 1, "{text}");
    assert!(
        messages_with(&w.maildir(ERIN.0), "token-sieve-list").is_empty(),
        "a copy in INBOX too\n{}",
        w.logs()
    );
    // The envelope keeps the address extension (dovecot-lda's -r), though Dovecot's userdb
    // is asked for the stored address (-d).
    let detail = "erin+lists@example.org";
    send_ok(&w, detail, "token-sieve-detail");
    let got = wait_for_message(&lists, "token-sieve-detail", Duration::from_secs(30));
    assert_eq!(got.len(), 1, "+lists not filed into Lists\n{}", w.logs());
    assert!(
        header(&got[0].1).contains(&format!("Delivered-To: {detail}\n")),
        "{}",
        got[0].1
    );
    // A message the rule does not match stays in INBOX, through the same hand-off.
    send_ok(&w, ERIN.0, "token-sieve-inbox");
    delivered_once(&w, ERIN.0, "token-sieve-inbox");
    // contrib's lines keep dovecot-lda quiet: nothing but the status in Postfix's log.
    let log = w.postfix.maillog();
    let handed_off = log
        .lines()
        .filter(|l| l.contains("to=<erin"))
        .collect::<Vec<_>>();
    assert_eq!(handed_off.len(), 3, "{log}");
    for l in handed_off {
        assert!(l.ends_with("(delivered via vmail service)"), "{l}");
    }
}

/// Issue 19 item 1: a vacation reply goes out through Postfix and reaches the sender (Grace,
/// a local user); Frank keeps the message.
#[test]
fn a_sieve_vacation_reply_reaches_the_sender() {
    let Some(w) = world() else { return };
    if !w.have_pigeonhole("a_sieve_vacation_reply_reaches_the_sender") {
        return;
    }
    w.give_sieve_script(
        FRANK.0,
        "require \"vacation\";\nvacation :days 1 :subject \"token-sieve-away\" \"Frank is away.\";\n",
    );
    let token = "token-sieve-vacation";
    let out = w
        .postfix
        .send(GRACE.0, &[FRANK.0], &message(GRACE.0, FRANK.0, token));
    assert!(out.accepted(), "{}\n{}", out.transcript, w.logs());
    delivered_once(&w, FRANK.0, token);
    let (_, reply) = delivered_once(&w, GRACE.0, "token-sieve-away");
    let h = header(&reply);
    assert!(reply.contains("Frank is away."), "{reply}");
    assert!(h.contains("Auto-Submitted: auto-replied"), "{reply}");
    // RFC 5230: a vacation reply has the null sender, so it never loops (pipe(8)'s R flag
    // writes that as <MAILER-DAEMON>).
    assert!(
        reply.starts_with("Return-Path: <MAILER-DAEMON>\n"),
        "{reply}"
    );
}
