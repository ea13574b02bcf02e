//! `vmail-bench authd`: vmail-authd against Dovecot's own auth service with the classic SQL
//! passdb, on the same users (SHA512-CRYPT) in the same throwaway MariaDB database, driven
//! through the Dovecot auth client protocol by the same client code: `AUTH PLAIN` with
//! `resp=`, `service=smtp` and a `rip=`, one request in flight per connection (as Postfix's
//! smtpd). Right passwords only in the throughput runs (both servers delay failures).
//!
//! (a) vmail-authd, verified-credentials cache off: every request a row read plus a
//!     SHA512-CRYPT check; (b) vmail-authd, cache on and warm: a row read plus a digest;
//! (c) Dovecot 2.3, `passdb { driver = sql }` on MySQL, `auth_cache_size = 0`;
//! (d) the same Dovecot with `auth_cache_size = 10M` (warm);
//! (a') as (a) with `authd.verify_concurrency` at twice the CPUs (the default is one each).
//! Targets: a/c >= 1.0, b/c >= 10. Each figure also shows the CPU time the server and
//! MariaDB spent per authentication, and how busy the machine was with other work.
//!
//! Then, in-process without socket or protocol: the SHA512-CRYPT check (ours and
//! libxcrypt's, which Dovecot uses), `Directory::user` and `Authenticator::authenticate`.
//!
//! Then the failure timing on vmail-authd: unknown user against wrong password, with the
//! default failure delay (2 s) and with none, so the cost of the check itself is compared
//! (target: within 10 %). Every failure comes from its own `rip=` and names its own login, so
//! the penalty (per remote network and per login) never adds a delay.

mod accounting;
mod client;
mod diagnostics;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use vmail_config::{Config, Loaded, Source};
use vmail_proto::auth::{self, Reply};
use vmail_test_support::daemon::InProcess;
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};

use crate::{collect, Figure};
use accounting::*;
use client::*;
use diagnostics::*;

#[derive(clap::Args)]
pub struct Opts {
    /// Seconds per measurement (each after a 1 s warm-up with the same connections).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Users in the database (SHA512-CRYPT hashes, 5000 rounds).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Concurrent client connections, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    conns: Vec<usize>,
    /// Times the whole comparison is repeated (the machine may be shared: compare rounds).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Failures of each kind (unknown user, wrong password) per failure-timing run.
    #[arg(long, default_value_t = 50)]
    failures: usize,
}

const DOMAIN: &str = "example.org";

fn login(n: usize) -> String {
    format!("user{n}@{DOMAIN}")
}

fn password(n: usize) -> String {
    format!("secret-{n}")
}

pub fn run(o: Opts) -> Result<()> {
    let dur = Duration::from_secs(o.seconds);
    let users = o.users.max(1);
    anyhow::ensure!(
        users >= 2 * o.failures,
        "--users must be at least 2 x --failures (every failure names its own user)"
    );
    let db = vmail_test_support::TestDb::create("vmail-bench authd")
        .context("no MariaDB (run scripts/test-deps)")?;
    let config = db.config();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The classic tables, with users.password widened so a SHA512-CRYPT hash fits (the
    // classic varchar(20) only holds DES crypt); no optional columns, so vmail-authd reads a
    // user with the same single SELECT as Dovecot's password_query.
    client_rt.block_on(async {
        vmail_directory::Directory::open(&config)
            .await?
            .init(true)
            .await?;
        anyhow::Ok(())
    })?;
    let began = Instant::now();
    let hashes = crate::sha512_hashes(users, password)?;
    let mut sql = format!(
        "ALTER TABLE users MODIFY password varchar(255) NOT NULL;\n\
         INSERT INTO domains (domain) VALUES ('{DOMAIN}');\n"
    );
    for chunk in hashes.chunks(500) {
        sql.push_str("INSERT INTO users (email, password) VALUES ");
        let rows: Vec<String> = chunk
            .iter()
            .map(|(n, h)| format!("('{}', '{}')", login(*n), h.replace('\'', "''")))
            .collect();
        sql.push_str(&rows.join(","));
        sql.push_str(";\n");
    }
    db.sql(&sql);
    eprintln!(
        "{users} users with SHA512-CRYPT hashes in {} ({:.1}s)",
        db.name,
        began.elapsed().as_secs_f64()
    );

    let tmp = tempfile::tempdir()?;
    let cold = spawn_authd(&config, tmp.path(), "cold", |a| {
        a.cache_enabled = false;
    })?;
    let warm = spawn_authd(&config, tmp.path(), "warm", |a| {
        a.cache_enabled = true;
        a.cache_ttl_s = 3600;
        a.cache_max_entries = 1_000_000;
    })?;
    // The suggested tuning: twice as many checks in flight as CPUs, so a check is always
    // ready to run when one ends (the default is one per CPU).
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cold2 = spawn_authd(&config, tmp.path(), "cold2x", |a| {
        a.cache_enabled = false;
        a.verify_concurrency = 2 * cpus;
    })?;
    let dove_cold = start_dovecot(&db, "0")?;
    let dove_warm = start_dovecot(&db, "10M")?;
    let dc_sock = dove_cold.dir.path().join("run/auth-client");
    let dw_sock = dove_warm.dir.path().join("run/auth-client");

    // Fill both caches: every user once.
    client_rt.block_on(fill(&warm.socket, users))?;
    client_rt.block_on(fill(&dw_sock, users))?;
    let hits_before = warm.auth.stats.cache_hits.load(Ordering::Relaxed);
    let ok_before = warm.auth.stats.ok.load(Ordering::Relaxed);

    println!(
        "vmail-bench authd: {users} users (SHA512-CRYPT) on MariaDB, {}s per figure after a 1 s \
         warm-up, AUTH PLAIN service=smtp over UNIX sockets, one request in flight per connection",
        dur.as_secs()
    );
    println!(
        "server CPU: the daemon's own CPU time per authentication (vmail-authd: its runtime's \
         threads; Dovecot: every process of the instance); idle: all CPUs idle; foreign: CPU busy \
         outside this bench, its daemons and MariaDB (other work on the machine); both in % of \
         all CPUs"
    );
    let systems = [
        (
            "(a) vmail-authd cold",
            cold.socket.clone(),
            Server::Threads(cold.threads.clone()),
        ),
        (
            "(b) vmail-authd cached",
            warm.socket.clone(),
            Server::Threads(warm.threads.clone()),
        ),
        (
            "(c) Dovecot sql",
            dc_sock,
            Server::Procs(dove_cold.dir.path().to_path_buf()),
        ),
        (
            "(d) Dovecot sql+cache",
            dw_sock,
            Server::Procs(dove_warm.dir.path().to_path_buf()),
        ),
        (
            "(a') authd cold, vc=2xCPU",
            cold2.socket.clone(),
            Server::Threads(cold2.threads.clone()),
        ),
    ];
    let db_pid = mariadbd_pid();
    println!(
        "{:>5} {:>5} | {:<25} | {:>8} {:>7} {:>8} | {:>10} {:>10} | {:>7} {:>7}",
        "round",
        "conns",
        "system",
        "auth/s",
        "p50 us",
        "p99 us",
        "server CPU",
        "MariaDB",
        "idle",
        "foreign"
    );
    let mut table = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=o.rounds.max(1) {
        for &conns in &o.conns {
            let spread = move |c: usize, i: usize| (c * 7919 + i) % users;
            let mut figs = Vec::new();
            for (name, sock, server) in &systems {
                client_rt.block_on(drive(sock, conns, Duration::from_secs(1), spread))?;
                let s0 = Snap::take(server, db_pid);
                let f = client_rt.block_on(drive(sock, conns, dur, spread))?;
                let m = Measured::new(f, &s0, &Snap::take(server, db_pid));
                println!(
                    "{:>5} {:>5} | {:<25} | {:>8.0} {:>7.0} {:>8.0} | {:>7.0} us {:>7.0} us | {:>6.0}% {:>6.0}%",
                    round,
                    conns,
                    name,
                    m.fig.per_sec,
                    m.fig.p50_us,
                    m.fig.p99_us,
                    m.server_us,
                    m.db_us,
                    m.idle_pct,
                    m.foreign_pct
                );
                table.push(format!(
                    "| {round} | {conns} | {name} | {} | {:.0}/{:.0} | {:.0} | {:.0} | {:.0} % | {:.0} % |",
                    thousands(m.fig.per_sec),
                    m.fig.p50_us,
                    m.fig.p99_us,
                    m.server_us,
                    m.db_us,
                    m.idle_pct,
                    m.foreign_pct
                ));
                figs.push(m.fig);
            }
            let (a, b, c, a2) = (
                figs[0].per_sec,
                figs[1].per_sec,
                figs[2].per_sec,
                figs[4].per_sec,
            );
            let procs = format!(
                "{}/{}",
                auth_processes(&dove_cold),
                auth_processes(&dove_warm)
            );
            println!(
                "{:>5} {:>5} | a/c = {:.2} (target >= 1.0), b/c = {:.2} (target >= 10), a'/c = \
                 {:.2}; Dovecot auth processes (c)/(d): {procs}",
                round,
                conns,
                a / c,
                b / c,
                a2 / c
            );
            ratios.push(format!(
                "| {round} | {conns} | {:.2} | {:.2} | {:.2} | {procs} |",
                a / c,
                b / c,
                a2 / c
            ));
        }
    }
    let hits = warm.auth.stats.cache_hits.load(Ordering::Relaxed) - hits_before;
    let oks = warm.auth.stats.ok.load(Ordering::Relaxed) - ok_before;
    println!(
        "(b) cache hits: {hits} of {oks} successful authentications after the fill; Dovecot \
         auth processes: `dovecot/auth` and its `auth worker` processes"
    );
    println!();
    println!("| round | conns | system | auth/s | p50/p99 µs | server CPU µs/auth | MariaDB CPU µs/auth | CPU idle | foreign CPU |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for l in &table {
        println!("{l}");
    }
    println!();
    println!(
        "| round | conns | a/c (≥ 1.0) | b/c (≥ 10) | a'/c | Dovecot auth processes (c)/(d) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for l in &ratios {
        println!("{l}");
    }
    drop((dove_cold, dove_warm));

    // Where (b)'s time goes: the same work in-process, without the protocol and socket.
    println!();
    client_rt.block_on(diagnostics(&config, users, &o.conns, dur))?;

    // Failure timing.
    println!();
    println!(
        "failure timing on vmail-authd (cache off), {} of each kind, interleaved, one request \
         every 25 ms each on its own connection with its own rip= and its own login (no penalty \
         applies); the right password on the same path for reference",
        o.failures
    );
    println!(
        "{:>16} | {:>21} | {:>21} | {:>21} | {:>9} | {:>9}",
        "failure_delay_ms",
        "unknown user",
        "wrong password",
        "right password",
        "mean u/w",
        "p50 u/w"
    );
    println!(
        "{:>16} | {:>21} | {:>21} | {:>21} | {:>9} | {:>9}",
        "", "mean  p50 (ms)", "mean  p50 (ms)", "mean  p50 (ms)", "+-10%", "+-10%"
    );
    let mut md = Vec::new();
    for (k, delay) in [(0usize, 2000u64), (1, 0)] {
        let d = spawn_authd(&config, tmp.path(), &format!("fail{delay}"), |a| {
            a.cache_enabled = false;
            a.failure_delay_ms = delay;
            a.max_delay_ms = if delay == 0 { 0 } else { 8000 };
        })?;
        let n = o.failures;
        let mut reqs = Vec::new();
        for j in 0..n {
            // Users 0..3n, shared out so no login repeats within a run; rips 10.k.x.y.
            let rip = |m: usize| format!("10.{}.{}.{}", k + 1, m / 250, m % 250 + 1);
            reqs.push((
                Kind::Unknown,
                format!("nobody{j}@{DOMAIN}"),
                password(j),
                rip(3 * j),
            ));
            reqs.push((Kind::Wrong, login(j), format!("wrong-{j}"), rip(3 * j + 1)));
            reqs.push((Kind::Right, login(n + j), password(n + j), rip(3 * j + 2)));
        }
        let t = client_rt.block_on(failure_timings(&d.socket, reqs, Duration::from_millis(25)))?;
        let stat = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
            let p50 = s
                .get((s.len().saturating_sub(1)) / 2)
                .copied()
                .unwrap_or(0.0);
            (mean, p50)
        };
        let (um, up) = stat(&t[0]);
        let (wm, wp) = stat(&t[1]);
        let (rm, rp) = stat(&t[2]);
        println!(
            "{:>16} | {:>10.3} {:>10.3} | {:>10.3} {:>10.3} | {:>10.3} {:>10.3} | {:>9.3} | {:>9.3}",
            delay,
            um,
            up,
            wm,
            wp,
            rm,
            rp,
            um / wm,
            up / wp
        );
        md.push(format!(
            "| {delay} | {um:.3} / {up:.3} | {wm:.3} / {wp:.3} | {rm:.3} / {rp:.3} | {:.3} | {:.3} |",
            um / wm,
            up / wp
        ));
    }
    println!();
    println!("| failure_delay_ms | unknown user mean/p50 ms | wrong password mean/p50 ms | right password mean/p50 ms | mean u/w | p50 u/w |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for l in md {
        println!("{l}");
    }
    // The daemons' threads run until the process exits; the Dovecots were stopped above and
    // the database is dropped here.
    drop(db);
    std::process::exit(0);
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

struct RunningAuthd {
    socket: PathBuf,
    auth: Arc<vmail_authd::Authenticator>,
    /// Name of its runtime's threads (workers and blocking pool), for CPU accounting.
    threads: String,
    /// Runs until dropped.
    _running: InProcess<Arc<vmail_authd::Authenticator>>,
}

/// Runs a vmail-authd on its own runtime (as in production: one worker per core), auth
/// protocol only, on `DIR/NAME.sock`.
fn spawn_authd(
    config: &Config,
    dir: &Path,
    name: &str,
    tweak: impl FnOnce(&mut vmail_config::AuthdConfig),
) -> Result<RunningAuthd> {
    let mut config = config.clone();
    let socket = dir.join(format!("{name}.sock"));
    let a = &mut config.authd;
    a.auth = vec![format!("unix:{}", socket.display())];
    a.dict = Vec::new();
    a.lua = Vec::new();
    a.auth_socket_group = String::new();
    a.dict_socket_group = String::new();
    a.user = String::new();
    a.pid_file = dir.join(format!("{name}.pid"));
    tweak(a);
    let loaded = Loaded {
        config,
        source: Source::Builtin,
    };
    // Thread names show up (cut to 15 bytes) in /proc/self/task/*/comm.
    let threads = format!("authd-{name}");
    let running = vmail_test_support::daemon::authd(loaded, Some(threads.clone()))?;
    Ok(RunningAuthd {
        socket,
        auth: running.handle.clone(),
        threads,
        _running: running,
    })
}

/// A private Dovecot whose auth service reads the classic `users` table through
/// `passdb { driver = sql }`, with `auth_cache_size = cache`.
fn start_dovecot(db: &vmail_test_support::TestDb, cache: &str) -> Result<PrivateDovecot> {
    let (host, port) = db.host.rsplit_once(':').context("host:port")?;
    let sql_conf = format!(
        "driver = mysql\n\
         connect = host={host} port={port} dbname={} user={} password={}\n\
         default_pass_scheme = SHA512-CRYPT\n\
         password_query = SELECT email as user, password FROM users WHERE email = '%u'\n",
        db.name, db.user, db.password
    );
    DovecotBuilder::new()
        .file("dovecot-sql.conf.ext", &sql_conf)
        .passdb("driver = sql\nargs = @DIR@/dovecot-sql.conf.ext")
        .userdb("driver = static\nargs = uid=@UID@ gid=@GID@ home=@DIR@/home/%u")
        .conf(&format!("auth_cache_size = {cache}"))
        .conf("service auth {\n  unix_listener auth-client {\n    mode = 0666\n  }\n}")
        .start("vmail-bench authd")
        .context("no Dovecot (run scripts/test-deps)")
}

/// Processes of `d` whose command line names the auth service (the auth process and its
/// auth workers).
fn auth_processes(d: &PrivateDovecot) -> usize {
    vmail_test_support::postfix::processes_under(d.dir.path())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("dovecot/auth"))
        })
        .count()
}
