//! Builds the three systems `vmail-bench stack` measures, on the same Postfix and Dovecot
//! packages and the same MariaDB data:
//! - **classic**: the HowtoForge "Virtual Users And Domains With Postfix, Courier/Dovecot And
//!   MySQL" setup: `proxy:mysql:` maps with the how-to's queries, SMTP AUTH through cyrus
//!   `saslauthd -a pam` + pam_mysql, Dovecot with an SQL passdb and a static userdb, and
//!   dovecot-lda behind a `pipe(8)` transport;
//! - **vmail**: the same Postfix and Dovecot wired as `contrib/` documents, with the release
//!   binaries of vmail-lookupd, vmail-authd and vmail-lda;
//! - **ceiling**: the same Postfix with `texthash:` maps holding the same data, SMTP AUTH
//!   against an in-process always-OK Dovecot-auth-protocol server, a `pipe(8)` transport
//!   running `/bin/true`, and Dovecot with a static passdb that accepts any password; plus,
//!   for the RCPT ceiling, a second Postfix with contrib's `socketmap:` main.cf lines pointed
//!   at an in-process trivial socketmap server answering the same data from memory
//!   (`stack/trivial_map.rs`). The `texthash:` RCPT figure (tables inside smtpd, no IPC)
//!   is reported for reference only.
//!
//! Everything runs in a temp dir on loopback ports and is stopped by pid when dropped; the
//! only file outside it is the PAM service file saslauthd needs (`/etc/pam.d/NAME`), removed
//! by [`PamService`]'s `Drop`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmail_test_support::contrib::{self, contrib_dict_files, CONTRIB_VMAIL_TOML};
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};
use vmail_test_support::postfix::{lookup_user, PostfixBuilder, PrivatePostfix};
use vmail_test_support::{free_port, set_mode, wait_until, TestDb};

use super::trivial_map::Tables;
use super::DOMAIN;

pub const DOVECOT_LDA: &str = "/usr/lib/dovecot/dovecot-lda";

/// The system user standing in for the how-to's `vmail` (uid 5000), which this machine does
/// not have: pipe(8) runs both LDAs as it, and it owns every Maildir.
pub use vmail_test_support::MailUser;

/// What every system shares: the work dir, the mail user, the database and the binaries.
pub struct Env {
    pub work: PathBuf,
    pub user: MailUser,
    pub db: TestDb,
    pub lookupd: PathBuf,
    pub authd: PathBuf,
    pub lda: PathBuf,
}

impl Env {
    /// A directory under the work dir owned by the mail user (Maildir bases).
    pub fn mail_base(&self, name: &str) -> Result<PathBuf> {
        let d = self.work.join(name);
        std::fs::create_dir_all(&d)?;
        std::os::unix::fs::chown(&d, Some(self.user.uid), Some(self.user.gid))?;
        set_mode(&d, 0o755);
        Ok(d)
    }

    pub(crate) fn db_port(&self) -> &str {
        self.db.host.rsplit(':').next().unwrap_or("3306")
    }
}

/// One `smtpd` with SMTP AUTH on (no TLS: `smtpd_tls_auth_only = no`, as on loopback only),
/// on its own port, with extra `-o` options (a SASL backend of its own).
fn auth_listener(port: u16, name: &str, extra: &[String]) -> String {
    let mut s = format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/{name}\n  \
         -o smtpd_sasl_auth_enable=yes\n  -o smtpd_tls_security_level=none\n  \
         -o smtpd_tls_auth_only=no"
    );
    for o in extra {
        let _ = write!(s, "\n  -o {o}");
    }
    s
}

/// The smtpd of the RCPT figure, on its own port, with its own cleanup service. The figure
/// sends unknown recipients on purpose and RSET (a "junk" command) every 50 recipients:
/// without the error limits raised, smtpd would sleep 1 s per reply after 10 errors
/// (smtpd_soft_error_limit) and hang up after 20. And each transaction opens a queue file
/// in cleanup(8), which takes a token from Postfix's inflow control pipe; only deliveries
/// put tokens back, and RSET abandons the file, so with `in_flow_delay` at its 1 s default
/// cleanup stalls a second per transaction once the tokens run out (the ceiling instance
/// runs out first). The delivery figure keeps every default.
fn rcpt_listener(port: u16) -> String {
    format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/rcpt\n  \
         -o smtpd_soft_error_limit=1000000\n  -o smtpd_hard_error_limit=1000000\n  \
         -o smtpd_junk_command_limit=1000000\n  -o cleanup_service_name=cleanup-rcpt\n\
         cleanup-rcpt unix n - n - 0 cleanup\n  -o syslog_name=postfix/rcpt\n  \
         -o in_flow_delay=0s"
    )
}

/// What every instance gets, whatever its maps and backends: the RCPT listener.
fn common_postfix(rcpt_port: u16) -> PostfixBuilder {
    PostfixBuilder::new().master(&rcpt_listener(rcpt_port))
}

fn start_postfix(b: PostfixBuilder) -> Result<PrivatePostfix> {
    // PostfixBuilder panics with Postfix's own messages when it refuses to start.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.start("vmail-bench stack")
    }))
    .map_err(|e| anyhow::anyhow!("postfix did not start: {}", panic_text(&e)))?
    .context("no Postfix (run scripts/test-deps)")
}

pub(crate) fn start_dovecot(b: DovecotBuilder) -> Result<PrivateDovecot> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.start("vmail-bench stack")
    }))
    .map_err(|e| anyhow::anyhow!("dovecot did not start: {}", panic_text(&e)))?
    .context("no Dovecot (run scripts/test-deps)")
}

pub(crate) fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Dovecot settings every instance gets: the auth cache off (Dovecot's default, stated), and
/// what dovecot-lda needs when it runs as the mail user (a log file it may write, the stats
/// socket open to it).
pub(crate) fn common_dovecot(user: &MailUser) -> DovecotBuilder {
    DovecotBuilder::new()
        .mail_owner(user.uid, user.gid)
        .conf("auth_cache_size = 0")
        .conf("protocol lda {\n  log_path = @DIR@/lda.log\n}")
        .conf("service stats {\n  unix_listener stats-writer {\n    mode = 0666\n  }\n}")
        .file("lda.log", "")
}

/// The how-to's static userdb (every user the mail user, home under `mail_base`), shared by
/// the classic Dovecot and the ceiling's.
pub(crate) fn static_userdb(user: &MailUser, mail_base: &Path) -> String {
    format!(
        "driver = static\nargs = uid={} gid={} home={}/%d/%n allow_all_users=yes",
        user.uid,
        user.gid,
        mail_base.display()
    )
}

fn chown_lda_log(d: &PrivateDovecot, user: &MailUser) -> Result<()> {
    std::os::unix::fs::chown(d.dir.path().join("lda.log"), Some(user.uid), Some(user.gid))?;
    Ok(())
}

/// The classic Dovecot: the how-to's dovecot-sql.conf (`driver = mysql`, `password_query`
/// against `users`, `default_pass_scheme = CRYPT`) and its static userdb, Maildirs under
/// `mail_base`. Also `vmail-bench dovecot-auth`'s 2.3 SQL system.
pub(crate) fn sql_dovecot(env: &Env, mail_base: &Path) -> Result<PrivateDovecot> {
    let u = &env.user;
    let sql = format!(
        "driver = mysql\n\
         connect = host=127.0.0.1 port={} dbname={} user={} password={}\n\
         default_pass_scheme = CRYPT\n\
         password_query = SELECT email as user, password FROM users WHERE email='%u';\n",
        env.db_port(),
        env.db.name,
        env.db.user,
        env.db.password
    );
    let dovecot = start_dovecot(
        common_dovecot(u)
            .file("dovecot-sql.conf.ext", &sql)
            .conf(&format!(
                "mail_location = maildir:{}/%d/%n/Maildir",
                mail_base.display()
            ))
            .passdb("driver = sql\nargs = @DIR@/dovecot-sql.conf.ext")
            .userdb(&static_userdb(u, mail_base)),
    )?;
    chown_lda_log(&dovecot, u)?;
    Ok(dovecot)
}

/// The vmail Dovecot: contrib's auth-vmail.conf.ext and dovecot-dict-auth.conf.ext against
/// vmail-authd's dict socket `dict_sock`. Also `vmail-bench dovecot-auth`'s dict system.
pub(crate) fn dict_dovecot(u: &MailUser, dict_sock: &Path) -> Result<PrivateDovecot> {
    let (dict, auth) = contrib_dict_files(dict_sock);
    let dovecot = start_dovecot(
        common_dovecot(u)
            .file("dovecot-dict-auth.conf.ext", &dict)
            .conf(&auth),
    )?;
    chown_lda_log(&dovecot, u)?;
    Ok(dovecot)
}

// ---------------------------------------------------------------------------------------
// classic
// ---------------------------------------------------------------------------------------

/// `/etc/pam.d/NAME` for pam_mysql, removed again when dropped.
pub struct PamService {
    pub name: String,
    path: PathBuf,
}

impl PamService {
    /// The how-to's `/etc/pam.d/smtp`, under a name of our own (Postfix passes
    /// `smtpd_sasl_service` to saslauthd, which uses it as the PAM service).
    fn create(env: &Env) -> Result<PamService> {
        let name = format!("vmail-bench-stack-{}", std::process::id());
        let path = Path::new("/etc/pam.d").join(&name);
        // pam_mysql's host= takes host:port for a port other than the default.
        let host = match env.db_port() {
            "3306" => "127.0.0.1".to_string(),
            p => format!("127.0.0.1:{p}"),
        };
        let args = format!(
            "user={} passwd={} host={host} db={} table=users usercolumn=email \
             passwdcolumn=password crypt=1",
            env.db.user, env.db.password, env.db.name
        );
        let text = format!(
            "# written by vmail-bench stack (removed at its end)\n\
             auth    required   pam_mysql.so {args}\n\
             account sufficient pam_mysql.so {args}\n"
        );
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        set_mode(&path, 0o600);
        Ok(PamService { name, path })
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A cyrus `saslauthd -a pam` on a private run dir, as Debian starts it
/// (`/etc/default/saslauthd`: 5 processes) with the how-to's options (`-c` credential cache,
/// `-r` realm joined to the login).
pub struct Saslauthd {
    pub dir: PathBuf,
    cache: bool,
    running: bool,
}

impl Saslauthd {
    pub fn start(dir: &Path, cache: bool) -> Result<Saslauthd> {
        std::fs::create_dir_all(dir)?;
        // smtpd runs as postfix and connects to DIR/mux.
        set_mode(dir, 0o755);
        let mut me = Saslauthd {
            dir: dir.to_path_buf(),
            cache,
            running: false,
        };
        me.restart()?;
        Ok(me)
    }

    pub fn mux(&self) -> PathBuf {
        self.dir.join("mux")
    }

    /// (Re)starts it: a fresh process has an empty credential cache.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // The cache file survives the process; a new one starts empty only without it.
        for f in ["cache.mmap", "cache.flock", "mux", "mux.accept"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let mut c = Command::new("saslauthd");
        c.args(["-a", "pam", "-r", "-n", "5", "-m"]).arg(&self.dir);
        if self.cache {
            c.arg("-c");
        }
        // It forks into the background; its log goes to syslog, which does not exist here.
        let out = c
            .stdin(Stdio::null())
            .output()
            .context("run saslauthd (apt-get install sasl2-bin)")?;
        if !out.status.success() {
            bail!(
                "saslauthd -m {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
        let mux = self.mux();
        if !wait_until(Duration::from_secs(10), || {
            UnixStream::connect(&mux).is_ok()
        }) {
            bail!("saslauthd never listened on {}", mux.display());
        }
        Ok(())
    }

    /// Its processes: every `saslauthd` whose command line names our run dir.
    fn pids(&self) -> Vec<u32> {
        let dir = self.dir.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.ends_with(b"saslauthd"))
                        && args.contains(&dir.as_bytes())
                })
            })
            .collect()
    }

    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        for pid in self.pids() {
            signal(pid, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(5), || self.pids().is_empty()) {
            for pid in self.pids() {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Saslauthd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid we found running our own command line.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

pub struct Classic {
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    pub sasl_cached: Saslauthd,
    pub sasl_uncached: Saslauthd,
    /// smtpd with AUTH through the cached saslauthd (the how-to's `-c`).
    pub auth_port: u16,
    /// smtpd with AUTH through a saslauthd without `-c`.
    pub auth_port_nocache: u16,
    pub mail_base: PathBuf,
    /// smtpd of the RCPT figure.
    pub rcpt_port: u16,
    /// Kept until the end: saslauthd reads it at every authentication.
    _pam: PamService,
}

impl Classic {
    pub fn start(env: &Env) -> Result<Classic> {
        let mail_base = env.mail_base("mail-classic")?;
        let pam = PamService::create(env)?;
        let sasl_cached = Saslauthd::start(&env.work.join("saslauthd"), true)?;
        let sasl_uncached = Saslauthd::start(&env.work.join("saslauthd-nocache"), false)?;
        let u = &env.user;

        let dovecot = sql_dovecot(env, &mail_base)?;

        // Postfix: the how-to's main.cf map and transport lines, its mysql-virtual_*.cf files
        // (the same queries as crates/vmail-lookupd/tests/postfix.rs), its dovecot transport.
        let cf = |query: &str| {
            format!(
                "user = {}\npassword = {}\ndbname = {}\nhosts = 127.0.0.1:{}\nquery = {query}\n",
                env.db.user,
                env.db.password,
                env.db.name,
                env.db_port()
            )
        };
        let mysql = |name: &str| format!("mysql:@DIR@/etc/mysql-virtual_{name}.cf");
        let sasl_conf = |mux: &Path| {
            format!(
                "pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\nsaslauthd_path: {}\n",
                mux.display()
            )
        };
        let auth_port = free_port();
        let auth_port_nocache = free_port();
        let rcpt_port = free_port();
        let postfix = start_postfix(
            common_postfix(rcpt_port)
                .file(
                    "etc/mysql-virtual_domains.cf",
                    &cf("SELECT 'virtual' FROM domains WHERE domain='%s'"),
                )
                .file(
                    "etc/mysql-virtual_forwardings.cf",
                    &cf("SELECT destination FROM forwardings WHERE source='%s'"),
                )
                .file(
                    "etc/mysql-virtual_mailboxes.cf",
                    &cf("SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email='%s'"),
                )
                .file(
                    "etc/mysql-virtual_email2email.cf",
                    &cf("SELECT email FROM users WHERE email='%s'"),
                )
                .file(
                    "etc/mysql-virtual_transports.cf",
                    &cf("SELECT transport FROM transport WHERE domain='%s'"),
                )
                // The how-to's /etc/postfix/sasl/smtpd.conf: Debian's Postfix reads
                // $config_directory/sasl/NAME.conf (NAME = smtpd_sasl_path), before and
                // regardless of cyrus_sasl_config_path.
                .file("etc/sasl/smtpd.conf", &sasl_conf(&sasl_cached.mux()))
                .file("etc/sasl/smtpd-nocache.conf", &sasl_conf(&sasl_uncached.mux()))
                .main(&format!("virtual_mailbox_domains = proxy:{}", mysql("domains")))
                .main(&format!(
                    "virtual_alias_maps = proxy:{}, {}",
                    mysql("forwardings"),
                    mysql("email2email")
                ))
                .main(&format!("virtual_mailbox_maps = proxy:{}", mysql("mailboxes")))
                .main(&format!("transport_maps = proxy:{}", mysql("transports")))
                .main("virtual_transport = dovecot")
                .main("dovecot_destination_recipient_limit = 1")
                // Cyrus SASL; the service name is the PAM service saslauthd uses.
                .main("smtpd_sasl_type = cyrus")
                .main("smtpd_sasl_path = smtpd")
                .main("cyrus_sasl_config_path = @DIR@/etc/sasl")
                .main(&format!("smtpd_sasl_service = {}", pam.name))
                .main("broken_sasl_auth_clients = yes")
                .master(&format!(
                    "dovecot unix - n n - - pipe\n  flags=DRhu user={}:{} argv={DOVECOT_LDA} \
                     -c {} -f ${{sender}} -d ${{recipient}}",
                    u.name,
                    u.group,
                    dovecot.conf_path().display()
                ))
                .master(&auth_listener(auth_port, "auth", &[]))
                .master(&auth_listener(
                    auth_port_nocache,
                    "auth-nocache",
                    &["smtpd_sasl_path=smtpd-nocache".to_string()],
                )),
        )?;
        Ok(Classic {
            postfix,
            dovecot,
            sasl_cached,
            sasl_uncached,
            auth_port,
            auth_port_nocache,
            mail_base,
            rcpt_port,
            _pam: pam,
        })
    }
}

// ---------------------------------------------------------------------------------------
// vmail
// ---------------------------------------------------------------------------------------

/// A vmail daemon running from its release binary with `--config FILE`, logging to a file
/// (at its default level); SIGTERM (then SIGKILL) when dropped.
pub use vmail_test_support::process::DaemonProcess as Daemon;

/// Replaces `from` by `to`, insisting it is there: contrib changed under us otherwise.
pub(crate) fn replace_some(file: &str, text: &str, from: &str, to: &str) -> Result<String> {
    if !text.contains(from) {
        bail!("{file} no longer contains `{from}` (update crates/vmail-bench/src/stack/setup.rs)");
    }
    Ok(text.replace(from, to))
}

/// `contrib/vmail/vmail.toml` pointed at this run: every path under `/var/spool/postfix`,
/// `/run/vmail` and `/home/vmail` moved into the work dir, the database and the system user
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
fn contrib_main_cf(spool: &Path) -> Vec<String> {
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
        let spool = env.work.join("spool");
        let private = spool.join("private");
        std::fs::create_dir_all(&private)?;
        set_mode(&spool, 0o755);
        let (postfix_uid, _) = lookup_user("postfix").context("no system user `postfix`")?;
        std::os::unix::fs::chown(&private, Some(postfix_uid), Some(0))?;
        set_mode(&private, 0o700);
        let run = env.work.join("run-vmail");
        std::fs::create_dir_all(&run)?;
        set_mode(&run, 0o755);
        // contrib: the database password in a file of its own, 0640 root:vmail.
        let pw_file = env.work.join("db-password");
        std::fs::write(&pw_file, format!("{}\n", env.db.password))?;
        std::os::unix::fs::chown(&pw_file, Some(0), Some(u.gid))?;
        set_mode(&pw_file, 0o640);

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

// ---------------------------------------------------------------------------------------
// ceiling
// ---------------------------------------------------------------------------------------

pub struct Ceiling {
    /// The `texthash:` instance: the delivery figure, SMTP AUTH, and the RCPT reference.
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    pub auth_port: u16,
    /// smtpd of the RCPT reference figure (`texthash:` maps, no IPC).
    pub rcpt_port: u16,
    /// The `socketmap:` instance: contrib's main.cf.vmail lines against the trivial map
    /// server. Only its RCPT listener is measured.
    pub map_postfix: PrivatePostfix,
    /// smtpd of the RCPT ceiling (`socketmap:` maps -> trivial map server).
    pub map_rcpt_port: u16,
    /// The runtime of the always-OK auth server and the trivial map server (dropped after
    /// both Postfix instances).
    _rt: tokio::runtime::Runtime,
}

/// The `pipe(8)` transport of the delivery ceiling.
pub const CEILING_TRANSPORT: &str = "bintrue";

impl Ceiling {
    pub fn start(env: &Env, users: usize, aliases: usize) -> Result<Ceiling> {
        let u = &env.user;
        let mail_base = env.mail_base("mail-ceiling")?;
        // The same addresses as the database: served by the trivial map server, and written
        // out as texthash: tables (read once per process).
        let tables = Arc::new(Tables::bench(users, aliases));
        let auth_sock = env.work.join("ceiling-auth.sock");
        let map_sock = env.work.join("ceiling-map.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ceiling-srv")
            .enable_all()
            .build()?;
        let (auth_srv, map_srv) = {
            let _g = rt.enter();
            (
                tokio::net::UnixListener::bind(&auth_sock)
                    .with_context(|| format!("bind {}", auth_sock.display()))?,
                tokio::net::UnixListener::bind(&map_sock)
                    .with_context(|| format!("bind {}", map_sock.display()))?,
            )
        };
        // smtpd, cleanup and trivial-rewrite run as postfix.
        set_mode(&auth_sock, 0o666);
        set_mode(&map_sock, 0o666);
        rt.spawn(super::load::serve_always_ok(auth_srv));
        rt.spawn(super::trivial_map::serve(map_srv, tables.clone()));

        let dovecot = start_dovecot(
            common_dovecot(u)
                .passdb("driver = static\nargs = nopassword=y")
                .userdb(&static_userdb(u, &mail_base)),
        )?;
        let bintrue = format!(
            "{CEILING_TRANSPORT} unix - n n - - pipe\n  flags=DRhu user={}:{} argv=/bin/true",
            u.name, u.group
        );
        let auth_port = free_port();
        let rcpt_port = free_port();
        let postfix = start_postfix(
            common_postfix(rcpt_port)
                .file("etc/domains", &tables.texthash("domains"))
                .file("etc/mailboxes", &tables.texthash("mailboxes"))
                .file("etc/aliases", &tables.texthash("aliases"))
                .file("etc/transport", &tables.texthash("transport"))
                .main("virtual_mailbox_domains = texthash:@DIR@/etc/domains")
                .main("virtual_mailbox_maps = texthash:@DIR@/etc/mailboxes")
                .main("virtual_alias_maps = texthash:@DIR@/etc/aliases")
                .main("transport_maps = texthash:@DIR@/etc/transport")
                .main(&format!("virtual_transport = {CEILING_TRANSPORT}"))
                .main(&format!(
                    "{CEILING_TRANSPORT}_destination_recipient_limit = 1"
                ))
                .main("smtpd_sasl_type = dovecot")
                .main(&format!("smtpd_sasl_path = {}", auth_sock.display()))
                .master(&bintrue)
                .master(&auth_listener(auth_port, "auth", &[])),
        )?;

        // contrib's main.cf.vmail as the vmail instance has it, every socketmap pointed at
        // the trivial map server; only what no RCPT touches is moved off vmail's daemons
        // (SASL to the always-OK server, final delivery to /bin/true).
        let map_rcpt_port = free_port();
        let mut b = common_postfix(map_rcpt_port);
        for line in socketmaps_to(&contrib_main_cf(&env.work.join("spool")), &map_sock)? {
            b = b.main(&line);
        }
        let map_postfix = start_postfix(
            b.main(&format!("virtual_transport = {CEILING_TRANSPORT}"))
                .main(&format!(
                    "{CEILING_TRANSPORT}_destination_recipient_limit = 1"
                ))
                .main(&format!("smtpd_sasl_path = {}", auth_sock.display()))
                .master(&bintrue),
        )?;
        Ok(Ceiling {
            postfix,
            dovecot,
            auth_port,
            rcpt_port,
            map_postfix,
            map_rcpt_port,
            _rt: rt,
        })
    }
}

/// `main.cf` lines with every `socketmap:unix:PATH:NAME` table replaced by
/// `socketmap:unix:SOCK:NAME`; fails when there is none (contrib changed under us).
fn socketmaps_to(lines: &[String], sock: &Path) -> Result<Vec<String>> {
    let mut replaced = 0;
    let out: Vec<String> = lines
        .iter()
        .map(|line| {
            let Some((name, value)) = line.split_once('=') else {
                return line.clone();
            };
            if !value.contains("socketmap:unix:") {
                return line.clone();
            }
            // Table lists are separated by commas and/or whitespace (postconf(5)).
            let tables: Vec<String> = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(
                    |t| match (t.strip_prefix("socketmap:unix:"), t.rsplit_once(':')) {
                        (Some(_), Some((_, map))) => {
                            replaced += 1;
                            format!("socketmap:unix:{}:{map}", sock.display())
                        }
                        _ => t.to_string(),
                    },
                )
                .collect();
            format!("{} = {}", name.trim(), tables.join(", "))
        })
        .collect();
    if replaced == 0 {
        bail!("contrib/postfix/main.cf.vmail has no socketmap:unix: table (update crates/vmail-bench/src/stack/setup.rs)");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// counting deliveries
// ---------------------------------------------------------------------------------------

/// Reads a growing log file from where it left off, so polling it stays cheap.
pub struct LogTail {
    file: File,
    offset: u64,
    partial: Vec<u8>,
}

/// What new complete lines of a maillog said.
#[derive(Default)]
pub struct LogNews {
    pub sent: usize,
    /// The first `status=deferred` or `status=bounced` line, if any.
    pub trouble: Option<String>,
}

impl LogTail {
    /// Starts at the current end of `path`.
    pub fn at_end(path: &Path) -> Result<LogTail> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let offset = file.metadata()?.len();
        Ok(LogTail {
            file,
            offset,
            partial: Vec::new(),
        })
    }

    /// Counts `status=sent` lines (of `transport`, when given) since the last call.
    pub fn poll(&mut self, transport: Option<&str>) -> Result<LogNews> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        let n = self.file.read_to_end(&mut buf)?;
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let mut news = LogNews::default();
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(news);
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let relay = transport.map(|t| format!("relay={t}"));
        for line in String::from_utf8_lossy(&complete).lines() {
            if line.contains("status=sent") && relay.as_deref().is_none_or(|r| line.contains(r)) {
                news.sent += 1;
            } else if news.trouble.is_none()
                && (line.contains("status=deferred") || line.contains("status=bounced"))
            {
                news.trouble = Some(line.to_string());
            }
        }
        Ok(news)
    }
}

/// Messages in the `new/` directories of `mailboxes` users' Maildirs under `base`
/// (`base/DOMAIN/userN/Maildir`, the layout of both stacks).
pub fn maildir_count(base: &Path, mailboxes: usize) -> usize {
    (0..mailboxes)
        .map(|r| {
            std::fs::read_dir(base.join(DOMAIN).join(format!("user{r}/Maildir/new")))
                .map_or(0, |d| d.count())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrib_socketmaps_point_at_the_ceiling_server() {
        let lines = contrib_main_cf(Path::new("/spool"));
        let out = socketmaps_to(&lines, Path::new("/w/map.sock")).unwrap();
        assert_eq!(out.len(), lines.len());
        for (name, map) in [
            ("virtual_mailbox_domains", "domains"),
            ("virtual_mailbox_maps", "mailboxes"),
            ("virtual_alias_maps", "aliases"),
            ("transport_maps", "transport"),
            ("smtpd_sender_login_maps", "senders"),
        ] {
            let want = format!("{name} = socketmap:unix:/w/map.sock:{map}");
            assert!(out.contains(&want), "{want} not in {out:#?}");
        }
        assert!(!out.iter().any(|l| l.contains("vmail-lookupd")), "{out:#?}");
        // Everything else as contrib has it.
        for l in lines.iter().filter(|l| !l.contains("socketmap:")) {
            assert!(out.contains(l), "{l} lost");
        }
        assert!(socketmaps_to(&["a = b".to_string()], Path::new("/s")).is_err());
    }
}
