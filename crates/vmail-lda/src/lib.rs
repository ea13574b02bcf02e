//! vmail-lda: the delivery agent Postfix's pipe(8) runs once per recipient, replacing
//! `dovecot deliver`. It resolves the recipient through the vmail directory and writes the
//! message durably into the user's Maildir. It never loses a message and never turns a
//! temporary problem into a bounce: anything unexpected (including a panic) exits 75.
//!
//! master.cf: `vmail unix - n n - - pipe flags=DRhu user=vmail:vmail
//! argv=/usr/bin/vmail-lda -f ${sender} -a ${original_recipient} -d ${recipient}`
//!
//! Two programs share this library. Postfix starts one per message, and a process's start-up
//! cost grows with the size of its binary (relocations, first-touch page faults: ~1 ms of a
//! ~5 ms delivery on a small VM), so `vmail-lda` links no database code: it asks lookupd
//! (`[lda] lookupd`) and, when that cannot answer, replaces itself (exec, stdin untouched)
//! with `vmail-lda-direct` (crate `vmail-lda-direct`), which also reads the database itself.
//! This crate does not depend on `vmail-directory`: the record and the address rules come
//! from `vmail-record`.

mod argv;
mod headers;
mod location;
pub mod outcome;
pub mod resolve;
mod sieve;
pub mod timing;

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;

use clap::Parser;
use vmail_config::Config;
use vmail_record::mailbox::PathGuard;
use vmail_record::{Address, AddressPolicy, RecipientRecord};

pub use outcome::Outcome;

/// The options dovecot-lda users already have in master.cf; the ones that only make sense
/// for Dovecot's own configuration are accepted and ignored, so switching needs only a new
/// path in `argv=`.
#[derive(Parser, Debug, PartialEq, Default)]
#[command(
    name = "vmail-lda",
    version,
    about = "Deliver one message from stdin into a vmail user's Maildir (for Postfix pipe(8))."
)]
pub struct Args {
    /// Recipient address (Postfix: ${recipient}).
    #[arg(short = 'd', value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// Envelope sender (Postfix: ${sender}); used for Return-Path when Postfix did not add one.
    #[arg(short = 'f', value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// Original recipient (Postfix: ${original_recipient}); logged only.
    #[arg(short = 'a', value_name = "ADDRESS")]
    pub original_recipient: Option<String>,
    /// Maildir++ folder to deliver into when it exists (dovecot-lda -m); INBOX otherwise.
    #[arg(short = 'm', value_name = "FOLDER")]
    pub folder: Option<String>,
    /// vmail configuration file.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// dovecot-lda's config file option: accepted and ignored.
    #[arg(short = 'c', value_name = "DOVECOT_CONF", hide = true)]
    pub dovecot_config: Option<PathBuf>,
    /// dovecot-lda setting overrides: accepted and ignored.
    #[arg(short = 'o', value_name = "KEY=VALUE", hide = true)]
    pub dovecot_option: Vec<String>,
    /// dovecot-lda flags with no meaning here: accepted and ignored.
    #[arg(short = 'e', hide = true)]
    pub dovecot_e: bool,
    #[arg(short = 'k', hide = true)]
    pub dovecot_k: bool,
    /// Not on the command line: the caller answers per recipient (vmail-lmtpd), so a
    /// message Dovecot's LDA refuses (a Sieve `reject`) comes back as
    /// [`Outcome::Rejected`] with its reason, for the caller's 5xx, instead of Dovecot
    /// mailing a rejection itself: it gets `-e` and its stderr is read.
    #[arg(skip)]
    pub reject_reason: bool,
}

/// vmail-lda's command line as clap defines it (the fast path in `argv` only agrees with it):
/// what vmail-doc renders as the man page and shell completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Marks a process started by [`exec_direct`].
const EXECED_ENV: &str = "VMAIL_LDA_EXECED";

/// How a recipient is resolved when lookupd cannot answer (none configured, or nothing
/// listening): `vmail_lda_direct::from_directory` or [`exec_direct`].
pub type Fallback = fn(&Config, &str) -> Result<RecipientRecord, Outcome>;

/// Entry point: returns the process exit status. Prints one line (with an enhanced status
/// code) on failure, which Postfix logs and puts into the DSN.
pub fn main(argv: impl IntoIterator<Item = OsString>, fallback: Fallback) -> i32 {
    timing::start();
    // A panic must defer, not bounce (Rust's panic exit status 101 would be a failure).
    std::panic::set_hook(Box::new(|info| {
        eprintln!("4.3.0 vmail-lda internal error, will retry: {info}");
        std::process::exit(outcome::sysexits::EX_TEMPFAIL);
    }));
    let argv: Vec<OsString> = argv.into_iter().collect();
    let parsed = match argv::parse(&argv) {
        Some(args) => Ok(args),
        None => Args::try_parse_from(&argv),
    };
    let outcome = match parsed {
        Ok(args) => {
            timing::mark("args");
            run(&args, &mut std::io::stdin().lock(), fallback)
        }
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            print!("{e}");
            return 0;
        }
        Err(e) => Outcome::Misconfigured(first_line(&e.to_string())),
    };
    timing::mark("teardown");
    let msg = outcome.message();
    if !msg.is_empty() {
        println!("{msg}");
    }
    if let Some(t) = timing::report() {
        eprintln!("{t}");
    }
    outcome.exit_code()
}

/// What std's start-up would have done for a program without a Rust `main` (see
/// `main.rs`), minus the stack-overflow guard: fds 0-2 open (else the first file we open
/// would become stdout or stderr, and a message line could end up in it), and SIGPIPE ignored
/// so that a closed pipe is an error we report rather than a silent death.
pub fn process_setup() {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::signal::{signal, SigHandler, Signal};
    for fd in 0..=2 {
        if fcntl(fd, FcntlArg::F_GETFD) == Err(nix::errno::Errno::EBADF) {
            // open() takes the lowest free number: the one that is missing. A raw open, so
            // that no owning type can ever close it again: it must stay open for the life
            // of the process.
            // SAFETY: a valid C string; the result is only compared.
            let null = unsafe { nix::libc::open(c"/dev/null".as_ptr(), nix::libc::O_RDWR) };
            if null != fd {
                std::process::exit(outcome::sysexits::EX_TEMPFAIL);
            }
        }
    }
    // SAFETY: SIG_IGN installs no handler code; nothing else has touched SIGPIPE yet.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Delivers the message read from `input` as `args` say.
pub fn run(args: &Args, input: &mut dyn Read, fallback: Fallback) -> Outcome {
    let loaded = match vmail_config::load(args.config.as_deref()) {
        Ok(l) => l,
        Err(e) => return Outcome::Misconfigured(e.to_string()),
    };
    timing::mark("config");
    let Some(recipient) = args.recipient.as_deref().filter(|r| !r.is_empty()) else {
        return Outcome::Misconfigured(
            "no recipient: -d ${recipient} is missing in master.cf".into(),
        );
    };
    deliver(&loaded.config, args, recipient, input, fallback)
}

/// The recipient's delivery record: from lookupd when configured and listening, else from
/// `fallback`. `Err` is the outcome to report.
fn resolve(
    config: &Config,
    recipient: &str,
    fallback: Fallback,
) -> Result<RecipientRecord, Outcome> {
    let lda = &config.lda;
    if !lda.lookupd.is_empty() {
        let timeout = std::time::Duration::from_millis(lda.lookupd_timeout_ms);
        let r = resolve::via_lookupd(&lda.lookupd, recipient, timeout);
        timing::mark("lookup");
        return resolved(r, config, recipient, fallback);
    }
    fallback(config, recipient)
}

/// [`Fallback`] of `vmail-lda`: become `<this program>-direct` with the same arguments,
/// environment and (still unread) stdin. Returns only if that fails.
pub fn exec_direct(_: &Config, _: &str) -> Result<RecipientRecord, Outcome> {
    use std::os::unix::process::CommandExt;
    // Set by the exec below: seeing it means `-direct` is this very program again (a
    // symlink to vmail-lda, say), which would exec itself until pipe(8) kills it.
    if std::env::var_os(EXECED_ENV).is_some() {
        return Err(Outcome::Misconfigured(
            "vmail-lda-direct is vmail-lda itself (a symlink?); install the real vmail-lda-direct"
                .into(),
        ));
    }
    let direct = match std::env::current_exe() {
        Ok(exe) => {
            let mut name = exe.file_name().unwrap_or_default().to_os_string();
            name.push("-direct");
            exe.with_file_name(name)
        }
        Err(e) => {
            return Err(Outcome::Misconfigured(format!(
                "cannot find vmail-lda-direct: {e}"
            )))
        }
    };
    timing::mark("exec");
    let err = std::process::Command::new(&direct)
        .args(std::env::args_os().skip(1))
        .env(EXECED_ENV, "1")
        .exec();
    Err(Outcome::Misconfigured(format!(
        "cannot run {} (lookupd not configured or not running): {err}",
        direct.display()
    )))
}

fn deliver(
    config: &Config,
    args: &Args,
    recipient: &str,
    input: &mut dyn Read,
    fallback: Fallback,
) -> Outcome {
    let lda = &config.lda;
    let max_size = max_size(lda);
    let hostname = hostname(lda);
    // With lookupd, the question goes out first and the message is written and fsynced
    // while lookupd answers (see `Taken::stage`); otherwise, or where that cannot be done,
    // the answer comes first and the message is read and written after it.
    let mut early = None;
    let found = match staging_dir(config, args, recipient) {
        Some(dir) => {
            let timeout = std::time::Duration::from_millis(lda.lookupd_timeout_ms);
            match resolve::ask(&lda.lookupd, recipient, timeout) {
                Ok(pending) => {
                    let taken =
                        Taken::stage(&dir, &hostname, args, recipient, config, max_size, input);
                    if matches!(taken, Taken::Staged(..)) {
                        timing::mark("stage");
                    }
                    early = Some(taken);
                    let answer = match pending.answer() {
                        // Cannot come after the question went out; if it ever did, the
                        // input is spent and must not reach the database fallback.
                        resolve::Resolved::Unreachable(why) => resolve::Resolved::Temp(why),
                        answer => answer,
                    };
                    timing::mark("lookup");
                    resolved(answer, config, recipient, fallback)
                }
                // Nothing read yet: a lookupd that is not running means the database.
                Err(answer) => resolved(answer, config, recipient, fallback),
            }
        }
        None => resolve(config, recipient, fallback),
    };
    // The recipient decides first, whatever happened to the early write (a dropped
    // staged file leaves nothing behind).
    let user = match found {
        Ok(rec) => rec,
        Err(outcome) => return outcome,
    };
    deliver_to(config, args, recipient, user, early, input)
}

/// Delivers the message on `input` to `recipient`, whose record the caller has already
/// found (vmail-lmtpd, at RCPT time), with every rule of vmail-lda's own deliveries: a
/// disabled mailbox, the record's check, the loop check, `Return-Path:` and
/// `Delivered-To:`, quota, the Sieve hand-off. `input` is the message with LF line ends,
/// as pipe(8) gives it.
pub fn deliver_record(
    config: &Config,
    args: &Args,
    recipient: &str,
    user: RecipientRecord,
    input: &mut dyn Read,
) -> Outcome {
    deliver_to(config, args, recipient, user, None, input)
}

/// `[lda] max_message_size` as an optional limit.
fn max_size(lda: &vmail_config::LdaConfig) -> Option<u64> {
    (lda.max_message_size > 0).then_some(lda.max_message_size)
}

/// `[lda] hostname`, or the system's.
fn hostname(lda: &vmail_config::LdaConfig) -> String {
    if lda.hostname.is_empty() {
        vmail_maildir::system_hostname()
    } else {
        lda.hostname.clone()
    }
}

/// The delivery once the recipient is known; `early` is what [`Taken::stage`] did while
/// lookupd answered, if anything.
fn deliver_to(
    config: &Config,
    args: &Args,
    recipient: &str,
    user: RecipientRecord,
    early: Option<Taken>,
    input: &mut dyn Read,
) -> Outcome {
    let lda = &config.lda;
    let max_size = max_size(lda);
    let hostname = hostname(lda);
    let ext = user.ext.clone();
    if !user.active {
        return Outcome::Disabled(recipient.to_string());
    }
    // lookupd (or the directory in this process) has checked the row against the base
    // already; its shape is checked again here, because a wrong answer would put the message
    // into someone else's Maildir. Not the base: lookupd's answer decides where mail goes,
    // whatever this program's own `[mailbox]` says.
    if let Err(why) = check_record(&user) {
        eprintln!(
            "vmail-lda: refusing the stored mailbox {:?}: {why}",
            user.email
        );
        return Outcome::Misconfigured(format!("stored mailbox {:?} refused: {why}", user.email));
    }
    let sieve_script = match sieve::active_script(lda, &user.home) {
        Ok(s) => s,
        Err(e) => return Outcome::LocalTrouble(e),
    };
    let maildir = match location::maildir_path(&user.mail, &user.home) {
        Ok(p) => p,
        Err(e) => return Outcome::Misconfigured(format!("user {}: {e}", user.email)),
    };
    let folder = match (&args.folder, &ext) {
        (Some(f), _) if !f.eq_ignore_ascii_case("INBOX") => Some(f.clone()),
        (None, Some(ext)) if lda.folder_from_extension => {
            // "+lists" -> "lists": the delimiter is the first character.
            let mut c = ext.chars();
            c.next();
            Some(c.as_str().to_string()).filter(|s| !s.is_empty())
        }
        _ => None,
    };

    let policy = AddressPolicy::from_config(&config.address);
    // Read the start of the message to see what Postfix prepended and to detect loops,
    // without holding more than the header section (capped) in memory.
    let (prepend, head, staged, facts) =
        match early.unwrap_or_else(|| Taken::head(input, recipient)) {
            Taken::Failed(e) => return Outcome::LocalTrouble(format!("reading the message: {e}")),
            Taken::Staged(staged, prepend, facts) => (prepend, Vec::new(), Some(staged), facts),
            Taken::Head(head, facts) => {
                if head.is_empty() {
                    return Outcome::EmptyMessage;
                }
                let mut prepend = return_path(args, lda, &facts);
                if lda.add_delivered_to && !facts.prepended_delivered_to {
                    prepend.push(("Delivered-To".to_string(), full_recipient(&policy, &user)));
                }
                (prepend, head, None, facts)
            }
        };
    // Been here before (a staged file is dropped, leaving nothing behind).
    if facts.delivered_before(&policy, &mailbox_addresses(&policy, recipient, Some(&user))) {
        return Outcome::Loop(recipient.to_string());
    }
    let quota = user.quota_bytes.map(|bytes| vmail_maildir::Quota {
        max_bytes: Some(bytes),
        max_messages: None,
    });
    let d = vmail_maildir::Delivery {
        maildir: &maildir,
        folder: folder.as_deref(),
        prepend,
        quota,
        max_size,
        hostname: &hostname,
        loop_check: None,
    };
    if sieve_script.is_some() {
        let message = match staged {
            Some(staged) => sieve::Message::Staged(staged),
            None => sieve::Message::Stream(head, input),
        };
        return sieve::deliver(lda, args, &d, message, recipient, &user.email);
    }
    let result = match staged {
        Some(Ok(staged)) => vmail_maildir::deliver_staged(&d, staged),
        // The input is spent: the write's own failure is the outcome, after what the usual
        // delivery checks before reading (a mailbox already full comes first).
        Some(Err(e)) => vmail_maildir::precheck(&d).and(Err(e)),
        None => {
            let mut message = std::io::Cursor::new(head).chain(input);
            vmail_maildir::deliver(&d, &mut message)
        }
    };
    timing::mark("deliver");
    match result {
        Ok(_) => Outcome::Delivered,
        Err(e) => Outcome::of_delivery_error(e, recipient, &lda.over_quota),
    }
}

/// The addresses a `Delivered-To:` for this delivery can carry, folded as the directory folds
/// them: a message that has one already came back (a loop). `-d`, which is what pipe(8)'s `D`
/// flag writes (extension included); once the directory has answered (`user`), also what the
/// LDA writes itself ([`full_recipient`]). Only the full recipient, as Postfix's virtual(8)
/// and local(8) compare: a message delivered to `alice@` that alice redirects to her own
/// `alice+archive@` is no loop, while one back at `alice+lists@` after a delivery there is.
fn mailbox_addresses(
    policy: &AddressPolicy,
    recipient: &str,
    user: Option<&RecipientRecord>,
) -> Vec<Address> {
    let mut all: Vec<Address> = policy.parse(recipient).into_iter().collect();
    if let Some(user) = user {
        all.extend(policy.parse(&full_recipient(policy, user)));
    }
    all
}

/// The recipient this delivery is for, as the LDA writes it into `Delivered-To:` when
/// pipe(8)'s `D` flag did not: the stored address with the extension it was reached
/// through, so that the line is what the loop check compares (issue 15 item 8: writing the
/// bare stored address and comparing `-d` let a loop through `alice+lists@` run until
/// Postfix's hop limit).
fn full_recipient(policy: &AddressPolicy, user: &RecipientRecord) -> String {
    match (&user.ext, policy.parse(&user.email)) {
        (Some(ext), Some(stored)) => stored.with_extension(ext),
        _ => user.email.clone(),
    }
}

/// `Return-Path:` from `-f`, unless the message has one (pipe(8)'s `R` flag).
fn return_path(
    args: &Args,
    lda: &vmail_config::LdaConfig,
    facts: &headers::HeaderFacts,
) -> Vec<(String, String)> {
    match &args.sender {
        Some(s) if lda.add_return_path && !facts.has_return_path => {
            vec![("Return-Path".to_string(), format!("<{s}>"))]
        }
        _ => Vec::new(),
    }
}

/// The message as far as it has been taken from stdin.
enum Taken {
    /// Reading failed.
    Failed(std::io::Error),
    /// The header section and what it says; the rest is still on stdin.
    Head(Vec<u8>, headers::HeaderFacts),
    /// The whole message, staged with these prepended fields (or the error of writing it,
    /// which spent the input), and what its header section said.
    Staged(
        Result<vmail_maildir::Staged, vmail_maildir::Error>,
        Vec<(String, String)>,
        headers::HeaderFacts,
    ),
}

impl Taken {
    /// Reads the header section.
    fn head(input: &mut dyn Read, recipient: &str) -> Taken {
        let mut head = Vec::with_capacity(8192);
        match read_head(input, &mut head) {
            Ok(()) => {
                let facts = headers::examine(&head, recipient);
                Taken::Head(head, facts)
            }
            Err(e) => Taken::Failed(e),
        }
    }

    /// Reads the header section and, when nothing written depends on the answer
    /// (`Delivered-To:` is there already, as pipe(8)'s `D` flag puts it) and the message
    /// does not loop to `-d`, writes the whole message into a `tmp/` file of `maildir`.
    /// (Whether it loops to the mailbox's other addresses is only known from the answer.)
    fn stage(
        maildir: &std::path::Path,
        hostname: &str,
        args: &Args,
        recipient: &str,
        config: &Config,
        max_size: Option<u64>,
        input: &mut dyn Read,
    ) -> Taken {
        let lda = &config.lda;
        let (head, facts) = match Taken::head(input, recipient) {
            Taken::Head(head, facts) => (head, facts),
            other => return other,
        };
        let policy = AddressPolicy::from_config(&config.address);
        let looped = facts.delivered_before(&policy, &mailbox_addresses(&policy, recipient, None));
        let depends_on_answer = lda.add_delivered_to && !facts.prepended_delivered_to;
        if head.is_empty() || looped || depends_on_answer {
            return Taken::Head(head, facts);
        }
        let stage = match vmail_maildir::Stage::create(maildir, hostname) {
            Ok(stage) => stage,
            // Nothing is spent: deliver as usual after the answer.
            Err(_) => return Taken::Head(head, facts),
        };
        let prepend = return_path(args, lda, &facts);
        let mut message = std::io::Cursor::new(head).chain(input);
        Taken::Staged(
            stage.write(&prepend, max_size, &mut message),
            prepend,
            facts,
        )
    }
}

/// Where to stage the message while lookupd answers: the Maildir the configured templates
/// give the recipient, if its `tmp/` exists (the usual case: a user who has had mail
/// before), so that the staged file is simply linked into place. `None` without
/// lookupd, for `-m` deliveries, or when that directory does not exist: the message is
/// then written after the answer. A wrong guess costs a copy, never a wrong delivery:
/// where the message goes is decided by the answer alone.
fn staging_dir(config: &Config, args: &Args, recipient: &str) -> Option<PathBuf> {
    if config.lda.lookupd.is_empty() || args.folder.is_some() {
        return None;
    }
    // The directory's own address rules: case folding, the extension split.
    let policy = AddressPolicy::from_config(&config.address);
    let (user, _) = policy.parse(recipient)?.base(&policy);
    let m = &config.mailbox;
    let home = vmail_config::expand_template(&m.home, &user.local, &user.domain);
    let mail = vmail_config::expand_template(&m.mail, &user.local, &user.domain);
    // `alice/.@example.org` would stage in alice's Maildir.
    PathGuard::new(m)
        .check(&user.local, &user.domain, &home, &mail)
        .ok()?;
    let maildir = location::maildir_path(&mail, &home).ok()?;
    maildir.join("tmp").is_dir().then_some(maildir)
}

/// The directory's reader check ([`PathGuard`]) on a delivery record, below any base.
fn check_record(rec: &RecipientRecord) -> Result<(), String> {
    let guard = PathGuard::any_base();
    match rec.email.rsplit_once('@') {
        Some((local, domain)) => guard.check(local, domain, &rec.home, &rec.mail),
        // A custom query's login name: the paths are what matters.
        None => guard.check_paths(&rec.home, &rec.mail),
    }
}

/// lookupd's answer as the delivery's recipient, or the outcome that ends the delivery.
fn resolved(
    answer: resolve::Resolved,
    config: &Config,
    recipient: &str,
    fallback: Fallback,
) -> Result<RecipientRecord, Outcome> {
    match answer {
        resolve::Resolved::Found(rec) => Ok(rec),
        resolve::Resolved::Unknown => Err(Outcome::UnknownUser(recipient.into())),
        resolve::Resolved::Temp(why) => Err(Outcome::DirectoryDown(why)),
        // lookupd stopped (or restarting): the database may well be fine.
        resolve::Resolved::Unreachable(_) => fallback(config, recipient),
    }
}

/// How much of the message start is examined for trace headers: their whole section when
/// it is smaller, which it nearly always is.
const HEAD_LIMIT: usize = 256 * 1024;

/// Reads until the end of the header section (an empty line), `HEAD_LIMIT`, or EOF.
fn read_head(input: &mut dyn Read, head: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    while head.len() < HEAD_LIMIT {
        let n = match input.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&chunk[..n]);
        if head.starts_with(b"\n")
            || head.starts_with(b"\r\n")
            || head.windows(2).any(|w| w == b"\n\n")
            || head.windows(4).any(|w| w == b"\r\n\r\n")
        {
            return Ok(());
        }
    }
    Ok(())
}
