//! The Lua channel (Dovecot's Lua passdb/userdb script, `contrib/dovecot/vmail-auth.lua`)
//! end to end against a real authd: a raw unix-socket client speaking the protocol of
//! `vmail_proto::lua`, as the script does.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vmail_test_support::PrivateMariaDb;

/// alice (quota 1 MiB), bob, carol (disabled), dave (imap only), tess (a password with a
/// TAB and a \001) in example.org; eve in the disabled domain off.example.
fn setup() -> (tempfile::TempDir, vmail_config::Config) {
    let (tmp, config) = vmail_test_support::sqlite_config();
    let config = test_config(config);
    populate(
        &config,
        &["example.org", "off.example"],
        &[
            ("alice@example.org", &sha512("wonderland")),
            ("bob@example.org", &sha512("builder")),
            ("carol@example.org", &sha512("carolpw")),
            ("dave@example.org", &sha512("davepw")),
            ("tess@example.org", &sha512("t\tab\u{1}")),
            ("eve@off.example", &sha512("evepw")),
        ],
    );
    with_dir(&config, async |d| {
        d.set_active("carol@example.org", false).await.unwrap();
    });
    sqlite_exec(
        &config,
        "UPDATE users SET quota = 1048576 WHERE email = 'alice@example.org';
         UPDATE users SET services = 'imap' WHERE email = 'dave@example.org';
         UPDATE domains SET active = 0 WHERE domain = 'off.example';",
    );
    (tmp, config)
}

/// The `key=value` fields of an `OK` line, after `OK`, the id and the user.
fn ok_fields(line: &str) -> Vec<&str> {
    line.split('\t').skip(3).collect()
}

#[test]
fn pass_ok_carries_the_canonical_user_and_userdb_fields() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = LuaClient::connect(&d);
    let l = c.ask("PASS\t1\tIMAP\t192.0.2.1\tAlice@Example.ORG\twonderland");
    assert!(l.starts_with("OK\t1\talice@example.org\t"), "{l:?}");
    assert_eq!(
        ok_fields(&l),
        [
            "userdb_uid=5000",
            "userdb_gid=5000",
            "userdb_home=/home/vmail/example.org/alice",
            "userdb_mail=maildir:/home/vmail/example.org/alice/Maildir",
            "userdb_quota_rule=*:bytes=1048576",
        ]
    );
    // No quota, no quota_rule; an empty rip is allowed; the id is echoed as sent.
    let l = c.ask("PASS\tx-2\tsmtp\t\tbob@example.org\tbuilder");
    assert!(
        l.starts_with("OK\tx-2\tbob@example.org\tuserdb_uid="),
        "{l:?}"
    );
    assert!(!l.contains("quota_rule"), "{l:?}");
    // A password with a TAB and a \001, tab-escaped as Dovecot does.
    let l = c.ask("PASS\t3\tsmtp\t\ttess@example.org\tt\x01tab\x011");
    assert!(l.starts_with("OK\t3\ttess@example.org\t"), "{l:?}");
    c.send("PASS\t4\tsmtp\t\ttess@example.org\tt\tab\x011\n");
    assert_eq!(c.line(), None, "an unescaped TAB is one field too many");
}

#[test]
fn failures_are_answered_without_the_failure_delay() {
    let (_t, mut config) = setup();
    config.authd.failure_delay_ms = 3000;
    config.authd.max_delay_ms = 6000;
    let d = Daemon::start(config);
    let mut c = LuaClient::connect(&d);
    for (id, service, login, pw) in [
        (1, "imap", "alice@example.org", "wrong"),
        (2, "imap", "nobody@example.org", "x"),
        (3, "imap", "carol@example.org", "carolpw"),
        (4, "smtp", "dave@example.org", "davepw"),
        (5, "imap", "eve@off.example", "evepw"),
        (6, "imap", "alice@example.org", "wrong again"),
    ] {
        let t = Instant::now();
        let l = c.ask(&format!("PASS\t{id}\t{service}\t192.0.2.9\t{login}\t{pw}"));
        let took = t.elapsed();
        assert_eq!(l, format!("FAIL\t{id}"), "{login}");
        assert!(
            took < Duration::from_millis(1500),
            "{login}: answered after {took:?}; failure_delay_ms is 3000"
        );
    }
    // dave may use imap; the same check on the auth protocol still waits.
    assert!(c
        .ask("PASS\t7\timap\t192.0.2.9\tdave@example.org\tdavepw")
        .starts_with("OK\t7\tdave@example.org\t"));
    let mut a = AuthClient::connect(&d);
    let t = Instant::now();
    assert!(is_ok(&a.plain(1, "alice@example.org", "wrong", "192.0.2.10")).is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(2900),
        "SMTP AUTH must keep its failure delay, took {:?}",
        t.elapsed()
    );
}

#[test]
fn lua_failures_block_smtp_auth_from_the_same_address() {
    let (_t, mut config) = setup();
    config.authd.penalty_block_after = 3;
    config.authd.failure_delay_ms = 20;
    config.authd.max_delay_ms = 100;
    let d = Daemon::start(config);
    let mut c = LuaClient::connect(&d);
    for (i, pw) in ["a", "b", "c"].iter().enumerate() {
        let l = c.ask(&format!(
            "PASS\t{i}\timap\t198.51.100.7\talice@example.org\t{pw}"
        ));
        assert_eq!(l, format!("FAIL\t{i}"));
    }
    // Blocked on both channels, the right password included; other addresses are not.
    let l = c.ask("PASS\t9\timap\t198.51.100.7\talice@example.org\twonderland");
    assert_eq!(l, "FAIL\t9");
    let mut a = AuthClient::connect(&d);
    assert!(is_ok(&a.plain(1, "alice@example.org", "wonderland", "198.51.100.7")).is_none());
    let blocked = d
        .authenticator
        .stats
        .blocked
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(blocked, 2);
    assert!(is_ok(&a.plain(2, "alice@example.org", "wonderland", "198.51.100.8")).is_some());
}

#[test]
fn lookup_user_and_list_never_carry_a_password() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    let mut c = LuaClient::connect(&d);
    let l = c.ask("LOOKUP\t1\timap\tALICE@example.org");
    assert!(
        l.starts_with("OK\t1\talice@example.org\tuserdb_uid=5000\t"),
        "{l:?}"
    );
    assert!(
        !l.contains("password") && !l.contains("$6$") && !l.contains("CRYPT"),
        "{l:?}"
    );
    assert!(c
        .ask("LOOKUP\t2\t\tbob@example.org")
        .starts_with("OK\t2\tbob@example.org\t"));
    assert_eq!(c.ask("LOOKUP\t3\timap\tcarol@example.org"), "DISABLED\t3");
    assert_eq!(c.ask("LOOKUP\t4\tsmtp\tdave@example.org"), "DISABLED\t4");
    assert!(c
        .ask("LOOKUP\t5\timap\tdave@example.org")
        .starts_with("OK\t5\t"));
    assert_eq!(c.ask("LOOKUP\t6\timap\teve@off.example"), "DISABLED\t6");
    assert_eq!(c.ask("LOOKUP\t7\timap\tnobody@example.org"), "NOTFOUND\t7");
    assert_eq!(c.ask("LOOKUP\t8\timap\tnot an address"), "NOTFOUND\t8");

    let l = c.ask("USER\t9\tAlice@example.org");
    assert_eq!(
        l,
        "OK\t9\talice@example.org\tuid=5000\tgid=5000\thome=/home/vmail/example.org/alice\t\
         mail=maildir:/home/vmail/example.org/alice/Maildir\tquota_rule=*:bytes=1048576"
    );
    assert_eq!(c.ask("USER\t10\tcarol@example.org"), "NOTFOUND\t10");
    assert_eq!(c.ask("USER\t11\teve@off.example"), "NOTFOUND\t11");
    assert_eq!(c.ask("USER\t12\tnobody@example.org"), "NOTFOUND\t12");
    let mut rows = c.list("13");
    assert_eq!(rows.pop().as_deref(), Some("END\t13"));
    rows.sort();
    assert_eq!(
        rows,
        [
            "ROW\t13\talice@example.org",
            "ROW\t13\tbob@example.org",
            "ROW\t13\tdave@example.org",
            "ROW\t13\ttess@example.org",
        ]
    );
    let s = &d.authenticator.stats.lua;
    use vmail_authd::stats::{LuaKind, LuaResult};
    assert_eq!(s.requests(LuaKind::Lookup, LuaResult::Ok), 3);
    assert_eq!(s.requests(LuaKind::Lookup, LuaResult::Disabled), 3);
    assert_eq!(s.requests(LuaKind::Lookup, LuaResult::NotFound), 2);
    assert_eq!(s.requests(LuaKind::User, LuaResult::NotFound), 3);
    assert_eq!(s.requests(LuaKind::List, LuaResult::Ok), 1);
}

#[test]
fn database_down_is_temp_for_every_request() {
    let test = "database_down_is_temp_for_every_request";
    let Some(mut db) = PrivateMariaDb::start(test) else {
        return;
    };
    let mut config = test_config(db.config());
    config.database.connect_timeout_ms = 500;
    config.database.query_timeout_ms = 1000;
    config.authd.request_timeout_ms = 2000;
    config.authd.cache_enabled = false;
    populate(
        &config,
        &["example.org"],
        &[("alice@example.org", &sha512("pw"))],
    );
    let d = Daemon::start(config);
    let mut c = LuaClient::connect(&d);
    assert!(c
        .ask("PASS\t1\timap\t192.0.2.1\talice@example.org\tpw")
        .starts_with("OK\t1\talice@example.org\tuserdb_uid="));
    assert_eq!(c.list("2"), ["ROW\t2\talice@example.org", "END\t2"]);

    db.kill();
    for (id, req) in [
        (3, "PASS\t3\timap\t192.0.2.1\talice@example.org\tpw"),
        (4, "PASS\t4\timap\t192.0.2.1\talice@example.org\twrong"),
        (5, "LOOKUP\t5\timap\talice@example.org"),
        (6, "USER\t6\talice@example.org"),
    ] {
        let t = Instant::now();
        let l = c.ask(req);
        assert!(l.starts_with(&format!("TEMP\t{id}\t")), "{req:?}: {l:?}");
        assert!(l.len() > format!("TEMP\t{id}\t").len(), "a reason: {l:?}");
        assert!(t.elapsed() < Duration::from_secs(8), "within the deadline");
    }
    let rows = c.list("7");
    assert!(
        rows.last().is_some_and(|l| l.starts_with("TEMP\t7\t")),
        "{rows:?}"
    );

    db.resume();
    let back = vmail_test_support::wait_until(Duration::from_secs(10), || {
        c.ask("USER\t8\talice@example.org").starts_with("OK\t8\t")
    });
    assert!(back, "not recovered after the database came back");
}
