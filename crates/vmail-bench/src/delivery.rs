//! `vmail-bench delivery` (issue 19): how fast Postfix gets messages into Maildirs through
//! each final-delivery route, side by side in one run (`delivery/systems.rs`): pipe(8) to
//! vmail-lda, Postfix's lmtp client to vmail-lmtpd, to Dovecot 2.3's and 2.4's LMTP (userdb
//! through vmail-authd), and to a discarding LMTP sink (the ceiling). Figures:
//! - **SMTP -> Maildir msgs/s**: smtp-source, one message per connection, `--sessions` at a
//!   time over `--mailboxes` mailboxes (the method of `vmail-bench stack`'s delivery figure):
//!   Postfix's intake is part of it;
//! - **queue -> Maildir msgs/s**: the messages first arrive through an smtpd that puts each
//!   on hold; the clock runs from their release (`postsuper -H ALL`, `postqueue -f`) until
//!   the last is in a Maildir: the delivery agents alone (with qmgr and the transport);
//! - **peak RSS** of the delivering processes at 1 KiB, 1 MiB and 30 MiB messages
//!   (`delivery/rss.rs` says how each is read).
//!
//! Each rate is measured `--rounds` times with the systems' order rotating; the table shows
//! the means and the ratios the issue sets targets for (lmtpd >= 2 x Dovecot's LMTP, >= 0.8 x
//! the sink).

mod accounting;
mod rss;
mod sink;
mod systems;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmail_test_support::root::DEBIAN13_ROOT;
use vmail_test_support::TestDb;

use crate::rounds::{fmt_rate, fmt_ratio, Cell};
use crate::stack::load;
use crate::stack::setup::{maildir_count, Env, MailUser};
use systems::{Bins, Counter, Shared, System, SYSTEMS};

#[derive(clap::Args)]
pub struct DeliveryArgs {
    #[command(flatten)]
    load: load::SmtpLoad,
    /// Rounds of each rate figure (each system once per round, order rotating).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Systems: any of pipe, lmtpd, dovecot23, dovecot24, sink.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pipe,lmtpd,dovecot23,dovecot24,sink"
    )]
    only: Vec<String>,
    /// Figures: any of smtp, drain, rss.
    #[arg(long, value_delimiter = ',', default_value = "smtp,drain,rss")]
    figures: Vec<String>,
    /// Messages per size in the RSS figure: 1 KiB, 1 MiB, 30 MiB.
    #[arg(long, value_delimiter = ',', default_value = "100,20,4")]
    rss_messages: Vec<usize>,
    /// The Debian 13 root with Dovecot 2.4 (docs/testing.md, "Debian 13"; proc mounted).
    #[arg(long, default_value = DEBIAN13_ROOT)]
    root: PathBuf,
    /// contrib/ to take the Dovecot and Lua files from (read at run time).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib"))]
    contrib: PathBuf,
    /// Directory to work in (a temp dir is made inside it); default $TMPDIR.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the vmail binaries are; default: next to vmail-bench.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const TIMEOUT: Duration = Duration::from_secs(900);
const RSS_SIZES: [(usize, &str); 3] = [(1024, "1 KiB"), (1 << 20, "1 MiB"), (30 << 20, "30 MiB")];

/// How many messages `s` has delivered so far.
fn delivered(s: &System, mailboxes: usize) -> usize {
    match &s.counter {
        Counter::Maildir(base) => maildir_count(base, mailboxes),
        Counter::Sink(sink) => sink.count(),
    }
}

/// The first deferral or bounce in `s`'s maillog since `tail` began.
fn trouble(tail: &mut crate::stack::setup::LogTail) -> Result<()> {
    if let Some(t) = tail.poll(None)?.trouble {
        bail!("Postfix did not deliver: {t}");
    }
    Ok(())
}

fn maillog(s: &System) -> PathBuf {
    s.postfix.dir.path().join("maillog")
}

/// Sends `messages` of `size` bytes through `port` and waits until `s` delivered them all.
fn smtp_run(
    s: &System,
    a: &DeliveryArgs,
    messages: usize,
    mailboxes: usize,
    size: usize,
) -> Result<load::Delivery> {
    let mut tail = crate::stack::setup::LogTail::at_end(&maillog(s))?;
    let mut counter = || -> Result<usize> {
        trouble(&mut tail)?;
        Ok(delivered(s, a.load.mailboxes))
    };
    load::deliver(
        s.postfix.smtp_port,
        a.load.sessions,
        messages,
        mailboxes,
        size,
        TIMEOUT,
        &mut counter,
    )
}

/// Files in `dir` and below (Postfix's hold queue is not hashed by default; count anyway).
fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn postfix_tool(s: &System, program: &str, args: &[&str]) -> Result<()> {
    let o = s
        .postfix
        .root
        .command(program)
        .arg("-c")
        .arg(s.postfix.config_dir())
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !o.status.success() {
        bail!("{program} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// Queues `messages` on hold through the hold smtpd, releases them at once and times the
/// delivery of all of them.
fn drain_run(s: &System, a: &DeliveryArgs) -> Result<Duration> {
    let queue = PathBuf::from(s.postfix.postconf(&["-h", "queue_directory"]).trim());
    let hold = queue.join("hold");
    let mut held = || -> Result<usize> { Ok(count_files(&hold)) };
    load::deliver(
        s.hold_port,
        a.load.sessions,
        a.load.messages,
        a.load.mailboxes,
        a.load.size,
        TIMEOUT,
        &mut held,
    )
    .context("fill the hold queue")?;
    let mut tail = crate::stack::setup::LogTail::at_end(&maillog(s))?;
    let base = delivered(s, a.load.mailboxes);
    let cpu0 = crate::cpu::machine();
    let postfix_pid = accounting::pid_in(&queue.join("pid/master.pid"));
    let trees = |agent: &[u32]| {
        (
            accounting::tree_ticks(&postfix_pid.into_iter().collect::<Vec<_>>()),
            accounting::tree_ticks(agent),
        )
    };
    let agent = s.rss.roots();
    let t0 = trees(&agent);
    let start = Instant::now();
    postfix_tool(s, "postsuper", &["-H", "ALL"])?;
    postfix_tool(s, "postqueue", &["-f"])?;
    loop {
        trouble(&mut tail)?;
        let got = delivered(s, a.load.mailboxes).saturating_sub(base);
        if got >= a.load.messages {
            let took = start.elapsed();
            let t1 = trees(&agent);
            if let (Some(b), Some(e)) = (cpu0, crate::cpu::machine()) {
                let per =
                    |t: u64| t as f64 / crate::cpu::ticks_per_sec() * 1e6 / a.load.messages as f64;
                println!(
                    "  {}; Postfix's processes {:.0} µs/msg{}, the agent's {}",
                    cpu_note(&b, &e, a.load.messages, s.key),
                    per(t1.0.saturating_sub(t0.0)),
                    if s.key == "pipe" {
                        " (vmail-lda included)"
                    } else {
                        ""
                    },
                    if agent.is_empty() {
                        "not measured".to_string()
                    } else {
                        format!("{:.0} µs/msg", per(t1.1.saturating_sub(t0.1)))
                    }
                );
            }
            return Ok(took);
        }
        if start.elapsed() > TIMEOUT {
            bail!(
                "only {got} of {} released messages delivered",
                a.load.messages
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The machine's CPU while a drain ran: what share was busy, waiting for the disk, and
/// the CPU time (every process: Postfix, the system, MariaDB, the bench) per message.
fn cpu_note(b: &[u64; 8], e: &[u64; 8], messages: usize, key: &str) -> String {
    let d: Vec<f64> = b
        .iter()
        .zip(e)
        .map(|(b, e)| e.saturating_sub(*b) as f64)
        .collect();
    let total = d.iter().sum::<f64>().max(1.0);
    let busy = d[0] + d[1] + d[2] + d[5] + d[6];
    format!(
        "drain cpu  {key:<10} {:>3.0}% busy, {:>3.0}% iowait, {:>4.0} µs CPU/msg",
        100.0 * busy / total,
        100.0 * d[4] / total,
        busy / crate::cpu::ticks_per_sec() * 1e6 / messages.max(1) as f64
    )
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs `f` for every system that is up, `rounds` times with the order rotating; the mean
/// rate per system (an error string for a system that failed or is not up).
fn rounds(
    name: &str,
    systems: &[Result<System, String>],
    n: usize,
    mut f: impl FnMut(&System) -> Result<f64>,
) -> Vec<Cell> {
    let mut got: Vec<Result<Vec<f64>, String>> = systems
        .iter()
        .map(|s| s.as_ref().map(|_| Vec::new()).map_err(|e| e.clone()))
        .collect();
    for round in 0..n {
        let k = systems.len();
        for i in (0..k).map(|i| (i + round) % k) {
            let (Ok(s), Ok(v)) = (&systems[i], &mut got[i]) else {
                continue;
            };
            match f(s) {
                Ok(rate) => {
                    println!(
                        "  {name} round {} {:<10} {rate:>8.1} msgs/s",
                        round + 1,
                        s.key
                    );
                    v.push(rate);
                }
                Err(e) => {
                    println!("  {name} round {} {:<10} FAILED: {e:#}", round + 1, s.key);
                    got[i] = Err(format!("{e:#}"));
                }
            }
        }
    }
    got.into_iter().map(|r| r.map(|v| mean(&v))).collect()
}

pub fn run(a: DeliveryArgs) -> Result<()> {
    crate::host::require_root("private Postfix and Dovecot masters, chroot, postsuper need it")?;
    let bin_dir = crate::host::bin_dir(a.bin_dir.as_ref())?;
    let [lookupd, authd, lda, lmtpd] =
        ["vmail-lookupd", "vmail-authd", "vmail-lda", "vmail-lmtpd"].map(|b| bin_dir.join(b));
    for b in [&lookupd, &authd, &lda, &lmtpd] {
        if !load::executable(b) {
            bail!(
                "{} not found: scripts/build-release -p vmail-bench -p vmail-lookupd -p vmail-authd -p vmail-lmtpd",
                b.display()
            );
        }
    }
    for p in ["/usr/sbin/smtp-source", "/usr/bin/time"] {
        if !load::executable(Path::new(p)) {
            bail!("{p} is missing (bench/delivery installs it)");
        }
    }
    let want = |k: &str| a.only.iter().any(|o| o == k);
    let figure = |k: &str| a.figures.iter().any(|o| o == k);
    let work = crate::work_dir("vmail-bench-delivery", a.dir.as_deref())?;
    vmail_test_support::set_mode(work.path(), 0o755);
    let db =
        TestDb::create("vmail-bench delivery").context("no MariaDB (run scripts/test-deps)")?;
    let users = a.load.users.max(a.load.mailboxes).max(1);
    crate::stack::data::populate(&db, users, 0)?;
    let env = Env {
        work: work.path().to_path_buf(),
        user: MailUser::nobody()?,
        db,
        lookupd,
        authd,
        lda,
    };
    for l in crate::host::machine(&env.db) {
        println!("{l}");
    }
    let began = Instant::now();
    let shared = Shared::start(&env).context("vmail-lookupd")?;
    let bins = Bins { lmtpd };
    let root = vmail_test_support::root::SystemRoot::chroot(&a.root);
    let systems: Vec<Result<System, String>> = SYSTEMS
        .iter()
        .filter(|(k, _)| want(k))
        .map(|(k, label)| {
            systems::start(k, &env, &shared, &bins, &root, &a.contrib)
                .map_err(|e| {
                    println!("{k}: not up: {e:#}");
                    format!("{e:#}")
                })
                .inspect(|s| println!("{k}: {label}: {}", s.note))
        })
        .collect();
    println!(
        "setup: {users} users in MariaDB database {}; mail user {}; work dir {}; systems up in {:.1} s",
        env.db.name,
        env.user.name,
        env.work.display(),
        began.elapsed().as_secs_f64()
    );
    // One message per mailbox first: Maildirs (and Dovecot's indexes) exist before any clock.
    for s in systems.iter().flatten() {
        smtp_run(s, &a, a.load.mailboxes, a.load.mailboxes, a.load.size)
            .with_context(|| format!("{}: warm-up", s.key))?;
    }

    let mut table: Vec<(String, Vec<Cell>)> = Vec::new();
    if figure("smtp") {
        println!(
            "SMTP -> Maildir: smtp-source, {} messages of {} bytes per round, {} sessions, one message per connection, {} mailboxes",
            a.load.messages, a.load.size, a.load.sessions, a.load.mailboxes
        );
        let c = rounds("smtp", &systems, a.rounds, |s| {
            Ok(smtp_run(s, &a, a.load.messages, a.load.mailboxes, a.load.size)?.per_sec())
        });
        table.push(("SMTP -> Maildir msgs/s".into(), c));
    }
    if figure("drain") {
        println!(
            "queue -> Maildir: {} messages of {} bytes put on hold, released at once",
            a.load.messages, a.load.size
        );
        let c = rounds("drain", &systems, a.rounds, |s| {
            Ok(a.load.messages as f64 / drain_run(s, &a)?.as_secs_f64())
        });
        table.push(("queue -> Maildir msgs/s".into(), c));
    }
    let mut rss_rows: Vec<(String, Vec<String>)> = Vec::new();
    if figure("rss") {
        let floor = rss::time_floor_kib();
        println!(
            "peak RSS: vmail-lda through GNU time (%M; its floor, /usr/bin/time /bin/true: {}), lmtpd and Dovecot's lmtp processes from VmHWM",
            floor.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
        for s in systems.iter().flatten() {
            if let Some(t) = &s.rss_transport {
                s.postfix
                    .postconf(&["-e", &format!("virtual_transport = {t}")]);
                s.postfix.reload();
            }
        }
        for (i, (size, label)) in RSS_SIZES.iter().enumerate() {
            let n = a.rss_messages.get(i).copied().unwrap_or(4).max(1);
            let mut row = Vec::new();
            for s in &systems {
                let Ok(s) = s else {
                    row.push("-".into());
                    continue;
                };
                let r = (|| -> Result<String> {
                    let watch = s.rss.watch()?;
                    smtp_run(s, &a, n, n.min(a.load.mailboxes), *size)?;
                    Ok(match watch.finish(n)? {
                        Some((kib, procs)) => {
                            println!(
                                "  rss {label:<6} {:<10} {:>6.1} MiB (largest of {procs} {})",
                                s.key,
                                kib as f64 / 1024.0,
                                if s.key == "pipe" { "runs" } else { "processes" }
                            );
                            if procs > 1 && s.key != "pipe" {
                                format!("{:.1} (x{procs})", kib as f64 / 1024.0)
                            } else {
                                format!("{:.1}", kib as f64 / 1024.0)
                            }
                        }
                        None => "-".into(),
                    })
                })();
                row.push(r.unwrap_or_else(|e| {
                    println!("  rss {label} {}: FAILED: {e:#}", s.key);
                    "error".into()
                }));
            }
            rss_rows.push((format!("peak RSS MiB, {n} x {label}"), row));
        }
    }
    print_table(&systems, &table, &rss_rows);
    Ok(())
}

fn print_table(
    systems: &[Result<System, String>],
    rates: &[(String, Vec<Cell>)],
    rss_rows: &[(String, Vec<String>)],
) {
    let keys: Vec<&str> = SYSTEMS.iter().map(|(k, _)| *k).collect();
    let shown: Vec<&str> = systems
        .iter()
        .zip(keys.iter())
        .map(|(s, k)| s.as_ref().map_or(*k, |s| s.key))
        .collect();
    let idx = |k: &str| shown.iter().position(|s| *s == k);
    println!();
    println!(
        "| figure | {} | lmtpd/pipe | lmtpd/dovecot23 | lmtpd/dovecot24 | lmtpd/sink |",
        shown.join(" | ")
    );
    println!("|---|{}---:|---:|---:|---:|", "---:|".repeat(shown.len()));
    let none: Cell = Err("not run".into());
    for (name, cells) in rates {
        let get = |k: &str| idx(k).and_then(|i| cells.get(i)).unwrap_or(&none);
        let lmtpd = get("lmtpd");
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            cells.iter().map(fmt_rate).collect::<Vec<_>>().join(" | "),
            fmt_ratio(lmtpd, get("pipe")),
            fmt_ratio(lmtpd, get("dovecot23")),
            fmt_ratio(lmtpd, get("dovecot24")),
            fmt_ratio(lmtpd, get("sink")),
        );
    }
    for (name, cells) in rss_rows {
        println!("| {name} | {} | | | | |", cells.join(" | "));
    }
    println!();
    println!("targets (issue 19): lmtpd >= 2 x Dovecot's LMTP, lmtpd >= 0.8 x the sink; RSS flat across sizes");
    for (k, label) in SYSTEMS {
        if shown.contains(&k) {
            println!("  {k}: {label}");
        }
    }
}
