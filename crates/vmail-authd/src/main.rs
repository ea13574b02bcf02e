//! `vmail-authd`: see the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Dovecot auth-protocol server (Postfix SMTP AUTH) and dict server (Dovecot passdb/userdb)
/// for the vmail directory.
#[derive(Parser, Debug)]
#[command(name = "vmail-authd", version)]
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
    vmail_daemon::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let d = vmail_authd::Authd::bind(&loaded).await?;
        // Listening sockets are open: from here on we need no privileges.
        vmail_daemon::drop_privileges(&loaded.config.authd.user)?;
        d.run(std::future::pending()).await
    })
}
