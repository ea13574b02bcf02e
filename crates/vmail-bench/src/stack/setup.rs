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
use vmail_test_support::postfix::{PostfixBuilder, PrivatePostfix};
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

pub(crate) fn start_postfix(b: PostfixBuilder) -> Result<PrivatePostfix> {
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

mod ceiling;
mod classic;
mod vmail;

pub use ceiling::*;
pub use classic::*;
pub use vmail::*;

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
