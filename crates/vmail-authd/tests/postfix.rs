//! A real Postfix smtpd doing SMTP AUTH against vmail-authd (`smtpd_sasl_type = dovecot`),
//! with the SASL lines shipped in `contrib/postfix/main.cf.vmail` (only the socket path
//! made absolute), driven by swaks: right password 235, wrong 535, and while the database is
//! down 454 (try again later), never 535; 235 again once it is back. A refused account's
//! right password gets a wrong password's 535, after the same delay.

use std::process::Output;
use std::time::Instant;

use vmail_test_support::authd::*;
use vmail_test_support::contrib::contrib_sasl_lines;
use vmail_test_support::postfix::{swaks, PostfixBuilder, PrivatePostfix};
use vmail_test_support::{have, skip, PrivateMariaDb};

/// authd on `config`, and a private Postfix whose smtpd authenticates through it with
/// contrib's SASL lines; `None` when the test is skipped.
fn start(test: &str, config: vmail_config::Config) -> Option<(Daemon, PrivatePostfix)> {
    let authd = Daemon::start(config);
    // smtpd runs as `postfix`.
    authd.open_sockets();
    let mut builder = PostfixBuilder::new();
    for line in contrib_sasl_lines(&authd.auth_socket) {
        builder = builder.main(&line);
    }
    let pf = builder.start(test)?;
    Some((authd, pf))
}

/// The final reply of an AUTH exchange: code (0 if none) and text.
struct AuthReply {
    code: u16,
    text: String,
    transcript: String,
}

/// `swaks --auth MECH` against the private smtpd, quitting after AUTH. The reply is the
/// first after the AUTH command that is not a 334 challenge.
fn auth(port: u16, mech: &str, user: &str, password: &str) -> AuthReply {
    let out: Output = swaks(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--ehlo",
        "client.test.invalid",
        "--from",
        user,
        "--to",
        "someone@example.org",
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--quit-after",
        "AUTH",
        "--timeout",
        "20",
    ]);
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // swaks marks what it sends with `->`/`~>` and what it receives with `<-`/`<~`, an
    // error reply with `<**`/`<~*`.
    let mut after_auth = false;
    let (mut code, mut text) = (0, String::new());
    for line in transcript.lines() {
        let l = line.trim_start();
        let (marker, rest) = l.split_once(' ').unwrap_or((l, ""));
        if marker.ends_with('>') && rest.trim_start().starts_with("AUTH") {
            after_auth = true;
            continue;
        }
        if after_auth && marker.starts_with('<') {
            let rest = rest.trim_start();
            let c: u16 = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if c != 334 {
                code = c;
                text = rest.get(4..).unwrap_or("").to_string();
                break;
            }
        }
    }
    AuthReply {
        code,
        text,
        transcript,
    }
}

/// What smtpd answered while the database was down: 454, because authd hangs up instead
/// of answering (Postfix's Dovecot SASL client, xsasl_dovecot_server.c, turns every FAIL
/// into 535 whatever its code, and only a lost connection into 454).
fn temporary(r: &AuthReply) -> bool {
    r.code == 454
}

/// Right and wrong passwords with PLAIN and LOGIN, then the database killed and resumed:
/// 454 while it is down.
fn auth_and_outage(test: &str) {
    if !have("swaks") {
        skip(test, "swaks is not installed; run scripts/test-deps");
        return;
    }
    let Some(mut db) = PrivateMariaDb::start(test) else {
        return;
    };
    let mut config = test_config(db.config());
    // An outage must be noticed quickly, well inside Postfix's ~10 s wait for the server.
    config.database.connect_timeout_ms = 500;
    config.database.query_timeout_ms = 1500;
    config.authd.request_timeout_ms = 2000;
    let sha = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"alice-pw").unwrap();
    populate(
        &config,
        &["example.org"],
        &[
            ("alice@example.org", &sha),
            // The how-to's ENCRYPT('secret').
            ("bob@example.org", "abNANd1rDfiNc"),
            // Never logs in before the outage.
            ("carol@example.org", &sha),
        ],
    );
    let Some((_authd, pf)) = start(test, config) else {
        return;
    };
    let port = pf.smtp_port;
    let check = |cases: &[(&str, &str, &str, Want)], phase: &str| {
        for (mech, user, pw, want) in cases {
            let began = Instant::now();
            let r = auth(port, mech, user, pw);
            let ok = match want {
                Want::Code(c) => r.code == *c,
                Want::Temporary => temporary(&r),
            };
            assert!(
                ok,
                "{phase}: AUTH {mech} {user} {pw:?}: want {want:?}, got {} {:?} after {:?}\n{}\n\
                 --- maillog:\n{}",
                r.code,
                r.text,
                began.elapsed(),
                r.transcript,
                pf.maillog()
            );
        }
    };
    use Want::*;
    let alice = "alice@example.org";
    let bob = "bob@example.org";

    check(
        &[
            ("PLAIN", alice, "alice-pw", Code(235)),
            ("LOGIN", alice, "alice-pw", Code(235)),
            ("PLAIN", bob, "secret", Code(235)),
            ("LOGIN", bob, "secret", Code(235)),
            ("PLAIN", alice, "wrong", Code(535)),
            ("LOGIN", alice, "wrong", Code(535)),
            ("PLAIN", "nobody@example.org", "wrong", Code(535)),
        ],
        "database up",
    );
    // A wrong password is a plain failure, not a temporary one.
    let wrong = auth(port, "PLAIN", alice, "wrong");
    assert!(!temporary(&wrong), "{}", wrong.transcript);

    // The database goes away: "try again later", for right and wrong passwords alike
    // (nothing can be checked), never a plain "wrong password" — except for a login and
    // password verified within [authd] cache_recheck_s, answered from memory.
    db.kill();
    check(
        &[
            // First, while well inside the 30 s window of the logins above.
            ("PLAIN", alice, "alice-pw", Code(235)),
            ("LOGIN", bob, "secret", Code(235)),
            ("PLAIN", "carol@example.org", "alice-pw", Temporary),
            ("LOGIN", "carol@example.org", "alice-pw", Temporary),
            ("PLAIN", alice, "wrong", Temporary),
        ],
        "database down",
    );

    // Back: the very next attempt succeeds.
    db.resume();
    check(
        &[
            ("PLAIN", alice, "alice-pw", Code(235)),
            ("LOGIN", bob, "secret", Code(235)),
            ("PLAIN", alice, "wrong", Code(535)),
        ],
        "database back",
    );
}

#[derive(Debug)]
enum Want {
    Code(u16),
    /// 454.
    Temporary,
}

#[test]
fn smtp_auth_right_wrong_and_database_outage() {
    auth_and_outage("smtp_auth_right_wrong_and_database_outage");
}

/// Issue 20.4: through real Postfix, the right password of a disabled account and of an
/// account without `smtp` in its services gets the same 535 as a wrong password, after
/// the same failure delay; the reason is only in authd's log.
#[test]
fn smtp_auth_refused_accounts_look_like_a_wrong_password() {
    let test = "smtp_auth_refused_accounts_look_like_a_wrong_password";
    if !have("swaks") {
        skip(test, "swaks is not installed; run scripts/test-deps");
        return;
    }
    let (_t, config) = vmail_test_support::sqlite_config();
    let mut config = test_config(config);
    config.authd.failure_delay_ms = 1000;
    config.authd.max_delay_ms = 2000;
    // Postfix connects from 127.0.0.1: no penalty delay on top of the failure delay.
    config.authd.trusted_networks = vec!["127.0.0.0/8".into()];
    populate(
        &config,
        &["example.org"],
        &[
            ("carol@example.org", &sha512("carol-pw")),
            ("dave@example.org", &sha512("dave-pw")),
        ],
    );
    with_dir(&config, async |d| {
        d.set_active("carol@example.org", false).await.unwrap()
    });
    sqlite_exec(
        &config,
        "UPDATE users SET services = 'imap' WHERE email = 'dave@example.org';",
    );
    let Some((_authd, pf)) = start(test, config) else {
        return;
    };
    let mut texts = Vec::new();
    for (user, pw) in [
        ("carol@example.org", "wrong"),
        ("carol@example.org", "carol-pw"),
        ("dave@example.org", "wrong"),
        ("dave@example.org", "dave-pw"),
    ] {
        let began = Instant::now();
        let r = auth(pf.smtp_port, "PLAIN", user, pw);
        let took = began.elapsed();
        assert_eq!(r.code, 535, "{user} {pw}: {}", r.transcript);
        assert!(
            took >= std::time::Duration::from_millis(1000),
            "{user} {pw}: 535 after {took:?}, before the failure delay\n{}",
            r.transcript
        );
        texts.push(r.text);
    }
    assert!(
        texts.iter().all(|t| *t == texts[0]),
        "the replies tell the passwords apart: {texts:?}"
    );
}
