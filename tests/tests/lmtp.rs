//! contrib's other delivery path end to end (issue 19 item 2): Postfix with
//! `virtual_transport = lmtp:unix:private/vmail-lmtp` (contrib/postfix/main.cf.vmail's
//! commented line, instead of the `vmail` pipe) hands mail to vmail-lmtpd, a real process on
//! contrib's vmail.toml (`[lmtpd]`), which writes the Maildirs that Dovecot serves over IMAP;
//! recipients with a Sieve script go on to Dovecot's LDA and Pigeonhole. Otherwise the same
//! stack as `mail_flow.rs` (`vmail_test_support::e2e::stack`, `Transport::Lmtp`), on both
//! lanes (`VMAIL_TEST_LANE`).
//!
//! One setup serves every test of this file; the tests run in parallel and tell their
//! messages apart by a token in the subject.

use vmail_test_support::dovecot::imap_login;
use vmail_test_support::e2e::*;
use vmail_test_support::root::SystemRoot;
use vmail_test_support::TestDb;

const ALICE: (&str, &str) = ("alice@example.org", "alice-pw");
const BOB: (&str, &str) = ("bob@example.org", "bob-pw");
/// Files list mail into a folder with a Sieve rule.
const ERIN: (&str, &str) = ("erin@example.org", "erin-pw");
/// On vacation; Grace, another local user, writes to him and gets the reply.
const FRANK: (&str, &str) = ("frank@example.org", "frank-pw");
const GRACE: (&str, &str) = ("grace@example.org", "grace-pw");
const OUTSIDER: &str = "someone@outside.test";

shared_setup!(World, setup);

fn setup() -> Option<World> {
    World::start_with(
        "vmail-e2e lmtp (shared setup)",
        e2e_binaries!(),
        Transport::Lmtp,
        fill,
    )
}

fn fill(_db: &TestDb, config: &std::path::Path, root: &SystemRoot) {
    let users: Vec<(&str, String)> = [ALICE, BOB, ERIN, FRANK, GRACE]
        .iter()
        .map(|(u, p)| (*u, doveadm_pw(root, "SHA512-CRYPT", p)))
        .collect();
    with_directory(config, async |d| {
        d.init(false).await.unwrap();
        d.migrate().await.unwrap();
        d.add_domain("example.org").await.unwrap();
        for (u, h) in &users {
            d.add_user(u, h, None).await.unwrap();
        }
    });
}

/// The lines of Postfix's log with a delivery status for `rcpt`.
fn statuses(w: &World, rcpt: &str) -> Vec<String> {
    let needle = format!("to=<{rcpt}>");
    w.postfix
        .maillog()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains("status="))
        .map(str::to_string)
        .collect()
}

/// Whether lmtpd logged a delivery to `rcpt` with `outcome` (vmail-lda's `Outcome`).
fn lmtpd_logged(w: &World, rcpt: &str, outcome: &str) -> bool {
    let line = format!("delivery recipient=\"{rcpt}\" outcome={outcome} ");
    w.lmtpd
        .as_ref()
        .expect("the stack runs vmail-lmtpd")
        .log()
        .lines()
        .any(|l| l.contains(&line))
}

/// `text` with CRLF line ends, as IMAP serves a Maildir file.
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// One SMTP transaction to two local users and an unknown one: smtpd refuses the unknown one
/// at RCPT (contrib's `virtual_mailbox_maps` through lookupd: lmtpd never hears of it), the
/// other two reach lmtpd together and are written once each into `new/`, with the trace
/// fields the LDA writes, and Dovecot serves them over IMAP.
#[test]
fn two_users_get_the_message_through_lmtpd_and_an_unknown_one_is_refused_at_rcpt() {
    let Some(w) = world() else { return };
    let token = "token-lmtp-two-and-unknown";
    let unknown = "nobody@example.org";
    let out = w.postfix.send(
        OUTSIDER,
        &[ALICE.0, unknown, BOB.0],
        &message(OUTSIDER, ALICE.0, token),
    );
    assert_eq!(out.rcpt_code(ALICE.0), 250, "{}", out.transcript);
    assert_eq!(out.rcpt_code(BOB.0), 250, "{}", out.transcript);
    assert_refused_as_unknown(&out, unknown);
    assert!(out.accepted(), "{}\n{}", out.transcript, w.logs());

    let lmtpd = w.lmtpd.as_ref().expect("the stack runs vmail-lmtpd");
    for (user, pw) in [ALICE, BOB] {
        let (path, text) = w.delivered_once(user, token);
        assert_eq!(
            path.parent().unwrap().file_name().unwrap(),
            "new",
            "{}",
            path.display()
        );
        let h = header(&text);
        // What the LDA writes in front (lmtpd delivers with its code), and Postfix's lmtp
        // client adds nothing of the kind.
        assert!(
            text.starts_with(&format!(
                "Return-Path: <{OUTSIDER}>\nDelivered-To: {user}\n"
            )),
            "{text}"
        );
        assert_eq!(h.matches("Return-Path: ").count(), 1, "{text}");
        assert_eq!(h.matches("Delivered-To: ").count(), 1, "{text}");
        assert_came_through_smtpd(&text);
        // Postfix's lmtp client to lmtpd's socket, not pipe(8) to vmail-lda.
        let status = statuses(&w, user);
        assert_eq!(status.len(), 1, "{status:?}\n{}", w.logs());
        assert!(
            status[0].contains("/private/vmail-lmtp]")
                && status[0].contains("status=sent (250 2.0.0"),
            "{status:?}"
        );
        assert!(
            lmtpd_logged(&w, user, "Delivered"),
            "no delivery to {user} in lmtpd's log\n{}",
            w.logs()
        );

        // Read back over IMAP, logging in through Dovecot's Lua passdb (vmail-authd).
        let mut imap = imap_login(w.dovecot.imap_port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP login {user}: {e}\n{}", w.logs()));
        let n = imap.select("INBOX").unwrap();
        let bodies: Vec<String> = (1..=n)
            .map(|i| String::from_utf8_lossy(&imap.fetch_body(i).unwrap()).into_owned())
            .filter(|b| b.contains(token))
            .collect();
        imap.logout().unwrap();
        assert_eq!(bodies, [crlf(&text)], "{user}: IMAP BODY[]");
    }
    // The unknown recipient never got as far as the queue, let alone lmtpd.
    assert_eq!(statuses(&w, unknown), Vec::<String>::new());
    assert!(!lmtpd.log().contains(unknown), "{}", lmtpd.log());
}

/// Issue 19 item 2: lmtpd hands a recipient with a Sieve script to Dovecot's LDA, as
/// vmail-lda does; Pigeonhole's `fileinto :create` files the message into its folder, once.
#[test]
fn a_sieve_fileinto_rule_works_behind_lmtpd() {
    let test = "a_sieve_fileinto_rule_works_behind_lmtpd";
    let Some(w) = world() else { return };
    if !w.have_pigeonhole(test) {
        return;
    }
    w.give_sieve_script(
        ERIN.0,
        "require [\"fileinto\", \"mailbox\"];\n\
         if header :contains \"subject\" \"token-lmtp-sieve-list\" {\n  \
         fileinto :create \"Lists\";\n}\n",
    );
    let token = "token-lmtp-sieve-list";
    w.send_ok(OUTSIDER, ERIN.0, token);
    let lists = w.maildir(ERIN.0).join(".Lists");
    let got = wait_for_message(&lists, token, std::time::Duration::from_secs(30));
    assert_eq!(got.len(), 1, "not filed into Lists\n{}", w.logs());
    let text = &got[0].1;
    let h = header(text);
    assert!(
        text.starts_with(&format!(
            "Return-Path: <{OUTSIDER}>\nDelivered-To: {}\n",
            ERIN.0
        )),
        "{text}"
    );
    assert_eq!(h.matches("Delivered-To: ").count(), 1, "{text}");
    assert_eq!(h.matches("Return-Path: ").count(), 1, "{text}");
    assert!(
        messages_with(&w.maildir(ERIN.0), token).is_empty(),
        "a copy in INBOX too\n{}",
        w.logs()
    );
    // Through lmtpd, which handed it off (dovecot-lda's exit status 0).
    assert!(
        lmtpd_logged(&w, ERIN.0, "HandedOff(0)"),
        "no hand-off for {} in lmtpd's log\n{}",
        ERIN.0,
        w.logs()
    );
    let status = statuses(&w, ERIN.0);
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(
        status[0].contains("/private/vmail-lmtp]") && status[0].contains("status=sent (250 "),
        "{status:?}"
    );
    // Dovecot serves the folder Pigeonhole made.
    let mut imap = imap_login(w.dovecot.imap_port, ERIN.0, ERIN.1)
        .unwrap_or_else(|e| panic!("IMAP login: {e}\n{}", w.logs()));
    assert_eq!(imap.select("Lists").unwrap(), 1);
    assert_eq!(
        String::from_utf8_lossy(&imap.fetch_body(1).unwrap()),
        crlf(text)
    );
    imap.logout().unwrap();
}

/// A Sieve vacation reply through lmtpd: Frank keeps the message, and the reply goes out
/// through Postfix and comes back through lmtpd to Grace, with the null sender (RFC 5230),
/// which lmtpd writes as `<>` (pipe(8)'s R flag wrote `<MAILER-DAEMON>`). A message with
/// the null sender (a bounce) to Frank is handed off too (`-f ""`; pipe(8) would have
/// passed `MAILER-DAEMON`).
#[test]
fn a_sieve_vacation_reply_goes_out_and_comes_back_through_lmtpd() {
    let Some(w) = world() else { return };
    if !w.have_pigeonhole("a_sieve_vacation_reply_goes_out_and_comes_back_through_lmtpd") {
        return;
    }
    w.give_sieve_script(
        FRANK.0,
        "require \"vacation\";\nvacation :days 1 :subject \"token-lmtp-away\" \"Frank is away.\";\n",
    );
    let bounce = "token-lmtp-null-sender";
    w.send_ok("", FRANK.0, bounce);
    let (_, text) = w.delivered_once(FRANK.0, bounce);
    assert!(
        text.starts_with(&format!("Return-Path: <>\nDelivered-To: {}\n", FRANK.0)),
        "{text}"
    );
    let token = "token-lmtp-vacation";
    w.send_ok(GRACE.0, FRANK.0, token);
    w.delivered_once(FRANK.0, token);
    assert!(
        lmtpd_logged(&w, FRANK.0, "HandedOff(0)"),
        "no hand-off for {} in lmtpd's log\n{}",
        FRANK.0,
        w.logs()
    );
    let (_, reply) = w.delivered_once(GRACE.0, "token-lmtp-away");
    let h = header(&reply);
    assert!(reply.contains("Frank is away."), "{reply}");
    assert!(h.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(
        reply.starts_with(&format!("Return-Path: <>\nDelivered-To: {}\n", GRACE.0)),
        "{reply}"
    );
}

/// contrib's `[lmtpd]`: lmtpd runs as the mail user, and its socket in Postfix's
/// `private/` is 0660 with Postfix's group of the lane's side (the root's gid on debian13).
#[test]
fn lmtpd_runs_unprivileged_behind_a_socket_for_postfix() {
    let Some(w) = world() else { return };
    assert_runs_as(w.lmtpd.as_ref().unwrap(), &w.lane.mail_user());
    assert_socket(
        &w.work.path().join("spool/private/vmail-lmtp"),
        w.lane.root.lookup_group("postfix").unwrap(),
    );
}
