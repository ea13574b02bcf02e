//! A real Dovecot 2.3 using vmail-authd as its passdb and userdb, configured with the files
//! shipped in `contrib/dovecot/` (only the socket and file paths are changed), on a MariaDB
//! directory whose users carry hashes made by the real `doveadm pw` (and the how-to's DES
//! crypt). Dovecot checks the passwords itself: this proves the records authd serves are
//! ones Dovecot understands, that `%s` reaches authd as the service, that a login costs one
//! dict request (the prefetch userdb takes the `userdb_*` fields of the passdb answer), and
//! that `doveadm user` (no passdb step) sees authd's uid/gid/home/mail and its user list.

use std::process::Output;

use vmail_test_support::authd::*;
use vmail_test_support::contrib::contrib_dict_files;
use vmail_test_support::dovecot::{imap_login, pop3_login, DovecotBuilder, PrivateDovecot};
use vmail_test_support::postfix::{lookup_group, lookup_user};
use vmail_test_support::root::SystemRoot;
use vmail_test_support::{have, set_mode, skip, TestDb};

/// `doveadm pw` of this host's Dovecot 2.3.
fn doveadm_pw(scheme: &str, password: &str) -> String {
    vmail_test_support::e2e::doveadm_pw(&SystemRoot::host(), scheme, password)
}

/// Dropped in field order: Dovecot first, then authd, then the database.
struct Setup {
    dovecot: PrivateDovecot,
    authd: Daemon,
    _db: TestDb,
    _homes: tempfile::TempDir,
    home_base: std::path::PathBuf,
    uid: u32,
    gid: u32,
    /// (login, password) of every active user, one per hash kind.
    users: Vec<(&'static str, &'static str)>,
}

const DISABLED: (&str, &str) = ("frank@example.org", "frank-pw");
const SMTP_ONLY: (&str, &str) = ("grace@example.org", "grace-pw");
/// alice's quota in bytes, so that `quota_rule` travels too.
const ALICE_QUOTA: u64 = 1_048_576;

fn setup(test: &str) -> Option<Setup> {
    if !have("doveadm") {
        skip(
            test,
            "doveadm (Dovecot) is not installed; run scripts/test-deps",
        );
        return None;
    }
    let db = TestDb::create(test)?;
    let (uid, gid) = (
        lookup_user("nobody").map_or(65534, |(u, _)| u),
        lookup_group("nogroup").unwrap_or(65534),
    );
    let homes = tempfile::tempdir().unwrap();
    set_mode(homes.path(), 0o755);
    let home_base = homes.path().join("vmail");
    std::fs::create_dir(&home_base).unwrap();
    // Set, not left to whatever umask the tests run under: Dovecot's mail process runs as
    // nobody and must enter it (else SELECT INBOX: SERVERBUG).
    set_mode(&home_base, 0o755);
    std::os::unix::fs::chown(&home_base, Some(uid), Some(gid)).unwrap();

    let mut config = test_config(db.config());
    config.mailbox.uid = uid;
    config.mailbox.gid = gid;
    config.mailbox.home = format!("{}/%d/%n", home_base.display());
    config.mailbox.mail = "maildir:~/Maildir".into();

    let users: Vec<(&str, &str, String)> = vec![
        (
            "alice@example.org",
            "alice-sha512",
            doveadm_pw("SHA512-CRYPT", "alice-sha512"),
        ),
        (
            "bob@example.org",
            "bob-blf",
            doveadm_pw("BLF-CRYPT", "bob-blf"),
        ),
        (
            "carol@example.org",
            "carol-argon",
            doveadm_pw("ARGON2ID", "carol-argon"),
        ),
        (
            "dave@example.org",
            "dave-ssha512",
            doveadm_pw("SSHA512", "dave-ssha512"),
        ),
        // The how-to's MySQL ENCRYPT('secret'): DES crypt, stored without a prefix.
        ("erin@example.org", "secret", "abNANd1rDfiNc".to_string()),
        (
            DISABLED.0,
            DISABLED.1,
            doveadm_pw("SHA512-CRYPT", DISABLED.1),
        ),
        (
            SMTP_ONLY.0,
            SMTP_ONLY.1,
            doveadm_pw("SHA512-CRYPT", SMTP_ONLY.1),
        ),
    ];
    let rows: Vec<(&str, &str)> = users.iter().map(|(u, _, h)| (*u, h.as_str())).collect();
    populate(&config, &["example.org"], &rows);
    with_dir(&config, async |d| {
        d.set_active(DISABLED.0, false).await.unwrap()
    });
    db.sql(&format!(
        "UPDATE users SET services = 'smtp' WHERE email = '{}';",
        SMTP_ONLY.0
    ));
    db.sql(&format!(
        "UPDATE users SET quota = {ALICE_QUOTA} WHERE email = 'alice@example.org';"
    ));
    // Stored exactly as given.
    let stored = db.sql("SELECT password FROM users WHERE email = 'carol@example.org';");
    assert_eq!(stored.trim(), users[2].2);

    let authd = Daemon::start(config);
    // Dovecot's auth processes run as `dovecot` (or root): let them in.
    authd.open_sockets();
    let (dict, auth) = contrib_dict_files(&authd.dict_socket);
    let dovecot = DovecotBuilder::new()
        .file("dovecot-dict-auth.conf.ext", &dict)
        .file("conf.d/auth-vmail.conf.ext", &auth)
        .conf("!include @DIR@/conf.d/auth-vmail.conf.ext")
        .mail_owner(uid, gid)
        .start(test)?;
    Some(Setup {
        _db: db,
        _homes: homes,
        home_base,
        uid,
        gid,
        authd,
        dovecot,
        users: users
            .iter()
            .filter(|(u, _, _)| *u != DISABLED.0 && *u != SMTP_ONLY.0)
            .map(|(u, p, _)| (*u, *p))
            .collect(),
    })
}

#[test]
fn doveadm_auth_test_checks_every_hash_kind_through_the_contrib_dict() {
    let test = "doveadm_auth_test_checks_every_hash_kind_through_the_contrib_dict";
    let Some(s) = setup(test) else { return };
    let dc = &s.dovecot;
    for (user, pw) in &s.users {
        let ok = dc.doveadm(&["auth", "test", user, pw]);
        assert!(
            ok.status.success(),
            "right password of {user}: {}\n--- dovecot log:\n{}",
            output_text(&ok),
            dc.log()
        );
        assert!(
            String::from_utf8_lossy(&ok.stdout).contains(&format!("passdb: {user} auth succeeded")),
            "{}",
            output_text(&ok)
        );
        let wrong = dc.doveadm(&["auth", "test", user, "not-the-password"]);
        assert_eq!(
            wrong.status.code(),
            Some(77),
            "wrong password of {user}: {}",
            output_text(&wrong)
        );
        assert!(
            String::from_utf8_lossy(&wrong.stdout).contains("auth failed"),
            "{}",
            output_text(&wrong)
        );
    }
    // The login is canonicalised by the record's `user` field.
    let mixed = dc.doveadm(&["auth", "test", "Alice@Example.ORG", "alice-sha512"]);
    assert!(mixed.status.success(), "{}", output_text(&mixed));

    // Unknown user.
    let unknown = dc.doveadm(&["auth", "test", "nobody@example.org", "x"]);
    assert_eq!(unknown.status.code(), Some(77), "{}", output_text(&unknown));

    // Disabled account, right password: authd's record carries `fail` (with `nologin` and
    // the reason), so Dovecot's auth server itself refuses, for every client of it, not
    // only for the login processes that honour `nologin`.
    let disabled = dc.doveadm(&["auth", "test", DISABLED.0, DISABLED.1]);
    assert!(
        refused(&disabled, "Account disabled"),
        "disabled user: {}",
        output_text(&disabled)
    );

    // `%s` in the shipped key reaches authd as the service: grace may use smtp only.
    let smtp = dc.doveadm(&[
        "auth",
        "test",
        "-x",
        "service=smtp",
        SMTP_ONLY.0,
        SMTP_ONLY.1,
    ]);
    assert!(
        smtp.status.success(),
        "grace over smtp: {}",
        output_text(&smtp)
    );
    let imap = dc.doveadm(&[
        "auth",
        "test",
        "-x",
        "service=imap",
        SMTP_ONLY.0,
        SMTP_ONLY.1,
    ]);
    assert!(
        refused(&imap, "Service not allowed for this account"),
        "grace over imap: {}",
        output_text(&imap)
    );
}

/// `doveadm auth test` refused the login (exit 77, "auth failed").
fn refused(o: &Output, _reason: &str) -> bool {
    let out = String::from_utf8_lossy(&o.stdout);
    o.status.code() == Some(77) && out.contains("auth failed")
}

#[test]
fn doveadm_user_shows_authd_fields_and_lists_every_user() {
    let test = "doveadm_user_shows_authd_fields_and_lists_every_user";
    let Some(s) = setup(test) else { return };
    let dc = &s.dovecot;
    let out = dc.doveadm(&["user", "alice@example.org"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("doveadm user alice@example.org:\n{stdout}");
    let fields: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in doveadm user:\n{stdout}"))
    };
    assert_eq!(field("uid"), s.uid.to_string());
    assert_eq!(field("gid"), s.gid.to_string());
    assert_eq!(
        field("home"),
        format!("{}/example.org/alice", s.home_base.display())
    );
    assert_eq!(field("mail"), "maildir:~/Maildir");
    assert_eq!(field("quota_rule"), format!("*:bytes={ALICE_QUOTA}"));

    // Without a passdb step the prefetch userdb has nothing, so Dovecot goes on to the dict
    // userdb (as for alice above): one request per `doveadm user`.
    let before = s.authd.dict_lookups();
    let again = dc.doveadm(&["user", "bob@example.org"]);
    assert!(again.status.success(), "{}", output_text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("/example.org/bob"),
        "{}",
        output_text(&again)
    );
    assert_eq!(s.authd.dict_lookups() - before, 1, "doveadm user bob");

    let unknown = dc.doveadm(&["user", "nobody@example.org"]);
    assert_eq!(unknown.status.code(), Some(67), "{}", output_text(&unknown));
    // A disabled account is unknown to the userdb, and not listed (issue 15.10).
    let disabled = dc.doveadm(&["user", DISABLED.0]);
    assert_eq!(
        disabled.status.code(),
        Some(67),
        "{}",
        output_text(&disabled)
    );

    let all = dc.doveadm(&["user", "*"]);
    assert!(all.status.success(), "{}", output_text(&all));
    eprintln!(
        "doveadm user '*':\n{}",
        String::from_utf8_lossy(&all.stdout)
    );
    let mut listed: Vec<String> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    listed.sort();
    let mut want: Vec<String> = s.users.iter().map(|(u, _)| u.to_string()).collect();
    want.push(SMTP_ONLY.0.to_string());
    want.sort();
    assert_eq!(listed, want, "{}", output_text(&all));
}

#[test]
fn imap_login_through_the_contrib_dict() {
    let test = "imap_login_through_the_contrib_dict";
    let Some(s) = setup(test) else { return };
    let port = s.dovecot.imap_port;
    let log = || s.dovecot.log();

    for (user, pw) in [s.users[0], s.users[4]] {
        let mut imap = imap_login(port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n--- log:\n{}", log()));
        let selected = imap
            .select("INBOX")
            .unwrap_or_else(|e| panic!("SELECT INBOX as {user}: {e}\n--- log:\n{}", log()));
        assert_eq!(selected, 0);
        imap.logout().ok();
        // The mail process used authd's home and mail (created as authd's uid).
        let (local, domain) = user.split_once('@').unwrap();
        let maildir = s.home_base.join(domain).join(local).join("Maildir");
        assert!(maildir.is_dir(), "{} missing\n{}", maildir.display(), log());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&maildir).unwrap().uid(), s.uid);
    }

    let wrong = imap_login(port, s.users[0].0, "not-the-password")
        .err()
        .expect("wrong password must be refused");
    assert!(wrong.contains("AUTHENTICATIONFAILED"), "{wrong}");

    let disabled = imap_login(port, DISABLED.0, DISABLED.1)
        .err()
        .expect("disabled account must be refused");
    // `fail` in the record: the auth server refuses like a wrong password (the reason is
    // in Dovecot's log, not shown to the client).
    assert_eq!(disabled, "NO [AUTHENTICATIONFAILED] Authentication failed.");

    let smtp_only = imap_login(port, SMTP_ONLY.0, SMTP_ONLY.1)
        .err()
        .expect("a user without imap in services must be refused");
    assert_eq!(
        smtp_only,
        "NO [AUTHENTICATIONFAILED] Authentication failed."
    );
}

/// The `name=value` lines indented under `heading` in `doveadm auth login`'s output.
fn section(stdout: &str, heading: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_login_costs_one_dict_request() {
    let test = "a_login_costs_one_dict_request";
    let Some(s) = setup(test) else { return };
    let dc = &s.dovecot;
    let (user, pw) = s.users[0];
    let home = format!("{}/example.org/alice", s.home_base.display());
    let log = || dc.log();

    // `doveadm auth login` is a login as a login process makes it: passdb over auth-client,
    // then the userdb lookup over auth-master, which prints the userdb fields it got.
    let before = s.authd.dict_lookups();
    let out = dc.doveadm(&["auth", "login", user, pw]);
    let after = s.authd.dict_lookups();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("doveadm auth login {user}:\n{stdout}");
    assert!(
        out.status.success(),
        "{}\n--- log:\n{}",
        output_text(&out),
        log()
    );
    assert_eq!(
        after - before,
        1,
        "doveadm auth login must cost one dict request (passdb with userdb_* fields)\n{}\n--- log:\n{}",
        output_text(&out),
        log()
    );
    // Dovecot keeps the passdb's `userdb_*` fields to itself (its `extra fields:` show only
    // `user`); they come back as the login's userdb reply, with no userdb request to authd.
    let userdb = section(&stdout, "userdb extra fields:");
    let get = |k: &str| {
        userdb
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no userdb {k} in doveadm auth login:\n{stdout}"))
    };
    assert_eq!(get("home"), home);
    assert_eq!(get("mail"), "maildir:~/Maildir");
    assert_eq!(get("uid"), s.uid.to_string());
    assert_eq!(get("gid"), s.gid.to_string());
    assert_eq!(get("quota_rule"), format!("*:bytes={ALICE_QUOTA}"));

    // IMAP: LOGIN, then a mailbox opened in the home authd named (so the mail process ran
    // with the prefetched fields). One dict request for all of it.
    let before = s.authd.dict_lookups();
    let mut imap = imap_login(dc.imap_port, user, pw)
        .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n--- log:\n{}", log()));
    assert_eq!(imap.select("INBOX").unwrap(), 0);
    imap.logout().ok();
    assert_eq!(
        s.authd.dict_lookups() - before,
        1,
        "an IMAP login must cost one dict request\n--- log:\n{}",
        log()
    );
    let maildir = s.home_base.join("example.org/alice/Maildir");
    assert!(maildir.is_dir(), "{} missing\n{}", maildir.display(), log());

    // POP3 likewise, for another user (DES hash, the how-to's).
    let (user, pw) = s.users[4];
    let before = s.authd.dict_lookups();
    let mut pop3 = pop3_login(dc.pop3_port, user, pw)
        .unwrap_or_else(|e| panic!("POP3 login {user}: {e}\n--- log:\n{}", log()));
    assert_eq!(pop3.stat().unwrap(), (0, 0));
    pop3.quit().ok();
    assert_eq!(
        s.authd.dict_lookups() - before,
        1,
        "a POP3 login must cost one dict request\n--- log:\n{}",
        log()
    );
    assert!(s.home_base.join("example.org/erin/Maildir").is_dir());

    // contrib's `idle_msecs` keeps Dovecot's dict connection open between lookups: logins
    // in a row reuse it instead of connecting (and saying HELLO) for every one, which is
    // what Dovecot's default would do. An auth worker of Dovecot's may open its own.
    let (user, pw) = s.users[0];
    let before = s.authd.dict_connections();
    for _ in 0..6 {
        let imap = imap_login(dc.imap_port, user, pw)
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n--- log:\n{}", log()));
        imap.logout().ok();
    }
    let opened = s.authd.dict_connections() - before;
    assert!(
        opened <= 2,
        "6 logins opened {opened} dict connections: Dovecot reconnects per lookup (idle_msecs?)\n--- log:\n{}",
        log()
    );
}
