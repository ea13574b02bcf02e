//! The whole mail server the end-to-end tests talk to, wired exactly as `contrib/` documents,
//! on one lane: a private Postfix with `contrib/postfix/main.cf.vmail` and the `vmail` pipe(8)
//! service, a submission smtpd (STARTTLS with a self-signed certificate, SMTP AUTH through
//! vmail-authd), vmail-lookupd and vmail-authd as real processes on
//! `contrib/vmail/vmail.toml`, vmail-lda run by pipe(8), and a private Dovecot reading the
//! Maildirs over IMAP and POP3 with contrib's Lua passdb/userdb (vmail-authd again).
//! Or, with [`Transport::Lmtp`], contrib's other delivery path: `virtual_transport =
//! lmtp:unix:private/vmail-lmtp` to vmail-lmtpd, a real process on the same vmail.toml.
//!
//! Site settings a real server has and contrib leaves to the administrator: `mynetworks`
//! empty (every test client is "the Internet"), and the how-to's `smtpd_relay_restrictions`
//! ending in `reject_unauth_destination` (Postfix's default ends in
//! `defer_unauth_destination`, a 454 instead of 554).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dovecot::{DovecotBuilder, PrivateDovecot};
use crate::postfix::{PostfixBuilder, PrivatePostfix};
use crate::root::SharedDir;
use crate::{have, set_mode, skip};

use super::*;

/// `[authd] penalty_block_after` in the tests: small enough to reach in a test.
pub const PENALTY_BLOCK_AFTER: u32 = 8;
/// `[authd] penalty_window_s` in the tests: short enough to wait for.
pub const PENALTY_WINDOW_S: u32 = 5;

/// How Postfix hands mail for the virtual mailboxes over: contrib/postfix/main.cf.vmail's
/// two delivery paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// `virtual_transport = vmail`: pipe(8) runs vmail-lda once per recipient.
    #[default]
    Pipe,
    /// `virtual_transport = lmtp:unix:private/vmail-lmtp`: Postfix's lmtp client to
    /// vmail-lmtpd.
    Lmtp,
}

/// How the daemons reach the test's database (contrib's `hosts`, `user`, `password_file`,
/// `dbname`).
pub struct DbAccess<'a> {
    /// The server's unix socket on the host.
    pub socket: &'a Path,
    pub user: &'a str,
    pub password: &'a str,
    pub name: &'a str,
}

/// Dropped in field order: Postfix and Dovecot first (nothing asks the daemons any more),
/// then the daemons, then the files. The database belongs to the caller.
pub struct Stack {
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    /// Running with [`Transport::Lmtp`] only.
    pub lmtpd: Option<DaemonProcess>,
    pub authd: DaemonProcess,
    pub lookupd: DaemonProcess,
    pub work: SharedDir,
    pub mail_base: PathBuf,
    pub config: PathBuf,
    pub lane: Lane,
}

impl Stack {
    /// Builds the server on `lane` for the database `db`, running the programs `bins`; `fill`
    /// creates the schema and rows (given the vmail.toml path) before the daemons start.
    /// `None` after a loud skip when a client program is missing (a failure under CI).
    pub fn start(
        test: &str,
        lane: Lane,
        bins: Binaries,
        db: &DbAccess,
        fill: impl FnOnce(&Path),
    ) -> Option<Stack> {
        Self::start_with(test, lane, bins, Transport::Pipe, db, fill)
    }

    /// [`Stack::start`] delivering through `transport`.
    pub fn start_with(
        test: &str,
        lane: Lane,
        bins: Binaries,
        transport: Transport,
        db: &DbAccess,
        fill: impl FnOnce(&Path),
    ) -> Option<Stack> {
        for p in ["swaks", "openssl", "perl"] {
            if !have(p) {
                skip(
                    test,
                    &format!("{p} is not installed; run scripts/test-deps"),
                );
                return None;
            }
        }
        if !swaks_has_tls() {
            skip(
                test,
                "swaks cannot do STARTTLS: Perl's Net::SSLeay is missing (libnet-ssleay-perl; run scripts/test-deps)",
            );
            return None;
        }
        let began = std::time::Instant::now();
        let user = lane.mail_user();
        let work = lane.tempdir("vmail-e2e");
        let dir = |name: &str, mode: u32| {
            let p = work.path().join(name);
            std::fs::create_dir(&p).unwrap();
            set_mode(&p, mode);
            p
        };
        // /run/vmail (authd's Dovecot sockets, lookupd's for the LDA), the daemons' state
        // dir, /home/vmail, the TLS files.
        let run = dir("run", 0o755);
        let state = dir("state", 0o755);
        let mail_base = dir("mail", 0o755);
        std::os::unix::fs::chown(&mail_base, Some(user.uid), Some(user.gid)).unwrap();
        let tls = dir("tls", 0o700);
        let (cert, key) = self_signed_cert(&tls);
        let config = work.path().join("vmail.toml");
        let spool = spool_dir(work.path(), &lane.root).expect("the spool stand-in");
        let password_file = work.path().join("db-password");
        write_password_file(&password_file, db.password, &user).expect("the password file");
        let dict_socket = run.join("auth-dict");
        let lua_socket = run.join("auth-lua");
        // Dovecot's LDA for Sieve users, pointed at the stack's Dovecot once that runs.
        let dovecot_lda = work.path().join("dovecot-lda");
        let toml = contrib_vmail_toml(&VmailPaths {
            spool: &spool,
            dict_socket: &dict_socket,
            lua_socket: &lua_socket,
            postfix_group: &lane.group("postfix"),
            dovecot_group: &lane.group("dovecot"),
            penalty: (PENALTY_BLOCK_AFTER, PENALTY_WINDOW_S),
            db_socket: db.socket,
            db_user: db.user,
            db_password_file: &password_file,
            db_name: db.name,
            mail_base: &mail_base,
            user: &user,
            dovecot_lda: &dovecot_lda,
        });
        std::fs::write(&config, toml).unwrap();
        set_mode(&config, 0o644);
        fill(&config);

        // The daemons first: smtpd needs the auth socket from its first connection on.
        let lookupd = DaemonProcess::start(
            "vmail-lookupd",
            bins.lookupd,
            &config,
            &state,
            &[&spool.join("private/vmail-lookupd"), &run.join("lookupd")],
        );
        let authd = DaemonProcess::start(
            "vmail-authd",
            bins.authd,
            &config,
            &state,
            &[&spool.join("private/vmail-auth"), &dict_socket, &lua_socket],
        );
        let lmtpd = (transport == Transport::Lmtp)
            .then(|| start_lmtpd(bins.lmtpd, &config, work.path(), &spool, &user));

        let mut main_cf = contrib_main_cf(&spool);
        if transport == Transport::Lmtp {
            // contrib: the lmtp line "instead of the two lines above".
            main_cf.retain(|(name, _)| {
                name != "virtual_transport" && name != "vmail_destination_recipient_limit"
            });
            main_cf.push(("virtual_transport".into(), contrib_lmtp_transport(&spool)));
        }

        let mut builder = PostfixBuilder::new().root(&lane.root);
        for (name, value) in main_cf {
            builder = builder.main(&format!("{name} = {value}"));
        }
        let cert_opt = format!("smtpd_tls_cert_file={}", cert.display());
        let key_opt = format!("smtpd_tls_key_file={}", key.display());
        let lda = lane.lda(&bins, work.path());
        let postfix = builder
            .main("mynetworks =")
            .main(
                "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, \
                 reject_unauth_destination",
            )
            .master(&contrib_vmail_service(
                &lda,
                &config,
                &format!("{}:{}", user.name, user.group),
            ))
            .submission_with(
                &contrib_submission_options()
                    .iter()
                    .map(String::as_str)
                    .chain([cert_opt.as_str(), key_opt.as_str()])
                    .collect::<Vec<_>>(),
            )
            .start(test)?;

        let mut dovecot = DovecotBuilder::new()
            .root(&lane.root)
            .mail_owner(user.uid, user.gid);
        for (rel, text) in contrib_dovecot_files(lane.is_debian13(), &lua_socket) {
            dovecot = dovecot.file(&rel, &text);
        }
        let (rel, text) = contrib_sieve_file(
            lane.is_debian13(),
            &format!("127.0.0.1:{}", postfix.smtp_port),
        );
        let dovecot = dovecot
            .file(&rel, &text)
            .conf(CONTRIB_DOVECOT_INCLUDE)
            .conf(CONTRIB_SIEVE_INCLUDE)
            .start(test)?;
        write_dovecot_lda(&dovecot_lda, &dovecot, &user, &lane);
        eprintln!(
            "{test}: stack on lane {} ready in {:?}",
            lane.name,
            began.elapsed()
        );
        Some(Stack {
            postfix,
            dovecot,
            lmtpd,
            authd,
            lookupd,
            work,
            mail_base,
            config,
            lane,
        })
    }

    /// The home of `email` (`[mailbox] home` of the test's config), where its Sieve
    /// script goes.
    pub fn home(&self, email: &str) -> PathBuf {
        let (local, domain) = email.split_once('@').unwrap();
        self.mail_base.join(domain).join(local)
    }

    /// What Dovecot's LDA logged (it runs as the mail user, which cannot write Dovecot's log).
    pub fn dovecot_lda_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("dovecot-lda.log")).unwrap_or_default()
    }

    /// The Maildir vmail-lda delivers `email` into (`[mailbox] mail` of the test's config).
    pub fn maildir(&self, email: &str) -> PathBuf {
        let (local, domain) = email.split_once('@').unwrap();
        self.mail_base.join(domain).join(local).join("Maildir")
    }

    /// Sends the [`message`] with `token` from `from` to `to` over port 25 and insists it
    /// was queued.
    pub fn send_ok(&self, from: &str, to: &str, token: &str) {
        let out = self.postfix.send(from, &[to], &message(from, to, token));
        assert!(
            out.accepted(),
            "message to {to} refused:\n{}\n{}",
            out.transcript,
            self.logs()
        );
    }

    /// Waits for the one copy of the message with `token` in `email`'s Maildir.
    pub fn delivered_once(&self, email: &str, token: &str) -> (PathBuf, String) {
        let mut got = wait_for_message(&self.maildir(email), token, Duration::from_secs(30));
        assert_eq!(
            got.len(),
            1,
            "{token}: want exactly one copy in {email}'s Maildir, got {}\n{}",
            got.len(),
            self.logs()
        );
        got.remove(0)
    }

    pub fn submission_port(&self) -> u16 {
        self.postfix.submission_port.expect("a submission port")
    }

    /// Everything that logged, for assertion messages.
    pub fn logs(&self) -> String {
        let mut logs = format!(
            "--- lane {}\n--- postfix maillog:\n{}\n--- vmail-lookupd:\n{}\n--- vmail-authd:\n{}\n\
             --- dovecot:\n{}\n--- dovecot-lda:\n{}",
            self.lane.name,
            self.postfix.maillog(),
            self.lookupd.log(),
            self.authd.log(),
            self.dovecot.log(),
            self.dovecot_lda_log()
        );
        if let Some(l) = &self.lmtpd {
            logs.push_str(&format!("\n--- vmail-lmtpd:\n{}", l.log()));
        }
        logs
    }
}

/// vmail-lmtpd on `config`, as its systemd unit runs it: binds `[lmtpd] listen` (the
/// `spool`'s `private/vmail-lmtp`) as root, then runs as the mail user. Its state directory
/// (`lmtp/`, where it spools messages, and its pid file) is made as docs/INSTALL.md makes
/// `/var/lib/vmail`: 0750, owned by the mail user.
fn start_lmtpd(
    bin: &str,
    config: &Path,
    work: &Path,
    spool: &Path,
    user: &crate::MailUser,
) -> DaemonProcess {
    let state = work.join("lmtpd-state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(user.uid), Some(user.gid)).unwrap();
    set_mode(&state, 0o750);
    DaemonProcess::start(
        "vmail-lmtpd",
        bin,
        config,
        &state,
        &[&spool.join("private/vmail-lmtp")],
    )
}

/// `[lda] dovecot_lda` of the stack at `path`: the lane's real dovecot-lda, given the private
/// Dovecot's configuration and a log file the mail user (as whom pipe(8) runs the LDA) can
/// write. A script, since vmail-lda runs one program: the options are the stack's, not
/// contrib's.
///
/// On debian13 the lane's dovecot-lda is the root's (2.4, for the root's Dovecot and its
/// configuration). vmail-lda, run by pipe(8) in the root, finds it there; vmail-lmtpd runs
/// on the host, as the mail user, where `/usr/lib/dovecot/dovecot-lda` is the host's 2.3,
/// which cannot read a 2.4 configuration. So the script, started outside the root, enters
/// it first, still as the mail user: chroot(2) is allowed in a user namespace of one's own
/// (`unshare --map-current-user`), which maps that user to itself. The debian13 lane thus
/// needs unprivileged user namespaces for the LMTP Sieve case; where they are off, unshare's
/// complaint is in vmail-lmtpd's log (the LDA's stderr) and the recipient is deferred.
fn write_dovecot_lda(path: &Path, dovecot: &PrivateDovecot, user: &crate::MailUser, lane: &Lane) {
    let log = path.with_file_name("dovecot-lda.log");
    std::fs::write(&log, "").unwrap();
    std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid)).unwrap();
    let enter_root = match lane.root.tree() {
        None => String::new(),
        Some(tree) => {
            let marker = tree.join(crate::root::MARKER);
            format!(
                "if [ -e '{}' ]; then\n  exec unshare --user --map-current-user --root='{}' \"$0\" \"$@\"\nfi\n",
                marker.display(),
                tree.display()
            )
        }
    };
    std::fs::write(
        path,
        format!(
            "#!/bin/sh
{enter_root}exec /usr/lib/dovecot/dovecot-lda -c {} -o log_path={} \"$@\"\n",
            dovecot.conf_path().display(),
            log.display()
        ),
    )
    .unwrap();
    set_mode(path, 0o755);
}

/// A stack on a database of its own, as the shared setups of `mail_flow.rs` and
/// `logins.rs` use it: the stack is dropped first (Postfix, Dovecot, the daemons, the
/// files), then the database.
pub struct World {
    stack: Stack,
    _db: crate::TestDb,
}

impl std::ops::Deref for World {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl World {
    /// Starts the stack of `VMAIL_TEST_LANE` (running `bins`) on a fresh database, which
    /// `fill` fills (with the stack's configuration file, in the lane's root) before the
    /// daemons start.
    pub fn start(
        test: &str,
        bins: Binaries,
        fill: impl FnOnce(&crate::TestDb, &Path, &crate::root::SystemRoot),
    ) -> Option<World> {
        Self::start_with(test, bins, Transport::Pipe, fill)
    }

    /// [`World::start`] delivering through `transport`.
    pub fn start_with(
        test: &str,
        bins: Binaries,
        transport: Transport,
        fill: impl FnOnce(&crate::TestDb, &Path, &crate::root::SystemRoot),
    ) -> Option<World> {
        let lane = Lane::from_env(test)?;
        let db = crate::TestDb::create(test)?;
        let root = lane.root.clone();
        let stack = Stack::start_with(
            test,
            lane,
            bins,
            transport,
            &DbAccess {
                socket: Path::new(&db.socket),
                user: &db.user,
                password: &db.password,
                name: &db.name,
            },
            |config| fill(&db, config, &root),
        )?;
        Some(World { stack, _db: db })
    }
}
