//! `vmail-lookupd`: see the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Postfix socketmap/tcp_table server for the vmail directory.
#[derive(Parser, Debug)]
#[command(
    name = "vmail-lookupd",
    version,
    after_help = "\
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
VMAIL_LOG=debug shows every lookup."
)]
struct Args {
    /// Configuration file [default: $VMAIL_CONFIG, else /etc/vmail/vmail.toml if present, else built-in defaults]
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let loaded = vmail_config::load(args.config.as_deref())?;
    if args.check {
        print!("# {}\n{}", loaded.source, loaded.config.to_toml_masked());
        return Ok(());
    }
    vmail_daemon::init_logging("info");
    let rt = vmail_daemon::runtime(loaded.config.lookupd.threads)?;
    rt.block_on(async {
        let d = vmail_lookupd::Lookupd::bind(&loaded).await?;
        // Listening sockets are open: from here on we need no privileges.
        vmail_daemon::drop_privileges(&loaded.config.lookupd.user)?;
        d.run(std::future::pending()).await
    })
}
