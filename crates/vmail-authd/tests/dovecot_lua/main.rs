//! A real Dovecot using vmail-authd through the shipped Lua script
//! (`contrib/dovecot/vmail-auth.lua`) as passdb and userdb: Dovecot 2.3 on this host with
//! `contrib/dovecot/conf.d/auth-vmail-lua.conf.ext`, and Dovecot 2.4 in the Debian 13 root
//! (`scripts/test-deps`) with `contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext`. Only
//! paths (and the timeout, so the stall costs seconds) are changed in the shipped files.
//!
//! authd checks the passwords (Dovecot never sees a hash): SHA512-CRYPT and the how-to's
//! unprefixed DES crypt work, on 2.4 without auth_allow_weak_schemes; a disabled account fails
//! like a wrong password; lookups carry no password; authd down or stalled is a temporary
//! failure within the script's timeout, never "unknown user" or "wrong password"; authd's
//! penalty sees the remote IP Dovecot saw; an auth worker keeps its connection to authd;
//! with Dovecot's auth cache on, a lookup never lets a wrong password in and no login is
//! answered from the cache; a master user (`pass = yes`) logs in without a failure counted.

mod setup;

use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use setup::*;
use vmail_authd::stats::{LuaKind, LuaResult};
use vmail_test_support::authd::*;
use vmail_test_support::dovecot::imap_login;
use vmail_test_support::set_mode;

fn logins_lookups_and_listing(s: &Setup) {
    let dc = &s.dovecot;
    let log = || dc.log();
    for (user, pw) in [ALICE, ERIN] {
        let ok = dc.doveadm(&["auth", "test", user, pw]);
        assert!(
            accepted(&ok, user),
            "{user}: {}\n--- log:\n{}",
            output_text(&ok),
            log()
        );
    }
    // The service reaches authd (2.3's `service`, 2.4's `protocol`): grace may use smtp only.
    let o = dc.doveadm(&[
        "auth",
        "test",
        "-x",
        "service=smtp",
        SMTP_ONLY.0,
        SMTP_ONLY.1,
    ]);
    assert!(
        accepted(&o, SMTP_ONLY.0),
        "grace over smtp: {}",
        output_text(&o)
    );
    let o = dc.doveadm(&[
        "auth",
        "test",
        "-x",
        "service=imap",
        SMTP_ONLY.0,
        SMTP_ONLY.1,
    ]);
    assert!(refused(&o), "grace over imap: {}", output_text(&o));
    // The login is canonicalised by the `user` field the script sets.
    let mixed = dc.doveadm(&["auth", "test", "Alice@Example.ORG", ALICE.1]);
    assert!(mixed.status.success(), "{}", output_text(&mixed));

    // Wrong password, unknown user, disabled account: all alike. Each from its own address,
    // so the penalty below starts from nothing.
    for (i, (user, pw)) in [
        (ALICE.0, "not-the-password"),
        (ERIN.0, "not-secret"),
        ("nobody@example.org", "x"),
        DISABLED,
    ]
    .into_iter()
    .enumerate()
    {
        let rip = format!("rip=198.51.100.{}", i + 1);
        let o = dc.doveadm(&["auth", "test", "-x", &rip, user, pw]);
        assert!(
            refused(&o),
            "{user} {pw}: {}\n--- log:\n{}",
            output_text(&o),
            log()
        );
    }

    // A lookup carries the record, never a password.
    let o = dc.doveadm(&["auth", "lookup", ALICE.0]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    assert!(out.contains(ALICE.0), "{out}");
    assert!(!out.contains("$6$") && !out.contains("password"), "{out}");
    let o = dc.doveadm(&["auth", "lookup", "nobody@example.org"]);
    assert_eq!(o.status.code(), Some(67), "{}", output_text(&o));

    // The userdb: authd's fields (2.4 gets them in its own setting names).
    let o = dc.doveadm(&["user", ALICE.0]);
    assert!(
        o.status.success(),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    let fields = user_fields(&o);
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in doveadm user:\n{}", output_text(&o)))
    };
    assert_eq!(field("uid"), s.uid.to_string());
    assert_eq!(field("gid"), s.gid.to_string());
    let home = format!("{}/example.org/alice", s.home_base.display());
    assert_eq!(field("home"), home);
    if dc.version.starts_with("2.4") {
        assert_eq!(field("mail_driver"), "maildir");
        assert_eq!(field("mail_path"), format!("{home}/Maildir"));
        assert_eq!(field("mail_inbox_path"), ".");
        assert_eq!(field("quota_storage_size"), ALICE_QUOTA.to_string());
    } else {
        assert_eq!(field("mail"), "maildir:~/Maildir");
        assert_eq!(field("quota_rule"), format!("*:bytes={ALICE_QUOTA}"));
    }
    for user in ["nobody@example.org", DISABLED.0] {
        let o = dc.doveadm(&["user", user]);
        assert_eq!(o.status.code(), Some(67), "{user}: {}", output_text(&o));
    }
    let o = dc.doveadm(&["user", "*"]);
    assert!(
        o.status.success(),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    let mut listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [ALICE.0, ERIN.0, SMTP_ONLY.0],
        "{}",
        output_text(&o)
    );

    // A login is one PASS: the prefetch userdb takes the userdb_* fields of its answer.
    let stats = &s.authd.as_ref().unwrap().authenticator.stats.lua;
    let asked = || {
        [LuaKind::Pass, LuaKind::Lookup, LuaKind::User, LuaKind::List]
            .into_iter()
            .flat_map(|k| {
                [
                    LuaResult::Ok,
                    LuaResult::Fail,
                    LuaResult::Disabled,
                    LuaResult::NotFound,
                    LuaResult::Temp,
                ]
                .map(|r| stats.requests(k, r))
            })
            .sum::<u64>()
    };
    let (before, passed) = (asked(), stats.requests(LuaKind::Pass, LuaResult::Ok));
    let o = dc.doveadm(&["auth", "login", ALICE.0, ALICE.1]);
    assert!(
        o.status.success(),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("home={home}")),
        "no userdb home in doveadm auth login: {}",
        output_text(&o)
    );
    assert_eq!(
        asked() - before,
        1,
        "doveadm auth login: {}\n{}",
        output_text(&o),
        log()
    );
    assert_eq!(stats.requests(LuaKind::Pass, LuaResult::Ok) - passed, 1);

    // An auth worker keeps its connection: logins in a row open hardly any.
    let before = lua_connections(s);
    for _ in 0..6 {
        let ok = dc.doveadm(&["auth", "test", ALICE.0, ALICE.1]);
        assert!(accepted(&ok, ALICE.0), "{}", output_text(&ok));
    }
    let opened = lua_connections(s) - before;
    assert!(
        opened <= 2,
        "6 logins opened {opened} connections to authd\n{}",
        log()
    );

    // authd's penalty counts by the remote IP Dovecot saw (`-x rip=`): past
    // penalty_block_after failures that network is refused even the right password, over
    // this channel and SMTP AUTH alike, while another network gets in. Three logins, so
    // that the repeat of one wrong password for one login (counted once) does not matter.
    let authd = s.authd.as_ref().unwrap();
    for login in [ALICE.0, "guess1@example.org", "guess2@example.org"] {
        let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.7", login, "guess"]);
        assert!(refused(&o), "{}", output_text(&o));
    }
    let blocked = || authd.authenticator.stats.blocked.load(Relaxed);
    let before = blocked();
    let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.7", ALICE.0, ALICE.1]);
    assert!(
        refused(&o),
        "blocked network, right password: {}",
        output_text(&o)
    );
    assert_eq!(blocked() - before, 1, "authd did not block 192.0.2.7");
    let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.8", ALICE.0, ALICE.1]);
    assert!(
        accepted(&o, ALICE.0),
        "another network: {}",
        output_text(&o)
    );
    let mut smtp = AuthClient::connect(authd);
    assert!(is_ok(&smtp.plain(1, ALICE.0, ALICE.1, "192.0.2.7")).is_none());
    assert!(is_ok(&smtp.plain(2, ALICE.0, ALICE.1, "192.0.2.9")).is_some());
}

/// authd stopped, then a listener at its socket that never answers: temporary failures,
/// each within the script's timeout.
fn outage_and_stall(s: &mut Setup) {
    let ok = s.dovecot.doveadm(&["auth", "test", ALICE.0, ALICE.1]);
    assert!(
        accepted(&ok, ALICE.0),
        "{}\n--- log:\n{}",
        output_text(&ok),
        s.dovecot.log()
    );
    // The directory broken (its users table gone): authd answers TEMP, Dovecot says
    // "temporary failure". erin, not alice: authd may check a password it verified a
    // moment ago from memory.
    let lua = &s.authd.as_ref().unwrap().authenticator.stats.lua;
    let temps = || {
        [LuaKind::Pass, LuaKind::Lookup, LuaKind::User, LuaKind::List]
            .map(|k| lua.requests(k, LuaResult::Temp))
    };
    let before = temps();
    sqlite_exec(&s.config, "ALTER TABLE users RENAME TO users_away;");
    for args in [
        vec!["auth", "test", ERIN.0, ERIN.1],
        vec!["auth", "test", ERIN.0, "wrong"],
        vec!["auth", "lookup", ERIN.0],
        vec!["user", ERIN.0],
    ] {
        let o = s.dovecot.doveadm(&args);
        assert!(
            temporary(&o),
            "database down, {args:?}: {}\n--- log:\n{}",
            output_text(&o),
            s.dovecot.log()
        );
    }
    let o = s.dovecot.doveadm(&["user", "*"]);
    assert!(
        !o.status.success() && o.status.code() != Some(67),
        "user '*': {}",
        output_text(&o)
    );
    // Each kind answered TEMP by authd itself (not a broken connection).
    let after = temps();
    assert!(
        (0..4).all(|i| after[i] > before[i]),
        "TEMP replies before {before:?}, after {after:?}"
    );
    sqlite_exec(&s.config, "ALTER TABLE users_away RENAME TO users;");
    let ok = s.dovecot.doveadm(&["auth", "test", ERIN.0, ERIN.1]);
    assert!(
        accepted(&ok, ERIN.0),
        "database back: {}\n--- log:\n{}",
        output_text(&ok),
        s.dovecot.log()
    );

    // authd closes the idle connection: the next login finds it closed and opens another,
    // without a failure.
    let before = lua_connections(s);
    std::thread::sleep(Duration::from_millis(IDLE_MS + 500));
    let ok = s.dovecot.doveadm(&["auth", "test", ALICE.0, ALICE.1]);
    assert!(
        accepted(&ok, ALICE.0),
        "after idle close: {}\n--- log:\n{}",
        output_text(&ok),
        s.dovecot.log()
    );
    assert!(
        lua_connections(s) > before,
        "the idle connection was not closed"
    );
    drop(s.authd.take());
    let dc = &s.dovecot;
    let down = |what: &str| {
        for (args, name) in [
            (
                vec!["auth", "test", ALICE.0, ALICE.1],
                "auth test, right password",
            ),
            (
                vec!["auth", "test", ALICE.0, "wrong"],
                "auth test, wrong password",
            ),
            (vec!["auth", "lookup", ALICE.0], "auth lookup"),
            (vec!["user", ALICE.0], "user"),
        ] {
            let t = Instant::now();
            let o = dc.doveadm(&args);
            let took = t.elapsed();
            assert!(
                temporary(&o),
                "{what}, {name}: {}\n--- log:\n{}",
                output_text(&o),
                dc.log()
            );
            // The timeout, plus the master's and doveadm's own work.
            assert!(
                took < Duration::from_millis(TIMEOUT_MS + 3000),
                "{what}, {name} took {took:?}"
            );
        }
        let o = dc.doveadm(&["user", "*"]);
        assert!(
            !o.status.success() && o.status.code() != Some(67),
            "{what}, user '*': {}",
            output_text(&o)
        );
    };
    down("authd stopped");
    assert!(
        dc.log().contains("vmail-authd"),
        "no reason logged:\n{}",
        dc.log()
    );

    // A listener that accepts and never answers, where authd's socket was (its temp dir is
    // the Setup's).
    let _ = std::fs::remove_file(&s.socket);
    let listener = UnixListener::bind(&s.socket).unwrap();
    set_mode(&s.socket, 0o666);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            match c {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    });
    down("authd stalled");
    assert!(
        dc.log().contains("timeout"),
        "no timeout logged:\n{}",
        dc.log()
    );
}

#[test]
fn dovecot23_lua_logins_lookups_listing_and_penalty() {
    let test = "dovecot23_lua_logins_lookups_listing_and_penalty";
    let Some(s) = setup_23(test) else { return };
    logins_lookups_and_listing(&s);
}

#[test]
fn dovecot23_lua_outage_and_stall_are_temporary() {
    let test = "dovecot23_lua_outage_and_stall_are_temporary";
    let Some(mut s) = setup_23(test) else { return };
    outage_and_stall(&mut s);
}

#[test]
fn dovecot24_lua_logins_lookups_listing_and_penalty() {
    let test = "dovecot24_lua_logins_lookups_listing_and_penalty";
    let Some(s) = setup_24(test) else { return };
    logins_lookups_and_listing(&s);
}

#[test]
fn dovecot24_lua_outage_and_stall_are_temporary() {
    let test = "dovecot24_lua_outage_and_stall_are_temporary";
    let Some(mut s) = setup_24(test) else { return };
    outage_and_stall(&mut s);
}

/// IMAP LOGIN through a real imap-login of Dovecot 2.4: the mail process runs with authd's
/// uid and home and the 2.4 settings the script made of `mail`.
#[test]
fn dovecot24_lua_imap_login_opens_the_maildir() {
    let test = "dovecot24_lua_imap_login_opens_the_maildir";
    let Some(s) = setup_24(test) else { return };
    let dc = &s.dovecot;
    for (user, pw) in [ALICE, ERIN] {
        let mut imap = imap_login(dc.imap_port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n--- log:\n{}", dc.log()));
        let n = imap
            .select("INBOX")
            .unwrap_or_else(|e| panic!("SELECT INBOX as {user}: {e}\n--- log:\n{}", dc.log()));
        assert_eq!(n, 0);
        imap.logout().ok();
        let local = user.split('@').next().unwrap();
        let maildir = s.home_base.join("example.org").join(local).join("Maildir");
        assert!(
            maildir.join("cur").is_dir(),
            "{} missing\n{}",
            maildir.display(),
            dc.log()
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&maildir).unwrap().uid(), s.uid);
    }
    let wrong = imap_login(dc.imap_port, ALICE.0, "not-the-password")
        .err()
        .expect("wrong password must be refused");
    assert!(wrong.contains("AUTHENTICATIONFAILED"), "{wrong}");
    let disabled = imap_login(dc.imap_port, DISABLED.0, DISABLED.1)
        .err()
        .expect("disabled account must be refused");
    assert!(disabled.contains("AUTHENTICATIONFAILED"), "{disabled}");
}

/// Dovecot's auth cache on (which the shipped files must survive) and a master user whose
/// target must pass the lua passdb too.
///
/// - A `doveadm auth lookup` (its record carries `nopassword`) must not arm a cache entry
///   that lets the next login in with any password; nor may a verified login's entry
///   answer the next login (authd's penalty must see every attempt).
/// - A master login (`pass = yes` / `result_success = continue`) reaches the script's
///   auth_password_verify with the master's password and `skip_password_check`: it must
///   log in, a disabled target must not, and authd must count no failed password.
fn cache_and_master_users(s: &Setup) {
    let dc = &s.dovecot;
    let log = || dc.log();
    let stats = &s.authd.as_ref().unwrap().authenticator.stats.lua;

    // Only doveadm's own lookups get `nopassword`: another service's lookup without a
    // mechanism (an LMTP proxy's) is a failed lookup (doveadm: exit 75), not a record.
    // First, before 2.3's cache holds doveadm's record under the same key.
    let o = dc.doveadm(&["auth", "lookup", "-x", "service=lmtp", ALICE.0]);
    assert_eq!(
        o.status.code(),
        Some(75),
        "lookup for lmtp: {}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    let o = dc.doveadm(&["auth", "lookup", ALICE.0]);
    assert!(
        o.status.success(),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    for wrong in ["wrong-1", "wrong-2"] {
        let o = dc.doveadm(&["auth", "test", ALICE.0, wrong]);
        assert!(
            refused(&o),
            "after a lookup, a wrong password: {}\n--- log:\n{}",
            output_text(&o),
            log()
        );
    }
    // IMAP logins (each its own session): every one is answered by authd.
    let passes = || {
        stats.requests(LuaKind::Pass, LuaResult::Ok)
            + stats.requests(LuaKind::Pass, LuaResult::Fail)
    };
    let before = passes();
    for (pw, ok) in [(ALICE.1, true), ("wrong-3", false), (ALICE.1, true)] {
        let r = imap_login(dc.imap_port, ALICE.0, pw);
        match r {
            Ok(imap) => {
                assert!(ok, "IMAP LOGIN with {pw} succeeded\n--- log:\n{}", log());
                imap.logout().ok();
            }
            Err(e) => assert!(!ok, "IMAP LOGIN with {pw}: {e}\n--- log:\n{}", log()),
        }
    }
    assert_eq!(
        passes() - before,
        3,
        "an IMAP login was answered from Dovecot's cache, not by authd\n{}",
        log()
    );
    // doveadm's requests have no session id: a verified password may be checked against
    // Dovecot's cache there, but a wrong one still fails.
    let o = dc.doveadm(&["auth", "test", ALICE.0, ALICE.1]);
    assert!(
        accepted(&o, ALICE.0),
        "{}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    let o = dc.doveadm(&["auth", "test", ALICE.0, "wrong-4"]);
    assert!(
        refused(&o),
        "after a login, a wrong password: {}\n--- log:\n{}",
        output_text(&o),
        log()
    );

    let failed = || stats.requests(LuaKind::Pass, LuaResult::Fail);
    let before = failed();
    let as_master = |user: &str| format!("{user}*{}", MASTER.0);
    let o = dc.doveadm(&["auth", "test", &as_master(ALICE.0), MASTER.1]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("auth succeeded"),
        "master login: {}\n--- log:\n{}",
        output_text(&o),
        log()
    );
    for user in [DISABLED.0, "nobody@example.org"] {
        let o = dc.doveadm(&["auth", "test", &as_master(user), MASTER.1]);
        assert!(
            !o.status.success(),
            "master login as {user}: {}\n--- log:\n{}",
            output_text(&o),
            log()
        );
    }
    let o = dc.doveadm(&["auth", "test", &as_master(ALICE.0), "not-the-master-pw"]);
    assert!(refused(&o), "wrong master password: {}", output_text(&o));
    assert_eq!(
        failed() - before,
        0,
        "authd counted master logins as failed passwords\n{}",
        log()
    );
}

#[test]
fn dovecot23_lua_auth_cache_and_master_users() {
    let test = "dovecot23_lua_auth_cache_and_master_users";
    let Some(s) = setup_23_with(test, &cache_and_master_23()) else {
        return;
    };
    cache_and_master_users(&s);
}

#[test]
fn dovecot24_lua_auth_cache_and_master_users() {
    let test = "dovecot24_lua_auth_cache_and_master_users";
    let Some(s) = setup_24_with(test, &cache_and_master_24()) else {
        return;
    };
    cache_and_master_users(&s);
}
