//! What `--help`, `--version`, the man page and the shell completions say about
//! vmail-lookupd: here rather than in `main.rs` so that vmail-doc reaches it without running the
//! daemon.

/// vmail-lookupd's name, summary and closing help text; `vmail_daemon::command` builds the
/// command line from it.
pub const ABOUT: vmail_daemon::About = vmail_daemon::About {
    name: "vmail-lookupd",
    about: "Postfix socketmap/tcp_table server for the vmail directory",
    after_help: "\
Configuration: the [lookupd], [cache], [database], [address] and [mailbox] sections of
vmail.toml (see contrib/vmail/vmail.toml; `--check` prints every key with its value).

Maps, for Postfix's main.cf (contrib/postfix/main.cf.vmail):
  socketmap:unix:private/vmail-lookupd:domains     virtual_mailbox_domains
  socketmap:unix:private/vmail-lookupd:mailboxes   virtual_mailbox_maps (domain/user/)
  socketmap:unix:private/vmail-lookupd:aliases     virtual_alias_maps (forwardings, catch-all)
  socketmap:unix:private/vmail-lookupd:senders     smtpd_sender_login_maps
  socketmap:unix:private/vmail-lookupd:transport   transport_maps
  tcp:HOST:PORT                                    [lookupd.tcp_table], one listener per map
A database error or a lookup over the deadline answers TEMP (Postfix defers), never NOTFOUND.
Sockets passed by systemd (vmail-lookupd.socket) with the same address are used instead.

Signals: SIGHUP re-reads the database settings and flushes the cache (also `vmailctl
flush`); SIGTERM finishes requests in flight and exits. Logs go to stderr (journald);
VMAIL_LOG=debug shows every lookup.",
};
