//! Every installed program, with what its page says beyond its command line: where it is
//! described at length, which files it uses (from the shipped reference configuration, so a
//! changed path there changes the page), its exit statuses and its neighbours in SEE ALSO.

use std::path::Path;

use vmail_config::{CONFIG_ENV, DEFAULT_CONFIG_PATH};
use vmail_lda::outcome::sysexits;

/// One program's page and completions.
pub struct Program {
    /// The command its binary parses, named as installed.
    pub command: clap::Command,
    /// Section 8 for all: the daemons, the LDA Postfix runs and the tool that administers
    /// the mail directory are system administration commands, as Postfix's own delivery
    /// agents are (virtual(8), pipe(8)); doveadm(1) and postconf(1) sit in section 1
    /// because users may run parts of them, while vmailctl needs the configuration only
    /// root and the vmail group can read.
    pub section: &'static str,
    /// Paragraphs of DESCRIPTION after the command's own text.
    pub description: &'static [&'static str],
    /// FILES: path, what it is.
    pub files: Vec<(String, String)>,
    /// EXIT STATUS: status, meaning.
    pub exit_status: Vec<(String, &'static str)>,
    /// SEE ALSO, as `name(section)`.
    pub see_also: &'static [&'static str],
}

impl Program {
    pub fn name(&self) -> &str {
        self.command.get_name()
    }
}

fn config_file() -> (String, String) {
    (
        DEFAULT_CONFIG_PATH.to_string(),
        format!(
            "the configuration (see vmail.toml(5)), unless --config or ${CONFIG_ENV} names another"
        ),
    )
}

/// A pid file as configured, or where the daemon puts it when run as root by systemd.
fn pid_file(configured: &Path, name: &str) -> String {
    if configured.as_os_str().is_empty() {
        format!("/var/lib/vmail/{name}.pid")
    } else {
        configured.display().to_string()
    }
}

/// A daemon's statuses: what `vmail_daemon::main` returns and clap's usage error.
fn daemon_exit_status() -> Vec<(String, &'static str)> {
    vec![
        ("0".into(), "stopped by SIGTERM, or --check printed the configuration"),
        (
            "1".into(),
            "could not start for a reason that may pass: a socket address in use, a missing socket directory or group (the reason is logged); systemd restarts it",
        ),
        ("2".into(), "the command line is wrong"),
        (
            vmail_daemon::EX_CONFIG.to_string(),
            "the configuration is wrong: vmail.toml missing, unreadable or invalid, the database password file unreadable or open to other users, or a user or group it names missing on this host (EX_CONFIG; the units do not restart on it)",
        ),
    ]
}

/// lmtpd's: a daemon's, and the spool another instance holds.
fn lmtpd_exit_status() -> Vec<(String, &'static str)> {
    let mut s = daemon_exit_status();
    let config = vmail_daemon::EX_CONFIG.to_string();
    let at = s.iter().position(|(c, _)| *c == config).unwrap_or(s.len());
    s.insert(
        at,
        (
        vmail_daemon::EX_TEMPFAIL.to_string(),
        "another vmail-lmtpd holds the spool directory ([lmtpd] spool): give each instance its own (EX_TEMPFAIL; systemd retries, for an instance still finishing its deliveries)",
        ),
    );
    s
}

fn lda_exit_status() -> Vec<(String, &'static str)> {
    // Postfix's pipe(8) contract; the status goes with the enhanced status code printed on
    // standard output (vmail_lda::Outcome keeps the two consistent).
    vec![
        (sysexits::EX_OK.to_string(), "delivered"),
        (
            sysexits::EX_DATAERR.to_string(),
            "the message is refused (too big, or empty); Postfix bounces it",
        ),
        (
            sysexits::EX_NOUSER.to_string(),
            "unknown or disabled recipient; Postfix bounces the message",
        ),
        (
            sysexits::EX_UNAVAILABLE.to_string(),
            "mailbox full with [lda] over_quota = \"bounce\", or a forwarding loop; Postfix bounces",
        ),
        (
            sysexits::EX_TEMPFAIL.to_string(),
            "try again later: directory unreachable, disk full, local trouble (Dovecot's LDA, run for a Sieve user, missing, killed or exiting with a status pipe(8) does not know), a configuration or command line error, or mailbox full with over_quota = \"defer\"; Postfix keeps the message queued",
        ),
    ]
}

const LDA_DESCRIPTION: &[&str] = &[
    "Postfix's pipe(8) runs it once per recipient from master.cf (contrib/postfix/master.cf.vmail), with the message on standard input. It prints one line starting with an RFC 3463 enhanced status code, which pipe(8) logs and puts in the bounce, and exits with the matching sysexits status.",
    "It asks vmail-lookupd for the recipient over [lda] lookupd and links no database code; when lookupd is not configured or not running it executes vmail-lda-direct, which reads the directory itself. dovecot-lda's options -c, -o, -e and -k are accepted (and passed on to Dovecot's LDA, below), so switching from dovecot-lda needs only a new path in argv=.",
    "A recipient with an active Sieve script ([lda] sieve_script under the home, by default ~/.dovecot.sieve, a file or a symlink to one) gets the message through Dovecot's LDA ([lda] dovecot_lda), so that Pigeonhole's filters, vacation replies and fileinto keep working: run with -d and the stored address, -r the recipient, -a the original recipient, -f the sender (and -m, -c, -o as given), the message on standard input as Postfix gave it, after the Return-Path and Delivered-To vmail-lda would have written; an -r or -a that Dovecot's LDA cannot parse is left out. Its exit status is passed on when it is a verdict on the message (0, 65, 69, 71, 75, 77); one that can only mean a local problem (64, 66-68, 70, 72-74, 76, 78), any other status, a missing program, a death by a signal or a run longer than [lda] dovecot_lda_timeout_ms (its process group is killed) exits 75. Everybody else's message is written by vmail-lda itself.",
];

const LDA_DIRECT_DESCRIPTION: &[&str] = &[
    "The same delivery agent as vmail-lda, with the same command line, that reads the directory (MariaDB or SQLite) itself. vmail-lda executes it when vmail-lookupd cannot answer; install it beside vmail-lda.",
];

const LMTPD_DESCRIPTION: &[&str] = &[
    "The delivery path without a process per message: Postfix's lmtp client keeps connections open and sends many messages and recipients over each. Each recipient is looked up at RCPT as vmail-lda looks it up: through vmail-lookupd's recipient map when [lda] lookupd is set (its cache, its serve_stale_s), else, or while nothing listens there, in the directory itself; each message is spooled once and written into each recipient's Maildir by vmail-lda's own code, so the verdicts, trace fields, quota rule and Sieve hand-off are those of vmail-lda, and each recipient's 250 is sent only once its file and directory are on disk. Choose it over the pipe to vmail-lda for throughput; the pipe needs no daemon.",
    "Before it accepts mail, and with --check (as [lmtpd] user), it checks that its user can write the spool ([lmtpd] spool) and the Maildir base (the fixed part of [mailbox] home, and of mail when that is not under the home), or create them; otherwise it exits with status 78 naming the path, rather than deferring every delivery. The systemd unit (ProtectSystem=strict, ProtectHome=tmpfs) lets it write only /home/vmail and /var/lib/vmail: for Maildirs elsewhere, say /var/vmail, add a drop-in with systemctl edit vmail-lmtpd: [Service] ReadWritePaths=/var/vmail (BindPaths= for a directory under /home). --check run from a shell does not see the unit's sandbox; the daemon's own check at start does.",
    "One instance per spool: the daemon holds a lock on the spool directory while it runs and, having taken it, removes what a crashed run left there (those messages were never answered, so Postfix has retried them). A second vmail-lmtpd on the same spool exits with status 75 and leaves the first one's files alone. Spool files are not fsynced: nothing reads them after a crash, because each recipient's 250 waits for that recipient's fsynced Maildir copy. A message up to [lmtpd] spool_memory bytes (default 128 KiB) stays in memory and never touches the spool; a bigger one moves to its spool file as soon as it outgrows that, so memory stays within max_connections times spool_memory whatever the message size.",
    "Asking the directory itself, it caches no rows; the directory keeps only the schema it learned on first contact, which SIGHUP renews: vmailctl flush sends it, and so does every vmailctl change (migrate and init among them).",
    "Recipients with an active Sieve script are handed to Dovecot's LDA with -e: what it refuses itself (its quota, with quota_full_tempfail = no) becomes that recipient's 552 5.2.2 (550 5.7.1 for another refusal) with the last line it wrote on stderr as the reason, as Dovecot's own LMTP answers, instead of a rejection it mails; a Sieve reject is still mailed by Pigeonhole itself. Dovecot's LDA runs inside the unit's sandbox, where NoNewPrivileges= keeps Postfix's setgid postdrop from working: set Dovecot's submission_host (for example submission_host = 127.0.0.1:25, Postfix on loopback) so that vacation replies and redirects leave over SMTP (contrib/dovecot/conf.d/90-vmail-sieve.conf).",
];

const VMAILCTL_DESCRIPTION: &[&str] = &[
    "Passwords are read from the terminal (asked twice when setting one) or from standard input, never from the command line, where every local user could read them in ps(1). Commands that change data tell the running daemons to flush their caches.",
];

/// The programs a host installs (vmail-bench is a development tool and has no page).
pub fn programs() -> Vec<Program> {
    let d = crate::config_page::reference();
    let lda_cmd = vmail_lda::command();
    vec![
        Program {
            command: vmail_daemon::command(&vmail_lookupd::ABOUT),
            section: "8",
            description: &[],
            files: vec![
                config_file(),
                (
                    d.lookupd.socketmap.join(" "),
                    "the socketmap socket for Postfix ([lookupd] socketmap)".into(),
                ),
                (
                    d.lookupd.lda.join(" "),
                    "the socket vmail-lda asks ([lookupd] lda)".into(),
                ),
                (
                    pid_file(&d.lookupd.pid_file, "lookupd"),
                    "the pid file vmailctl flush signals ([lookupd] pid_file)".into(),
                ),
            ],
            exit_status: daemon_exit_status(),
            see_also: &[
                "vmail.toml(5)",
                "vmailctl(8)",
                "vmail-authd(8)",
                "vmail-lda(8)",
                "socketmap_table(5)",
                "tcp_table(5)",
                "postconf(5)",
            ],
        },
        Program {
            command: vmail_daemon::command(&vmail_lmtpd::ABOUT),
            section: "8",
            description: LMTPD_DESCRIPTION,
            files: vec![
                config_file(),
                (
                    d.lmtpd.listen.join(" "),
                    "the LMTP socket for Postfix's lmtp client ([lmtpd] listen)".into(),
                ),
                (
                    "/var/lib/vmail/lmtp".into(),
                    "where each message is spooled once while it is delivered ([lmtpd] spool); the daemon holds a lock on it while it runs".into(),
                ),
                (
                    pid_file(&d.lmtpd.pid_file, "lmtpd"),
                    "the pid file vmailctl flush signals ([lmtpd] pid_file)".into(),
                ),
            ],
            exit_status: lmtpd_exit_status(),
            see_also: &[
                "vmail.toml(5)",
                "vmail-lda(8)",
                "vmail-lookupd(8)",
                "lmtp(8)",
                "postconf(5)",
                "dovecot-lda(1)",
            ],
        },
        Program {
            command: vmail_daemon::command(&vmail_authd::ABOUT),
            section: "8",
            description: &[],
            files: vec![
                config_file(),
                (
                    d.authd.auth.join(" "),
                    "the Dovecot auth protocol socket for Postfix SMTP AUTH ([authd] auth)".into(),
                ),
                (
                    d.authd.dict.join(" "),
                    "the dict socket for Dovecot's passdb and userdb ([authd] dict)".into(),
                ),
                (
                    d.authd.lua.join(" "),
                    "the socket of Dovecot's Lua passdb and userdb ([authd] lua)".into(),
                ),
                (
                    pid_file(&d.authd.pid_file, "authd"),
                    "the pid file vmailctl flush signals ([authd] pid_file)".into(),
                ),
            ],
            exit_status: daemon_exit_status(),
            see_also: &[
                "vmail.toml(5)",
                "vmailctl(8)",
                "vmail-lookupd(8)",
                "doveadm-auth(1)",
                "postconf(5)",
            ],
        },
        Program {
            command: vmailctl::command(),
            section: "8",
            description: VMAILCTL_DESCRIPTION,
            files: vec![
                config_file(),
                (
                    format!(
                        "{} {}",
                        pid_file(&d.lookupd.pid_file, "lookupd"),
                        pid_file(&d.authd.pid_file, "authd")
                    ),
                    "the daemons' pid files, which vmailctl flush and every change signal".into(),
                ),
            ],
            exit_status: vec![
                (
                    "0".into(),
                    "success; for query, auth test and audit: found, passed, every row matched",
                ),
                (
                    vmailctl::EXIT_NOT_FOUND.to_string(),
                    "query: not found; auth test: failed; audit: some row is never matched",
                ),
                (
                    vmailctl::EXIT_ERROR.to_string(),
                    "bad input or a duplicate (the row exists already)",
                ),
                (
                    vmailctl::EXIT_USAGE.to_string(),
                    "the command line is wrong (EX_USAGE)",
                ),
                (
                    vmailctl::EXIT_DATAERR.to_string(),
                    "the data is refused: by the database (a value too long for its column, a \
                     constraint) or, in an import, a password hash of no known scheme; trying \
                     again will not help (EX_DATAERR)",
                ),
                (
                    vmailctl::EXIT_NOUSER.to_string(),
                    "the user, domain, alias or transport named does not exist (EX_NOUSER)",
                ),
                (
                    vmailctl::EXIT_TEMPFAIL.to_string(),
                    "temporary failure: the database is down or slow; try again later; or the \
                     connection was lost after a write was sent, its outcome unknown: check with \
                     `vmailctl export` first (EX_TEMPFAIL)",
                ),
                (
                    vmailctl::EXIT_CONFIG.to_string(),
                    "vmail.toml is wrong, or the database needs `vmailctl migrate`: a column missing or too narrow for the value (EX_CONFIG)",
                ),
            ],
            see_also: &[
                "vmail.toml(5)",
                "vmail-lookupd(8)",
                "vmail-authd(8)",
                "postmap(1)",
                "doveadm(1)",
            ],
        },
        Program {
            command: lda_cmd.clone(),
            section: "8",
            description: LDA_DESCRIPTION,
            files: vec![
                config_file(),
                (
                    d.lda.lookupd.clone(),
                    "where vmail-lookupd answers ([lda] lookupd)".into(),
                ),
            ],
            exit_status: lda_exit_status(),
            see_also: &[
                "vmail.toml(5)",
                "vmail-lda-direct(8)",
                "vmail-lookupd(8)",
                "pipe(8)",
                "master(5)",
                "dovecot-lda(1)",
            ],
        },
        Program {
            command: lda_cmd.name("vmail-lda-direct"),
            section: "8",
            description: LDA_DIRECT_DESCRIPTION,
            files: vec![config_file()],
            exit_status: lda_exit_status(),
            see_also: &["vmail-lda(8)", "vmail.toml(5)", "pipe(8)"],
        },
    ]
}
