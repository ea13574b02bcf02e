//! What `--help`, `--version`, the man page and the shell completions say about
//! vmail-authd: here rather than in `main.rs` so that vmail-doc reaches it without running the
//! daemon.

/// vmail-authd's name, summary and closing help text; `vmail_daemon::command` builds the
/// command line from it.
pub const ABOUT: vmail_daemon::About = vmail_daemon::About {
    name: "vmail-authd",
    about: "Dovecot auth-protocol server (Postfix SMTP AUTH) and dict server (Dovecot passdb/userdb) for the vmail directory",
    after_help: "\
Configuration: the [authd], [database], [passwords] and [mailbox] sections of vmail.toml
(see contrib/vmail/vmail.toml; `--check` prints every key with its effective value).

Sockets (bound as root, then privileges drop to [authd] user):
  auth  Dovecot auth protocol for Postfix: smtpd_sasl_type = dovecot,
        smtpd_sasl_path = private/vmail-auth   (default unix:/var/spool/postfix/private/vmail-auth)
  dict  Dovecot dict proxy for passdb/userdb { driver = dict }:
        uri = proxy:/run/vmail/auth-dict:auth  (contrib/dovecot/dovecot-dict-auth.conf.ext)
  lua   line protocol for passdb/userdb { driver = lua } (contrib/dovecot/vmail-auth.lua),
        default unix:/run/vmail/auth-lua; only uids in [authd] lua_peers are served
  Sockets passed by systemd (vmail-authd.socket, vmail-authd-dovecot.socket) with the
  same address are used instead.

Signals: SIGHUP re-reads the database settings and flushes the credentials cache (also
`vmailctl flush`; failure penalties are kept); SIGTERM finishes requests in flight and exits.
Logs go to stderr (journald); VMAIL_LOG=debug shows every request, never a password.
Every failed login is logged as `authentication failed rip=ADDR user=\"...\" service=...`
(contrib/fail2ban has a filter and a jail for it).",
};
