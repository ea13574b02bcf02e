//! `vmail-bench`: measures vmail side by side with its ceiling and the classic alternative in
//! one run, and prints ratios. Not a test: numbers depend on the machine; the ratios are what
//! we track (docs/BENCHMARKS.md).
//!
//! `vmail-bench lookupd`: lookups/s and p50/p99 over a UNIX socket with 1, 16 and 128 client
//! connections for (a) cached keys, (b) uncached keys on MariaDB, against (c) a trivial
//! netstring echo server on the same socket type and (d) the classic SELECT issued directly to
//! MariaDB by the same number of clients.
//!
//! `vmail-bench lda`: vmail-lda vs dovecot-lda, a process per message as pipe(8) runs them
//! (see `lda.rs`).
//!
//! `vmail-bench stack`: the whole stack (Postfix + Dovecot + vmail) against the classic
//! "Postfix + Dovecot + MySQL" how-to setup and a ceiling for each figure (see `stack.rs`;
//! `bench/stack` installs what it needs and runs it).
//!
//! `vmail-bench dovecot-auth`: IMAP logins/s on Dovecot 2.3 and 2.4 with the SQL passdb,
//! the dict route and the Lua route to vmail-authd (see `dovecot_auth.rs`;
//! `bench/dovecot-auth` runs it).

mod authd;
mod cpu;
mod dovecot_auth;
mod host;
mod lda;
mod rounds;
mod stack;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use vmail_config::{Config, Loaded, Source};
use vmail_proto::netstring;
use vmail_test_support::daemon::{InProcess, LookupdHandle};

#[derive(Parser)]
#[command(name = "vmail-bench")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Directory lookup latency on SQLite and MariaDB (one client, no cache, no daemon).
    Directory {
        #[arg(long, default_value_t = 20_000)]
        lookups: usize,
    },
    /// lookupd vs echo ceiling vs direct SELECTs.
    Lookupd {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Users in the database.
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        /// lookupd's `[database] batch_keys` (1: no batching); default as shipped.
        #[arg(long)]
        batch_keys: Option<usize>,
        /// lookupd's `[database] batch_in_flight`; default as shipped.
        #[arg(long)]
        batch_in_flight: Option<usize>,
        /// lookupd's `[lookupd] threads` (1: one event loop, 0: one per CPU); default as
        /// shipped. The echo ceiling gets the same.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// vmail-lda vs dovecot-lda: deliveries/s, peak RSS, and where vmail-lda's time goes
    /// (run as root after `scripts/build-release -p vmail-bench -p vmail-lookupd`).
    Lda(lda::LdaArgs),
    /// vmail-authd (cache off, cache on) vs Dovecot's auth service with the classic SQL
    /// passdb: authentications/s and p50/p99, and failure timing (see `authd.rs`).
    Authd(authd::Opts),
    /// The whole stack against the classic setup: delivery, RCPT verification, SMTP AUTH and
    /// IMAP login rates with ratios and ceilings (run as root through bench/stack).
    Stack(stack::StackArgs),
    /// IMAP logins/s on Dovecot 2.3 (host) and 2.4 (a Debian 13 root): SQL passdb, dict and
    /// Lua routes to vmail-authd side by side (run as root through bench/dovecot-auth; it
    /// installs dovecot-mysql into the root when missing).
    DovecotAuth(dovecot_auth::DovecotAuthArgs),
}

fn main() -> Result<()> {
    match Args::parse().what {
        What::Lookupd {
            seconds,
            users,
            batch_keys,
            batch_in_flight,
            threads,
        } => lookupd(
            Duration::from_secs(seconds),
            users,
            batch_keys,
            batch_in_flight,
            threads,
        ),
        What::Directory { lookups } => directory(lookups),
        What::Lda(a) => lda::run(&a),
        What::Authd(o) => authd::run(o),
        What::Stack(a) => stack::run(a),
        What::DovecotAuth(a) => dovecot_auth::run(a),
    }
}

/// Result of one measurement.
struct Figure {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn summarize(mut lat: Vec<u32>, elapsed: Duration) -> Figure {
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() as f64 - 1.0) * p) as usize] as f64
        }
    };
    Figure {
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Lets the clients run for `dur`, stops them and merges their latencies.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    stop: &AtomicBool,
    dur: Duration,
) -> Result<Figure> {
    let start = Instant::now();
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok(summarize(all, start.elapsed()))
}

/// `conns` clients, each sending one socketmap request at a time (as Postfix does) for
/// `dur`; keys from `key(client, i)`.
async fn drive_socketmap(
    path: &Path,
    conns: usize,
    dur: Duration,
    key: Arc<dyn Fn(usize, usize) -> String + Send + Sync>,
) -> Result<Figure> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut s = UnixStream::connect(path).await.context("connect")?;
        let stop = stop.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut out = Vec::new();
            let mut buf = Vec::with_capacity(256);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                out.clear();
                netstring::encode(key(c, i).as_bytes(), &mut out);
                i += 1;
                let t = Instant::now();
                if s.write_all(&out).await.is_err() {
                    break;
                }
                buf.clear();
                loop {
                    if let Ok(Some((_, used))) = netstring::parse(&buf, 1 << 20) {
                        buf.drain(..used);
                        break;
                    }
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return lat,
                        Ok(_) => {}
                    }
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// The classic query straight to MariaDB, `conns` connections, one query at a time each.
/// The classic `virtual_mailbox_maps` query, as the direct-SELECT references send it.
const CLASSIC_MAILBOX_SQL: &str = "SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email = ?";

/// A plain mysql_async connection to the directory's first server, over TCP as lookupd's.
fn direct_opts(cfg: &Config) -> Result<mysql_async::OptsBuilder> {
    let db = &cfg.database;
    let (host, port) = db.hosts[0].rsplit_once(':').context("host:port")?;
    Ok(mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port.parse()?)
        .user(Some(db.user.clone()))
        .pass(db.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(Some(db.dbname.clone()))
        .prefer_socket(false))
}

async fn drive_mysql(cfg: &Config, conns: usize, dur: Duration, users: usize) -> Result<Figure> {
    use mysql_async::prelude::Queryable;
    let opts = direct_opts(cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut conn = mysql_async::Conn::new(opts.clone()).await?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("user{}@example.org", i % users);
                i += 1;
                let t = Instant::now();
                let r: Result<Option<String>, _> =
                    conn.exec_first(CLASSIC_MAILBOX_SQL, (key,)).await;
                if r.is_err() {
                    break;
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// The ceiling: reads a netstring request, answers a fixed OK, same runtime and socket type
/// as lookupd.
async fn echo_server(path: PathBuf) -> Result<()> {
    let l = UnixListener::bind(&path)?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(512);
            let mut out = Vec::new();
            loop {
                while let Ok(Some((_, used))) = netstring::parse(&buf, 100_000) {
                    buf.drain(..used);
                    out.clear();
                    netstring::encode(b"OK example.org/user/", &mut out);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}

/// A domain and `users` mailboxes, as SQL both backends accept.
fn populate_sql(users: usize) -> String {
    let mut sql = String::from("INSERT INTO domains (domain) VALUES ('example.org');\n");
    for chunk in (0..users).collect::<Vec<_>>().chunks(1000) {
        sql.push_str("INSERT INTO users (email, password) VALUES ");
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| format!("('user{i}@example.org', 'abNANd1rDfiNc')"))
            .collect();
        sql.push_str(&rows.join(","));
        sql.push_str(";\n");
    }
    sql
}

fn directory(lookups: usize) -> Result<()> {
    use vmail_directory::{Directory, Map, SqlBackend};
    let users = 20_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (_guard, sqlite) = vmail_test_support::sqlite_config();
    let db = vmail_test_support::TestDb::create("vmail-bench directory")
        .context("no MariaDB (run scripts/test-deps)")?;
    let mysql = db.config();
    rt.block_on(async {
        for cfg in [&sqlite, &mysql] {
            Directory::open(cfg).await?.init(true).await?;
        }
        let b = vmail_directory::backend::Sqlite::open(&sqlite.database.sqlite_path, 1).await?;
        b.batch(vec![populate_sql(users)]).await?;
        anyhow::Ok(())
    })?;
    db.sql(&populate_sql(users));
    println!(
        "vmail-bench directory: {lookups} lookups per row, one client, no cache, {users} users"
    );
    println!(
        "{:>8} | {:>9} | {:>22} | {:>26}",
        "backend", "map", "key", "/s   p50   p99 (us)"
    );
    let mut mailboxes = 0.0;
    for (name, cfg) in [("sqlite", &sqlite), ("mariadb", &mysql)] {
        let dir = rt.block_on(Directory::open(cfg))?;
        for (map, key) in [
            (Map::Mailboxes, "user{}@example.org"),
            (Map::Aliases, "user{}@example.org"),
            (Map::Aliases, "nobody{}@example.org"),
        ] {
            let mut lat = Vec::with_capacity(lookups);
            let start = Instant::now();
            for i in 0..lookups {
                let k = key.replace("{}", &(i % users).to_string());
                let t = Instant::now();
                rt.block_on(dir.lookup(map, &k))?;
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            let f = summarize(lat, start.elapsed());
            println!(
                "{:>8} | {:>9} | {:>22} | {:>8.0} {:>7.0} {:>8.0}",
                name,
                map.name(),
                key.replace("{}", "N"),
                f.per_sec,
                f.p50_us,
                f.p99_us
            );
            if name == "mariadb" && map == Map::Mailboxes {
                mailboxes = f.per_sec;
            }
        }
    }
    // The reference for the MariaDB rows: the classic query on one plain connection.
    let f = rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::new(direct_opts(&mysql)?).await?;
        let mut lat = Vec::with_capacity(lookups);
        let start = Instant::now();
        for i in 0..lookups {
            let t = Instant::now();
            let r: Option<String> = conn
                .exec_first(
                    CLASSIC_MAILBOX_SQL,
                    (format!("user{}@example.org", i % users),),
                )
                .await?;
            anyhow::ensure!(r.is_some(), "the classic query found no row");
            lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        conn.disconnect().await?;
        anyhow::Ok(summarize(lat, start.elapsed()))
    })?;
    println!(
        "{:>8} | {:>9} | {:>22} | {:>8.0} {:>7.0} {:>8.0}",
        "direct", "classic", "userN@example.org", f.per_sec, f.p50_us, f.p99_us
    );
    println!(
        "mariadb mailboxes / direct classic query: {:.2} (the directory's own cost per lookup, \
         without lookupd's socket)",
        mailboxes / f.per_sec
    );
    Ok(())
}

/// `(n, SHA512-CRYPT hash of password(n))` for every `n < users`, sorted, hashed on every
/// CPU (5000 rounds take ~2.5 ms each here: thousands of users would take seconds serially).
fn sha512_hashes(users: usize, password: fn(usize) -> String) -> Result<Vec<(usize, String)>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut out: Vec<(usize, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..users)
                        .step_by(workers)
                        .map(|n| {
                            vmail_passwd::hash(
                                vmail_passwd::Scheme::Sha512Crypt,
                                password(n).as_bytes(),
                            )
                            .map(|h| (n, h))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("hash thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<Vec<_>>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    out.sort_unstable();
    Ok(out)
}

/// The directory a run works in: a fresh temp dir inside `dir` when given (`--dir`, to put
/// Maildirs on a chosen file system), else in $TMPDIR; removed when dropped.
fn work_dir(prefix: &str, dir: Option<&Path>) -> std::io::Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match dir {
        Some(d) => b.tempdir_in(d),
        None => b.tempdir(),
    }
}

/// Runs a lookupd on its own runtime, as `vmail-lookupd` builds it (`[lookupd] threads`),
/// until dropped; its `tid` is the thread that runs it (with `threads = 1`, the one doing
/// all its work).
fn spawn_lookupd(mut config: Config, sock: &Path, cache: bool) -> Result<InProcess<LookupdHandle>> {
    config.lookupd.socketmap = vec![format!("unix:{}", sock.display())];
    config.lookupd.socket_group = String::new();
    config.lookupd.user = String::new();
    config.lookupd.pid_file = sock.with_extension("pid");
    config.lookupd.stats_interval_s = 0;
    config.cache.enabled = cache;
    config.cache.max_entries = 1_000_000;
    config.cache.positive_ttl_s = 3600;
    config.cache.negative_ttl_s = 3600;
    let loaded = Loaded {
        config,
        source: Source::Builtin,
    };
    Ok(vmail_test_support::daemon::lookupd(loaded)?)
}

/// `batch_keys`, `batch_in_flight`, `threads`: lookupd's settings where given.
fn lookupd(
    dur: Duration,
    users: usize,
    batch_keys: Option<usize>,
    batch_in_flight: Option<usize>,
    threads: Option<usize>,
) -> Result<()> {
    let db = vmail_test_support::TestDb::create("vmail-bench lookupd")
        .context("no MariaDB (run scripts/test-deps)")?;
    let mut config = db.config();
    let d = &mut config.database;
    d.batch_keys = batch_keys.unwrap_or(d.batch_keys);
    d.batch_in_flight = batch_in_flight.unwrap_or(d.batch_in_flight);
    config.lookupd.threads = threads.unwrap_or(config.lookupd.threads);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    client_rt.block_on(async {
        let dir = vmail_directory::Directory::open(&config).await?;
        dir.init(true).await?;
        anyhow::Ok(())
    })?;
    let sql = populate_sql(users);
    db.sql(&sql);

    let tmp = tempfile::tempdir()?;
    let cached_sock = tmp.path().join("cached.sock");
    let uncached_sock = tmp.path().join("uncached.sock");
    let echo_sock = tmp.path().join("echo.sock");
    let cached = spawn_lookupd(config.clone(), &cached_sock, true)?;
    let cached_tid = cached.tid;
    let _uncached = spawn_lookupd(config.clone(), &uncached_sock, false)?;
    let echo_path = echo_sock.clone();
    // The ceiling gets the threads lookupd has (`[lookupd] threads`), so that a/c compares
    // the servers' work, not their thread counts.
    let echo_rt = vmail_daemon::runtime(config.lookupd.threads)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(vmail_test_support::thread_id());
        if let Err(e) = echo_rt.block_on(echo_server(echo_path)) {
            eprintln!("echo server: {e}");
        }
    });
    let echo_tid = rx.recv()?;
    // With one event loop, all of a server's work is on that thread: its CPU time per
    // request tells the servers' costs apart however fast the machine runs that minute.
    let one_loop = config.lookupd.threads == 1;
    let cpu_per_op =
        |tid: i32, run: &dyn Fn() -> Result<Figure>| -> Result<(Figure, Option<f64>)> {
            let cpu = || vmail_test_support::thread_cpu_time(tid);
            let before = cpu().filter(|_| one_loop);
            let t = Instant::now();
            let f = run()?;
            let ops = f.per_sec * t.elapsed().as_secs_f64();
            let us = before
                .zip(cpu())
                .map(|(b, a)| a.saturating_sub(b).as_secs_f64() * 1e6 / ops.max(1.0));
            Ok((f, us))
        };
    let mut server_cpu = Vec::new();
    std::thread::sleep(Duration::from_millis(200));

    // Warm the cache with every key the cached run will ask.
    let hot = 1000usize.min(users);
    client_rt.block_on(drive_socketmap(
        &cached_sock,
        4,
        Duration::from_millis(500),
        Arc::new(move |c, i| format!("mailboxes user{}@example.org", (c * 250 + i) % hot)),
    ))?;

    println!("vmail-bench lookupd: {users} users on MariaDB, {}s per figure, UNIX sockets, one request in flight per connection", dur.as_secs());
    println!(
        "lookupd: threads {}, pool_max {}, batch_keys {}, batch_in_flight {}",
        config.lookupd.threads,
        config.database.pool_max,
        config.database.batch_keys,
        config.database.batch_in_flight
    );
    println!(
        "{:>5} | {:>28} | {:>28} | {:>28} | {:>28} | {:>9} | {:>9}",
        "conns",
        "(a) lookupd cached",
        "(b) lookupd uncached",
        "(c) echo ceiling",
        "(d) direct SELECT",
        "a/c",
        "b/d"
    );
    println!(
        "{:>5} | {:>28} | {:>28} | {:>28} | {:>28} | {:>9} | {:>9}",
        "",
        "/s  p50  p99 (us)",
        "/s  p50  p99 (us)",
        "/s  p50  p99 (us)",
        "/s  p50  p99 (us)",
        "target .70",
        "target .90"
    );
    let fmt = |f: &Figure| format!("{:>9.0} {:>7.0} {:>8.0}", f.per_sec, f.p50_us, f.p99_us);
    let mut one_conn = None;
    for conns in [1usize, 16, 128] {
        // Cached lookups and the echo ceiling are asked the same keys.
        let hot_keys = || -> Arc<dyn Fn(usize, usize) -> String + Send + Sync> {
            Arc::new(move |c, i| format!("mailboxes user{}@example.org", (c * 31 + i) % hot))
        };
        let (a, a_cpu) = cpu_per_op(cached_tid, &|| {
            client_rt.block_on(drive_socketmap(&cached_sock, conns, dur, hot_keys()))
        })?;
        let b = client_rt.block_on(drive_socketmap(
            &uncached_sock,
            conns,
            dur,
            Arc::new(move |c, i| format!("mailboxes user{}@example.org", (c * 7919 + i) % users)),
        ))?;
        let (c, c_cpu) = cpu_per_op(echo_tid, &|| {
            client_rt.block_on(drive_socketmap(&echo_sock, conns, dur, hot_keys()))
        })?;
        if let (Some(a), Some(c)) = (a_cpu, c_cpu) {
            server_cpu.push((conns, a, c));
        }
        let d = client_rt.block_on(drive_mysql(&config, conns, dur, users))?;
        println!(
            "{:>5} | {} | {} | {} | {} | {:>9.2} | {:>9.2}",
            conns,
            fmt(&a),
            fmt(&b),
            fmt(&c),
            fmt(&d),
            a.per_sec / c.per_sec,
            b.per_sec / d.per_sec
        );
        if conns == 1 {
            // With one request in flight, any server between client and MariaDB costs at
            // least a direct SELECT plus an echo round trip: the best an uncached lookup can
            // do, however little the server itself does.
            let bound = 1.0 / (1.0 / c.per_sec + 1.0 / d.per_sec);
            one_conn = Some((bound, b.per_sec, d.per_sec));
        }
    }
    if let Some((bound, b, d)) = one_conn {
        println!(
            "1 connection: a server that cost nothing itself would reach {bound:.0}/s uncached \
             (1 / (1/c + 1/d)) = {:.2} of (d); lookupd reaches {:.2} of that bound",
            bound / d,
            b / bound
        );
    }
    for (conns, a, c) in server_cpu {
        println!(
            "{conns:>3} conns: server CPU per request: lookupd cached {a:.1} us, echo {c:.1} us: \
             echo/lookupd {:.2}",
            c / a
        );
    }
    address_set_cost(&client_rt, &config)?;
    // The daemons' threads run until the process exits.
    std::process::exit(0);
}

/// What lookupd's address set (`[cache] address_set_max`) costs for this database: the read
/// (one statement, then normalizing and hashing on the blocking pool) and the memory it holds.
fn address_set_cost(rt: &tokio::runtime::Runtime, config: &Config) -> Result<()> {
    let rss_kib = || -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let c = &config.cache;
    let ttl = Duration::from_secs(c.negative_ttl_s.max(1));
    let mut reads = Vec::new();
    let mut held = Vec::new();
    // Each set stays alive, so that the next one's memory is new memory.
    let mut alive = Vec::new();
    for _ in 0..5 {
        let before = rss_kib();
        let dir = rt.block_on(vmail_directory::Directory::open(config))?;
        let dir = dir
            .with_memo(ttl, ttl, c.max_entries)
            .with_address_set(ttl, c.address_set_max);
        let t = Instant::now();
        let keys = rt.block_on(dir.load_address_set())?;
        reads.push(t.elapsed());
        let Some(keys) = keys else {
            println!(
                "address set: not held (more rows than [cache] address_set_max = {})",
                c.address_set_max
            );
            return Ok(());
        };
        if let (Some(b), Some(a)) = (before, rss_kib()) {
            held.push((a.saturating_sub(b), keys));
        }
        rt.block_on(dir.close());
        alive.push(dir);
    }
    reads.sort();
    let median = reads[reads.len() / 2];
    held.sort();
    match held.get(held.len() / 2) {
        Some(&(kib, keys)) => println!(
            "address set: {keys} stored addresses read in {:.1} ms (median of {}), about {} bytes each in memory ({} KiB, median RSS growth)",
            median.as_secs_f64() * 1e3,
            reads.len(),
            kib * 1024 / keys.max(1) as u64,
            kib
        ),
        None => println!(
            "address set: read in {:.1} ms (median of {})",
            median.as_secs_f64() * 1e3,
            reads.len()
        ),
    }
    Ok(())
}
