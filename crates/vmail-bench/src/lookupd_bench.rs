//! `vmail-bench lookupd`: socketmap lookups/s through lookupd (cache on and off) against the
//! classic query straight to MariaDB and a server that does no work; and what lookupd's
//! address set costs.

use super::*;

/// Runs a lookupd on its own runtime, as `vmail-lookupd` builds it (`[lookupd] threads`),
/// until dropped; its `tid` is the thread that runs it (with `threads = 1`, the one doing
/// all its work).
pub(super) fn spawn_lookupd(
    mut config: Config,
    sock: &Path,
    cache: bool,
) -> Result<InProcess<LookupdHandle>> {
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
pub(super) fn lookupd(
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
pub(super) fn address_set_cost(rt: &tokio::runtime::Runtime, config: &Config) -> Result<()> {
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
        let dir = vmail_lookupd::cache::shared::Shared::new(dir)
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
        rt.block_on(dir.directory().close());
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
