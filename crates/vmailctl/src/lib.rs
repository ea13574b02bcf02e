//! vmailctl, the administration tool: creates and migrates the schema, manages domains, users,
//! aliases and transports, and answers `query MAP KEY` exactly as vmail-lookupd will (like
//! `postmap -q`) and `auth test USER` like `doveadm auth test`.
//!
//! Passwords are read from the terminal (asked twice when setting one) or from standard input,
//! never from the command line, where every local user could read them in `ps`.
//!
//! `cli.rs` is the command line, `names.rs` the domain, alias and transport commands,
//! `user.rs` the user commands, `check.rs` `query` and `auth test`, `transfer.rs`
//! `export`/`import`, `secret.rs` how passwords and hashes are read; this file runs a command and turns its errors into exit
//! statuses.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use vmail_config::Loaded;
use vmail_daemon::Reload;
use vmail_directory::Directory;
use vmail_passwd::Scheme;

mod audit;
mod check;
pub mod cli;
mod names;
mod owner;
mod secret;
mod transfer;
mod user;

pub use cli::{AliasCmd, AuthCmd, Cli, Command, DomainCmd, TransportCmd, UserCmd, YesNo};

/// Exit status for "not found" (as `postmap -q` and `doveadm auth test` use a non-zero one).
pub const EXIT_NOT_FOUND: u8 = 1;
/// Anything else that went wrong (bad input, duplicate).
pub const EXIT_ERROR: u8 = 2;
/// sysexits EX_USAGE: the command line is wrong.
pub const EXIT_USAGE: u8 = 64;
/// sysexits EX_DATAERR: the input data is refused — by the database itself (a value too long
/// for its column, a constraint), or an imported password hash of no known scheme. Trying
/// again will not help, unlike [`EXIT_TEMPFAIL`].
pub const EXIT_DATAERR: u8 = 65;
/// sysexits EX_NOUSER: the user (domain, alias, transport) named does not exist.
pub const EXIT_NOUSER: u8 = 67;
/// sysexits EX_TEMPFAIL: the database is down or slow; try again later.
pub const EXIT_TEMPFAIL: u8 = 75;
/// sysexits EX_CONFIG: vmail.toml, or a database that needs `vmailctl migrate`.
pub const EXIT_CONFIG: u8 = 78;

/// vmailctl's command line: what `main` parses, and what vmail-doc renders as its man page and
/// shell completions, so new subcommands reach both.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// An error that carries its exit status (usage, configuration) where the error type alone
/// does not tell it.
#[derive(Debug)]
struct Status(u8, String);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Status {}

fn config_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Status(EXIT_CONFIG, e.to_string()))
}

fn data_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Status(EXIT_DATAERR, e.to_string()))
}

/// Prints an error as `--json` or plain text asks: one object on stdout, or a line on stderr.
pub fn report_error(json: bool, message: &str, status: u8) {
    if json {
        println!(
            "{}",
            json!({ "ok": false, "error": message, "status": status })
        );
    } else {
        eprintln!("vmailctl: {message}");
    }
}

/// Runs the command line; errors become a message (stderr, or stdout under `--json`) and an
/// exit status.
pub fn main(cli: Cli) -> ExitCode {
    let json = cli.json;
    // Under --json the error object says what failed; the backend's warnings (a server that
    // refused, a retry) would only be a second, unparsed account of it on stderr.
    vmail_daemon::init_logging(if json { "error" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(json, &format!("cannot start runtime: {e}"), EXIT_ERROR);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let names_existing = cli.command.as_ref().is_some_and(targets_existing);
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let status = exit_status(&e, names_existing);
            report_error(json, &format!("{e:#}"), status);
            ExitCode::from(status)
        }
    }
}

/// The exit status of a failed command. "Does not exist" is EX_NOUSER only for commands that
/// name an existing row (`user add` to an unknown domain is bad input, not an unknown user).
fn exit_status(e: &anyhow::Error, names_existing: bool) -> u8 {
    if let Some(s) = e.chain().find_map(|c| c.downcast_ref::<Status>()) {
        return s.0;
    }
    match e.downcast_ref::<vmail_directory::Error>() {
        // TooLong: the classic schema's column is narrower than the value (a SHA512-CRYPT
        // hash in the how-to's varchar(20)); `vmailctl migrate` widens it, as it adds
        // what NeedsMigrate misses.
        Some(
            vmail_directory::Error::NeedsMigrate(_)
            | vmail_directory::Error::Config(_)
            | vmail_directory::Error::TooLong { .. },
        ) => EXIT_CONFIG,
        // Before is_temporary, which a refusal also is (for the daemons, every database error
        // is temporary; for an admin's script, retrying this one would never end).
        Some(d) if d.is_refused_data() => EXIT_DATAERR,
        Some(d) if d.is_temporary() => EXIT_TEMPFAIL,
        Some(vmail_directory::Error::Missing(_)) if names_existing => EXIT_NOUSER,
        _ => EXIT_ERROR,
    }
}

/// Commands whose argument names a row that must exist (doveadm's "unknown user" is 67).
fn targets_existing(c: &Command) -> bool {
    matches!(
        c,
        Command::User(
            UserCmd::Show { .. }
                | UserCmd::Set { .. }
                | UserCmd::Del { .. }
                | UserCmd::Passwd { .. }
                | UserCmd::Disable { .. }
                | UserCmd::Enable { .. }
        ) | Command::Domain(
            DomainCmd::Del { .. } | DomainCmd::Disable { .. } | DomainCmd::Enable { .. }
        ) | Command::Alias(AliasCmd::Del { .. })
            | Command::Transport(TransportCmd::Del { .. })
    )
}

struct Ctx {
    loaded: Loaded,
    json: bool,
}

impl Ctx {
    fn schemes(&self) -> Result<(Scheme, Scheme)> {
        let p = &self.loaded.config.passwords;
        let default: Scheme = p.default_scheme.parse().map_err(|e| {
            config_error(format!(
                "{}: passwords.default_scheme: {e}",
                self.loaded.source
            ))
        })?;
        let hash: Scheme = p.hash_scheme.parse().map_err(|e| {
            config_error(format!(
                "{}: passwords.hash_scheme: {e}",
                self.loaded.source
            ))
        })?;
        Ok((default, hash))
    }

    fn done(&self, what: String) {
        if self.json {
            println!("{}", json!({ "ok": true, "message": what }));
        } else {
            println!("{what}");
        }
    }

    async fn open(&self) -> Result<Directory> {
        Directory::open(&self.loaded.config)
            .await
            .with_context(|| format!("opening the directory ({})", self.loaded.source))
    }
}

pub async fn run(cli: Cli) -> Result<u8> {
    let loaded = vmail_config::load(cli.config.as_deref()).map_err(config_error)?;
    if cli.check {
        let c = &loaded.config;
        let text = if cli.all {
            c.to_toml_masked()
        } else {
            c.to_toml_changed()
        };
        print!("# {}\n{text}", loaded.source);
        return Ok(0);
    }
    let Some(command) = cli.command else {
        return Err(anyhow::Error::new(Status(
            EXIT_USAGE,
            "no command given (see `vmailctl --help`)".into(),
        )));
    };
    let ctx = Ctx {
        loaded,
        json: cli.json,
    };
    // Init too: on tables that exist it adds the optional columns, and the daemons learned
    // the schema (which statements to send) on first contact.
    let changes = matches!(
        command,
        Command::Domain(
            DomainCmd::Add { .. }
                | DomainCmd::Del { .. }
                | DomainCmd::Disable { .. }
                | DomainCmd::Enable { .. }
        ) | Command::User(
            UserCmd::Add { .. }
                | UserCmd::Del { .. }
                | UserCmd::Set { .. }
                | UserCmd::Passwd { .. }
                | UserCmd::Disable { .. }
                | UserCmd::Enable { .. }
        ) | Command::Alias(AliasCmd::Add { .. } | AliasCmd::Del { .. })
            | Command::Transport(TransportCmd::Set { .. } | TransportCmd::Del { .. })
            | Command::Migrate
            | Command::Init { .. }
            | Command::Import { .. }
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
/// pid is signalled only while that binary runs it) and its pid file. vmail-lmtpd caches no
/// rows (it asks lookupd, whose cache this flushes, or the database), but its directory
/// keeps the schema it learned on first contact: after `vmailctl migrate` or `init` it
/// must learn it again.
fn daemons(config: &vmail_config::Config) -> [(&'static str, &std::path::Path); 3] {
    [
        ("vmail-lookupd", config.lookupd.pid_file.as_path()),
        ("vmail-authd", config.authd.pid_file.as_path()),
        ("vmail-lmtpd", config.lmtpd.pid_file.as_path()),
    ]
}

/// Runs one command; the directory is opened by the commands that use it (`flush` and `pw`
/// need no database).
async fn execute(ctx: &Ctx, command: Command) -> Result<u8> {
    match command {
        Command::Init { classic } => {
            let mut done = ctx.open().await?.init(classic).await?;
            done.extend(owner::give_sqlite_files(&ctx.loaded.config)?);
            report_steps(ctx, &done, "schema already up to date");
        }
        Command::Migrate => {
            let done = ctx.open().await?.migrate().await?;
            report_steps(ctx, &done, "nothing to migrate");
        }
        Command::Domain(c) => names::domain(ctx, &ctx.open().await?, c).await?,
        Command::User(c) => user::user(ctx, &ctx.open().await?, c).await?,
        Command::Alias(c) => names::alias(ctx, &ctx.open().await?, c).await?,
        Command::Transport(c) => names::transport(ctx, &ctx.open().await?, c).await?,
        Command::Query { map, key } => {
            return check::query(ctx, &ctx.open().await?, &map, &key).await
        }
        Command::Audit => return audit::run(&ctx.open().await?, ctx.json).await,
        Command::Auth(AuthCmd::Test { user, service }) => {
            return check::auth_test(ctx, &ctx.open().await?, &user, &service).await
        }
        Command::Export => transfer::export(&ctx.open().await?).await?,
        Command::Import {
            file,
            replace,
            keep_unusable_hashes,
        } => {
            let keep = transfer::Unusable::from_flag(keep_unusable_hashes);
            transfer::import(ctx, &ctx.open().await?, file.as_deref(), replace, keep).await?
        }
        Command::Flush => flush(ctx)?,
        Command::Pw { scheme } => {
            let (_, default_hash) = ctx.schemes()?;
            let s = match scheme {
                Some(s) => s.parse().map_err(|e| anyhow!("--scheme: {e}"))?,
                None => default_hash,
            };
            let pw = secret::new_password()?;
            println!("{}", vmail_passwd::hash(s, pw.as_bytes())?);
        }
    }
    Ok(0)
}

fn flush(ctx: &Ctx) -> Result<()> {
    let mut said = Vec::new();
    for (name, pid_file) in daemons(&ctx.loaded.config) {
        said.push(match vmail_daemon::signal_reload(pid_file, name)? {
            Reload::Sent(pid) => format!("{name} (pid {pid}) reloaded, caches flushed"),
            Reload::NotRunning(why) => format!("no {name} running ({why})"),
        });
    }
    ctx.done(said.join("; "));
    Ok(())
}

/// Prints a listing: one JSON array of `as_json(item)` under `--json`, else one line
/// `as_text(item)` per item.
fn print_list<T>(
    ctx: &Ctx,
    items: &[T],
    as_json: impl Fn(&T) -> serde_json::Value,
    as_text: impl Fn(&T) -> String,
) {
    if ctx.json {
        let v: Vec<_> = items.iter().map(as_json).collect();
        println!("{}", json!(v));
    } else {
        for i in items {
            println!("{}", as_text(i));
        }
    }
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

/// How `name` (a domain, `@domain` or an address) is stored: the directory's normalization (domain lower-cased, the local
/// part too unless `[address] fold_local_part = false`), for confirmation messages.
fn stored(dir: &Directory, name: &str) -> String {
    let p = dir.policy();
    let folded = match name.strip_prefix('@') {
        Some(d) => p.domain(d).map(|d| format!("@{d}")),
        None if !name.contains('@') => p.domain(name),
        None => p.parse(name).map(|a| a.to_string()),
    };
    folded.unwrap_or_else(|| name.to_string())
}
