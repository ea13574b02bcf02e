//! The command line: every subcommand and option, with the help text `--help` shows (a test
//! walks this tree and requires one on each).

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "vmailctl",
    version,
    about = "Administer a vmail directory (domains, users, aliases) and query it like Postfix and Dovecot will.",
    after_help = "Exit status (sysexits, as doveadm): 0 ok; 1 not found (query, auth test, audit); \
64 usage; 65 data refused (by the database: too long for its column, a constraint; or an \
imported hash of no known scheme; retrying will not help); 67 no such user, domain, alias or \
transport (show, set, del, passwd, enable, disable); 75 temporary failure (database down, try \
again; or the connection lost after a write was sent: outcome unknown, check with `vmailctl \
export`); 78 configuration (vmail.toml, or a database \
that needs `vmailctl migrate`: a missing column, or one too narrow for the value); 2 anything else (bad input, already exists).\n\
Under --json, an error is one object on stdout, {\"ok\": false, \"error\": ..., \"status\": N}, \
and nothing on stderr."
)]
pub struct Cli {
    /// Configuration file [default: $VMAIL_CONFIG, else /etc/vmail/vmail.toml if present, else built-in defaults on SQLite]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the settings that differ from the built-in defaults (secrets masked) and exit,
    /// like `doveconf -n` / `postconf -n`; exit 78 when the configuration is invalid.
    #[arg(long)]
    pub check: bool,
    /// With --check: print every setting, defaults included (like `doveconf -a`).
    #[arg(short = 'a', long = "all", requires = "check")]
    pub all: bool,
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
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            vmail_directory::Map::ALL.map(vmail_directory::Map::name)
        ))]
        map: String,
        /// The key Postfix would ask, e.g. an address or a domain.
        key: String,
    },
    /// Authentication checks.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// List the stored addresses and domains vmail matches differently from the classic
    /// `mysql:` maps (spaces, accents, case, invalid keys); run it before the switch.
    /// Exit 0 when every row is matched, 1 when some row never is.
    Audit,
    /// Tell running vmail-lookupd, vmail-authd and vmail-lmtpd to reload their configuration
    /// and flush their caches (SIGHUP to the daemons holding lookupd.pid_file,
    /// authd.pid_file and lmtpd.pid_file; the pid in a stale file is left alone; authd keeps
    /// its failure penalties). Commands that change data do this themselves.
    Flush,
    /// Write every domain, user (with its password hash), alias and transport to stdout as
    /// JSON lines, one object per row with a "type" field (domain, user, alias, transport).
    /// The output holds password hashes: keep it as private as the database.
    Export,
    /// Read rows as `export` writes them (from FILE, or stdin) and add them in one
    /// transaction: all rows or none. A row that already exists is an error (nothing is
    /// imported) unless --replace. Each user's hash must have a {SCHEME} vmail knows, or
    /// parse under [passwords] default_scheme without one (bare DES or MD5-crypt of classic
    /// databases); else nothing is imported, exit 65. Moving a directory: `vmailctl -c
    /// old.toml export | vmailctl -c new.toml import` (run `init` on the new database first).
    Import {
        /// JSON lines file [default: stdin].
        file: Option<PathBuf>,
        /// Overwrite rows that exist with the imported ones.
        #[arg(long)]
        replace: bool,
        /// Import users whose hash authd cannot use (empty, unknown scheme) as they are,
        /// with a warning each: they receive mail, and no login succeeds, as in the
        /// database they were exported from. Without it such a row refuses the import.
        #[arg(long)]
        keep_unusable_hashes: bool,
    },
    /// Hash a password read from the terminal or stdin (like `doveadm pw`).
    Pw {
        /// Scheme [default: passwords.hash_scheme]
        #[arg(long, short = 's')]
        scheme: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a domain (its users, aliases and transport are added separately).
    Add {
        /// Domain name, e.g. example.org.
        domain: String,
    },
    /// Delete a domain; refuses while it has users or aliases unless --force.
    Del {
        /// Domain name.
        domain: String,
        /// Also delete the domain's users, aliases and transport.
        #[arg(long)]
        force: bool,
    },
    /// List the domains (disabled ones marked).
    List,
    /// Disable a domain: it answers nothing in any map and its users cannot log in (needs
    /// `vmailctl migrate` on a classic database; exit 78 without it).
    Disable {
        /// Domain name.
        domain: String,
    },
    /// Enable a disabled domain again.
    Enable {
        /// Domain name.
        domain: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user; the password is asked on the terminal or read from stdin.
    Add {
        /// The user's address (user@domain; the domain must exist).
        email: String,
        /// Quota in bytes (needs `vmailctl migrate` on a classic database).
        #[arg(long)]
        quota: Option<u64>,
        /// Read an already hashed password (e.g. `{SHA512-CRYPT}$6$...`, from `vmailctl pw`
        /// or another server) from stdin instead of a password; it must be of a known scheme.
        #[arg(long)]
        hashed: bool,
    },
    /// Delete a user (its Maildir is left on disk).
    Del {
        /// The user's address.
        email: String,
    },
    /// List users (disabled ones marked).
    List {
        /// Only the users of this domain.
        domain: Option<String>,
    },
    /// Show a user as the daemons see it: every field but the password hash.
    /// Exit 67 when there is no such user.
    Show {
        /// The user's address.
        email: String,
    },
    /// Change a user's quota, services and/or active flag (several at once; the columns come
    /// from `vmailctl migrate`, exit 78 without them).
    #[command(
        arg_required_else_help = true,
        group(ArgGroup::new("change").required(true).multiple(true).args(["quota", "services", "active"]))
    )]
    Set {
        /// The user's address.
        email: String,
        /// Quota in bytes; 0 removes the limit.
        #[arg(long)]
        quota: Option<u64>,
        /// Services the user may use, comma-separated (e.g. `imap,smtp`), or `all`.
        #[arg(long, value_name = "LIST")]
        services: Option<String>,
        /// Whether the user may receive mail and log in.
        #[arg(long, value_enum)]
        active: Option<YesNo>,
    },
    /// Set a new password (terminal prompt or stdin).
    Passwd {
        /// The user's address.
        email: String,
        /// Read an already hashed password from stdin (see `user add --hashed`).
        #[arg(long)]
        hashed: bool,
    },
    /// Disable a user without deleting it (mail is rejected, logins fail).
    Disable {
        /// The user's address.
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's address.
        email: String,
    },
}

/// `--active yes|no`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum YesNo {
    /// Enabled.
    Yes,
    /// Disabled.
    No,
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add destinations to SOURCE (user@domain, or @domain for a catch-all; a destination
    /// @otherdomain on source @domain makes domain an alias domain).
    Add {
        /// user@domain, or @domain for a catch-all.
        source: String,
        /// Addresses to forward to (@otherdomain for an alias domain).
        #[arg(required = true)]
        destinations: Vec<String>,
    },
    /// Remove one destination, or the whole alias when none is given.
    Del {
        /// user@domain or @domain.
        source: String,
        /// The destination to remove; all of them when omitted.
        destination: Option<String>,
    },
    /// List aliases and their destinations.
    List {
        /// Only the aliases of this domain.
        domain: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TransportCmd {
    /// Route a domain through a transport (e.g. `lmtp:unix:private/dovecot-lmtp`).
    Set {
        /// Domain name.
        domain: String,
        /// Postfix transport, e.g. `lmtp:unix:private/dovecot-lmtp` or `smtp:[relay]:25`.
        transport: String,
    },
    /// Remove a domain's transport (exit 67 when it has none).
    Del {
        /// Domain name.
        domain: String,
    },
    /// List the transports.
    List,
}

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Check USER's password (terminal prompt or stdin) as authd would.
    /// Exit 0 success, 1 failure, 75 temporary failure.
    Test {
        /// The login (user@domain).
        user: String,
        /// Service to check permission for (smtp, imap, pop3).
        #[arg(long, default_value = "imap")]
        service: String,
    },
}
