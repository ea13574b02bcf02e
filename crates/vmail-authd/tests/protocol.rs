//! vmail-authd's two protocols end to end against an SQLite directory: the Dovecot auth
//! protocol as Postfix speaks it, and the dict protocol as Dovecot's auth process speaks it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vmail_proto::auth::{FailCode, Reply};
use vmail_test_support::authd::*;

/// alice (SHA512-CRYPT), bob (the how-to's DES crypt of "secret"), carol (disabled).
fn setup() -> (tempfile::TempDir, vmail_config::Config) {
    sqlite_directory(
        &["example.org"],
        &[
            ("alice@example.org", &sha512("wonderland")),
            ("bob@example.org", "abNANd1rDfiNc"),
            ("carol@example.org", &sha512("carolpw")),
        ],
        &["carol@example.org"],
        "",
    )
}

#[test]
fn handshake_offers_plain_and_login_like_dovecot() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let c = AuthClient::connect_raw(&d);
    let h = &c.handshake;
    assert_eq!(h[0], "VERSION\t1\t2");
    assert!(h.contains(&"MECH\tPLAIN\tplaintext".to_string()), "{h:?}");
    assert!(h.contains(&"MECH\tLOGIN\tplaintext".to_string()), "{h:?}");
    assert!(h.iter().any(|l| l.starts_with("SPID\t")));
    assert!(h.iter().any(|l| l.starts_with("CUID\t")));
    let cookie = h.iter().find_map(|l| l.strip_prefix("COOKIE\t")).unwrap();
    assert_eq!(cookie.len(), 32);
    assert_eq!(h.last().unwrap(), "DONE");
}

#[test]
fn plain_right_wrong_unknown_and_disabled() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    assert_eq!(
        is_ok(&c.plain(1, "Alice@Example.ORG", "wonderland", "192.0.2.1")).as_deref(),
        Some("alice@example.org"),
        "canonical login in user="
    );
    let t = Instant::now();
    let wrong = c.plain(2, "alice@example.org", "rabbit", "192.0.2.2");
    assert!(t.elapsed() >= Duration::from_millis(150), "failure delay");
    assert_eq!(
        wrong,
        Reply::Fail {
            id: 2,
            user: Some(b"alice@example.org".to_vec()),
            code: None,
            reason: None
        }
    );
    let unknown = c.plain(3, "nobody@example.org", "rabbit", "192.0.2.3");
    assert_eq!(
        unknown,
        Reply::Fail {
            id: 3,
            user: Some(b"nobody@example.org".to_vec()),
            code: None,
            reason: None
        },
        "unknown user looks exactly like a wrong password"
    );
    // A disabled account's right password: the same reply as a wrong one (issue 20.4);
    // only the statistics and the log know.
    assert_eq!(
        c.plain(4, "carol@example.org", "carolpw", "192.0.2.4"),
        Reply::Fail {
            id: 4,
            user: Some(b"carol@example.org".to_vec()),
            code: None,
            reason: None
        },
    );
    assert_eq!(refusals(&d), 1);
    // The how-to's DES crypt (MySQL ENCRYPT()) works as is.
    assert!(is_ok(&c.plain(5, "bob@example.org", "secret", "192.0.2.5")).is_some());
}

#[test]
fn login_mechanism_and_plain_without_initial_response() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    c.send("AUTH\t7\tLOGIN\tservice=smtp\tnologin\trip=192.0.2.9\n");
    assert_eq!(
        c.reply(),
        Reply::Cont {
            id: 7,
            challenge: b"Username:".to_vec()
        }
    );
    c.send(&format!("CONT\t7\t{}\n", b64(b"alice@example.org")));
    assert_eq!(
        c.reply(),
        Reply::Cont {
            id: 7,
            challenge: b"Password:".to_vec()
        }
    );
    c.send(&format!("CONT\t7\t{}\n", b64(b"wonderland")));
    assert_eq!(is_ok(&c.reply()).as_deref(), Some("alice@example.org"));

    c.send("AUTH\t8\tPLAIN\tservice=smtp\n");
    assert_eq!(
        c.reply(),
        Reply::Cont {
            id: 8,
            challenge: Vec::new()
        }
    );
    c.send(&format!(
        "CONT\t8\t{}\n",
        b64(b"\0alice@example.org\0wonderland")
    ));
    assert!(is_ok(&c.reply()).is_some());

    // Invalid base64 is answered at once with its own code.
    let t = Instant::now();
    c.send("AUTH\t9\tPLAIN\tservice=smtp\tresp=!!!\n");
    match c.reply() {
        Reply::Fail {
            id: 9,
            code: Some(FailCode::InvalidBase64),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(150));
    // A PLAIN answer that is not authzid NUL authcid NUL password fails like a wrong one.
    c.send(&format!(
        "AUTH\t10\tPLAIN\tservice=smtp\tresp={}\n",
        b64(b"alice\0wonderland")
    ));
    assert!(matches!(
        c.reply(),
        Reply::Fail {
            id: 10,
            code: None,
            ..
        }
    ));
    // Acting as someone else (authzid) needs master users: refused.
    c.send(&format!(
        "AUTH\t11\tPLAIN\tservice=smtp\tresp={}\n",
        b64(b"bob@example.org\0alice@example.org\0wonderland")
    ));
    assert!(matches!(c.reply(), Reply::Fail { id: 11, .. }));
}

#[test]
fn concurrent_requests_on_one_connection_answer_by_id() {
    let (_t, mut config) = setup();
    // The good answer must come first: the failure's delay is long enough that a busy CI
    // machine (the suite's 150 ms lost this race there once) cannot reorder them.
    config.authd.failure_delay_ms = 2000;
    config.authd.max_delay_ms = 4000;
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    // A failing request (delayed) first, then a good one: the good one must not wait.
    let bad = b64(b"\0alice@example.org\0nope");
    let good = b64(b"\0alice@example.org\0wonderland");
    c.send(&format!("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.50\tresp={bad}\nAUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp={good}\n"));
    let first = c.reply();
    let second = c.reply();
    assert!(matches!(first, Reply::Ok { id: 2, .. }), "{first:?}");
    assert!(matches!(second, Reply::Fail { id: 1, .. }), "{second:?}");
}

#[test]
fn protocol_violations_close_the_connection() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    for bad in [
        // request before the client's handshake
        "AUTH\t1\tPLAIN\tservice=smtp\n",
        // wrong major version
        "VERSION\t2\t0\n",
        // unknown mechanism
        "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tCRAM-MD5\tservice=smtp\n",
        // no service
        "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\n",
        // non-numeric id
        "VERSION\t1\t2\nCPID\t1\nAUTH\tx\tPLAIN\tservice=smtp\n",
        // CONT for nothing
        "VERSION\t1\t2\nCPID\t1\nCONT\t5\tAAAA\n",
        // duplicate id in flight
        "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\nAUTH\t1\tPLAIN\tservice=smtp\n",
        // raw NUL
        "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\0\tservice=smtp\n",
        // unknown command
        "VERSION\t1\t2\nCPID\t1\nFOO\t1\n",
    ] {
        let mut c = AuthClient::connect_raw(&d);
        c.send(bad);
        // Whatever was valid may be answered (an empty CONT); then the server hangs up.
        let mut lines = 0;
        while let Some(l) = c.line() {
            assert!(l.starts_with("CONT\t"), "{bad:?} got {l:?}");
            lines += 1;
            assert!(lines < 3);
        }
    }
    // An overlong line closes too, and the daemon keeps serving others.
    let mut c = AuthClient::connect(&d);
    c.send(&"A".repeat(20_000));
    assert_eq!(c.line(), None);
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
}

/// Right passwords refused because the account, domain or service is disabled.
fn refusals(d: &Daemon) -> u64 {
    d.authenticator.stats.disabled.load(Ordering::Relaxed)
}

fn cache_hits(d: &Daemon) -> u64 {
    d.authenticator
        .stats
        .cache_hits
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// With `cache_recheck_s = 0` every attempt reads the user's row: a password change or a
/// disabled account made straight in SQL applies at once, while the verified-credentials
/// cache still saves the hash computation.
#[test]
fn cache_hits_and_password_change_takes_effect_at_once_without_recheck_window() {
    let (_t, mut config) = setup();
    config.authd.cache_recheck_s = 0;
    let d = Daemon::start(config.clone());
    let mut c = AuthClient::connect(&d);
    let hits = || cache_hits(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
    assert_eq!(hits(), 0);
    assert!(is_ok(&c.plain(2, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
    assert_eq!(hits(), 1);
    // A wrong password is never answered from the cache.
    assert!(is_ok(&c.plain(3, "alice@example.org", "wonderland2", "127.0.0.1")).is_none());
    with_dir(&config, async |dir| {
        dir.set_password("alice@example.org", &sha512("looking-glass"))
            .await
            .unwrap()
    });
    assert!(
        is_ok(&c.plain(4, "alice@example.org", "wonderland", "127.0.0.1")).is_none(),
        "old password still accepted after a change"
    );
    assert!(is_ok(&c.plain(5, "alice@example.org", "looking-glass", "127.0.0.1")).is_some());
    with_dir(&config, async |dir| {
        dir.set_active("alice@example.org", false).await.unwrap()
    });
    assert!(
        is_ok(&c.plain(6, "alice@example.org", "looking-glass", "127.0.0.1")).is_none()
            && refusals(&d) == 1,
        "disabling takes effect at once, cache or not"
    );
}

/// The default recheck window: a login verified moments ago is answered from memory; a
/// change made straight in SQL applies once the cache is flushed (vmailctl does that with
/// every change it makes, SIGHUP too) or the window has passed.
#[test]
fn recently_verified_logins_skip_the_database_until_flushed() {
    let (_t, config) = setup();
    assert_eq!(config.authd.cache_recheck_s, 30, "the documented default");
    let d = Daemon::start(config.clone());
    let mut c = AuthClient::connect(&d);
    let hits = || cache_hits(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
    assert_eq!(hits(), 0);
    with_dir(&config, async |dir| {
        dir.set_password("alice@example.org", &sha512("looking-glass"))
            .await
            .unwrap();
        dir.set_active("bob@example.org", false).await.unwrap();
    });
    // Within the window: the row as it was.
    assert_eq!(
        is_ok(&c.plain(2, "alice@example.org", "wonderland", "127.0.0.1")).as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(hits(), 1);
    // Only that exact login and password: the new one reads the row.
    assert!(is_ok(&c.plain(3, "alice@example.org", "looking-glass", "127.0.0.1")).is_some());
    assert_eq!(hits(), 1);
    assert!(is_ok(&c.plain(4, "alice@example.org", "nope", "127.0.0.1")).is_none());
    d.authenticator.flush();
    assert!(
        is_ok(&c.plain(5, "alice@example.org", "wonderland", "127.0.0.1")).is_none(),
        "the old password after a flush"
    );
    assert!(
        is_ok(&c.plain(6, "bob@example.org", "secret", "127.0.0.1")).is_none() && refusals(&d) == 1,
        "bob was disabled before he ever logged in"
    );
}

#[test]
fn penalty_blocks_a_guessing_address_but_not_others_or_trusted() {
    let (_t, mut config) = setup();
    config.authd.penalty_block_after = 3;
    config.authd.failure_delay_ms = 20;
    config.authd.max_delay_ms = 100;
    config.authd.trusted_networks = vec!["10.0.0.0/8".into()];
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    for (i, pw) in ["a", "b", "c"].iter().enumerate() {
        assert!(is_ok(&c.plain(i as u32 + 1, "alice@example.org", pw, "198.51.100.7")).is_none());
    }
    // Blocked: even the right password fails, without a check.
    let blocked = || {
        d.authenticator
            .stats
            .blocked
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(is_ok(&c.plain(10, "alice@example.org", "wonderland", "198.51.100.7")).is_none());
    assert_eq!(blocked(), 1);
    // Another address is delayed (alice's own counter) but gets through.
    assert!(is_ok(&c.plain(11, "alice@example.org", "wonderland", "198.51.100.8")).is_some());
    // The same wrong password repeated counts once: bob from one address, 5 times.
    for i in 0..5 {
        assert!(is_ok(&c.plain(20 + i, "bob@example.org", "stale", "203.0.113.5")).is_none());
    }
    assert!(is_ok(&c.plain(30, "bob@example.org", "secret", "203.0.113.5")).is_some());
    // A trusted network is never blocked.
    for i in 0..5 {
        assert!(
            is_ok(&c.plain(40 + i, "alice@example.org", &format!("x{i}"), "10.1.1.1")).is_none()
        );
    }
    assert!(is_ok(&c.plain(50, "alice@example.org", "wonderland", "10.1.1.1")).is_some());
    // SIGHUP/flush (every vmailctl change) keeps penalties.
    d.authenticator.flush();
    assert!(is_ok(&c.plain(51, "alice@example.org", "wonderland", "198.51.100.7")).is_none());
}

#[test]
fn services_and_rehash_of_legacy_hashes() {
    let (_t, mut config) = setup();
    config.authd.rehash_legacy = true;
    let d = Daemon::start(config.clone());
    // bob's DES hash becomes SHA512-CRYPT after a successful login.
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(1, "bob@example.org", "secret", "127.0.0.1")).is_some());
    let upgraded = vmail_test_support::wait_until(Duration::from_secs(10), || {
        with_dir(&config, async |dir| {
            dir.user("bob@example.org")
                .await
                .unwrap()
                .unwrap()
                .password
                .unwrap()
                .contains("$6$")
        })
    });
    assert!(upgraded, "legacy hash not upgraded");
    assert!(is_ok(&c.plain(2, "bob@example.org", "secret", "127.0.0.1")).is_some());
    assert!(is_ok(&c.plain(3, "bob@example.org", "Secret", "127.0.0.1")).is_none());
}

#[test]
fn dict_passdb_userdb_and_iteration() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = DictClient::connect(&d);
    let p = c.json("passdb/imap/Alice@Example.org", "Alice@Example.org");
    assert_eq!(p["user"], "alice@example.org");
    assert!(
        p["password"]
            .as_str()
            .unwrap()
            .starts_with("{SHA512-CRYPT}$6$"),
        "{p}"
    );
    assert!(p.get("nologin").is_none());
    let b = c.json("passdb/bob@example.org", "bob@example.org");
    assert_eq!(b["password"], "{CRYPT}abNANd1rDfiNc");
    let carol = c.json("passdb/imap/carol@example.org", "carol@example.org");
    assert_eq!(
        carol["fail"], "y",
        "Dovecot's auth server itself must refuse"
    );
    assert_eq!(carol["nologin"], "y");
    assert_eq!(carol["reason"], "Account disabled");
    let u = c.json("userdb/alice@example.org", "alice@example.org");
    assert_eq!(u["uid"], "5000");
    assert_eq!(u["home"], "/home/vmail/example.org/alice");
    assert_eq!(u["mail"], "maildir:/home/vmail/example.org/alice/Maildir");
    assert_eq!(
        c.lookup("passdb/nobody@example.org", "nobody@example.org"),
        "N"
    );
    assert_eq!(c.lookup("other/thing", ""), "N");
    assert_eq!(
        c.iterate_userdb(),
        [
            "Oshared/userdb/alice@example.org\t{}",
            "Oshared/userdb/bob@example.org\t{}"
        ]
    );
    // Transactions are not ours: the connection closes rather than desynchronise.
    c.send("B1\t0\n");
    assert_eq!(c.line(), None);
}

/// Dict lookups (Dovecot checks the hash itself) reuse a row found within
/// `cache_recheck_s`, until a flush; unknown users and a disabled cache always read.
#[test]
fn dict_rows_are_reused_for_the_recheck_window_until_flushed() {
    let (_t, config) = setup();
    let d = Daemon::start(config.clone());
    let mut c = DictClient::connect(&d);
    let hits = || {
        d.authenticator
            .stats
            .dict_cache_hits
            .load(Ordering::Relaxed)
    };
    let sent = || d.authenticator.directory().unwrap().queries_sent();
    let old = c.json("passdb/imap/alice@example.org", "alice@example.org");
    let n = sent();
    with_dir(&config, async |dir| {
        dir.set_password("alice@example.org", &sha512("looking-glass"))
            .await
            .unwrap();
    });
    // Within the window: the row as it was, without a statement.
    assert_eq!(
        c.json("passdb/imap/alice@example.org", "alice@example.org"),
        old
    );
    assert_eq!(
        c.json("userdb/alice@example.org", "alice@example.org")["uid"],
        "5000"
    );
    assert_eq!((hits(), sent() - n), (2, 0));
    // Unknown users are read every time, so a new account works at once.
    assert_eq!(
        c.lookup("passdb/nobody@example.org", "nobody@example.org"),
        "N"
    );
    assert_eq!(
        c.lookup("passdb/nobody@example.org", "nobody@example.org"),
        "N"
    );
    assert_eq!((hits(), sent() - n), (2, 2));
    d.authenticator.flush();
    let new = c.json("passdb/imap/alice@example.org", "alice@example.org");
    assert_ne!(
        new["password"], old["password"],
        "the new hash after a flush"
    );
    assert_eq!(hits(), 2);

    // With the cache off, every lookup reads the row.
    let (_t2, mut config) = setup();
    config.authd.cache_enabled = false;
    let d = Daemon::start(config);
    let mut c = DictClient::connect(&d);
    for _ in 0..3 {
        assert!(c
            .lookup("passdb/alice@example.org", "alice@example.org")
            .starts_with('O'));
    }
    assert_eq!(d.authenticator.directory().unwrap().queries_sent(), 3);
    assert_eq!(
        d.authenticator
            .stats
            .dict_cache_hits
            .load(Ordering::Relaxed),
        0
    );
}

#[test]
fn dict_hostile_input_closes_only_that_connection() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    for bad in [
        "Lshared/passdb/x\n",
        "H9\t0\t0\t\tauth\n",
        "H3\t2\t0\t\tauth\nL\0x\n",
        "H3\t2\t0\t\tauth\nI0\n",
    ] {
        let s = std::os::unix::net::UnixStream::connect(&d.dict_socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut s2 = s.try_clone().unwrap();
        std::io::Write::write_all(&mut s2, bad.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let n = std::io::Read::read_to_end(&mut &s, &mut buf).unwrap();
        assert_eq!(n, 0, "{bad:?} got {:?}", String::from_utf8_lossy(&buf));
    }
    let mut c = DictClient::connect(&d);
    c.send(&format!("Lshared/passdb/{}\n", "a".repeat(70_000)));
    assert_eq!(c.line(), None);
    let mut c = DictClient::connect(&d);
    assert!(c.lookup("userdb/alice@example.org", "").starts_with("O{"));
}

/// Hashes made by the real tools (doveadm pw, mkpasswd, the how-to's ENCRYPT()), from
/// vmail-passwd's checked-in vectors: every kind authenticates through authd with PLAIN
/// and LOGIN, and a wrong password fails.
#[test]
fn hashes_from_real_tools_authenticate() {
    let vectors = include_str!("../../vmail-passwd/tests/vectors.txt");
    let mut users = Vec::new();
    for scheme in [
        "SHA512-CRYPT",
        "BLF-CRYPT",
        "ARGON2ID",
        "SSHA512",
        "DES-CRYPT",
    ] {
        let stored = vectors
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?, f.next()?, f.next()?))
            })
            .find(|(s, pw, _)| *s == scheme && *pw == "secret")
            .map(|(_, _, h)| h.to_string())
            .unwrap_or_else(|| panic!("no {scheme} vector for \"secret\""));
        // The classic how-to stored DES crypt strings without a prefix.
        let stored = match scheme {
            "DES-CRYPT" => stored.trim_start_matches("{DES-CRYPT}").to_string(),
            _ => stored,
        };
        users.push((format!("{}@example.org", scheme.to_lowercase()), stored));
    }
    let (_t, config) = vmail_test_support::sqlite_config();
    let config = test_config(config);
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, h)| (u.as_str(), h.as_str()))
        .collect();
    populate(&config, &["example.org"], &refs);
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    let mut id = 0;
    for (user, _) in &users {
        id += 1;
        assert_eq!(
            is_ok(&c.plain(id, user, "secret", "127.0.0.1")).as_deref(),
            Some(user.as_str()),
            "PLAIN {user}"
        );
        id += 1;
        c.send(&format!(
            "AUTH\t{id}\tLOGIN\tservice=smtp\tresp={}\n",
            b64(user.as_bytes())
        ));
        assert!(matches!(c.reply(), Reply::Cont { .. }));
        c.send(&format!("CONT\t{id}\t{}\n", b64(b"secret")));
        assert!(is_ok(&c.reply()).is_some(), "LOGIN {user}");
        id += 1;
        assert!(
            is_ok(&c.plain(id, user, "Secret", "127.0.0.1")).is_none(),
            "wrong password for {user}"
        );
    }
}

#[test]
fn metrics_count_results_cache_hits_and_dict_lookups() {
    let (_t, mut config) = setup();
    let port = vmail_test_support::free_port();
    config.authd.metrics = format!("inet:127.0.0.1:{port}");
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
    assert!(is_ok(&c.plain(2, "alice@example.org", "wonderland", "127.0.0.1")).is_some());
    assert!(is_ok(&c.plain(3, "alice@example.org", "nope", "192.0.2.1")).is_none());
    let mut dict = DictClient::connect(&d);
    assert_eq!(dict.lookup("passdb/nobody@example.org", ""), "N");
    assert!(dict.lookup("userdb/alice@example.org", "").starts_with('O'));
    let (status, body) = vmail_test_support::http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    let get = |s: &str| {
        vmail_test_support::metric(&body, s).unwrap_or_else(|| panic!("{s} missing:\n{body}"))
    };
    assert_eq!(get("vmail_authd_authentications_total{result=\"ok\"}"), 2.0);
    assert_eq!(
        get("vmail_authd_authentications_total{result=\"failed\"}"),
        1.0
    );
    assert_eq!(get("vmail_authd_cache_hits_total"), 1.0);
    assert_eq!(
        get("vmail_authd_authentication_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        get("vmail_authd_dict_requests_total{outcome=\"found\"}"),
        1.0
    );
    assert_eq!(
        get("vmail_authd_dict_requests_total{outcome=\"notfound\"}"),
        1.0
    );
    assert_eq!(get("vmail_authd_dict_connections_total"), 1.0);
    assert_eq!(get("vmail_authd_penalty_blocked_total"), 0.0);
}
