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
//!
//! `vmail-bench delivery`: final delivery through pipe(8) to vmail-lda, vmail-lmtpd,
//! Dovecot's LMTP and a discarding LMTP sink (see `delivery.rs`; `bench/delivery` runs it).

mod authd;
mod cpu;
mod delivery;
mod dovecot_auth;
mod drive;
mod host;
mod lda;
mod lookupd_bench;
mod rounds;
mod stack;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use drive::*;
use lookupd_bench::*;
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
    /// Final delivery routes side by side: pipe(8) to vmail-lda, lmtp to vmail-lmtpd, to
    /// Dovecot 2.3's and 2.4's LMTP, to a discarding sink; msgs/s and peak RSS (run as root
    /// through bench/delivery).
    Delivery(delivery::DeliveryArgs),
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
        What::Delivery(a) => delivery::run(a),
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
