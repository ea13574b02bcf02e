//! The Dovecots of `dovecot_lua`: the shipped files with only paths (and the timeout)
//! changed, authd on a fresh SQLite directory, and what doveadm's answers mean.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering::Relaxed;

use vmail_test_support::authd::*;
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};
use vmail_test_support::root::{SharedDir, SystemRoot};
use vmail_test_support::{set_mode, skip};

pub use vmail_test_support::contrib::{
    CONTRIB_LUA as SCRIPT, CONTRIB_LUA_23 as CONF_23, CONTRIB_LUA_24 as CONF_24,
};

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
/// The script's timeout in these tests (the shipped 6 s would make the stall slow).
pub const TIMEOUT_MS: u64 = 1500;

/// `text` (the shipped `file`) with each `from` replaced by its `to`; each must occur exactly
/// `count` times: a change of the shipped files cannot slip past the test.
pub fn subst(text: &str, file: &str, changes: &[(&str, &str, usize)]) -> String {
    changes
        .iter()
        .fold(text.to_string(), |text, (from, to, count)| {
            assert_eq!(
                text.matches(from).count(),
                *count,
                "{file} no longer contains `{from}` {count} time(s)"
            );
            text.replace(from, to)
        })
}

/// Dropped in field order: Dovecot first, then authd, then its sockets, the homes and the
/// database.
pub struct Setup {
    /// Dovecot 2.3 of this host or 2.4 of the Debian 13 root.
    pub dovecot: PrivateDovecot,
    pub authd: Option<Daemon>,
    /// authd's Lua socket (the same path on both sides).
    pub socket: PathBuf,
    /// Where authd's `[mailbox] home` puts `example.org/alice` (the same path on both sides).
    pub home_base: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub _sockets: SharedDir,
    pub _homes: SharedDir,
    /// authd's configuration (its SQLite file, for the database outage).
    pub config: vmail_config::Config,
    pub _db: tempfile::TempDir,
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
    setup_23_with(test, "")
}

/// A master user for `doveadm auth test 'user*admin' MASTER_PW` (both releases).
pub const MASTER: (&str, &str) = ("admin", "master-pw");

/// What the master-user tests add to the configuration: the auth cache on (which the
/// shipped files must survive) and a master passdb whose target must pass the lua passdb
/// too (2.3 `pass = yes`, 2.4 `result_success = continue`). `@DIR@` is the config dir.
pub fn cache_and_master_23() -> String {
    "auth_cache_size = 1M\n\
     auth_master_user_separator = *\n\
     passdb {\n  driver = passwd-file\n  args = @DIR@/master-users\n  master = yes\n  pass = yes\n}"
        .to_string()
}

pub fn cache_and_master_24() -> String {
    "auth_cache_size = 1M\n\
     auth_master_user_separator = *\n\
     passdb master {\n  driver = passwd-file\n  passwd_file_path = @DIR@/master-users\n  \
     master = yes\n  result_success = continue\n}"
        .to_string()
}

pub fn master_users() -> String {
    format!("{}:{{PLAIN}}{}\n", MASTER.0, MASTER.1)
}

/// [`setup_23`] with `extra` added to dovecot.conf (and `master-users` in its dir).
pub fn setup_23_with(test: &str, extra: &str) -> Option<Setup> {
    if !Path::new("/usr/lib/dovecot/modules/auth/libauthdb_lua.so").exists() {
        skip(
            test,
            "dovecot-auth-lua is not installed; run scripts/test-deps",
        );
        return None;
    }
    setup(test, SystemRoot::host(), |socket| {
        let script = subst(
            SCRIPT,
            "vmail-auth.lua",
            &[
                (
                    "local SOCKET = \"/run/vmail/auth-lua\"",
                    &format!("local SOCKET = \"{}\"", socket.display()),
                    1,
                ),
                (
                    "local TIMEOUT_MS = 6000",
                    &format!("local TIMEOUT_MS = {TIMEOUT_MS}"),
                    1,
                ),
            ],
        );
        let conf = subst(
            CONF_23,
            "conf.d/auth-vmail-lua.conf.ext",
            &[(
                "file=/etc/dovecot/vmail-auth.lua",
                "file=@DIR@/vmail-auth.lua",
                2,
            )],
        );
        DovecotBuilder::new()
            .file("vmail-auth.lua", &script)
            .file("conf.d/auth-vmail-lua.conf.ext", &conf)
            .conf("!include @DIR@/conf.d/auth-vmail-lua.conf.ext")
            .conf(extra)
    })
}

/// Dovecot 2.4 in the Debian 13 root, on the shipped script and 2.4 snippet; authd runs here
/// with its socket in a temp dir both sides see.
pub fn setup_24(test: &str) -> Option<Setup> {
    setup_24_with(test, "")
}

/// [`setup_24`] with `extra` added to dovecot.conf (and `master-users` in its dir).
pub fn setup_24_with(test: &str, extra: &str) -> Option<Setup> {
    setup(test, SystemRoot::debian13(test)?, |socket| {
        let conf = subst(
            CONF_24,
            "2.4/conf.d/auth-vmail-lua.conf.ext",
            &[
                (
                    "lua_file = /etc/dovecot/vmail-auth.lua",
                    "lua_file = @DIR@/vmail-auth.lua",
                    2,
                ),
                (
                    "socket = /run/vmail/auth-lua",
                    &format!("socket = {}", socket.display()),
                    2,
                ),
                (
                    "timeout_ms = 6000",
                    &format!("timeout_ms = {TIMEOUT_MS}"),
                    2,
                ),
            ],
        );
        // Debian 13's stock conf.d/10-mail.conf (an mbox in /var/mail): the userdb fields the
        // script sends must override every line of it, as 2.3's `mail` field did.
        DovecotBuilder::new()
            .file("vmail-auth.lua", SCRIPT)
            .file("auth-vmail-lua.conf.ext", &conf)
            .conf("auth_internal_failure_delay = 0")
            .conf(
                "mail_driver = mbox\n\
                 mail_home = /home/%{user | username}\n\
                 mail_path = %{home}/mail\n\
                 mail_inbox_path = /var/mail/%{user}",
            )
            .conf("!include @DIR@/auth-vmail-lua.conf.ext")
            .conf(extra)
    })
}

/// authd on a fresh database with its sockets and the homes in temp dirs of `root`, and the
/// Dovecot of `root` that `dovecot` builds (given authd's Lua socket), mail owner
/// `nobody`/`nogroup` of `root` and `master-users` added.
fn setup(
    test: &str,
    root: SystemRoot,
    dovecot: impl FnOnce(&Path) -> DovecotBuilder,
) -> Option<Setup> {
    let (uid, gid) = root.nobody();
    let homes = root.shared_tempdir("vmail-homes");
    let home_base = make_home_base(homes.path(), uid, gid);
    let (db, config) = authd_config(&home_base.display().to_string(), uid, gid);
    let sockets = root.shared_tempdir("vmail-authd");
    let authd = Daemon::start_in(config.clone(), sockets.path());
    authd.open_sockets();
    let socket = authd.lua_socket.clone();
    let dovecot = dovecot(&socket)
        .file("master-users", &master_users())
        .mail_owner(uid, gid)
        .root(&root)
        .start(test)?;
    Some(Setup {
        dovecot,
        authd: Some(authd),
        socket,
        home_base,
        uid,
        gid,
        _sockets: sockets,
        _homes: homes,
        config,
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
