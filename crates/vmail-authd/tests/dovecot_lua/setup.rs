//! The Dovecots of `dovecot_lua`: the shipped files with only paths (and the timeout)
//! changed, authd on a fresh SQLite directory, and what doveadm's answers mean.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering::Relaxed;

use crate::common::*;
use vmail_test_support::debian13::{self, ChrootDovecot, RootDir};
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};
use vmail_test_support::postfix::{lookup_group, lookup_user};
use vmail_test_support::{have, set_mode, skip};

pub const SCRIPT: &str = include_str!("../../../../contrib/dovecot/vmail-auth.lua");
pub const CONF_23: &str =
    include_str!("../../../../contrib/dovecot/conf.d/auth-vmail-lua.conf.ext");
pub const CONF_24: &str =
    include_str!("../../../../contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext");

pub const ALICE: (&str, &str) = ("alice@example.org", "alice-sha512");
/// The how-to's MySQL ENCRYPT('secret'): DES crypt, stored without a prefix.
pub const ERIN: (&str, &str) = ("erin@example.org", "secret");
pub const DES_SECRET: &str = "abNANd1rDfiNc";
pub const DISABLED: (&str, &str) = ("frank@example.org", "frank-pw");
pub const ALICE_QUOTA: u64 = 1_048_576;
/// authd closes a Lua connection idle this long (default 1 h).
pub const IDLE_MS: u64 = 1000;
/// grace may use SMTP only (`users.services`).
pub const SMTP_ONLY: (&str, &str) = ("grace@example.org", "grace-pw");
/// The script's timeout in these tests (the shipped 10 s would make the stall slow).
pub const TIMEOUT_MS: u64 = 1500;

/// `text` with `from` replaced by `to`, which must occur exactly `count` times: a change of
/// the shipped files cannot slip past the test.
pub fn subst(text: &str, from: &str, to: &str, count: usize, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        count,
        "{file} no longer contains `{from}` {count} time(s)"
    );
    text.replace(from, to)
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub enum Dovecot {
    V23(PrivateDovecot),
    V24(ChrootDovecot),
}

impl Dovecot {
    pub fn doveadm(&self, args: &[&str]) -> Output {
        match self {
            Dovecot::V23(d) => d.doveadm(args),
            Dovecot::V24(d) => d.doveadm(args),
        }
    }

    pub fn log(&self) -> String {
        match self {
            Dovecot::V23(d) => d.log(),
            Dovecot::V24(d) => d.log(),
        }
    }

    pub fn is_24(&self) -> bool {
        matches!(self, Dovecot::V24(_))
    }
}

/// Dropped in field order: Dovecot first, then authd, then the homes and the database.
pub struct Setup {
    pub dovecot: Dovecot,
    pub authd: Option<Daemon>,
    /// authd's Lua socket, as this host sees it.
    pub socket: PathBuf,
    /// Where authd's `[mailbox] home` puts `example.org/alice`, as Dovecot sees it.
    pub home_base: String,
    /// The same, as this host sees it.
    pub home_host: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub _homes: Homes,
    /// authd's configuration (its SQLite file, for the database outage).
    pub config: vmail_config::Config,
    pub _db: tempfile::TempDir,
}

/// Held only for its `Drop`, which removes the homes.
#[allow(dead_code)]
pub enum Homes {
    Host(tempfile::TempDir),
    Root(RootDir),
}

pub fn authd_config(
    home_base: &str,
    uid: u32,
    gid: u32,
) -> (tempfile::TempDir, vmail_config::Config) {
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

pub fn mail_owner() -> (u32, u32) {
    (
        lookup_user("nobody").map_or(65534, |(u, _)| u),
        lookup_group("nogroup").unwrap_or(65534),
    )
}

/// A home base owned by the mail owner, entered by Dovecot's mail processes.
pub fn make_home_base(dir: &Path, uid: u32, gid: u32) -> PathBuf {
    let base = dir.join("vmail");
    std::fs::create_dir(&base).unwrap();
    set_mode(&base, 0o755);
    std::os::unix::fs::chown(&base, Some(uid), Some(gid)).unwrap();
    base
}

/// Dovecot 2.3 on this host, on the shipped script and 2.3 snippet.
pub fn setup_23(test: &str) -> Option<Setup> {
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
    let config_copy = config.clone();
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
        config: config_copy,
        _db: db,
    })
}

/// Dovecot 2.4 in the Debian 13 root, on the shipped script and 2.4 snippet; authd runs here
/// with its socket in a temp dir inside the root.
pub fn setup_24(test: &str) -> Option<Setup> {
    let root = debian13::root(test)?;
    // Inside the root, nobody/nogroup are 65534 too (Debian's fixed ids).
    let (uid, gid) = (65534, 65534);
    let homes = RootDir::new(&root, "vmail-homes");
    let home_host = make_home_base(homes.host.path(), uid, gid);
    let home_base = format!("{}/vmail", homes.inside);
    let (db, config) = authd_config(&home_base, uid, gid);
    let config_copy = config.clone();
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
        config: config_copy,
        _db: db,
    })
}

/// `doveadm auth test` succeeded for `user`.
pub fn accepted(o: &Output, user: &str) -> bool {
    o.status.success()
        && String::from_utf8_lossy(&o.stdout).contains(&format!("passdb: {user} auth succeeded"))
}

/// `doveadm auth test` refused the password as wrong (2.3 and 2.4: exit 77), not as a
/// temporary failure.
pub fn refused(o: &Output) -> bool {
    o.status.code() == Some(77) && !temporary(o)
}

/// A temporary failure: 2.3's `doveadm auth test` exits 77 with `code=temp_fail` in the
/// fields, 2.4's exits 75 ("internal auth failure"); lookups exit 75 on both.
pub fn temporary(o: &Output) -> bool {
    o.status.code() == Some(75) || String::from_utf8_lossy(&o.stdout).contains("temp_fail")
}

/// The `key\tvalue` lines of `doveadm user`.
pub fn user_fields(o: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn lua_connections(s: &Setup) -> u64 {
    let a = s.authd.as_ref().expect("authd running");
    a.authenticator.stats.lua.connections.load(Relaxed)
}
