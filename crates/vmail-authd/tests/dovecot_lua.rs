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
//! penalty sees the remote IP Dovecot saw; an auth worker keeps its connection to authd.

mod common;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use vmail_test_support::debian13::{self, ChrootDovecot, RootDir};
use vmail_test_support::dovecot::{imap_login, DovecotBuilder, PrivateDovecot};
use vmail_test_support::postfix::{lookup_group, lookup_user};
use vmail_test_support::{have, set_mode, skip};

const SCRIPT: &str = include_str!("../../../contrib/dovecot/vmail-auth.lua");
const CONF_23: &str = include_str!("../../../contrib/dovecot/conf.d/auth-vmail-lua.conf.ext");
const CONF_24: &str = include_str!("../../../contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext");

const ALICE: (&str, &str) = ("alice@example.org", "alice-sha512");
/// The how-to's MySQL ENCRYPT('secret'): DES crypt, stored without a prefix.
const ERIN: (&str, &str) = ("erin@example.org", "secret");
const DES_SECRET: &str = "abNANd1rDfiNc";
const DISABLED: (&str, &str) = ("frank@example.org", "frank-pw");
const ALICE_QUOTA: u64 = 1_048_576;
/// authd closes a Lua connection idle this long (default 1 h).
const IDLE_MS: u64 = 1000;
/// grace may use SMTP only (`users.services`).
const SMTP_ONLY: (&str, &str) = ("grace@example.org", "grace-pw");
/// The script's timeout in these tests (the shipped 10 s would make the stall slow).
const TIMEOUT_MS: u64 = 1500;

/// `text` with `from` replaced by `to`, which must occur exactly `count` times: a change of
/// the shipped files cannot slip past the test.
fn subst(text: &str, from: &str, to: &str, count: usize, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        count,
        "{file} no longer contains `{from}` {count} time(s)"
    );
    text.replace(from, to)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

enum Dovecot {
    V23(PrivateDovecot),
    V24(ChrootDovecot),
}

impl Dovecot {
    fn doveadm(&self, args: &[&str]) -> Output {
        match self {
            Dovecot::V23(d) => d.doveadm(args),
            Dovecot::V24(d) => d.doveadm(args),
        }
    }

    fn log(&self) -> String {
        match self {
            Dovecot::V23(d) => d.log(),
            Dovecot::V24(d) => d.log(),
        }
    }

    fn is_24(&self) -> bool {
        matches!(self, Dovecot::V24(_))
    }
}

/// Dropped in field order: Dovecot first, then authd, then the homes and the database.
struct Setup {
    dovecot: Dovecot,
    authd: Option<Daemon>,
    /// authd's Lua socket, as this host sees it.
    socket: PathBuf,
    /// Where authd's `[mailbox] home` puts `example.org/alice`, as Dovecot sees it.
    home_base: String,
    /// The same, as this host sees it.
    home_host: PathBuf,
    uid: u32,
    gid: u32,
    _homes: Homes,
    _db: tempfile::TempDir,
}

/// Held only for its `Drop`, which removes the homes.
#[allow(dead_code)]
enum Homes {
    Host(tempfile::TempDir),
    Root(RootDir),
}

fn authd_config(home_base: &str, uid: u32, gid: u32) -> (tempfile::TempDir, vmail_config::Config) {
    let (db, config) = vmail_test_support::sqlite_config();
    let mut config = test_config(config);
    config.mailbox.uid = uid;
    config.mailbox.gid = gid;
    config.mailbox.home = format!("{home_base}/%d/%n");
    config.mailbox.mail = "maildir:~/Maildir".into();
    config.authd.penalty_block_after = 3;
    config.authd.idle_timeout_ms = IDLE_MS;
    let alice = sha512(ALICE.1);
    let frank = sha512(DISABLED.1);
    let grace = sha512(SMTP_ONLY.1);
    populate(
        &config,
        &["example.org"],
        &[
            (ALICE.0, &alice),
            (ERIN.0, DES_SECRET),
            (DISABLED.0, &frank),
            (SMTP_ONLY.0, &grace),
        ],
    );
    with_dir(&config, async |d| {
        d.set_active(DISABLED.0, false).await.unwrap()
    });
    sqlite_exec(
        &config,
        &format!(
            "UPDATE users SET services = 'smtp' WHERE email = '{}';",
            SMTP_ONLY.0
        ),
    );
    sqlite_exec(
        &config,
        &format!(
            "UPDATE users SET quota = {ALICE_QUOTA} WHERE email = '{}';",
            ALICE.0
        ),
    );
    (db, config)
}

fn mail_owner() -> (u32, u32) {
    (
        lookup_user("nobody").map_or(65534, |(u, _)| u),
        lookup_group("nogroup").unwrap_or(65534),
    )
}

/// A home base owned by the mail owner, entered by Dovecot's mail processes.
fn make_home_base(dir: &Path, uid: u32, gid: u32) -> PathBuf {
    let base = dir.join("vmail");
    std::fs::create_dir(&base).unwrap();
    set_mode(&base, 0o755);
    std::os::unix::fs::chown(&base, Some(uid), Some(gid)).unwrap();
    base
}

/// Dovecot 2.3 on this host, on the shipped script and 2.3 snippet.
fn setup_23(test: &str) -> Option<Setup> {
    if !have("doveadm") {
        skip(
            test,
            "doveadm (Dovecot) is not installed; run scripts/test-deps",
        );
        return None;
    }
    if !Path::new("/usr/lib/dovecot/modules/auth/libauthdb_lua.so").exists() {
        skip(
            test,
            "dovecot-auth-lua is not installed; run scripts/test-deps",
        );
        return None;
    }
    let (uid, gid) = mail_owner();
    let homes = tempfile::tempdir().unwrap();
    set_mode(homes.path(), 0o755);
    let home_host = make_home_base(homes.path(), uid, gid);
    let home_base = home_host.display().to_string();
    let (db, config) = authd_config(&home_base, uid, gid);
    let authd = Daemon::start(config);
    authd.open_sockets();
    let socket = authd.lua_socket.clone();

    let script = subst(
        SCRIPT,
        "local SOCKET = \"/run/vmail/auth-lua\"",
        &format!("local SOCKET = \"{}\"", socket.display()),
        1,
        "vmail-auth.lua",
    );
    let script = subst(
        &script,
        "local TIMEOUT_MS = 10000",
        &format!("local TIMEOUT_MS = {TIMEOUT_MS}"),
        1,
        "vmail-auth.lua",
    );
    let conf = subst(
        CONF_23,
        "file=/etc/dovecot/vmail-auth.lua",
        "file=@DIR@/vmail-auth.lua",
        2,
        "conf.d/auth-vmail-lua.conf.ext",
    );
    let dovecot = DovecotBuilder::new()
        .file("vmail-auth.lua", &script)
        .file("conf.d/auth-vmail-lua.conf.ext", &conf)
        .conf("!include @DIR@/conf.d/auth-vmail-lua.conf.ext")
        .mail_owner(uid, gid)
        .start(test)?;
    Some(Setup {
        dovecot: Dovecot::V23(dovecot),
        authd: Some(authd),
        socket,
        home_base,
        home_host,
        uid,
        gid,
        _homes: Homes::Host(homes),
        _db: db,
    })
}

/// Dovecot 2.4 in the Debian 13 root, on the shipped script and 2.4 snippet; authd runs here
/// with its socket in a temp dir inside the root.
fn setup_24(test: &str) -> Option<Setup> {
    let root = debian13::root(test)?;
    // Inside the root, nobody/nogroup are 65534 too (Debian's fixed ids).
    let (uid, gid) = (65534, 65534);
    let homes = RootDir::new(&root, "vmail-homes");
    let home_host = make_home_base(homes.host.path(), uid, gid);
    let home_base = format!("{}/vmail", homes.inside);
    let (db, config) = authd_config(&home_base, uid, gid);
    let sockets = RootDir::new(&root, "vmail-authd");
    let inside_socket = format!("{}/lua.sock", sockets.inside);
    let authd = Daemon::start_in(config, sockets.host);
    authd.open_sockets();
    let socket = authd.lua_socket.clone();

    let dir = RootDir::new(&root, "vmail-dovecot24");
    let conf = subst(
        CONF_24,
        "lua_file = /etc/dovecot/vmail-auth.lua",
        "lua_file = @DIR@/vmail-auth.lua",
        2,
        "2.4/conf.d/auth-vmail-lua.conf.ext",
    );
    let conf = subst(
        &conf,
        "socket = /run/vmail/auth-lua",
        &format!("socket = {inside_socket}"),
        2,
        "2.4/conf.d/auth-vmail-lua.conf.ext",
    );
    let conf = subst(
        &conf,
        "timeout_ms = 10000",
        &format!("timeout_ms = {TIMEOUT_MS}"),
        2,
        "2.4/conf.d/auth-vmail-lua.conf.ext",
    );
    dir.write("vmail-auth.lua", SCRIPT);
    dir.write("auth-vmail-lua.conf.ext", &conf);
    // Debian 13's stock conf.d/10-mail.conf (an mbox in /var/mail): the userdb fields the
    // script sends must override every line of it, as 2.3's `mail` field did.
    let dovecot = ChrootDovecot::start(
        &root,
        dir,
        "mail_driver = mbox\n\
         mail_home = /home/%{user | username}\n\
         mail_path = %{home}/mail\n\
         mail_inbox_path = /var/mail/%{user}\n\
         !include @DIR@/auth-vmail-lua.conf.ext",
    );
    Some(Setup {
        dovecot: Dovecot::V24(dovecot),
        authd: Some(authd),
        socket,
        home_base,
        home_host,
        uid,
        gid,
        _homes: Homes::Root(homes),
        _db: db,
    })
}

/// `doveadm auth test` succeeded for `user`.
fn accepted(o: &Output, user: &str) -> bool {
    o.status.success()
        && String::from_utf8_lossy(&o.stdout).contains(&format!("passdb: {user} auth succeeded"))
}

/// `doveadm auth test` refused the password as wrong (2.3 and 2.4: exit 77), not as a
/// temporary failure.
fn refused(o: &Output) -> bool {
    o.status.code() == Some(77) && !temporary(o)
}

/// A temporary failure: 2.3's `doveadm auth test` exits 77 with `code=temp_fail` in the
/// fields, 2.4's exits 75 ("internal auth failure"); lookups exit 75 on both.
fn temporary(o: &Output) -> bool {
    o.status.code() == Some(75) || String::from_utf8_lossy(&o.stdout).contains("temp_fail")
}

/// The `key\tvalue` lines of `doveadm user`.
fn user_fields(o: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn lua_connections(s: &Setup) -> u64 {
    let a = s.authd.as_ref().expect("authd running");
    a.authenticator.stats.lua.connections.load(Relaxed)
}

fn logins_lookups_and_listing(s: &Setup) {
    let dc = &s.dovecot;
    let log = || dc.log();
    for (user, pw) in [ALICE, ERIN] {
        let ok = dc.doveadm(&["auth", "test", user, pw]);
        assert!(
            accepted(&ok, user),
            "{user}: {}\n--- log:\n{}",
            text(&ok),
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
    assert!(accepted(&o, SMTP_ONLY.0), "grace over smtp: {}", text(&o));
    let o = dc.doveadm(&[
        "auth",
        "test",
        "-x",
        "service=imap",
        SMTP_ONLY.0,
        SMTP_ONLY.1,
    ]);
    assert!(refused(&o), "grace over imap: {}", text(&o));
    // The login is canonicalised by the `user` field the script sets.
    let mixed = dc.doveadm(&["auth", "test", "Alice@Example.ORG", ALICE.1]);
    assert!(mixed.status.success(), "{}", text(&mixed));

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
            text(&o),
            log()
        );
    }

    // A lookup carries the record, never a password.
    let o = dc.doveadm(&["auth", "lookup", ALICE.0]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}\n--- log:\n{}", text(&o), log());
    assert!(out.contains(ALICE.0), "{out}");
    assert!(!out.contains("$6$") && !out.contains("password"), "{out}");
    let o = dc.doveadm(&["auth", "lookup", "nobody@example.org"]);
    assert_eq!(o.status.code(), Some(67), "{}", text(&o));

    // The userdb: authd's fields (2.4 gets them in its own setting names).
    let o = dc.doveadm(&["user", ALICE.0]);
    assert!(o.status.success(), "{}\n--- log:\n{}", text(&o), log());
    let fields = user_fields(&o);
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in doveadm user:\n{}", text(&o)))
    };
    assert_eq!(field("uid"), s.uid.to_string());
    assert_eq!(field("gid"), s.gid.to_string());
    let home = format!("{}/example.org/alice", s.home_base);
    assert_eq!(field("home"), home);
    if dc.is_24() {
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
        assert_eq!(o.status.code(), Some(67), "{user}: {}", text(&o));
    }
    let o = dc.doveadm(&["user", "*"]);
    assert!(o.status.success(), "{}\n--- log:\n{}", text(&o), log());
    let mut listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    listed.sort();
    assert_eq!(listed, [ALICE.0, ERIN.0, SMTP_ONLY.0], "{}", text(&o));

    // An auth worker keeps its connection: logins in a row open hardly any.
    let before = lua_connections(s);
    for _ in 0..6 {
        let ok = dc.doveadm(&["auth", "test", ALICE.0, ALICE.1]);
        assert!(accepted(&ok, ALICE.0), "{}", text(&ok));
    }
    let opened = lua_connections(s) - before;
    assert!(
        opened <= 2,
        "6 logins opened {opened} connections to authd\n{}",
        log()
    );

    // authd's penalty counts by the remote IP Dovecot saw (`-x rip=`): past
    // penalty_block_after failures that network is refused even the right password, over
    // this channel and SMTP AUTH alike, while another network gets in.
    let authd = s.authd.as_ref().unwrap();
    for i in 0..3 {
        let guess = format!("guess-{i}");
        let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.7", ALICE.0, &guess]);
        assert!(refused(&o), "{}", text(&o));
    }
    let blocked = || authd.authenticator.stats.blocked.load(Relaxed);
    let before = blocked();
    let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.7", ALICE.0, ALICE.1]);
    assert!(refused(&o), "blocked network, right password: {}", text(&o));
    assert_eq!(blocked() - before, 1, "authd did not block 192.0.2.7");
    let o = dc.doveadm(&["auth", "test", "-x", "rip=192.0.2.8", ALICE.0, ALICE.1]);
    assert!(accepted(&o, ALICE.0), "another network: {}", text(&o));
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
        text(&ok),
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
        text(&ok),
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
                text(&o),
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
            text(&o)
        );
    };
    down("authd stopped");
    assert!(
        dc.log().contains("vmail-authd"),
        "no reason logged:\n{}",
        dc.log()
    );

    // A listener that accepts and never answers, where authd's socket was.
    std::fs::create_dir_all(s.socket.parent().unwrap()).unwrap();
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
    let Dovecot::V24(dc) = &s.dovecot else {
        unreachable!()
    };
    for (user, pw) in [ALICE, ERIN] {
        let mut imap = imap_login(dc.imap_port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n--- log:\n{}", dc.log()));
        let n = imap
            .select("INBOX")
            .unwrap_or_else(|e| panic!("SELECT INBOX as {user}: {e}\n--- log:\n{}", dc.log()));
        assert_eq!(n, 0);
        imap.logout().ok();
        let local = user.split('@').next().unwrap();
        let maildir = s.home_host.join("example.org").join(local).join("Maildir");
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
