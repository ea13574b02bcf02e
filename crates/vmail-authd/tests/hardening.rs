//! Regression tests for the hardening issues (15, 20) on authd's two protocols: dict keys
//! and disabled accounts, the failure penalty, refused logins that must look like wrong
//! passwords, and re-hashing only fully verified passwords.

use std::time::{Duration, Instant};

use vmail_passwd::Scheme;
use vmail_proto::auth::Reply;
use vmail_test_support::authd::*;

/// alice and bob (SHA512-CRYPT), carol (disabled), dave (SMTP not among his services).
fn setup() -> (tempfile::TempDir, vmail_config::Config) {
    sqlite_directory(
        &["example.org"],
        &[
            ("alice@example.org", &sha512("wonderland")),
            ("bob@example.org", &sha512("builder")),
            ("carol@example.org", &sha512("carolpw")),
            ("dave@example.org", &sha512("davepw")),
        ],
        &["carol@example.org"],
        "UPDATE users SET services = 'imap' WHERE email = 'dave@example.org';",
    )
}

/// Issue 15.2: only `passdb/` keys carry a service; a userdb key's whole rest is the user,
/// so a `/` in it never yields another user's record.
#[test]
fn dict_userdb_key_never_splits_off_a_service() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = DictClient::connect(&d);
    assert!(c.lookup("userdb/alice@example.org", "").starts_with("O{"));
    for key in [
        "userdb/evil/alice@example.org",
        "userdb/imap/alice@example.org",
        "userdb//alice@example.org",
    ] {
        assert_eq!(c.lookup(key, ""), "N", "{key}");
    }
    // passdb/<service>/<user> still works as Dovecot sends it.
    assert_eq!(
        c.json("passdb/imap/alice@example.org", "alice@example.org")["user"],
        "alice@example.org"
    );
}

/// Issue 15.10: a disabled account has no userdb record (Dovecot: unknown user) and is
/// not listed by the iteration.
#[test]
fn dict_userdb_answers_not_found_for_a_disabled_account() {
    let (_t, config) = setup();
    let d = Daemon::start(config.clone());
    let mut c = DictClient::connect(&d);
    assert_eq!(
        c.lookup("userdb/carol@example.org", "carol@example.org"),
        "N"
    );
    // Its domain disabled: the same.
    let domain_active = |on: u8| {
        let sql = format!("UPDATE domains SET active = {on} WHERE domain = 'example.org';");
        sqlite_exec(&config, &sql);
        d.authenticator.flush();
    };
    domain_active(0);
    let alice = "userdb/alice@example.org";
    assert_eq!(c.lookup(alice, "alice@example.org"), "N");
    assert_eq!(c.iterate_userdb(), Vec::<String>::new());
    domain_active(1);
    assert!(c.lookup(alice, "alice@example.org").starts_with("O{"));
    assert_eq!(
        c.iterate_userdb(),
        [
            "Oshared/userdb/alice@example.org\t{}",
            "Oshared/userdb/bob@example.org\t{}",
            "Oshared/userdb/dave@example.org\t{}"
        ]
    );
}

/// Issue 15.4: one account's successes do not wash what guesses at another cost the
/// network, and a cache flush (every vmailctl change, SIGHUP) keeps the penalties.
#[test]
fn a_success_does_not_reset_the_penalty_of_the_network() {
    let (_t, mut config) = setup();
    config.authd.penalty_block_after = 10;
    config.authd.failure_delay_ms = 1;
    config.authd.max_delay_ms = 4;
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    let rip = "198.51.100.7";
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for round in 0..3 {
        for i in 0..3 {
            let pw = format!("guess-{round}-{i}");
            assert!(is_ok(&c.plain(next(), "alice@example.org", &pw, rip)).is_none());
        }
        // The attacker's own account, right password.
        assert!(
            is_ok(&c.plain(next(), "bob@example.org", "builder", rip)).is_some(),
            "round {round}: bob is below the threshold"
        );
    }
    // 9 failures against the network; one more reaches the threshold.
    assert!(is_ok(&c.plain(next(), "alice@example.org", "last-guess", rip)).is_none());
    let blocked = || {
        d.authenticator
            .stats
            .blocked
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        is_ok(&c.plain(next(), "alice@example.org", "wonderland", rip)).is_none(),
        "alice's right password accepted from a network past the threshold"
    );
    assert_eq!(blocked(), 1);
    // vmailctl's flush (SIGHUP does the same) forgets the cache, not the penalty.
    d.authenticator.flush();
    assert!(is_ok(&c.plain(next(), "alice@example.org", "wonderland", rip)).is_none());
    assert_eq!(blocked(), 2);
    // Elsewhere alice is fine, and her success there leaves the guessing network blocked.
    assert!(is_ok(&c.plain(next(), "alice@example.org", "wonderland", "192.0.2.1")).is_some());
    assert!(is_ok(&c.plain(next(), "bob@example.org", "builder", rip)).is_none());
}

/// Issue 20.4: the right password of a disabled account, or of an account that may not
/// use SMTP, gets exactly a wrong password's reply, after the same failure delay.
#[test]
fn refused_accounts_fail_like_a_wrong_password() {
    let (_t, mut config) = setup();
    config.authd.failure_delay_ms = 300;
    config.authd.max_delay_ms = 600;
    // No penalty delay on top, so the delay measured is the failure delay alone.
    config.authd.trusted_networks = vec!["10.0.0.0/8".into()];
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    let generic = |id: u32, user: &str| Reply::Fail {
        id,
        user: Some(user.as_bytes().to_vec()),
        code: None,
        reason: None,
    };
    for (id, user, pw) in [
        (1, "carol@example.org", "carolpw"),
        (2, "carol@example.org", "wrong"),
        (3, "dave@example.org", "davepw"),
        (4, "dave@example.org", "wrong"),
    ] {
        let t = Instant::now();
        let r = c.plain(id, user, pw, "10.1.2.3");
        let took = t.elapsed();
        assert_eq!(r, generic(id, user), "{user} {pw}");
        assert!(
            took >= Duration::from_millis(300),
            "{user} {pw}: answered after {took:?}, before the failure delay"
        );
    }
    // From an untrusted address the right password counts as a failure like a wrong one:
    // the next attempt's penalty delay does not tell them apart either.
    let before = d
        .authenticator
        .stats
        .disabled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(before, 2);
    let mut delays = Vec::new();
    for (i, pw) in ["carolpw", "wrong"].iter().enumerate() {
        let rip = format!("203.0.113.{}", i + 1);
        c.plain(10 + i as u32 * 2, "carol@example.org", pw, &rip);
        let t = Instant::now();
        c.plain(11 + i as u32 * 2, "carol@example.org", "another", &rip);
        delays.push(t.elapsed());
    }
    // The first attempt added the failure delay as penalty before the second check;
    // carol's per-login counter also carries it, so both second attempts wait.
    assert!(
        delays.iter().all(|d| *d >= Duration::from_millis(600)),
        "{delays:?}"
    );
}

/// Issue 15.6: DES crypt matches a 10-character password on its first 8 characters; that
/// password was never fully checked, so it must not become the stored hash. The real
/// password keeps working.
#[test]
fn rehash_never_stores_a_password_des_only_partly_checked() {
    let (_t, mut config) = setup();
    config.authd.rehash_legacy = true;
    let des = vmail_passwd::hash(Scheme::DesCrypt, b"rabbit-hole").unwrap();
    let des = des.trim_start_matches("{DES-CRYPT}").to_string();
    with_dir(&config, async |d| {
        d.add_user("erin@example.org", &des, None).await.unwrap()
    });
    let stored = || {
        with_dir(&config, async |d| {
            d.user("erin@example.org").await.unwrap().unwrap().password
        })
    };
    let d = Daemon::start(config.clone());
    let mut c = AuthClient::connect(&d);
    // Accepted (that is DES), but not stored.
    assert!(is_ok(&c.plain(1, "erin@example.org", "rabbit-hXY", "127.0.0.1")).is_some());
    // The re-hash runs in the background: give it time to (wrongly) happen.
    let changed =
        vmail_test_support::wait_until(Duration::from_secs(2), || stored().as_ref() != Some(&des));
    assert!(!changed, "the hash of a partly checked password was stored");
    assert!(
        is_ok(&c.plain(2, "erin@example.org", "rabbit-hole", "127.0.0.1")).is_some(),
        "the real password stopped working"
    );
}

/// Review 3 over SMTP AUTH (authd sleeps the penalty delay): concurrent wrong attempts
/// from one address are checked at most `penalty_block_after` times. The block is decided
/// after the penalty sleep, with the checks in flight counted.
#[test]
fn concurrent_guesses_stop_at_the_block_over_smtp_auth() {
    let (_t, mut config) = setup();
    config.authd.penalty_block_after = 20;
    config.authd.failure_delay_ms = 1;
    config.authd.max_delay_ms = 4;
    let d = Daemon::start(config);
    let barrier = std::sync::Barrier::new(30);
    std::thread::scope(|s| {
        for conn in 0..30 {
            let (d, barrier) = (&d, &barrier);
            s.spawn(move || {
                let mut c = AuthClient::connect(d);
                barrier.wait();
                for i in 0..10 {
                    let login = format!("guess{conn}-{i}@example.org");
                    assert!(is_ok(&c.plain(i + 1, &login, "pw", "198.51.100.9")).is_none());
                }
            });
        }
    });
    let (checks, blocked) = (d.checks(), d.blocked());
    eprintln!("{checks} checks, {blocked} blocked");
    assert!(checks <= 20, "{checks} checks, block after 20");
    assert_eq!(checks + blocked, 300);
}
