//! The shipped `contrib/` files, read once for every test and for vmail-bench, and turned into
//! a test's own configuration: only socket paths, ports, binary paths, system users and
//! groups, and the database replaced. A replaced line that is missing from contrib panics:
//! the files are compiled in, so a mismatch is a change of the tree that the harness must be
//! updated for, never a condition to carry on from.

use std::path::{Path, PathBuf};

use crate::root::SystemRoot;
use crate::MailUser;

pub const CONTRIB_MAIN_CF: &str = include_str!("../../../contrib/postfix/main.cf.vmail");
pub const CONTRIB_MASTER_CF: &str = include_str!("../../../contrib/postfix/master.cf.vmail");
pub const CONTRIB_VMAIL_TOML: &str = include_str!("../../../contrib/vmail/vmail.toml");
/// Dovecot's dict passdb/userdb against authd (`contrib/dovecot/`).
pub const CONTRIB_DICT: &str = include_str!("../../../contrib/dovecot/dovecot-dict-auth.conf.ext");
pub const CONTRIB_AUTH: &str = include_str!("../../../contrib/dovecot/conf.d/auth-vmail.conf.ext");

/// Replaces `from` by `to` in `text`, insisting that `from` occurs exactly `count` times: a
/// contrib file that no longer contains what the test substitutes must fail the test, not
/// silently test something else.
pub fn replace_exact(file: &str, text: &str, from: &str, to: &str, count: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, count,
        "{file}: expected `{from}` {count} time(s), found it {found} time(s); the end-to-end \
         tests substitute it (update crates/vmail-test-support/src/contrib.rs together with contrib)"
    );
    text.replace(from, to)
}

/// Every parameter setting of `contrib/postfix/main.cf.vmail` as (name, value), continuation
/// lines joined, in file order.
pub fn main_cf_settings() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in CONTRIB_MAIN_CF.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let last = out
                .last_mut()
                .expect("contrib/postfix/main.cf.vmail starts with a continuation line");
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or_else(|| {
            panic!("contrib/postfix/main.cf.vmail: not `name = value`: {line:?}")
        });
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
    out
}

/// [`main_cf_settings`] with `private/vmail-lookupd` and `private/vmail-auth` (paths
/// relative to `/var/spool/postfix`) made absolute under `spool`. Panics unless the settings
/// the tests rely on are there exactly as documented.
///
/// (The sockets cannot live in the private instance's own `queue_directory/private/`: that
/// exists only once Postfix has started, and with `smtpd_sasl_auth_enable = yes` smtpd
/// exits at its first connection — "fatal: no SASL authentication mechanisms" — when the
/// auth socket is not there yet.)
pub fn contrib_main_cf(spool: &Path) -> Vec<(String, String)> {
    let mut out = main_cf_settings();
    let want = [
        (
            "virtual_mailbox_domains",
            "socketmap:unix:private/vmail-lookupd:domains",
        ),
        (
            "virtual_mailbox_maps",
            "socketmap:unix:private/vmail-lookupd:mailboxes",
        ),
        (
            "virtual_alias_maps",
            "socketmap:unix:private/vmail-lookupd:aliases",
        ),
        (
            "transport_maps",
            "socketmap:unix:private/vmail-lookupd:transport",
        ),
        (
            "smtpd_sender_login_maps",
            "socketmap:unix:private/vmail-lookupd:senders",
        ),
        (
            "smtpd_sender_restrictions",
            "reject_authenticated_sender_login_mismatch",
        ),
        ("recipient_delimiter", "+"),
        ("virtual_transport", "vmail"),
        ("vmail_destination_recipient_limit", "1"),
        ("smtpd_sasl_type", "dovecot"),
        ("smtpd_sasl_path", "private/vmail-auth"),
    ];
    for (name, value) in want {
        assert!(
            out.iter().any(|(n, v)| n == name && v == value),
            "contrib/postfix/main.cf.vmail lacks `{name} = {value}`: {out:?}"
        );
    }
    let spool = spool.display().to_string();
    for (name, value) in &mut out {
        let lookupd = "socketmap:unix:private/vmail-lookupd:";
        if value.contains(lookupd) {
            *value = value.replace(
                lookupd,
                &format!("socketmap:unix:{spool}/private/vmail-lookupd:"),
            );
        }
        if name == "smtpd_sasl_path" {
            *value = format!("{spool}/{value}");
        }
    }
    out
}

/// The `-o name=value` options of the `submission` service of
/// `contrib/postfix/master.cf.vmail` (SMTP AUTH is switched on there, not in main.cf),
/// without `syslog_name` (the harness names its submission smtpd itself). Panics unless
/// the options the tests rely on are there.
pub fn contrib_submission_options() -> Vec<String> {
    let opts: Vec<String> = CONTRIB_MASTER_CF
        .lines()
        .skip_while(|l| !l.starts_with("submission "))
        .skip(1)
        .take_while(|l| l.starts_with([' ', '\t']))
        .filter_map(|l| l.trim().strip_prefix("-o "))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.starts_with("syslog_name="))
        .collect();
    for want in [
        "smtpd_sasl_auth_enable=yes",
        "smtpd_tls_security_level=encrypt",
        "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    ] {
        assert!(
            opts.iter().any(|o| o == want),
            "contrib/postfix/master.cf.vmail: the submission service lacks `-o {want}`: {opts:?}"
        );
    }
    opts
}

/// A stand-in for `/var/spool/postfix` holding only `private/` as Debian makes it (owner
/// postfix of `root`'s side, mode 0700), where the daemons create their sockets (group
/// postfix, mode 0660, as contrib's vmail.toml says). `parent` must be traversable by
/// everyone.
pub fn spool_dir(parent: &Path, root: &SystemRoot) -> std::io::Result<PathBuf> {
    let spool = parent.join("spool");
    let private = spool.join("private");
    std::fs::create_dir_all(&private)?;
    crate::set_mode(&spool, 0o755);
    let (postfix_uid, _) = root.lookup_user("postfix").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no system user `postfix`")
    })?;
    std::os::unix::fs::chown(&private, Some(postfix_uid), Some(0))?;
    crate::set_mode(&private, 0o700);
    Ok(spool)
}

/// Writes the database password the way contrib says: a file of its own, mode 0640, group
/// of the mail user (contrib: `chgrp vmail`), so the LDA run by pipe(8) can read it.
pub fn write_password_file(path: &Path, password: &str, user: &MailUser) -> std::io::Result<()> {
    std::fs::write(path, format!("{password}\n"))?;
    std::os::unix::fs::chown(path, Some(0), Some(user.gid))?;
    crate::set_mode(path, 0o640);
    Ok(())
}

/// The `vmail` service of `contrib/postfix/master.cf.vmail` (its line and continuation
/// lines), running `lda --config CFG` as `user` (`name:group`, or `name` for its own group)
/// instead of `/usr/bin/vmail-lda` as `vmail:vmail`. Everything else (columns, flags, argv
/// options) as shipped.
pub fn contrib_vmail_service(lda: &str, cfg: &Path, user: &str) -> String {
    let lines: Vec<&str> = CONTRIB_MASTER_CF
        .lines()
        .skip_while(|l| !l.starts_with("vmail "))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l)
        .collect();
    let service = lines.join("\n");
    let file = "contrib/postfix/master.cf.vmail";
    let first: Vec<&str> = service.split_whitespace().take(8).collect();
    assert_eq!(
        first,
        ["vmail", "unix", "-", "n", "n", "-", "-", "pipe"],
        "{file}: the vmail service line changed: {service:?}"
    );
    for want in [
        "flags=DRhu ",
        " -f ${sender} -a ${original_recipient} -d ${recipient}",
    ] {
        assert!(service.contains(want), "{file}: no `{want}` in {service:?}");
    }
    let service = replace_exact(
        file,
        &service,
        "user=vmail:vmail",
        &format!("user={user}"),
        1,
    );
    replace_exact(
        file,
        &service,
        "argv=/usr/bin/vmail-lda ",
        &format!("argv={lda} --config {} ", cfg.display()),
        1,
    )
}

/// Where the test's vmail.toml points instead of the paths and database in contrib's.
pub struct VmailPaths<'a> {
    /// Replaces `/var/spool/postfix` (see [`spool_dir`]).
    pub spool: &'a Path,
    /// Replaces `/run/vmail/auth-dict`.
    pub dict_socket: &'a Path,
    /// Replaces `/run/vmail/auth-lua` (Dovecot's Lua passdb/userdb talks to authd there).
    pub lua_socket: &'a Path,
    /// The socket groups `postfix` and `dovecot`, as the daemons must name Postfix's and
    /// Dovecot's side (see `Lane::group`). contrib's `lua_peers = ["root"]` stays: Dovecot's
    /// auth workers run as root on both lanes, and uid 0 is the same inside the root.
    pub postfix_group: &'a str,
    pub dovecot_group: &'a str,
    /// `[authd] penalty_block_after` and `penalty_window_s` instead of contrib's 100 and 900
    /// (which a test cannot wait for); `max_delay_ms` then becomes 3000 instead of 8000, so
    /// that a penalty sleep (up to max_delay_ms - failure_delay_ms) stays well inside the
    /// short window: the block is decided after the sleep, and a window that ran out during
    /// it would let the attempt through.
    pub penalty: (u32, u32),
    /// Replaces `/run/mysqld/mysqld.sock`.
    pub db_socket: &'a Path,
    /// Replace `mail_admin`, `/etc/vmail/db-password` and `mail`.
    pub db_user: &'a str,
    pub db_password_file: &'a Path,
    pub db_name: &'a str,
    /// Replaces `/home/vmail` in the built-in `[mailbox]` defaults (contrib keeps them).
    pub mail_base: &'a Path,
    pub user: &'a MailUser,
    /// Replaces `/usr/lib/dovecot/dovecot-lda` (`[lda] dovecot_lda`): the stack's Dovecot has
    /// a configuration file of its own, which the real program must be pointed at.
    pub dovecot_lda: &'a Path,
}

/// `contrib/vmail/vmail.toml` with paths, database and system user replaced, and the
/// built-in `[mailbox]` defaults written out with `/home/vmail` replaced.
pub fn contrib_vmail_toml(p: &VmailPaths) -> String {
    let file = "contrib/vmail/vmail.toml";
    let mut t = CONTRIB_VMAIL_TOML.to_string();
    let subst = [
        (
            "hosts = [\"/run/mysqld/mysqld.sock\"]".to_string(),
            format!("hosts = [\"{}\"]", p.db_socket.display()),
            1,
        ),
        (
            "user = \"mail_admin\"".into(),
            format!("user = \"{}\"", p.db_user),
            1,
        ),
        (
            "password_file = \"/etc/vmail/db-password\"".into(),
            format!("password_file = \"{}\"", p.db_password_file.display()),
            1,
        ),
        (
            "dbname = \"mail\"".into(),
            format!("dbname = \"{}\"", p.db_name),
            1,
        ),
        (
            "socketmap = [\"unix:/var/spool/postfix/private/vmail-lookupd\"]".into(),
            format!(
                "socketmap = [\"unix:{}/private/vmail-lookupd\"]",
                p.spool.display()
            ),
            1,
        ),
        // lmtpd's socket, where Postfix's lmtp client looks for it (see
        // [`contrib_lmtp_transport`]).
        (
            "listen = [\"unix:/var/spool/postfix/private/vmail-lmtp\"]".into(),
            format!(
                "listen = [\"unix:{}/private/vmail-lmtp\"]",
                p.spool.display()
            ),
            1,
        ),
        (
            "auth = [\"unix:/var/spool/postfix/private/vmail-auth\"]".into(),
            format!("auth = [\"unix:{}/private/vmail-auth\"]", p.spool.display()),
            1,
        ),
        (
            "dict = [\"unix:/run/vmail/auth-dict\"]".into(),
            format!("dict = [\"unix:{}\"]", p.dict_socket.display()),
            1,
        ),
        (
            "user = \"vmail\"".into(),
            format!("user = \"{}\"", p.user.name),
            3, // [lookupd], [authd], [lmtpd]
        ),
        // lookupd's socket for the LDA ([lookupd] lda and [lda] lookupd), beside the dict's.
        (
            "\"unix:/run/vmail/lookupd\"".into(),
            format!(
                "\"unix:{}\"",
                p.dict_socket.with_file_name("lookupd").display()
            ),
            2,
        ),
        (
            "lda_socket_group = \"vmail\"".into(),
            format!("lda_socket_group = \"{}\"", p.user.group),
            1,
        ),
        (
            "dovecot_lda = \"/usr/lib/dovecot/dovecot-lda\"".into(),
            format!("dovecot_lda = \"{}\"", p.dovecot_lda.display()),
            1,
        ),
        // The pid files, beside the sockets: each stack its own.
        (
            "pid_file = \"/var/lib/vmail/lookupd.pid\"".into(),
            format!(
                "pid_file = \"{}\"",
                p.dict_socket.with_file_name("lookupd.pid").display()
            ),
            1,
        ),
        (
            "pid_file = \"/var/lib/vmail/authd.pid\"".into(),
            format!(
                "pid_file = \"{}\"",
                p.dict_socket.with_file_name("authd.pid").display()
            ),
            1,
        ),
    ];
    for (from, to, n) in &subst {
        t = replace_exact(file, &t, from, to, *n);
    }
    // Postfix's and Dovecot's groups (and Dovecot's user), as the daemons see them.
    let (block, window) = p.penalty;
    let sides = [
        (
            "socket_group = \"postfix\"".to_string(),
            format!("socket_group = \"{}\"", p.postfix_group),
            3, // [lookupd] socket_group, [authd] auth_socket_group, [lmtpd] socket_group
        ),
        (
            "dict_socket_group = \"dovecot\"".into(),
            format!("dict_socket_group = \"{}\"", p.dovecot_group),
            1,
        ),
        (
            "lua = [\"unix:/run/vmail/auth-lua\"]".into(),
            format!("lua = [\"unix:{}\"]", p.lua_socket.display()),
            1,
        ),
        (
            "lua_socket_group = \"dovecot\"".into(),
            format!("lua_socket_group = \"{}\"", p.dovecot_group),
            1,
        ),
        (
            "penalty_window_s = 900".into(),
            format!("penalty_window_s = {window}"),
            1,
        ),
        (
            "penalty_block_after = 100".into(),
            format!("penalty_block_after = {block}"),
            1,
        ),
        (
            "max_delay_ms = 8000".into(),
            "max_delay_ms = 3000".into(),
            1,
        ),
    ];
    for (from, to, n) in &sides {
        t = replace_exact(file, &t, from, to, *n);
    }
    assert!(
        !t.contains("[mailbox]"),
        "{file} now has a [mailbox] section: substitute its paths instead of appending one"
    );
    let base = p.mail_base.display();
    t.push_str(&format!(
        "\n# Added by the end-to-end tests: the built-in defaults with /home/vmail replaced,\n\
         # owned by the user standing in for vmail.\n\
         [mailbox]\nhome = \"{base}/%d/%n\"\nmail = \"maildir:{base}/%d/%n/Maildir\"\n\
         uid = {}\ngid = {}\n",
        p.user.uid, p.user.gid
    ));
    t
}

/// The Lua passdb/userdb script both Dovecots run.
pub const CONTRIB_LUA: &str = include_str!("../../../contrib/dovecot/vmail-auth.lua");
/// Its Dovecot 2.3 configuration (Debian 12).
pub const CONTRIB_LUA_23: &str =
    include_str!("../../../contrib/dovecot/conf.d/auth-vmail-lua.conf.ext");
/// Its Dovecot 2.4 configuration (Debian 13).
pub const CONTRIB_LUA_24: &str =
    include_str!("../../../contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext");

/// contrib's Dovecot files for the lane's Dovecot, as (path under Dovecot's temp dir
/// `@DIR@`, text): `vmail-auth.lua` and `conf.d/auth-vmail-lua.conf.ext`, the 2.3 one on
/// debian12 and the 2.4 one on debian13 (`debian13`), pointing at the script in `@DIR@` and at authd's
/// Lua socket `lua_socket`. 2.3 cannot hand the script settings, so there the script's own
/// `SOCKET` line is replaced; 2.4 passes `lua_settings { socket }`, and the script is used
/// as shipped.
pub fn contrib_dovecot_files(debian13: bool, lua_socket: &Path) -> Vec<(String, String)> {
    let script_path = "/etc/dovecot/vmail-auth.lua";
    let sock = lua_socket.display().to_string();
    let (conf_file, conf, script) = if debian13 {
        let file = "contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext";
        let conf = replace_exact(
            file,
            CONTRIB_LUA_24,
            "socket = /run/vmail/auth-lua",
            &format!("socket = {sock}"),
            2,
        );
        (file, conf, CONTRIB_LUA.to_string())
    } else {
        let script = replace_exact(
            "contrib/dovecot/vmail-auth.lua",
            CONTRIB_LUA,
            "local SOCKET = \"/run/vmail/auth-lua\"",
            &format!("local SOCKET = \"{sock}\""),
            1,
        );
        let file = "contrib/dovecot/conf.d/auth-vmail-lua.conf.ext";
        (file, CONTRIB_LUA_23.to_string(), script)
    };
    let conf = replace_exact(conf_file, &conf, script_path, "@DIR@/vmail-auth.lua", 2);
    vec![
        ("vmail-auth.lua".into(), script),
        ("conf.d/auth-vmail-lua.conf.ext".into(), conf),
    ]
}

/// Dovecot's side of the Sieve hand-off (`90-vmail-sieve.conf`), 2.3 (Debian 12) and 2.4.
pub const CONTRIB_SIEVE_23: &str =
    include_str!("../../../contrib/dovecot/conf.d/90-vmail-sieve.conf");
pub const CONTRIB_SIEVE_24: &str =
    include_str!("../../../contrib/dovecot/2.4/conf.d/90-vmail-sieve.conf");

/// contrib's `90-vmail-sieve.conf` for the lane's Dovecot (`debian13`: 2.4), as (path under
/// Dovecot's temp dir, text), with vacation replies sent over SMTP to `smtp` (`HOST:PORT`,
/// the stack's Postfix) instead of through the host's sendmail.
pub fn contrib_sieve_file(debian13: bool, smtp: &str) -> (String, String) {
    let (file, text) = if debian13 {
        (
            "contrib/dovecot/2.4/conf.d/90-vmail-sieve.conf",
            CONTRIB_SIEVE_24,
        )
    } else {
        (
            "contrib/dovecot/conf.d/90-vmail-sieve.conf",
            CONTRIB_SIEVE_23,
        )
    };
    let text = replace_exact(
        file,
        text,
        "#submission_host = 127.0.0.1:25",
        &format!("submission_host = {smtp}"),
        1,
    );
    ("conf.d/90-vmail-sieve.conf".into(), text)
}

/// The line of the private dovecot.conf that pulls contrib's Sieve hand-off lines in.
pub const CONTRIB_SIEVE_INCLUDE: &str = "!include @DIR@/conf.d/90-vmail-sieve.conf";

/// The line of the private dovecot.conf that pulls contrib's auth configuration in.
pub const CONTRIB_DOVECOT_INCLUDE: &str = "!include @DIR@/conf.d/auth-vmail-lua.conf.ext";

/// contrib's Dovecot dict files with the Debian paths pointed at the test's own, as
/// (dovecot-dict-auth.conf.ext, auth-vmail.conf.ext): the dict file's `uri` at authd's dict
/// socket, the conf.d snippet's `args` (passdb and userdb) at `@DIR@` (Dovecot's temp dir).
pub fn contrib_dict_files(dict_socket: &Path) -> (String, String) {
    let dict = replace_exact(
        "contrib/dovecot/dovecot-dict-auth.conf.ext",
        CONTRIB_DICT,
        "uri = proxy:idle_msecs=30000:/run/vmail/auth-dict:auth",
        &format!(
            "uri = proxy:idle_msecs=30000:{}:auth",
            dict_socket.display()
        ),
        1,
    );
    // Two: the conf.d snippet must point passdb and userdb at the dict file.
    let auth = replace_exact(
        "contrib/dovecot/conf.d/auth-vmail.conf.ext",
        CONTRIB_AUTH,
        "args = /etc/dovecot/dovecot-dict-auth.conf.ext",
        "args = @DIR@/dovecot-dict-auth.conf.ext",
        2,
    );
    (dict, auth)
}

/// The `smtpd_sasl_*` lines of the contrib main.cf, with `private/vmail-auth` (the path
/// inside Postfix's chroot) replaced by the absolute path of the test's authd socket, and
/// the `-o smtpd_sasl_auth_enable=yes` of contrib's submission service (AUTH is switched
/// on there, not for port 25), applied to the test's smtpd.
pub fn contrib_sasl_lines(auth_socket: &Path) -> Vec<String> {
    let submission = contrib_submission_options();
    assert!(
        submission.iter().any(|o| o == "smtpd_sasl_auth_enable=yes"),
        "contrib/postfix/master.cf.vmail: no submission service with -o smtpd_sasl_auth_enable=yes"
    );
    let mut lines: Vec<String> = CONTRIB_MAIN_CF
        .lines()
        .filter(|l| l.starts_with("smtpd_sasl_"))
        .map(|l| l.replace("private/vmail-auth", &auth_socket.display().to_string()))
        .collect();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("smtpd_sasl_auth_enable")),
        "contrib/postfix/main.cf.vmail must not switch AUTH on for every smtpd: {lines:?}"
    );
    lines.push("smtpd_sasl_auth_enable = yes".into());
    for want in [
        "smtpd_sasl_type = dovecot",
        &format!("smtpd_sasl_path = {}", auth_socket.display()),
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "contrib/postfix/main.cf.vmail lacks `{want}`: {lines:?}"
        );
    }
    lines
}

/// The other delivery path of `contrib/postfix/main.cf.vmail`: the value of its commented
/// `virtual_transport = lmtp:unix:private/vmail-lmtp` (to vmail-lmtpd, "instead of the two
/// lines above", `virtual_transport = vmail` and its recipient limit), with the socket made
/// absolute under `spool` (see [`spool_dir`]), as `[lmtpd] listen` is in
/// [`contrib_vmail_toml`].
pub fn contrib_lmtp_transport(spool: &Path) -> String {
    let want = "virtual_transport = lmtp:unix:private/vmail-lmtp";
    assert!(
        CONTRIB_MAIN_CF
            .lines()
            .any(|l| l.strip_prefix('#').map(str::trim) == Some(want)),
        "contrib/postfix/main.cf.vmail no longer offers `# {want}`"
    );
    format!("lmtp:unix:{}/private/vmail-lmtp", spool.display())
}

/// The contrib main.cf lines that route virtual mailboxes to the `vmail` transport.
pub fn contrib_transport_lines() -> Vec<&'static str> {
    let lines: Vec<&str> = CONTRIB_MAIN_CF
        .lines()
        .filter(|l| l.starts_with("virtual_transport") || l.starts_with("vmail_"))
        .collect();
    for want in [
        "virtual_transport = vmail",
        "vmail_destination_recipient_limit = 1",
    ] {
        assert!(
            lines.contains(&want),
            "contrib/postfix/main.cf.vmail lacks `{want}`: {lines:?}"
        );
    }
    lines
}
