//! What `--help`, `--version`, the man page and the shell completions say about
//! vmail-lmtpd: here rather than in `main.rs` so that vmail-doc reaches it without running the
//! daemon.

/// vmail-lmtpd's name, summary and closing help text; `vmail_daemon::command` builds the
/// command line from it.
pub const ABOUT: vmail_daemon::About = vmail_daemon::About {
    name: "vmail-lmtpd",
    about: "LMTP server delivering into vmail users' Maildirs (for Postfix's lmtp transport)",
    after_help: "\
Configuration: the [lmtpd], [lda], [database], [address] and [mailbox] sections of
vmail.toml (`--check` prints every key with its value). Deliveries follow [lda]: the same
verdicts, headers, quota rule (over_quota) and Sieve hand-off as vmail-lda.

Postfix's main.cf: virtual_transport = lmtp:unix:private/vmail-lmtp
Each recipient is looked up at RCPT as vmail-lda does it (through vmail-lookupd with
[lda] lookupd, else the directory; unknown: 550 5.1.1; a database outage: 451 4.3.0,
never a bounce); after the message, one reply per recipient, each 250 only once its Maildir
file and directory are on disk. Sockets passed by systemd (vmail-lmtpd.socket) with the
same address are used instead.

Before serving (and with --check): the spool and the Maildir base must be writable by
[lmtpd] user, else exit 78 naming the path (under systemd, a Maildir base other than
/home/vmail needs ReadWritePaths= in a drop-in: systemctl edit vmail-lmtpd). A second
instance on the same [lmtpd] spool exits 75.

Signals: SIGHUP re-reads the database settings; SIGTERM finishes the deliveries in flight
and exits. Logs go to stderr (journald); VMAIL_LOG=debug shows every session.",
};
