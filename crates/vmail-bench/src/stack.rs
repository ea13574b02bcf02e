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

pub(crate) mod load;
pub(crate) mod setup;
mod trivial_map;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmail_test_support::postfix::PrivatePostfix;
use vmail_test_support::TestDb;

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
    /// Messages in the delivery figure.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Parallel SMTP sessions in the delivery figure (smtp-source -s).
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Mailboxes the messages are spread over.
    #[arg(long, default_value_t = 100)]
    mailboxes: usize,
    /// Message size in bytes (smtp-source -l).
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// Users in the database.
    #[arg(long, default_value_t = 1000)]
    users: usize,
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

/// One cell of the table: a rate, or why there is none.
pub(crate) type Cell = Result<f64, String>;

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

pub(crate) fn fmt_rate(c: &Cell) -> String {
    match c {
        Ok(v) if *v >= 100.0 => format!("{v:.0}"),
        Ok(v) => format!("{v:.1}"),
        Err(_) => "error".into(),
    }
}

pub(crate) fn fmt_ratio(a: &Cell, b: &Cell) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) if *b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

pub(crate) fn cell(r: &Result<f64>) -> Cell {
    r.as_ref().map(|v| *v).map_err(|e| format!("{e:#}"))
}

/// The last few warnings and errors in a log, to say why a figure failed.
pub(crate) fn log_hint(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["warning:", "fatal:", "error:", "Error:", "panic"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    let tail = &bad[bad.len().saturating_sub(5)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "\n    last problems in {}:\n    {}",
            path.display(),
            tail.join("\n    ")
        )
    }
}

/// The machine's CPU time so far (`/proc/stat`, all CPUs, in clock ticks): to tell a round
/// that was slow because the machine had less CPU (stolen by the hypervisor) from one whose
/// system needed more CPU per operation.
struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let f = crate::cpu::machine()?;
        let busy = f[0] + f[1] + f[2] + f[5] + f[6];
        Some(CpuTimes {
            busy,
            steal: f[7],
            total: f.iter().sum(),
        })
    }

    /// `   cpu 93% busy, 2% stolen, 612 µs CPU/op` for the time since `b` and `ops`
    /// operations (the warm-up's included: an estimate from the measured rate).
    fn since(&self, b: &CpuTimes, ops: f64) -> String {
        let total = self.total.saturating_sub(b.total).max(1) as f64;
        let busy = self.busy.saturating_sub(b.busy) as f64;
        let steal = self.steal.saturating_sub(b.steal) as f64;
        let per_op = if ops > 0.0 {
            format!(
                ", {:.0} µs CPU/op",
                busy / crate::cpu::ticks_per_sec() / ops * 1e6
            )
        } else {
            String::new()
        };
        format!(
            "   cpu {:.0}% busy, {:.0}% stolen{per_op}",
            busy / total * 100.0,
            steal / total * 100.0
        )
    }
}

/// Measures each of `systems` once per round for `rounds` rounds, rotating which goes first,
/// so that no system always runs right after a phase change or always last while the
/// machine's speed drifts. Per system: its rounds' figures (printed round by round under
/// `names`), or its first failure.
pub(crate) fn in_rounds_each<S>(
    names: &[&str],
    systems: &[S],
    rounds: usize,
    mut measure: impl FnMut(&S) -> Result<crate::Figure>,
) -> Vec<Result<Vec<crate::Figure>>> {
    let n = systems.len();
    let mut acc: Vec<Result<Vec<crate::Figure>>> = (0..n).map(|_| Ok(Vec::new())).collect();
    for r in 0..rounds.max(1) {
        for k in 0..n {
            let i = (r + k) % n;
            let Ok(done) = &mut acc[i] else { continue };
            let (t, before) = (Instant::now(), CpuTimes::now());
            match measure(&systems[i]) {
                Ok(f) => {
                    let cpu = match (before, CpuTimes::now()) {
                        (Some(b), Some(a)) => a.since(&b, f.per_sec * t.elapsed().as_secs_f64()),
                        _ => String::new(),
                    };
                    println!(
                        "    round {} {:<38} {:>9.1}/s{cpu}",
                        r + 1,
                        names.get(i).copied().unwrap_or("?"),
                        f.per_sec
                    );
                    done.push(f);
                }
                Err(e) => acc[i] = Err(e),
            }
        }
    }
    acc
}

/// [`in_rounds_each`], and per system the mean of its rounds' rates and latencies.
pub(crate) fn in_rounds<S>(
    names: &[&str],
    systems: &[S],
    rounds: usize,
    measure: impl FnMut(&S) -> Result<crate::Figure>,
) -> Vec<Result<crate::Figure>> {
    in_rounds_each(names, systems, rounds, measure)
        .into_iter()
        .map(|a| a.map(|v| mean_figure(&v)))
        .collect()
}

/// The mean of figures' rates and latencies.
pub(crate) fn mean_figure(v: &[crate::Figure]) -> crate::Figure {
    let k = v.len().max(1) as f64;
    crate::Figure {
        per_sec: v.iter().map(|f| f.per_sec).sum::<f64>() / k,
        p50_us: v.iter().map(|f| f.p50_us).sum::<f64>() / k,
        p99_us: v.iter().map(|f| f.p99_us).sum::<f64>() / k,
    }
}

/// Prints one measurement as it finishes, so a long run shows progress; on failure with the
/// last problems `log` reported.
pub(crate) fn report(what: &str, r: &Result<crate::Figure>, log: &std::path::Path) -> Result<f64> {
    match r {
        Ok(f) => {
            println!(
                "  {what:<44} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
                f.per_sec,
                f.p50_us / 1000.0,
                f.p99_us / 1000.0
            );
            Ok(f.per_sec)
        }
        Err(e) => {
            println!("  {what:<44} FAILED: {e:#}{}", log_hint(log));
            bail!("{e:#}")
        }
    }
}

pub(crate) fn run_cmd(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn machine(db: &TestDb) -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    vec![
        format!("date: {}", run_cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        format!(
            "machine: nproc {cpus}, CPU \"{model}\", {mem_gib:.0} GiB, Linux {kernel}, Debian {}",
            std::fs::read_to_string("/etc/debian_version")
                .unwrap_or_default()
                .trim()
        ),
        format!(
            "software: Postfix {}, Dovecot {}, MariaDB {}, cyrus saslauthd {}",
            run_cmd("postconf", &["-d", "-h", "mail_version"]),
            run_cmd("dovecot", &["--version"]),
            db.sql("SELECT VERSION();").trim(),
            run_cmd("sh", &["-c", "saslauthd -v 2>&1 | head -1"]).trim_start_matches("saslauthd ")
        ),
        format!(
            "load average at start: {}",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]
}

/// Fills the database with the classic tables: `users` user0.. with the how-to's
/// `ENCRYPT()` (DES) hashes, `forwardings` alias0.. -> user0.., one domain, no transport rows.
pub(crate) fn populate(db: &TestDb, users: usize, aliases: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        vmail_directory::Directory::open(&db.config())
            .await?
            .init(true)
            .await?;
        anyhow::Ok(())
    })?;
    // The how-to's varchar(20) holds only DES; SHA512-CRYPT needs more (vmailctl migrate
    // widens it the same way).
    let mut sql = format!(
        "ALTER TABLE users MODIFY password varchar(255) NOT NULL;\n\
         INSERT INTO domains (domain) VALUES ('{DOMAIN}');\n"
    );
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|n| format!("('{}', ENCRYPT('{}'))", login(*n), password(*n)))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO users (email, password) VALUES {};\n",
            rows.join(",")
        ));
    }
    if aliases > 0 {
        let rows: Vec<String> = (0..aliases)
            .map(|k| format!("('{}', '{}')", alias(k), login(k)))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO forwardings (source, destination) VALUES {};\n",
            rows.join(",")
        ));
    }
    db.sql(&sql);
    let des = db.sql("SELECT COUNT(*) FROM users WHERE LENGTH(password) = 13;");
    if des.trim() != users.to_string() {
        bail!("ENCRYPT() did not give DES hashes for every user ({des} of {users})");
    }
    Ok(())
}

/// Replaces every hash by a SHA512-CRYPT one (`$6$`, 5000 rounds, no `{SCHEME}` prefix, as
/// `mkpasswd -m sha-512` or `doveadm pw -s SHA512-CRYPT` without the prefix; pam_mysql's
/// crypt(3) and Dovecot's `CRYPT` read it as such).
pub(crate) fn rehash_sha512(db: &TestDb, users: usize) -> Result<()> {
    // Bare `$6$`: vmail-passwd writes the `{SHA512-CRYPT}` prefix, pam_mysql would not
    // understand it.
    let hashes: Vec<(usize, String)> = crate::sha512_hashes(users, password)?
        .into_iter()
        .map(|(n, h)| (n, h.trim_start_matches("{SHA512-CRYPT}").to_string()))
        .collect();
    let mut sql = String::from(
        "CREATE TEMPORARY TABLE h (email varchar(80) PRIMARY KEY, password varchar(255));\n",
    );
    for chunk in hashes.chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|(n, h)| format!("('{}', '{}')", login(*n), h.replace('\'', "''")))
            .collect();
        sql.push_str(&format!("INSERT INTO h VALUES {};\n", rows.join(",")));
    }
    sql.push_str("UPDATE users u JOIN h ON h.email = u.email SET u.password = h.password;\n");
    db.sql(&sql);
    let n = db.sql("SELECT COUNT(*) FROM users WHERE password LIKE '$6$%';");
    if n.trim() != users.to_string() {
        bail!("only {} of {users} users got a SHA512-CRYPT hash", n.trim());
    }
    Ok(())
}

pub fn run(a: StackArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: private Postfix and Dovecot masters, saslauthd and /etc/pam.d need it");
    }
    let want = |f: &str| a.only.iter().any(|o| o == f);
    let bin_dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("vmail-bench has no directory")?
            .to_path_buf(),
    };
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
    let users = a.users.max(a.mailboxes).max(1);
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let mut rows: Vec<Row> = Vec::new();

    if want("delivery") {
        println!(
            "delivery: smtp-source, {} messages of {} bytes, {} sessions in parallel, one message per connection, {} mailboxes",
            a.messages, a.size, a.sessions, a.mailboxes
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
            let mbx = a.mailboxes;
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
                a.sessions,
                a.mailboxes,
                a.mailboxes,
                a.size,
                timeout,
                &mut counter,
            )
            .and_then(|_| {
                load::deliver(
                    port,
                    a.sessions,
                    a.messages,
                    a.mailboxes,
                    a.size,
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
                a.messages, a.sessions
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
    if a.hold > 0 {
        println!("holding the systems up for {} s", a.hold);
        std::thread::sleep(Duration::from_secs(a.hold));
    }
    drop(rt);
    drop(ceiling);
    drop(vmail);
    drop(classic);
    drop(env);
    drop(work);
    Ok(())
}
