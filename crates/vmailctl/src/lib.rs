//! vmailctl, the administration tool: creates and migrates the schema, manages domains, users,
//! aliases and transports, and answers `query MAP KEY` exactly as vmail-lookupd will (like
//! `postmap -q`) and `auth test USER` like `doveadm auth test`.
//!
//! Passwords are read from the terminal (asked twice when setting one) or from standard input,
//! never from the command line, where every local user could read them in `ps`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use vmail_config::Loaded;
use vmail_daemon::Reload;
use vmail_directory::{Directory, Map};
use vmail_passwd::Scheme;

mod audit;

/// Exit status for "not found" (as `postmap -q` and `doveadm auth test` use a non-zero one).
const EXIT_NOT_FOUND: u8 = 1;
/// sysexits EX_TEMPFAIL: the database is down or slow; try again later.
const EXIT_TEMPFAIL: u8 = 75;
/// Anything else that went wrong (bad input, duplicate, missing).
const EXIT_ERROR: u8 = 2;

/// vmailctl's command line: what `main` parses, and what vmail-doc renders as its man page and
/// shell completions, so new subcommands reach both.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[derive(Parser, Debug)]
#[command(
    name = "vmailctl",
    version,
    about = "Administer a vmail directory (domains, users, aliases) and query it like Postfix and Dovecot will."
)]
pub struct Cli {
    /// Configuration file [default: $VMAIL_CONFIG, else /etc/vmail/vmail.toml if present, else built-in defaults on SQLite]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the effective configuration (secrets masked) and exit, like `postconf -n`.
    #[arg(long)]
    pub check: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the tables (the classic schema plus vmail's optional columns).
    Init {
        /// Create only the classic how-to tables, exactly as the how-to does.
        #[arg(long)]
        classic: bool,
    },
    /// Add the optional columns (active, quota, services) and widen users.password; safe to repeat.
    Migrate,
    /// Manage domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage mailbox users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases (forwardings), catch-alls (@domain) and alias domains (@alias -> @domain).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Manage per-domain transports.
    #[command(subcommand)]
    Transport(TransportCmd),
    /// Answer KEY from MAP exactly as vmail-lookupd would (like `postmap -q`).
    /// Exit 0 found, 1 not found, 75 temporary failure.
    Query {
        /// domains, mailboxes, aliases, senders, transport, recipient_access or recipient
        map: String,
        key: String,
    },
    /// Authentication checks.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// List the stored addresses and domains vmail matches differently from the classic
    /// `mysql:` maps (spaces, accents, case, invalid keys); run it before the switch.
    /// Exit 0 when every row is matched, 1 when some row never is.
    Audit,
    /// Tell running vmail-lookupd and vmail-authd to reload their configuration and flush
    /// their caches (SIGHUP to the daemons holding lookupd.pid_file and authd.pid_file; the
    /// pid in a stale file is left alone; authd keeps its failure penalties). Commands that
    /// change data do this themselves.
    Flush,
    /// Hash a password read from the terminal or stdin (like `doveadm pw`).
    Pw {
        /// Scheme [default: passwords.hash_scheme]
        #[arg(long, short = 's')]
        scheme: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    Add {
        domain: String,
    },
    /// Delete a domain; refuses while it has users or aliases unless --force.
    Del {
        domain: String,
        #[arg(long)]
        force: bool,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user; the password is asked on the terminal or read from stdin.
    Add {
        email: String,
        /// Quota in bytes (needs `vmailctl migrate` on a classic database).
        #[arg(long)]
        quota: Option<u64>,
    },
    Del {
        email: String,
    },
    List {
        domain: Option<String>,
    },
    /// Set a new password (terminal prompt or stdin).
    Passwd {
        email: String,
    },
    /// Disable a user without deleting it (mail is rejected, logins fail).
    Disable {
        email: String,
    },
    Enable {
        email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add destinations to SOURCE (user@domain, or @domain for a catch-all; a destination
    /// @otherdomain on source @domain makes domain an alias domain).
    Add {
        source: String,
        #[arg(required = true)]
        destinations: Vec<String>,
    },
    /// Remove one destination, or the whole alias when none is given.
    Del {
        source: String,
        destination: Option<String>,
    },
    List {
        domain: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TransportCmd {
    /// Route a domain through a transport (e.g. `lmtp:unix:private/dovecot-lmtp`).
    Set { domain: String, transport: String },
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Check USER's password (terminal prompt or stdin) as authd would.
    /// Exit 0 success, 1 failure, 75 temporary failure.
    Test {
        user: String,
        /// Service to check permission for (smtp, imap, pop3).
        #[arg(long, default_value = "imap")]
        service: String,
    },
}

/// Runs the command line; errors become a message on stderr and an exit status.
pub fn main(cli: Cli) -> ExitCode {
    vmail_daemon::init_logging("warn");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmailctl: cannot start runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vmailctl: {e:#}");
            let temp = e
                .downcast_ref::<vmail_directory::Error>()
                .is_some_and(|d| d.is_temporary());
            ExitCode::from(if temp { EXIT_TEMPFAIL } else { EXIT_ERROR })
        }
    }
}

struct Ctx {
    loaded: Loaded,
    json: bool,
}

impl Ctx {
    fn schemes(&self) -> Result<(Scheme, Scheme)> {
        let p = &self.loaded.config.passwords;
        let default: Scheme = p
            .default_scheme
            .parse()
            .map_err(|e| anyhow!("{}: passwords.default_scheme: {e}", self.loaded.source))?;
        let hash: Scheme = p
            .hash_scheme
            .parse()
            .map_err(|e| anyhow!("{}: passwords.hash_scheme: {e}", self.loaded.source))?;
        Ok((default, hash))
    }

    fn done(&self, what: String) {
        if self.json {
            println!("{}", json!({ "ok": true, "message": what }));
        } else {
            println!("{what}");
        }
    }
}

pub async fn run(cli: Cli) -> Result<u8> {
    let loaded = vmail_config::load(cli.config.as_deref())?;
    if cli.check {
        print!("# {}\n{}", loaded.source, loaded.config.to_toml_masked());
        return Ok(0);
    }
    let Some(command) = cli.command else {
        bail!("no command given (see `vmailctl --help`)");
    };
    let ctx = Ctx {
        loaded,
        json: cli.json,
    };
    if let Command::Flush = command {
        let mut said = Vec::new();
        for (name, pid_file) in daemons(&ctx.loaded.config) {
            said.push(match vmail_daemon::signal_reload(pid_file, name)? {
                Reload::Sent(pid) => format!("{name} (pid {pid}) reloaded, caches flushed"),
                Reload::NotRunning(why) => format!("no {name} running ({why})"),
            });
        }
        ctx.done(said.join("; "));
        return Ok(0);
    }
    let changes = matches!(
        command,
        Command::Domain(DomainCmd::Add { .. } | DomainCmd::Del { .. })
            | Command::User(_)
            | Command::Alias(AliasCmd::Add { .. } | AliasCmd::Del { .. })
            | Command::Transport(_)
            | Command::Migrate
    );
    let code = execute(&ctx, command).await?;
    if changes && code == 0 {
        // Best effort: a cached "not found" must not reject a user just added.
        for (name, pid_file) in daemons(&ctx.loaded.config) {
            if let Err(e) = vmail_daemon::signal_reload(pid_file, name) {
                eprintln!("vmailctl: warning: could not flush {name}'s cache: {e}");
            }
        }
    }
    Ok(code)
}

/// The daemons whose caches `flush` (and every change) reaches: the name of each binary (a
/// pid is signalled only while that binary runs it) and its pid file.
fn daemons(config: &vmail_config::Config) -> [(&'static str, &std::path::Path); 2] {
    [
        ("vmail-lookupd", config.lookupd.pid_file.as_path()),
        ("vmail-authd", config.authd.pid_file.as_path()),
    ]
}

async fn execute(ctx: &Ctx, command: Command) -> Result<u8> {
    let dir = Directory::open(&ctx.loaded.config)
        .await
        .with_context(|| format!("opening the directory ({})", ctx.loaded.source))?;
    match command {
        Command::Init { classic } => {
            let done = dir.init(classic).await?;
            report_steps(ctx, &done, "schema already up to date");
        }
        Command::Migrate => {
            let done = dir.migrate().await?;
            report_steps(ctx, &done, "nothing to migrate");
        }
        Command::Domain(c) => domain(ctx, &dir, c).await?,
        Command::User(c) => user(ctx, &dir, c).await?,
        Command::Alias(c) => alias(ctx, &dir, c).await?,
        Command::Transport(TransportCmd::Set { domain, transport }) => {
            dir.set_transport(&domain, &transport).await?;
            ctx.done(format!("transport of {domain} set to {transport}"));
        }
        Command::Query { map, key } => return query(ctx, &dir, &map, &key).await,
        Command::Audit => return audit::run(&dir, ctx.json).await,
        Command::Auth(AuthCmd::Test { user, service }) => {
            return auth_test(ctx, &dir, &user, &service).await
        }
        Command::Flush => {}
        Command::Pw { scheme } => {
            let (_, default_hash) = ctx.schemes()?;
            let s = match scheme {
                Some(s) => s.parse().map_err(|e| anyhow!("--scheme: {e}"))?,
                None => default_hash,
            };
            let pw = new_password()?;
            println!("{}", vmail_passwd::hash(s, pw.as_bytes())?);
        }
    }
    Ok(0)
}

fn report_steps(ctx: &Ctx, done: &[String], nothing: &str) {
    if ctx.json {
        println!("{}", json!({ "ok": true, "steps": done }));
    } else if done.is_empty() {
        println!("{nothing}");
    } else {
        for s in done {
            println!("{s}");
        }
    }
}

async fn domain(ctx: &Ctx, dir: &Directory, c: DomainCmd) -> Result<()> {
    match c {
        DomainCmd::Add { domain } => {
            dir.add_domain(&domain).await?;
            ctx.done(format!("domain {} added", domain.to_lowercase()));
        }
        DomainCmd::Del { domain, force } => {
            dir.del_domain(&domain, force).await?;
            ctx.done(format!("domain {} deleted", domain.to_lowercase()));
        }
        DomainCmd::List => {
            let list = dir.list_domains().await?;
            if ctx.json {
                println!("{}", json!(list));
            } else {
                for d in list {
                    println!("{d}");
                }
            }
        }
    }
    Ok(())
}

async fn user(ctx: &Ctx, dir: &Directory, c: UserCmd) -> Result<()> {
    match c {
        UserCmd::Add { email, quota } => {
            let (_, scheme) = ctx.schemes()?;
            let pw = new_password()?;
            let hash = vmail_passwd::hash(scheme, pw.as_bytes())?;
            dir.add_user(&email, &hash, quota).await?;
            ctx.done(format!("user {} added", email.to_lowercase()));
        }
        UserCmd::Del { email } => {
            dir.del_user(&email).await?;
            ctx.done(format!("user {} deleted", email.to_lowercase()));
        }
        UserCmd::List { domain } => {
            let list = dir.list_users(domain.as_deref()).await?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(e, a)| json!({ "email": e, "active": a }))
                    .collect();
                println!("{}", json!(v));
            } else {
                for (e, active) in list {
                    println!("{e}{}", if active { "" } else { "\t(disabled)" });
                }
            }
        }
        UserCmd::Passwd { email } => {
            let (_, scheme) = ctx.schemes()?;
            let pw = new_password()?;
            let hash = vmail_passwd::hash(scheme, pw.as_bytes())?;
            dir.set_password(&email, &hash).await?;
            ctx.done(format!("password of {} changed", email.to_lowercase()));
        }
        UserCmd::Disable { email } => {
            dir.set_active(&email, false).await?;
            ctx.done(format!("user {} disabled", email.to_lowercase()));
        }
        UserCmd::Enable { email } => {
            dir.set_active(&email, true).await?;
            ctx.done(format!("user {} enabled", email.to_lowercase()));
        }
    }
    Ok(())
}

async fn alias(ctx: &Ctx, dir: &Directory, c: AliasCmd) -> Result<()> {
    match c {
        AliasCmd::Add {
            source,
            destinations,
        } => {
            dir.add_alias(&source, &destinations).await?;
            ctx.done(format!(
                "alias {} -> {}",
                source.to_lowercase(),
                destinations.join(", ")
            ));
        }
        AliasCmd::Del {
            source,
            destination,
        } => {
            dir.del_alias(&source, destination.as_deref()).await?;
            ctx.done(match destination {
                Some(d) => format!("removed {d} from alias {}", source.to_lowercase()),
                None => format!("alias {} deleted", source.to_lowercase()),
            });
        }
        AliasCmd::List { domain } => {
            let list = dir.list_aliases(domain.as_deref()).await?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(s, d)| json!({ "source": s, "destinations": d }))
                    .collect();
                println!("{}", json!(v));
            } else {
                for (s, d) in list {
                    println!("{s}\t{}", d.join(", "));
                }
            }
        }
    }
    Ok(())
}

async fn query(ctx: &Ctx, dir: &Directory, map: &str, key: &str) -> Result<u8> {
    let map: Map = map.parse().map_err(|e: String| anyhow!(e))?;
    match dir.lookup(map, key).await {
        Ok(Some(v)) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "found": true, "value": v })
                );
            } else {
                println!("{v}");
            }
            Ok(0)
        }
        Ok(None) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "found": false })
                );
            }
            Ok(EXIT_NOT_FOUND)
        }
        Err(e) if e.is_temporary() => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "temporary_failure": e.to_string() })
                );
            }
            eprintln!("vmailctl: temporary failure: {e}");
            Ok(EXIT_TEMPFAIL)
        }
        Err(e) => Err(e.into()),
    }
}

async fn auth_test(ctx: &Ctx, dir: &Directory, login: &str, service: &str) -> Result<u8> {
    let (default, _) = ctx.schemes()?;
    let pw = read_secret("Password: ")?;
    let outcome = match dir.user(login).await {
        Err(e) if e.is_temporary() => {
            eprintln!("vmailctl: temporary failure: {e}");
            return Ok(EXIT_TEMPFAIL);
        }
        Err(e) => return Err(e.into()),
        Ok(None) => {
            // Same cost as a real check, as authd does.
            vmail_passwd::dummy_verify(default, pw.as_bytes());
            Err("unknown user or wrong password")
        }
        Ok(Some(u)) => match u.password.as_deref() {
            None => Err("user has no password"),
            Some(stored) => match vmail_passwd::verify(stored, pw.as_bytes(), default) {
                Ok(true) if !u.active => Err("user is disabled"),
                Ok(true) if !u.allows(service) => Err("service not allowed for this user"),
                Ok(true) => Ok(u),
                Ok(false) => Err("unknown user or wrong password"),
                Err(e) => {
                    eprintln!("vmailctl: stored hash of {login} cannot be used: {e}");
                    Err("stored password hash is invalid")
                }
            },
        },
    };
    match outcome {
        Ok(u) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "user": u.email, "ok": true, "uid": u.uid, "gid": u.gid, "home": u.home, "mail": u.mail })
                );
            } else {
                println!("passdb: {login} auth succeeded");
                println!(
                    "extra fields:\n  user={}\n  uid={}\n  gid={}\n  home={}\n  mail={}",
                    u.email, u.uid, u.gid, u.home, u.mail
                );
            }
            Ok(0)
        }
        Err(reason) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "user": login, "ok": false, "reason": reason })
                );
            } else {
                println!("passdb: {login} auth failed ({reason})");
            }
            Ok(EXIT_NOT_FOUND)
        }
    }
}

/// Reads one secret: a hidden terminal prompt, or the first line of stdin when it is not a
/// terminal (scripts: `printf '%s\n' "$pw" | vmailctl user add ...`).
fn read_secret(prompt: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("reading password from terminal");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A new password: asked twice on a terminal, once from stdin. Empty is refused.
fn new_password() -> Result<String> {
    let pw = read_secret("New password: ")?;
    if std::io::stdin().is_terminal() {
        let again = read_secret("Retype new password: ")?;
        if again != pw {
            bail!("passwords do not match");
        }
    }
    if pw.is_empty() {
        bail!("empty password refused");
    }
    let _ = std::io::stdout().flush();
    Ok(pw)
}
