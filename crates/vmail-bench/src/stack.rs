//! `vmail-bench stack`: the whole mail server against the classic setup (issue 6). On one
//! machine, in one run, with the same Postfix and Dovecot binaries and the same MariaDB
//! data, it measures
//! - SMTP -> Maildir messages/s (smtp-source, one message per connection),
//! - RCPT verifications/s (known and unknown recipients),
//! - SMTP AUTH/s (a new connection per AUTH, `AUTH PLAIN`), with the how-to's DES hashes
//!   and with SHA512-CRYPT hashes, credential caches on and off,
//! - IMAP logins/s (connect, LOGIN, LOGOUT),
//!
//! for the classic stack, the vmail stack and a ceiling (the same Postfix or Dovecot, wired
//! the way vmail is, with a backend that does no work: for RCPT a trivial `socketmap:`
//! server answering from memory), and prints a table with the ratios; the RCPT figure of
//! Postfix with `texthash:` tables (in smtpd, no IPC) is shown for reference. See
//! `stack/setup.rs` for what each system is, and docs/BENCHMARKS.md for how to read the table.

pub(crate) mod data;
pub(crate) mod load;
pub(crate) mod setup;
mod trivial_map;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmail_test_support::postfix::PrivatePostfix;
use vmail_test_support::TestDb;

use crate::host::machine;
use crate::rounds::{cell, fmt_rate, fmt_ratio, in_rounds, log_hint, report, Cell};
pub(crate) use data::{populate, rehash_sha512};
pub(crate) use setup::Daemon;
use setup::{Ceiling, Classic, Env, LogTail, MailUser, Vmail, CEILING_TRANSPORT};

pub const DOMAIN: &str = "example.org";

pub fn login(n: usize) -> String {
    format!("user{n}@{DOMAIN}")
}

pub fn password(n: usize) -> String {
    format!("secret-{n}")
}

pub fn alias(k: usize) -> String {
    format!("alias{k}@{DOMAIN}")
}

#[derive(clap::Args)]
pub struct StackArgs {
    /// Seconds measured per rate figure (RCPT, AUTH, IMAP), after a 1 s warm-up.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[command(flatten)]
    load: load::SmtpLoad,
    /// Aliases (forwardings rows) in the database.
    #[arg(long, default_value_t = 100)]
    aliases: usize,
    /// Concurrent clients for RCPT, AUTH and IMAP.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Rounds of the RCPT and IMAP figures: each system is measured once per round, in an
    /// order that rotates every round; its rate is the mean of its rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Figures to run: any of delivery, rcpt, auth, imap.
    #[arg(long, value_delimiter = ',', default_value = "delivery,rcpt,auth,imap")]
    only: Vec<String>,
    /// Directory to work in (a temp dir is made inside it; Maildirs go there); default $TMPDIR.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where vmail-lookupd, vmail-authd and vmail-lda are; default: next to vmail-bench.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep every system running this many seconds after the figures (to look at them).
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

#[derive(Clone, Copy)]
enum Target {
    /// vmail >= 2 x classic.
    Twice,
    /// vmail >= classic and >= 0.9 x ceiling.
    Near,
    /// No target: a reference figure, shown for information.
    Reference,
}

struct Row {
    figure: String,
    classic: Cell,
    vmail: Cell,
    ceiling: Cell,
    target: Target,
}

impl Row {
    fn verdict(&self) -> String {
        let (Ok(v), Ok(c)) = (&self.vmail, &self.classic) else {
            return "n/a".into();
        };
        match self.target {
            Target::Reference => "none (reference only)".into(),
            Target::Twice => {
                if v / c >= 2.0 {
                    "met (>= 2x classic)".into()
                } else {
                    format!("missed (>= 2x classic; {:.2}x)", v / c)
                }
            }
            Target::Near => {
                let mut missed = Vec::new();
                if v < c {
                    missed.push("slower than classic".to_string());
                }
                match &self.ceiling {
                    Ok(x) if *v < 0.9 * x => missed.push(format!("{:.2} of ceiling", v / x)),
                    Ok(_) => {}
                    Err(_) => missed.push("no ceiling".into()),
                }
                if missed.is_empty() {
                    "met".into()
                } else {
                    format!("missed: {}", missed.join(", "))
                }
            }
        }
    }
}

pub fn run(a: StackArgs) -> Result<()> {
    crate::host::require_root(
        "private Postfix and Dovecot masters, saslauthd and /etc/pam.d need it",
    )?;
    let want = |f: &str| a.only.iter().any(|o| o == f);
    let bin_dir = crate::host::bin_dir(a.bin_dir.as_ref())?;
    let bins = ["vmail-lookupd", "vmail-authd", "vmail-lda"].map(|b| bin_dir.join(b));
    for b in &bins {
        if !load::executable(b) {
            bail!(
                "{} not found: scripts/build-release -p vmail-bench -p vmail-lookupd -p vmail-authd",
                b.display()
            );
        }
    }
    for p in [
        "/usr/sbin/saslauthd",
        "/usr/sbin/smtp-source",
        setup::DOVECOT_LDA,
    ] {
        if !load::executable(std::path::Path::new(p)) {
            bail!("{p} is missing (bench/stack installs sasl2-bin, libpam-mysql; scripts/test-deps the rest)");
        }
    }
    if !std::path::Path::new("/lib/x86_64-linux-gnu/security/pam_mysql.so").exists()
        && !std::path::Path::new("/usr/lib/x86_64-linux-gnu/security/pam_mysql.so").exists()
    {
        eprintln!(
            "warning: pam_mysql.so not found where Debian puts it (apt-get install libpam-mysql)"
        );
    }
    let users = a.load.users.max(a.load.mailboxes).max(1);
    let aliases = a.aliases.min(users);
    let dur = Duration::from_secs(a.seconds.max(1));
    let warm = Duration::from_secs(1);
    let conc = a.concurrency.max(1);

    let work = crate::work_dir("vmail-bench-stack", a.dir.as_deref())?;
    vmail_test_support::set_mode(work.path(), 0o755);
    let db = TestDb::create("vmail-bench stack").context("no MariaDB (run scripts/test-deps)")?;
    let began = Instant::now();
    populate(&db, users, aliases)?;
    let [lookupd, authd, lda] = bins;
    let env = Env {
        work: work.path().to_path_buf(),
        user: MailUser::nobody()?,
        db,
        lookupd,
        authd,
        lda,
    };
    let header = machine(&env.db);
    for l in &header {
        println!("{l}");
    }
    println!(
        "setup: {users} users, {aliases} aliases in MariaDB database {}; mail user {}; work dir {}",
        env.db.name,
        env.user.name,
        env.work.display()
    );

    // Each system is dropped (stopped) in reverse order at the end of this function, or on
    // an error, by its guards.
    let mut classic = Classic::start(&env).context("the classic stack")?;
    let vmail = Vmail::start(&env).context("the vmail stack")?;
    let ceiling = Ceiling::start(&env, users, aliases).context("the ceiling")?;
    println!(
        "systems up in {:.1} s: classic smtpd {} / auth {} {} / imap {}; vmail smtpd {} / auth {} {} / imap {}; ceiling smtpd {} / auth {} / imap {} / socketmap rcpt {}",
        began.elapsed().as_secs_f64(),
        classic.postfix.smtp_port,
        classic.auth_port,
        classic.auth_port_nocache,
        classic.dovecot.imap_port,
        vmail.postfix.smtp_port,
        vmail.auth_port,
        vmail.auth_port_nocache,
        vmail.dovecot.imap_port,
        ceiling.postfix.smtp_port,
        ceiling.auth_port,
        ceiling.dovecot.imap_port,
        ceiling.map_rcpt_port
    );
    for n in &vmail.notes {
        println!("vmail: {n}");
    }
    let rt = crate::host::client_runtime()?;
    let mut rows: Vec<Row> = Vec::new();

    if want("delivery") {
        println!(
            "delivery: smtp-source, {} messages of {} bytes, {} sessions in parallel, one message per connection, {} mailboxes",
            a.load.messages, a.load.size, a.load.sessions, a.load.mailboxes
        );
        let timeout = Duration::from_secs(600);
        let mut results = Vec::new();
        for (name, which) in [("classic", 0), ("vmail", 1), ("ceiling", 2)] {
            let (port, log) = match which {
                0 => (
                    classic.postfix.smtp_port,
                    classic.postfix.dir.path().join("maillog"),
                ),
                1 => (
                    vmail.postfix.smtp_port,
                    vmail.postfix.dir.path().join("maillog"),
                ),
                _ => (
                    ceiling.postfix.smtp_port,
                    ceiling.postfix.dir.path().join("maillog"),
                ),
            };
            let mut tail = LogTail::at_end(&log)?;
            let base = match which {
                0 => Some(classic.mail_base.clone()),
                1 => Some(vmail.mail_base.clone()),
                _ => None,
            };
            let mbx = a.load.mailboxes;
            let mut sent = 0usize;
            let mut counter = || -> Result<usize> {
                let news = tail.poll(if base.is_none() {
                    Some(CEILING_TRANSPORT)
                } else {
                    None
                })?;
                if let Some(t) = news.trouble {
                    bail!("Postfix did not deliver: {t}");
                }
                sent += news.sent;
                Ok(match &base {
                    Some(b) => setup::maildir_count(b, mbx),
                    None => sent,
                })
            };
            // Warm-up: one message per mailbox, so Maildirs (and dovecot-lda's indexes)
            // exist before the clock runs.
            let r = load::deliver(
                port,
                a.load.sessions,
                a.load.mailboxes,
                a.load.mailboxes,
                a.load.size,
                timeout,
                &mut counter,
            )
            .and_then(|_| {
                load::deliver(
                    port,
                    a.load.sessions,
                    a.load.messages,
                    a.load.mailboxes,
                    a.load.size,
                    timeout,
                    &mut counter,
                )
            });
            let r = match r {
                Ok(d) => {
                    println!(
                        "  {name:<10} {:>7.1} msgs/s   all queued after {:.1} s, all in Maildir/new (or sent) after {:.1} s",
                        d.per_sec(),
                        d.queued.as_secs_f64(),
                        d.total.as_secs_f64()
                    );
                    Ok(d.per_sec())
                }
                Err(e) => {
                    println!("  {name:<10} FAILED: {e:#}");
                    Err(e)
                }
            };
            results.push(cell(&r));
        }
        let mut it = results.into_iter();
        rows.push(Row {
            figure: format!(
                "SMTP -> Maildir msgs/s ({} msgs, {} sessions)",
                a.load.messages, a.load.sessions
            ),
            classic: it.next().unwrap_or(Err("not run".into())),
            vmail: it.next().unwrap_or(Err("not run".into())),
            ceiling: it.next().unwrap_or(Err("not run".into())),
            target: Target::Twice,
        });
    }

    // The texthash: RCPT figure, for the legend.
    let mut texthash_rcpt: Option<Cell> = None;
    if want("rcpt") {
        println!(
            "RCPT verifications: {conc} sessions, RCPT TO one at a time, 7/10 mailboxes, 1/10 aliases, 2/10 unknown users, RSET every 50; {} rounds, order rotating",
            a.rounds
        );
        let systems = [
            (
                "classic (proxy:mysql: maps)",
                &classic.postfix,
                classic.rcpt_port,
            ),
            (
                "vmail (socketmap: lookupd)",
                &vmail.postfix,
                vmail.rcpt_port,
            ),
            (
                "ceiling (socketmap: trivial map server)",
                &ceiling.map_postfix,
                ceiling.map_rcpt_port,
            ),
            (
                "reference (texthash: maps, no IPC)",
                &ceiling.postfix,
                ceiling.rcpt_port,
            ),
        ];
        let names: Vec<&str> = systems.iter().map(|s| s.0).collect();
        let figures = in_rounds(&names, &systems, a.rounds, |&(_, _, port)| {
            rt.block_on(load::rcpt(port, conc, warm, dur, users, aliases))
        });
        let cells: Vec<Cell> = systems
            .iter()
            .zip(&figures)
            .map(|((name, pf, _), r)| cell(&report(name, r, &pf.dir.path().join("maillog"))))
            .collect();
        let mut it = cells.into_iter();
        let classic_rcpt = it.next().unwrap_or(Err("not run".into()));
        let vmail_rcpt = it.next().unwrap_or(Err("not run".into()));
        let socketmap_rcpt = it.next().unwrap_or(Err("not run".into()));
        let texthash = it.next().unwrap_or(Err("not run".into()));
        rows.push(Row {
            figure: "RCPT verifications/s (ceiling: trivial socketmap server)".into(),
            classic: classic_rcpt.clone(),
            vmail: vmail_rcpt.clone(),
            ceiling: socketmap_rcpt,
            target: Target::Near,
        });
        rows.push(Row {
            figure: "RCPT verifications/s (ceiling column: texthash: in-process tables, no IPC; reference)".into(),
            classic: classic_rcpt,
            vmail: vmail_rcpt,
            ceiling: texthash.clone(),
            target: Target::Reference,
        });
        texthash_rcpt = Some(texthash);
    }

    for scheme in ["DES", "SHA512-CRYPT"] {
        if !want("auth") && !want("imap") {
            break;
        }
        if scheme != "DES" {
            let t = Instant::now();
            rehash_sha512(&env.db, users)?;
            // A fresh saslauthd: its credential cache (-c) keys on the password, not the
            // stored hash, and would keep answering from the DES phase.
            classic.sasl_cached.restart()?;
            classic.sasl_uncached.restart()?;
            println!(
                "hashes now SHA512-CRYPT (5000 rounds) ({:.1} s); saslauthd restarted (empty cache); vmail-authd's cache keys on the stored hash",
                t.elapsed().as_secs_f64()
            );
        }
        if want("auth") {
            println!(
                "SMTP AUTH with {scheme} hashes: {conc} clients, each a new connection: EHLO, AUTH PLAIN, QUIT"
            );
            let auth = |port: u16| move |_c: usize, n: usize| load::smtp_auth(port, n);
            let fig = |name: &str, pf: &PrivatePostfix, port: u16, fill: bool| -> Result<f64> {
                let log = pf.dir.path().join("maillog");
                if fill {
                    let took = rt.block_on(load::each_user_once(conc, users, auth(port)));
                    match took {
                        Ok(t) => println!(
                            "  {name:<44} cache filled: every user once in {:.1} s",
                            t.as_secs_f64()
                        ),
                        Err(e) => {
                            println!(
                                "  {name:<44} FAILED filling the cache: {e:#}{}",
                                log_hint(&log)
                            );
                            return Err(e);
                        }
                    }
                }
                report(
                    name,
                    &rt.block_on(load::timed(conc, warm, dur, users, auth(port))),
                    &log,
                )
            };
            let c_on = fig(
                "classic saslauthd -c + pam_mysql",
                &classic.postfix,
                classic.auth_port,
                true,
            );
            let v_on = fig(
                "vmail-authd (cache on, contrib)",
                &vmail.postfix,
                vmail.auth_port,
                true,
            );
            let x = fig(
                "ceiling: always-OK auth server",
                &ceiling.postfix,
                ceiling.auth_port,
                false,
            );
            let c_off = fig(
                "classic saslauthd + pam_mysql, no -c",
                &classic.postfix,
                classic.auth_port_nocache,
                false,
            );
            let v_off = fig(
                "vmail-authd cache_enabled = false",
                &vmail.postfix,
                vmail.auth_port_nocache,
                false,
            );
            rows.push(Row {
                figure: format!("SMTP AUTH/s, {scheme}, caches on"),
                classic: cell(&c_on),
                vmail: cell(&v_on),
                ceiling: cell(&x),
                target: Target::Near,
            });
            rows.push(Row {
                figure: format!("SMTP AUTH/s, {scheme}, caches off"),
                classic: cell(&c_off),
                vmail: cell(&v_off),
                ceiling: cell(&x),
                target: Target::Near,
            });
        }
        if want("imap") {
            println!(
                "IMAP logins with {scheme} hashes: {conc} clients, each a new connection: LOGIN, LOGOUT; Dovecot auth_cache_size = 0 on all; {} rounds, order rotating",
                a.rounds
            );
            let imap = |port: u16| move |_c: usize, n: usize| load::imap_login(port, n);
            let systems = [
                (
                    "classic Dovecot sql passdb + static userdb",
                    &classic.dovecot,
                ),
                ("vmail Dovecot dict passdb/userdb -> authd", &vmail.dovecot),
                ("ceiling Dovecot static nopassword", &ceiling.dovecot),
            ];
            let names: Vec<&str> = systems.iter().map(|s| s.0).collect();
            let figures = in_rounds(&names, &systems, a.rounds, |(_, dc)| {
                rt.block_on(load::timed(conc, warm, dur, users, imap(dc.imap_port)))
            });
            let cells: Vec<Cell> = systems
                .iter()
                .zip(&figures)
                .map(|((name, dc), r)| cell(&report(name, r, &dc.dir.path().join("dovecot.log"))))
                .collect();
            let mut it = cells.into_iter();
            rows.push(Row {
                figure: format!("IMAP logins/s, {scheme}"),
                classic: it.next().unwrap_or(Err("not run".into())),
                vmail: it.next().unwrap_or(Err("not run".into())),
                ceiling: it.next().unwrap_or(Err("not run".into())),
                target: Target::Near,
            });
        }
    }

    println!();
    for l in &header {
        println!("{l}");
    }
    println!();
    println!("| figure | classic | vmail | ceiling | vmail/classic | vmail/ceiling | target |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.figure,
            fmt_rate(&r.classic),
            fmt_rate(&r.vmail),
            fmt_rate(&r.ceiling),
            fmt_ratio(&r.vmail, &r.classic),
            fmt_ratio(&r.vmail, &r.ceiling),
            r.verdict()
        );
    }
    for r in &rows {
        for (who, c) in [
            ("classic", &r.classic),
            ("vmail", &r.vmail),
            ("ceiling", &r.ceiling),
        ] {
            // A reference row repeats classic and vmail from the row above.
            let repeated = matches!(r.target, Target::Reference) && who != "ceiling";
            if let (Err(e), false) = (c, repeated) {
                println!("{}: {who}: {e}", r.figure);
            }
        }
    }
    let texthash_note = match &texthash_rcpt {
        Some(Ok(v)) => format!(" (texthash: {}/s shown for reference)", fmt_rate(&Ok(*v))),
        Some(Err(_)) => " (texthash: failed)".into(),
        None => String::new(),
    };
    println!(
        "\nclassic: proxy:mysql: maps (how-to queries), saslauthd -a pam -c -r + pam_mysql crypt=1, Dovecot sql passdb + static userdb, dovecot-lda via pipe(8)\n\
         vmail: contrib/ (socketmap maps -> vmail-lookupd, smtpd_sasl_type = dovecot -> vmail-authd, Dovecot dict passdb/userdb -> vmail-authd, vmail-lda via pipe(8))\n\
         ceiling: RCPT: contrib's socketmap: main.cf lines against a trivial socketmap server answering from an in-memory HashMap{texthash_note}; \
         delivery: texthash: maps, pipe(8) to /bin/true; AUTH: always-OK Dovecot-auth server; IMAP: Dovecot static passdb nopassword=y\n\
         reference row: texthash: maps, the tables inside smtpd (no IPC at all); no target\n\
         targets: delivery >= 2x classic; every other figure >= classic and >= 0.9 x ceiling"
    );
    crate::host::hold(a.hold);
    drop(rt);
    drop(ceiling);
    drop(vmail);
    drop(classic);
    drop(env);
    drop(work);
    Ok(())
}
