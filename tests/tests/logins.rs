//! Logins through contrib's Dovecot Lua passdb/userdb and vmail-authd (issue 16), on both
//! lanes (`VMAIL_TEST_LANE`; Dovecot 2.3 on debian12, 2.4 on debian13): IMAP and POP3 with
//! the how-to's unprefixed DES crypt and with SHA512-CRYPT (on 2.4 without
//! `auth_allow_weak_schemes`: authd checks the password, Dovecot never sees the hash),
//! wrong passwords, authd's penalty counting IMAP failures and then refusing IMAP and SMTP
//! AUTH alike, and `doveadm user` through the userdb. The stack is
//! `vmail_test_support::e2e::stack`, as in mail_flow.rs; one setup serves every test of this
//! file.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use vmail_test_support::dovecot::{imap_login, imap_login_from, pop3_login};
use vmail_test_support::e2e::*;
use vmail_test_support::root::SystemRoot;
use vmail_test_support::TestDb;

/// Stored as the how-to's `ENCRYPT('secret')` (DES crypt, 13 characters, no scheme prefix).
const DES: (&str, &str) = ("des@example.org", "secret");
/// Stored as `doveadm pw -s SHA512-CRYPT`.
const SHA: (&str, &str) = ("sha@example.org", "sha-pw");
/// The penalty test's own login and client address (nobody else logs in from there).
const PENALIZED: (&str, &str) = ("pen@example.org", "pen-pw");
const PENALIZED_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Disabled in the database: refused like a wrong password, and without a userdb record.
const DISABLED: (&str, &str) = ("off@example.org", "off-pw");

shared_setup!(World, setup);

fn setup() -> Option<World> {
    World::start("vmail-e2e logins (shared setup)", e2e_binaries!(), fill)
}

fn fill(db: &TestDb, config: &Path, root: &SystemRoot) {
    with_directory(config, async |d| {
        d.init(false).await.unwrap();
        d.migrate().await.unwrap();
    });
    db.sql(&format!(
        "INSERT INTO domains (domain) VALUES ('example.org');\n\
         INSERT INTO users (email, password) VALUES ('{}', ENCRYPT('{}'));",
        DES.0, DES.1
    ));
    let stored = db.sql(&format!(
        "SELECT password FROM users WHERE email = '{}'",
        DES.0
    ));
    assert_eq!(stored.trim().len(), 13, "not a DES crypt: {stored:?}");
    let users: Vec<(&str, String)> = [SHA, PENALIZED, DISABLED]
        .iter()
        .map(|(u, p)| (*u, doveadm_pw(root, "SHA512-CRYPT", p)))
        .collect();
    with_directory(config, async |d| {
        for (u, h) in &users {
            d.add_user(u, h, None).await.unwrap();
        }
    });
    db.sql(&format!(
        "UPDATE users SET active = 0 WHERE email = '{}'",
        DISABLED.0
    ));
}

/// Sends a message to `to` over port 25 and waits until it is in the Maildir.
fn deliver(w: &World, to: &str, token: &str) {
    let from = "someone@outside.test";
    let out = w.postfix.send(from, &[to], &message(from, to, token));
    assert!(out.accepted(), "{}\n{}", out.transcript, w.logs());
    let got = wait_for_message(&w.maildir(to), token, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "{token} to {to}\n{}", w.logs());
}

#[test]
fn imap_and_pop3_log_in_and_read_with_des_and_sha512_crypt_hashes() {
    let Some(w) = world() else { return };
    for (user, pw) in [DES, SHA] {
        let token = format!("token-read-{user}");
        deliver(&w, user, &token);
        let mut imap = imap_login(w.dovecot.imap_port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP login {user}: {e}\n{}", w.logs()));
        assert_eq!(imap.select("INBOX").unwrap(), 1, "{user}");
        let body = String::from_utf8_lossy(&imap.fetch_body(1).unwrap()).into_owned();
        assert!(body.contains(&token), "{user}: {body}");
        imap.logout().unwrap();

        let mut pop = pop3_login(w.dovecot.pop3_port, user, pw)
            .unwrap_or_else(|e| panic!("POP3 login {user}: {e}\n{}", w.logs()));
        assert_eq!(pop.stat().unwrap().0, 1, "{user}");
        let body = String::from_utf8_lossy(&pop.retr(1).unwrap()).into_owned();
        assert!(body.contains(&token), "{user}: {body}");
        pop.quit().unwrap();
    }
    // Dovecot 2.4 refuses weak schemes (DES crypt among them) unless allowed: vmail's route
    // must not need that, since authd checks the password.
    if w.lane.is_debian13() {
        let out = w
            .dovecot
            .root
            .command("doveconf")
            .arg("-c")
            .arg(w.dovecot.conf_path())
            .args(["-h", "auth_allow_weak_schemes"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn wrong_passwords_unknown_and_disabled_users_fail_over_imap_and_pop3() {
    let Some(w) = world() else { return };
    for (user, pw) in [
        (SHA.0, "not-the-password"),
        (DES.0, "not-the-password"),
        ("nobody@example.org", "whatever"),
        (DISABLED.0, DISABLED.1),
    ] {
        let imap = imap_login(w.dovecot.imap_port, user, pw);
        let err = imap.as_ref().err().cloned().unwrap_or_default();
        assert!(
            err.contains("[AUTHENTICATIONFAILED]"),
            "IMAP {user} {pw}: {:?}\n{}",
            imap.as_ref().map(|_| "logged in"),
            w.logs()
        );
        let pop = pop3_login(w.dovecot.pop3_port, user, pw);
        let err = pop.as_ref().err().cloned().unwrap_or_default();
        assert!(
            err.starts_with("-ERR [AUTH]"),
            "POP3 {user} {pw}: {:?}\n{}",
            pop.as_ref().map(|_| "logged in"),
            w.logs()
        );
    }
    // And the right one still works (a failure is no lock-out below the penalty threshold).
    imap_login(w.dovecot.imap_port, SHA.0, SHA.1)
        .unwrap_or_else(|e| panic!("IMAP login after failures: {e}\n{}", w.logs()));
}

#[test]
fn the_penalty_counts_imap_failures_and_then_refuses_imap_and_smtp_auth_until_the_window_passes() {
    let Some(w) = world() else { return };
    let imap =
        |pw: &str| imap_login_from(Some(PENALIZED_FROM), w.dovecot.imap_port, PENALIZED.0, pw);
    let smtp = || {
        Submitter {
            port: w.submission_port(),
            mech: "PLAIN",
            user: PENALIZED.0,
            password: PENALIZED.1,
        }
        .auth_only_from(&PENALIZED_FROM.to_string())
    };
    // Before: the right password works from there, over both.
    imap(PENALIZED.1).unwrap_or_else(|e| panic!("IMAP before: {e}\n{}", w.logs()));
    let r = smtp();
    assert_eq!(r.code_after("AUTH"), 235, "{}\n{}", r.transcript, w.logs());

    // penalty_block_after wrong IMAP logins (each a different password: a repeat counts
    // once) from one address...
    for i in 0..PENALTY_BLOCK_AFTER {
        let e = imap(&format!("wrong-{i}")).err().unwrap_or_default();
        assert!(e.contains("AUTHENTICATIONFAILED"), "attempt {i}: {e}");
    }
    // ...and the right password fails too, over IMAP and over SMTP AUTH.
    let e = imap(PENALIZED.1).err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.contains("AUTHENTICATIONFAILED")),
        "the right password got in past the penalty: {e:?}\n{}",
        w.logs()
    );
    let r = smtp();
    assert_eq!(r.code_after("AUTH"), 535, "{}\n{}", r.transcript, w.logs());
    // The window runs from a network's last failure, and a refused attempt is one.
    let last_failure = Instant::now();
    // Other addresses are not affected.
    imap_login(w.dovecot.imap_port, PENALIZED.0, PENALIZED.1)
        .unwrap_or_else(|e| panic!("IMAP from 127.0.0.1 while .2 is blocked: {e}\n{}", w.logs()));
    assert!(
        w.authd.log().contains("rip=127.0.0.2"),
        "authd never saw the client's address:\n{}",
        w.authd.log()
    );

    // Once the window has passed, the right password works again.
    std::thread::sleep(
        Duration::from_secs(PENALTY_WINDOW_S.into()).saturating_sub(last_failure.elapsed())
            + Duration::from_millis(500),
    );
    imap(PENALIZED.1).unwrap_or_else(|e| panic!("IMAP after the window: {e}\n{}", w.logs()));
    let r = smtp();
    assert_eq!(r.code_after("AUTH"), 235, "{}\n{}", r.transcript, w.logs());
}

#[test]
fn doveadm_user_reads_the_lua_userdb() {
    let Some(w) = world() else { return };
    let out = w.dovecot.doveadm(&["user", SHA.0]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "doveadm user {}: {text}{}\n{}",
        SHA.0,
        String::from_utf8_lossy(&out.stderr),
        w.logs()
    );
    let user = mail_user();
    let home = w.mail_base.join("example.org/sha");
    for want in [
        format!("uid\t{}", user.uid),
        format!("gid\t{}", user.gid),
        format!("home\t{}", home.display()),
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(&want)),
            "no `{want}` in:\n{text}"
        );
    }
    // Unknown and disabled users have no record: exit 67 (EX_NOUSER), not a failure.
    for user in ["nobody@example.org", DISABLED.0] {
        let out = w.dovecot.doveadm(&["user", user]);
        assert_eq!(
            out.status.code(),
            Some(67),
            "doveadm user {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Iteration: every active user.
    let out = w.dovecot.doveadm(&["user", "*"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "doveadm user '*': {text}");
    let mut listed: Vec<&str> = text.lines().map(str::trim).collect();
    listed.sort();
    assert_eq!(listed, [DES.0, PENALIZED.0, SHA.0], "{text}");
}
