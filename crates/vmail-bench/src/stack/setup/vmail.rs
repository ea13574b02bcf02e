//! The vmail system: the same Postfix and Dovecot wired as `contrib/` documents, with the
//! release binaries of vmail-lookupd, vmail-authd and vmail-lda.

use super::*;
use vmail_test_support::root::SystemRoot;

/// A vmail daemon running from its release binary with `--config FILE`, logging to a file
/// (at its default level); SIGTERM (then SIGKILL) when dropped.
pub use vmail_test_support::process::DaemonProcess as Daemon;

/// Replaces `from` by `to`, insisting it is there: contrib changed under us otherwise.
pub(crate) fn replace_some(file: &str, text: &str, from: &str, to: &str) -> Result<String> {
    if !text.contains(from) {
        bail!("{file} no longer contains `{from}` (update crates/vmail-bench/src/stack/setup/vmail.rs)");
    }
    Ok(text.replace(from, to))
}

/// `contrib/vmail/vmail.toml` pointed at this run: every path under `/var/spool/postfix`,
/// `/run/vmail`, `/var/lib/vmail` and `/home/vmail` moved into the work dir, the database and the system user
/// replaced, everything else (cache TTLs, delays, listeners' modes) as shipped. Whatever
/// listeners contrib adds later (e.g. a socket for the LDA) move along with the prefixes.
pub(crate) fn vmail_toml(
    env: &Env,
    spool: &Path,
    run: &Path,
    mail_base: &Path,
    pw_file: &Path,
) -> Result<String> {
    let file = "contrib/vmail/vmail.toml";
    let mut t = CONTRIB_VMAIL_TOML.to_string();
    for (from, to) in [
        ("/run/mysqld/mysqld.sock".to_string(), env.db.socket.clone()),
        (
            "user = \"mail_admin\"".into(),
            format!("user = \"{}\"", env.db.user),
        ),
        (
            "/etc/vmail/db-password".into(),
            pw_file.display().to_string(),
        ),
        (
            "dbname = \"mail\"".into(),
            format!("dbname = \"{}\"", env.db.name),
        ),
        ("/var/spool/postfix".into(), spool.display().to_string()),
        ("/run/vmail".into(), run.display().to_string()),
        // The daemons' pid files.
        ("/var/lib/vmail".into(), run.display().to_string()),
        (
            "user = \"vmail\"".into(),
            format!("user = \"{}\"", env.user.name),
        ),
    ] {
        t = replace_some(file, &t, &from, &to)?;
    }
    // A socket group named after the how-to's vmail group does not exist here.
    t = t.replace(
        "_group = \"vmail\"",
        &format!("_group = \"{}\"", env.user.group),
    );
    t = t.replace("/home/vmail", &mail_base.display().to_string());
    if !t.contains("[mailbox]") {
        // The built-in defaults, with /home/vmail moved and the mail user's ids.
        let base = mail_base.display();
        let _ = write!(
            t,
            "\n# Added by vmail-bench stack: the built-in [mailbox] defaults, moved.\n\
             [mailbox]\nhome = \"{base}/%d/%n\"\nmail = \"maildir:{base}/%d/%n/Maildir\"\n\
             uid = {}\ngid = {}\n",
            env.user.uid, env.user.gid
        );
    }
    Ok(t)
}

/// The UNIX socket paths of a configuration's listeners (`unix:PATH` entries).
pub(crate) fn unix_paths(listeners: &[String]) -> Vec<PathBuf> {
    listeners
        .iter()
        .filter_map(|l| l.strip_prefix("unix:"))
        .map(PathBuf::from)
        .collect()
}

/// contrib's `main.cf.vmail` settings as `name = value` lines, continuation lines joined,
/// with its relative `private/...` socket paths made absolute under `spool`.
pub(crate) fn contrib_main_cf(spool: &Path) -> Vec<String> {
    contrib::contrib_main_cf(spool)
        .into_iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect()
}

pub struct Vmail {
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    /// The daemons run until the stack is dropped (after Postfix and Dovecot, which use them).
    _lookupd: Daemon,
    _authd: Daemon,
    _authd_nocache: Daemon,
    /// smtpd with AUTH through vmail-authd as contrib configures it (cache on).
    pub auth_port: u16,
    /// smtpd with AUTH through a vmail-authd with `cache_enabled = false`.
    pub auth_port_nocache: u16,
    pub mail_base: PathBuf,
    /// smtpd of the RCPT figure.
    pub rcpt_port: u16,
    /// What contrib's vmail.toml configures, for the report.
    pub notes: Vec<String>,
}

impl Vmail {
    pub fn start(env: &Env) -> Result<Vmail> {
        let u = &env.user;
        let mail_base = env.mail_base("mail-vmail")?;
        // Stand-in for /var/spool/postfix: only private/, as Debian makes it (postfix, 0700).
        let spool = contrib::spool_dir(&env.work, &SystemRoot::host())?;
        let run = env.work.join("run-vmail");
        std::fs::create_dir_all(&run)?;
        set_mode(&run, 0o755);
        // contrib: the database password in a file of its own, 0640 root:vmail.
        let pw_file = env.work.join("db-password");
        contrib::write_password_file(&pw_file, &env.db.password, u)?;

        let toml = vmail_toml(env, &spool, &run, &mail_base, &pw_file)?;
        let cfg = env.work.join("vmail.toml");
        std::fs::write(&cfg, &toml)?;
        set_mode(&cfg, 0o644);
        // The second authd: cache off, its own sockets.
        let file = "contrib/vmail/vmail.toml";
        let mut nc = replace_some(file, &toml, "cache_enabled = true", "cache_enabled = false")?;
        nc = replace_some(
            file,
            &nc,
            "private/vmail-auth\"",
            "private/vmail-auth-nocache\"",
        )?;
        nc = replace_some(file, &nc, "auth-dict\"", "auth-dict-nocache\"")?;
        nc = replace_some(file, &nc, "auth-lua\"", "auth-lua-nocache\"")?;
        let cfg_nc = env.work.join("vmail-nocache.toml");
        std::fs::write(&cfg_nc, &nc)?;
        set_mode(&cfg_nc, 0o644);

        let loaded = vmail_config::load(Some(&cfg)).context("load the generated vmail.toml")?;
        let c = &loaded.config;
        let loaded_nc =
            vmail_config::load(Some(&cfg_nc)).context("load the generated vmail-nocache.toml")?;
        let mut lookupd_socks = unix_paths(&c.lookupd.socketmap);
        lookupd_socks.extend(unix_paths(&c.lookupd.lda));
        let mut notes = vec![format!(
            "lookupd cache: positive {} s, negative {} s (contrib)",
            c.cache.positive_ttl_s, c.cache.negative_ttl_s
        )];
        if !c.lda.lookupd.is_empty() {
            notes.push(format!(
                "vmail-lda resolves recipients through lookupd ([lda] lookupd = {:?})",
                c.lda.lookupd
            ));
        } else {
            notes.push("vmail-lda reads MariaDB itself (contrib sets no [lda] lookupd)".into());
        }
        let lookupd = Daemon::spawn(
            "vmail-lookupd",
            &env.lookupd,
            &cfg,
            &env.work.join("state-lookupd"),
            &lookupd_socks,
            None,
        )?;
        let mut authd_socks = unix_paths(&c.authd.auth);
        authd_socks.extend(unix_paths(&c.authd.dict));
        let authd = Daemon::spawn(
            "vmail-authd",
            &env.authd,
            &cfg,
            &env.work.join("state-authd"),
            &authd_socks,
            None,
        )?;
        let mut nc_socks = unix_paths(&loaded_nc.config.authd.auth);
        nc_socks.extend(unix_paths(&loaded_nc.config.authd.dict));
        let nc_auth = nc_socks.first().cloned().context("no auth listener")?;
        let authd_nocache = Daemon::spawn(
            "vmail-authd-nocache",
            &env.authd,
            &cfg_nc,
            &env.work.join("state-authd-nocache"),
            &nc_socks,
            None,
        )?;

        let dict_sock = unix_paths(&c.authd.dict)
            .into_iter()
            .next()
            .context("vmail.toml has no [authd] dict listener")?;
        let dovecot = dict_dovecot(u, &dict_sock)?;

        let auth_port = free_port();
        let auth_port_nocache = free_port();
        let rcpt_port = free_port();
        let mut b = common_postfix(rcpt_port);
        for line in contrib_main_cf(&spool) {
            b = b.main(&line);
        }
        let postfix = start_postfix(
            b.master(&contrib::contrib_vmail_service(
                &env.lda.display().to_string(),
                &cfg,
                &format!("{}:{}", u.name, u.group),
            ))
            .master(&auth_listener(auth_port, "auth", &[]))
            .master(&auth_listener(
                auth_port_nocache,
                "auth-nocache",
                &[format!("smtpd_sasl_path={}", nc_auth.display())],
            )),
        )?;
        Ok(Vmail {
            postfix,
            dovecot,
            _lookupd: lookupd,
            _authd: authd,
            _authd_nocache: authd_nocache,
            auth_port,
            auth_port_nocache,
            mail_base,
            rcpt_port,
            notes,
        })
    }
}
