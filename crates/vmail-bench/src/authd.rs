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

/// One Dovecot auth-protocol client connection after the handshake, as Postfix's smtpd
/// holds it.
struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next_id: u32,
    line: Vec<u8>,
    out: Vec<u8>,
}

impl Client {
    async fn connect(path: &Path) -> Result<Client> {
        // Distinct CPIDs: Dovecot refuses a second connection claiming a live one's pid.
        static NEXT_CPID: AtomicU32 = AtomicU32::new(100_000);
        let s = UnixStream::connect(path)
            .await
            .with_context(|| format!("connect {}", path.display()))?;
        let (r, mut wr) = s.into_split();
        let mut rd = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            if rd.read_until(b'\n', &mut line).await? == 0 {
                bail!("{}: closed during the handshake", path.display());
            }
            if line == b"DONE\n" {
                break;
            }
        }
        let cpid = NEXT_CPID.fetch_add(1, Ordering::Relaxed);
        wr.write_all(format!("VERSION\t1\t2\nCPID\t{cpid}\n").as_bytes())
            .await?;
        Ok(Client {
            rd,
            wr,
            next_id: 0,
            line,
            out: Vec::with_capacity(256),
        })
    }

    /// `AUTH PLAIN` with an initial response; the reply.
    async fn plain(&mut self, user: &str, pass: &str, rip: &str) -> Result<Reply> {
        self.next_id += 1;
        let resp = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.out.clear();
        self.out.extend_from_slice(
            format!(
                "AUTH\t{}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={resp}\n",
                self.next_id
            )
            .as_bytes(),
        );
        self.wr.write_all(&self.out).await?;
        self.line.clear();
        if self.rd.read_until(b'\n', &mut self.line).await? == 0 {
            bail!("the auth server closed the connection");
        }
        let r = auth::parse_reply(&self.line)?;
        let id = match &r {
            Reply::Ok { id, .. } | Reply::Fail { id, .. } | Reply::Cont { id, .. } => *id,
        };
        anyhow::ensure!(
            id == self.next_id,
            "reply for id {id}, expected {}",
            self.next_id
        );
        Ok(r)
    }
}

fn describe(r: &Reply) -> String {
    let mut out = Vec::new();
    auth::encode_reply(r, &mut out);
    String::from_utf8_lossy(&out).trim_end().to_string()
}

/// `conns` clients, each authenticating one user at a time (right passwords) for `dur`;
/// user numbers from `pick(client, i)`.
async fn drive(
    path: &Path,
    conns: usize,
    dur: Duration,
    pick: impl Fn(usize, usize) -> usize + Send + Sync + Copy + 'static,
) -> Result<Figure> {
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut cl = Client::connect(path).await?;
        let (stop, bad) = (stop.clone(), bad.clone());
        let rip = format!("192.0.2.{}", c % 250 + 1);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = pick(c, i);
                i += 1;
                let t = Instant::now();
                match cl.plain(&login(n), &password(n), &rip).await {
                    Ok(Reply::Ok { .. }) => {}
                    Ok(other) => {
                        *bad.lock().unwrap() = Some(format!("{}: {}", login(n), describe(&other)));
                        break;
                    }
                    Err(e) => {
                        *bad.lock().unwrap() = Some(format!("{}: {e:#}", login(n)));
                        break;
                    }
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    let f = collect(tasks, &stop, dur).await?;
    if let Some(why) = bad.lock().unwrap().take() {
        bail!(
            "{}: an authentication with the right password failed: {why}",
            path.display()
        );
    }
    Ok(f)
}

/// Authenticates every user once (two connections), so a cache holds them all.
async fn fill(path: &Path, users: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for c in 0..2 {
        let mut cl = Client::connect(path).await?;
        tasks.push(tokio::spawn(async move {
            for n in (c..users).step_by(2) {
                match cl.plain(&login(n), &password(n), "192.0.2.254").await? {
                    Reply::Ok { .. } => {}
                    r => bail!("filling the cache: {}: {}", login(n), describe(&r)),
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Wrong,
    Right,
}

/// Sends each request on its own (pre-connected) connection, one started every `spacing`,
/// and returns the latencies in ms by kind: [unknown, wrong, right].
async fn failure_timings(
    path: &Path,
    reqs: Vec<(Kind, String, String, String)>,
    spacing: Duration,
) -> Result<[Vec<f64>; 3]> {
    let mut clients = Vec::with_capacity(reqs.len());
    for _ in 0..reqs.len() {
        clients.push(Client::connect(path).await?);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (k, ((kind, user, pass, rip), mut cl)) in reqs.into_iter().zip(clients).enumerate() {
        let at = start + spacing * k as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let t = Instant::now();
            let r = cl.plain(&user, &pass, &rip).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let expected = matches!(
                (&r, kind),
                (Reply::Ok { .. }, Kind::Right)
                    | (Reply::Fail { code: None, .. }, Kind::Unknown | Kind::Wrong)
            );
            anyhow::ensure!(expected, "{user}: unexpected reply {}", describe(&r));
            anyhow::Ok((kind, ms))
        }));
    }
    let mut out: [Vec<f64>; 3] = Default::default();
    for t in tasks {
        let (kind, ms) = t.await??;
        out[kind as usize].push(ms);
    }
    Ok(out)
}

/// In-process costs: one SHA512-CRYPT check (vmail-passwd, and libxcrypt's crypt() that
/// Dovecot calls), a bare `Directory::user` read and a warm-cache
/// `Authenticator::authenticate`, each with the same numbers of concurrent callers.
async fn diagnostics(config: &Config, users: usize, conns: &[usize], dur: Duration) -> Result<()> {
    let stored = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"secret")?;
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let ok = vmail_passwd::verify(
            &stored,
            std::hint::black_box(b"secret"),
            vmail_passwd::Scheme::Crypt,
        )?;
        anyhow::ensure!(ok, "vmail-passwd does not verify its own hash");
    }
    let ours = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let bare = stored.trim_start_matches("{SHA512-CRYPT}");
    let glibc = libxcrypt_us(bare, "secret", n);
    println!(
        "one SHA512-CRYPT check (5000 rounds), one thread: vmail-passwd {ours:.0} us, \
         libxcrypt crypt() (what Dovecot calls) {}",
        glibc.map_or("n/a".to_string(), |g| format!("{g:.0} us"))
    );
    // The classic table's hashes (MySQL ENCRYPT()): what a wrong password costs there,
    // against the SHA512-CRYPT dummy check an unknown user costs (passwords.hash_scheme).
    let des = vmail_passwd::hash(vmail_passwd::Scheme::DesCrypt, b"secret")?;
    let t = Instant::now();
    for _ in 0..n {
        let ok = vmail_passwd::verify(
            &des,
            std::hint::black_box(b"wrong"),
            vmail_passwd::Scheme::Crypt,
        )?;
        anyhow::ensure!(!ok, "DES-CRYPT verified a wrong password");
    }
    let des_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        vmail_passwd::dummy_verify(
            vmail_passwd::Scheme::Sha512Crypt,
            std::hint::black_box(b"wrong"),
        );
    }
    let dummy_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "one DES-CRYPT check (classic ENCRYPT() hashes): {des_us:.1} us; the unknown-user dummy \
         check with passwords.hash_scheme = SHA512-CRYPT: {dummy_us:.0} us"
    );

    // What `failure_delay_ms = 0` still costs a failure: tokio rounds every timer up to its
    // next 1 ms tick.
    let t = Instant::now();
    for _ in 0..100 {
        tokio::time::sleep(Duration::ZERO).await;
    }
    println!(
        "tokio::time::sleep(Duration::ZERO) (the failure delay at 0): {:.0} us on average",
        t.elapsed().as_secs_f64() * 1e6 / 100.0
    );

    let dir = Arc::new(vmail_directory::Directory::open(config).await?);
    let open = |cache: bool| {
        let mut c = config.clone();
        c.authd.cache_enabled = cache;
        c.authd.cache_ttl_s = 3600;
        c.authd.cache_max_entries = 1_000_000;
        c
    };
    let (cw, cc) = (open(true), open(false));
    let warm = Arc::new(vmail_authd::Authenticator::new(
        vmail_directory::Directory::open(&cw).await?,
        &cw,
    )?);
    let cold = Arc::new(vmail_authd::Authenticator::new(
        vmail_directory::Directory::open(&cc).await?,
        &cc,
    )?);
    let rip: Option<std::net::IpAddr> = Some("192.0.2.253".parse()?);
    for n in 0..users {
        let v = warm
            .authenticate(login(n).as_bytes(), password(n).as_bytes(), "smtp", rip)
            .await;
        anyhow::ensure!(
            matches!(v, vmail_authd::Verdict::Ok { .. }),
            "{}: {v:?}",
            login(n)
        );
    }
    println!(
        "in-process, no socket: {:>5} | {:>24} | {:>24} | {:>24}",
        "conns", "Directory::user", "authenticate (cached)", "authenticate (cold)"
    );
    println!(
        "{:>22} {:>5} | {:>24} | {:>24} | {:>24}",
        "", "", "ceiling of (b)", "compare (b)", "compare (a)"
    );
    let fmt = |f: &Figure| format!("{:>8.0} {:>6.0} {:>8.0}", f.per_sec, f.p50_us, f.p99_us);
    for &conns in conns {
        let dir = dir.clone();
        let d = in_process(conns, dur, users, move |n| {
            let dir = dir.clone();
            async move { matches!(dir.user(&login(n)).await, Ok(Some(_))) }
        })
        .await?;
        let mut figs = Vec::new();
        for auth in [&warm, &cold] {
            let auth = auth.clone();
            figs.push(
                in_process(conns, dur, users, move |n| {
                    let auth = auth.clone();
                    async move {
                        let v = auth
                            .authenticate(login(n).as_bytes(), password(n).as_bytes(), "smtp", rip)
                            .await;
                        matches!(v, vmail_authd::Verdict::Ok { .. })
                    }
                })
                .await?,
            );
        }
        println!(
            "{:>22} {:>5} | {} | {} | {}",
            "",
            conns,
            fmt(&d),
            fmt(&figs[0]),
            fmt(&figs[1])
        );
    }
    Ok(())
}

/// `conns` tasks calling `op(user number)` one at a time for `dur`; stops a task at the
/// first `false`.
async fn in_process<F, Fut>(conns: usize, dur: Duration, users: usize, op: F) -> Result<Figure>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (op, stop) = (op.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = (c * 7919 + i) % users;
                i += 1;
                let t = Instant::now();
                if !op(n).await {
                    break;
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// Microseconds per `crypt(password, setting)` in libxcrypt (loaded at run time, so the
/// bench does not link it), or `None` if it is not there or disagrees.
fn libxcrypt_us(setting: &str, password: &str, n: usize) -> Option<f64> {
    use std::ffi::{CStr, CString};
    type CryptFn =
        unsafe extern "C" fn(*const libc::c_char, *const libc::c_char) -> *mut libc::c_char;
    let key = CString::new(password).ok()?;
    let salt = CString::new(setting).ok()?;
    // SAFETY: dlopen/dlsym with NUL-terminated names; `crypt` has the signature above and
    // returns a pointer to a static NUL-terminated buffer (or NULL), read before the next
    // call; single-threaded here.
    unsafe {
        let lib = libc::dlopen(c"libcrypt.so.1".as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            return None;
        }
        let sym = libc::dlsym(lib, c"crypt".as_ptr());
        if sym.is_null() {
            return None;
        }
        let crypt: CryptFn = std::mem::transmute::<*mut libc::c_void, CryptFn>(sym);
        let t = Instant::now();
        for _ in 0..n {
            let out = crypt(key.as_ptr(), salt.as_ptr());
            if out.is_null() || CStr::from_ptr(out).to_bytes() != setting.as_bytes() {
                return None;
            }
        }
        Some(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    }
}

/// Whose CPU time counts as the server's.
enum Server {
    /// Threads of this process whose name starts with this (an in-process vmail-authd).
    Threads(String),
    /// Every process working under this directory (a private Dovecot).
    Procs(PathBuf),
}

/// CPU counters (clock ticks) at one instant.
struct Snap {
    at: Instant,
    /// All CPUs, busy (not idle or iowait).
    busy: u64,
    /// All CPUs, idle or iowait.
    idle: u64,
    /// This whole process (client, in-process daemons).
    me: u64,
    /// Per server thread or process (threads and processes come and go).
    server: std::collections::HashMap<u32, u64>,
    db: u64,
    /// Whether `server` is outside this process.
    server_outside: bool,
}

/// utime + stime from a `/proc/.../stat` file.
fn stat_ticks(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // After the command: state, ppid, ... utime is the 12th, stime the 13th.
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

impl Snap {
    fn take(server: &Server, db_pid: Option<u32>) -> Snap {
        let (busy, idle) = crate::cpu::machine()
            .map(|f| {
                let idle = f[3] + f[4];
                (f.iter().sum::<u64>() - idle, idle)
            })
            .unwrap_or((0, 0));
        let (srv, outside) = match server {
            Server::Threads(prefix) => {
                let mut t = std::collections::HashMap::new();
                if let Ok(d) = std::fs::read_dir("/proc/self/task") {
                    for e in d.flatten() {
                        let Some(tid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                            continue;
                        };
                        let p = e.path();
                        let named = std::fs::read_to_string(p.join("comm")).is_ok_and(|c| {
                            let c = c.trim_end();
                            // comm keeps at most 15 bytes of the name.
                            !c.is_empty()
                                && prefix.starts_with(c)
                                && c.len() >= prefix.len().min(15)
                        });
                        if named {
                            t.insert(tid, stat_ticks(&format!("{}/stat", p.display())));
                        }
                    }
                }
                (t, false)
            }
            Server::Procs(dir) => (
                vmail_test_support::postfix::processes_under(dir)
                    .into_iter()
                    .map(|pid| (pid, stat_ticks(&format!("/proc/{pid}/stat"))))
                    .collect(),
                true,
            ),
        };
        Snap {
            at: Instant::now(),
            busy,
            idle,
            me: stat_ticks("/proc/self/stat"),
            server: srv,
            db: db_pid.map_or(0, |p| stat_ticks(&format!("/proc/{p}/stat"))),
            server_outside: outside,
        }
    }
}

/// A figure with the CPU it cost.
struct Measured {
    fig: Figure,
    /// Server CPU per authentication.
    server_us: f64,
    /// MariaDB CPU per authentication.
    db_us: f64,
    /// CPU busy with other work on the machine, in % of all CPUs.
    foreign_pct: f64,
    /// CPU idle, in % of all CPUs.
    idle_pct: f64,
}

impl Measured {
    fn new(fig: Figure, a: &Snap, b: &Snap) -> Measured {
        let tck = crate::cpu::ticks_per_sec();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let auths = (fig.per_sec * secs).max(1.0);
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        // Those gone by the end are left out: an idle thread or process exits, so it spent
        // (almost) nothing during the figure.
        let server: f64 = b
            .server
            .iter()
            .map(|(id, t)| d(a.server.get(id).copied().unwrap_or(0), *t))
            .sum();
        let ours = d(a.me, b.me) + d(a.db, b.db) + if b.server_outside { server } else { 0.0 };
        let foreign = (d(a.busy, b.busy) - ours).max(0.0);
        Measured {
            server_us: server / tck / auths * 1e6,
            db_us: d(a.db, b.db) / tck / auths * 1e6,
            foreign_pct: foreign / tck / (secs * cpus) * 100.0,
            idle_pct: d(a.idle, b.idle) / tck / (secs * cpus) * 100.0,
            fig,
        }
    }
}

/// The shared MariaDB server (`mariadbd` without a private `--datadir`).
fn mariadbd_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "mariadbd")
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !String::from_utf8_lossy(&c).contains("--datadir"))
        })
}
