//! `vmail-bench lda`: vmail-lda against dovecot-lda exactly as Postfix's pipe(8) runs them —
//! a fresh process per message, the message on stdin, `-f sender -a rcpt -d rcpt`, as the
//! unprivileged mail user, an empty environment — on the same messages, the same file system
//! and the same MariaDB database. Prints deliveries/s, latency and peak RSS (`wait4()`'s
//! `ru_maxrss`) per message size and the ratio, then where one vmail-lda invocation's time
//! goes (`VMAIL_LDA_TIMING=1` phase marks, plus reference measurements).
//!
//! Dovecot gets a private instance (`vmail_test_support::dovecot`) whose passdb and userdb are
//! `driver = sql` on the benchmark database, with the auth cache off, so every dovecot-lda
//! delivery costs one SQL lookup as every vmail-lda delivery does. vmail-lda runs as
//! contrib/ sets it up: it asks a running vmail-lookupd (cache off, so one SQL lookup per
//! delivery too) over a UNIX socket, as dovecot-lda asks Dovecot's auth process. One more
//! 1 KiB figure has both caches on (lookupd's, as contrib ships it, and Dovecot's
//! `auth_cache_size`), so neither side asks the database. The breakdown also shows vmail-lda
//! connecting to the database itself (lookupd not running).

mod breakdown;
mod child;
mod inputs;
mod machine;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use breakdown::*;
use child::*;
use inputs::*;
use machine::*;
use vmail_config::Config;
use vmail_directory::{Directory, SqlBackend};
use vmail_test_support::dovecot::{DovecotBuilder, PrivateDovecot};
use vmail_test_support::MailUser;
use vmail_test_support::TestDb;

#[derive(clap::Args)]
pub struct LdaArgs {
    /// Seconds per figure (each tool and message size); at least 5 deliveries are made.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Users in the database.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// How many of them receive mail, in turn (each gets one warm-up message first, so that
    /// creating Maildirs is not measured).
    #[arg(long, default_value_t = 100)]
    recipients: usize,
    /// vmail-lda invocations per variant in the time breakdown.
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Directory to put the Maildirs in (a temp dir is made inside it); default: $TMPDIR.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The vmail-lda binary; default: next to vmail-bench (scripts/build-release links it statically).
    #[arg(long)]
    vmail_lda: Option<PathBuf>,
    #[arg(long, default_value = "/usr/lib/dovecot/dovecot-lda")]
    dovecot_lda: PathBuf,
}

const SENDER: &str = "bob@remote.test";
const SIZES: [(usize, &str); 3] = [
    (1024, "1 KiB"),
    (100 * 1024, "100 KiB"),
    (10 << 20, "10 MiB"),
];

/// Deliveries/s, latency and peak RSS of one tool and message size.
struct Figure {
    n: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_kib: u64,
    minflt_p50: f64,
}

struct Bench {
    user: MailUser,
    recipients: usize,
    out: File,
}

impl Bench {
    /// Delivers `body` to the recipients in turn for `dur` (at least `min` times); any
    /// delivery that does not exit 0 stops the benchmark.
    fn measure(&self, lda: &Lda, body: &Path, dur: Duration, min: usize) -> Result<Figure> {
        let mut lat = Vec::new();
        let mut faults = Vec::new();
        let mut peak = 0;
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < dur || i < min {
            let rcpt = recipient(i, self.recipients);
            let r = run_child(
                &mut lda.command(&self.user, &rcpt),
                &trace_lines(&rcpt),
                Some(body),
                &self.out,
            )?;
            if r.status != 0 {
                bail!(
                    "{} exited {} for {rcpt}: {}",
                    lda.name(),
                    r.status,
                    r.output.trim()
                );
            }
            lat.push(r.wall.as_secs_f64() * 1000.0);
            faults.push(r.minflt as f64);
            peak = peak.max(r.maxrss_kib);
            i += 1;
        }
        let elapsed = start.elapsed();
        lat.sort_by(f64::total_cmp);
        Ok(Figure {
            n: i,
            per_sec: i as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            peak_rss_kib: peak,
            minflt_p50: median(&faults),
        })
    }
}

/// A vmail.toml for the LDA: `database` is the `[database]` body.
fn vmail_toml(database: &str, homes: &Path) -> String {
    format!(
        "[database]\n{database}\n[mailbox]\nhome = \"{}/%d/%n\"\nmail = \"maildir:~/Maildir\"\n",
        homes.display()
    )
}

fn mysql_database_toml(db: &TestDb, host: &str) -> String {
    format!(
        "backend = \"mysql\"\nhosts = [\"{host}\"]\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"{}\"",
        db.user, db.password, db.name
    )
}

/// A Dovecot whose passdb and userdb run one SQL query per lookup on the benchmark database,
/// returning homes under `homes`.
/// With `cache`, Dovecot's auth cache is on (`auth_cache_size = 10M`), so a userdb lookup it
/// has answered before costs no SQL query.
fn start_dovecot(
    db: &TestDb,
    homes: &Path,
    user: &MailUser,
    cache: bool,
) -> Result<PrivateDovecot> {
    let (host, port) = db.host.rsplit_once(':').context("db host:port")?;
    // Same checks as vmail's lookup (user and domain active), in one statement.
    let cond = "FROM users u JOIN domains d ON d.domain = '%d' \
                WHERE u.email = '%u' AND u.active = 1 AND d.active = 1";
    let sql_conf = format!(
        "driver = mysql\n\
         connect = host={host} port={port} dbname={} user={} password={}\n\
         default_pass_scheme = CRYPT\n\
         password_query = SELECT u.email AS user, u.password {cond}\n\
         user_query = SELECT CONCAT('{}/', '%d', '/', '%n') AS home, {} AS uid, {} AS gid {cond}\n",
        db.name,
        db.user,
        db.password,
        homes.display(),
        user.uid,
        user.gid
    );
    let dovecot = DovecotBuilder::new()
        .mail_owner(user.uid, user.gid)
        // Off is Dovecot's default: every delivery reaches the database, as vmail-lda's
        // does through lookupd with its cache off.
        .conf(if cache {
            "auth_cache_size = 10M"
        } else {
            "auth_cache_size = 0"
        })
        // dovecot-lda runs as the mail user: it must be able to write its log and reach the
        // stats socket, or it logs a permission error at every delivery.
        .conf("protocol lda {\n  log_path = @DIR@/lda.log\n}")
        .conf("service stats {\n  unix_listener stats-writer {\n    mode = 0666\n  }\n}")
        .file("sql.conf", &sql_conf)
        .file("lda.log", "")
        .passdb("driver = sql\nargs = @DIR@/sql.conf")
        .userdb("driver = sql\nargs = @DIR@/sql.conf")
        .start("vmail-bench lda")
        .context("Dovecot is missing (run scripts/test-deps)")?;
    let log = dovecot.dir.path().join("lda.log");
    std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid))?;
    Ok(dovecot)
}

pub fn run(a: &LdaArgs) -> Result<()> {
    crate::host::require_root(
        "Dovecot must start as root and the LDAs run as the mail user, as pipe(8) runs them",
    )?;
    let vmail_bin = match &a.vmail_lda {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("vmail-lda"),
    };
    let lookupd_bin = std::env::current_exe()?.with_file_name("vmail-lookupd");
    for bin in [&vmail_bin, &lookupd_bin] {
        if !bin.exists() {
            bail!(
                "{} not found: scripts/build-release -p vmail-bench -p vmail-lookupd",
                bin.display()
            );
        }
    }
    if !a.dovecot_lda.exists() {
        bail!(
            "{} not found (run scripts/test-deps)",
            a.dovecot_lda.display()
        );
    }
    // The mail user pipe(8) would run the LDA as (`user=vmail:vmail`).
    let user = MailUser::nobody().context("no user nobody / group nogroup to run the LDAs as")?;
    let recipients = a.recipients.clamp(1, a.users.max(1));

    // The directory: the same users on MariaDB (both LDAs) and SQLite (breakdown only).
    let db = TestDb::create("vmail-bench lda").context("no MariaDB (run scripts/test-deps)")?;
    let mysql = db.config();
    let (sqlite_dir, sqlite) = vmail_test_support::sqlite_config();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let populate = crate::populate_sql(a.users);
    rt.block_on(async {
        for cfg in [&mysql, &sqlite] {
            Directory::open(cfg).await?.init(false).await?;
        }
        let b = vmail_directory::backend::Sqlite::open(&sqlite.database.sqlite_path, 1).await?;
        b.batch(vec![populate.clone()]).await?;
        anyhow::Ok(())
    })?;
    db.sql(&populate);
    // The LDA opens the SQLite file as the mail user (WAL needs the directory writable).
    vmail_test_support::set_mode(sqlite_dir.path(), 0o755);
    chown_tree(sqlite_dir.path(), &user)?;

    let base = crate::work_dir("vmail-bench-lda", a.dir.as_deref())?;
    let work = base.path();
    vmail_test_support::set_mode(work, 0o755);
    let vmail_homes = work.join("vmail");
    let dovecot_homes = work.join("dovecot");
    for d in [&vmail_homes, &dovecot_homes] {
        std::fs::create_dir(d)?;
        chown_tree(d, &user)?;
    }
    let cfg_tcp = work.join("vmail-mariadb-tcp.toml");
    let cfg_unix = work.join("vmail-mariadb-socket.toml");
    let cfg_sqlite = work.join("vmail-sqlite.toml");
    write_file(
        &cfg_tcp,
        &vmail_toml(&mysql_database_toml(&db, &db.host), &vmail_homes),
    )?;
    write_file(
        &cfg_unix,
        &vmail_toml(&mysql_database_toml(&db, &db.socket), &vmail_homes),
    )?;
    write_file(
        &cfg_sqlite,
        &vmail_toml(
            &format!(
                "backend = \"sqlite\"\nsqlite_path = \"{}\"",
                sqlite.database.sqlite_path.display()
            ),
            &vmail_homes,
        ),
    )?;
    let dovecot = start_dovecot(&db, &dovecot_homes, &user, false)?;
    let dovecot_cached = start_dovecot(&db, &dovecot_homes, &user, true)?;

    // vmail-lda as contrib/vmail/vmail.toml sets it up: asking a running lookupd. Returns
    // the lookupd (kept running while held) and the vmail.toml pointing vmail-lda at it.
    // lookupd is its own process, as in production: a thread of this process would take
    // copy-on-write faults after every fork of an LDA, and pay a TLB flush for each.
    let lda_toml = vmail_toml(&mysql_database_toml(&db, &db.host), &vmail_homes);
    let lda_group = group_name(user.gid)?;
    let lookupd_for_lda = |name: &str, cache: bool| -> Result<_> {
        let sock = work.join(format!("{name}-lda"));
        let daemon_toml = work.join(format!("{name}.toml"));
        write_file(
            &daemon_toml,
            &format!(
                "{lda_toml}[lookupd]\nsocketmap = [\"unix:{postfix}\"]\nlda = [\"unix:{lda}\"]\n\
                 socket_group = \"\"\nlda_socket_group = \"{lda_group}\"\nuser = \"\"\n\
                 pid_file = \"{pid}\"\nstats_interval_s = 0\n\
                 [cache]\nenabled = {cache}\nmax_entries = 1000000\n\
                 positive_ttl_s = 3600\nnegative_ttl_s = 3600\n",
                postfix = work.join(format!("{name}-postfix")).display(),
                lda = sock.display(),
                pid = work.join(format!("{name}.pid")).display(),
            ),
        )?;
        let daemon = crate::stack::Daemon::spawn(
            name,
            &lookupd_bin,
            &daemon_toml,
            &work.join(format!("state-{name}")),
            std::slice::from_ref(&sock),
            None,
        )?;
        let toml = work.join(format!("vmail-{name}.toml"));
        write_file(
            &toml,
            &format!("{lda_toml}[lda]\nlookupd = \"unix:{}\"\n", sock.display()),
        )?;
        Ok((daemon, toml))
    };
    // Cache off, so that every delivery still costs one SQL lookup, as dovecot-lda's (auth
    // cache off) does.
    let (_lookupd, cfg_lookupd) = lookupd_for_lda("lookupd", false)?;
    // The same with both caches on: lookupd's (as contrib/ ships it) and Dovecot's auth
    // cache, each filled by the warm-up delivery, so neither asks the database.
    let (_lookupd_cached, cfg_lookupd_cached) = lookupd_for_lda("lookupd-cached", true)?;

    let vmail = Lda::Vmail {
        bin: vmail_bin.clone(),
        config: cfg_lookupd.clone(),
    };
    let dove = Lda::Dovecot {
        bin: a.dovecot_lda.clone(),
        config: dovecot.conf_path(),
    };
    let vmail_cached = Lda::Vmail {
        bin: vmail_bin.clone(),
        config: cfg_lookupd_cached.clone(),
    };
    let dove_cached = Lda::Dovecot {
        bin: a.dovecot_lda.clone(),
        config: dovecot_cached.conf_path(),
    };
    let bench = Bench {
        user: user.clone(),
        recipients,
        out: output_file()?,
    };

    let bodies = SIZES
        .iter()
        .map(|(size, _)| {
            let p = work.join(format!("message-{size}"));
            std::fs::write(&p, message_body(*size))?;
            Ok(p)
        })
        .collect::<Result<Vec<_>>>()?;
    let small = &bodies[0];

    // Warm-up: every recipient's Maildir (and Dovecot's index files) exists before measuring.
    for lda in [&vmail, &dove, &vmail_cached, &dove_cached] {
        bench.measure(lda, small, Duration::ZERO, recipients)?;
    }
    let mut delivered = [2 * recipients, 2 * recipients];

    let mut true_cmd = Command::new("/bin/true");
    as_mail_user(&mut true_cmd, &user);
    let floor = run_child(&mut true_cmd, b"", None, &bench.out)?.maxrss_kib;
    println!(
        "vmail-bench lda: one process per message as pipe(8) runs it, one at a time, as uid {}; \
         vmail-lda {} ({}ally linked); {} users on MariaDB over TCP (vmail-lda through lookupd, cache off; dovecot-lda through \
         Dovecot's auth, cache off), {recipients} recipients in turn; Maildirs in {} ({}); \
         {}s per figure; load average {}",
        user.uid,
        vmail_bin.display(),
        link_mode(&vmail_bin),
        a.users,
        work.display(),
        fs_type(work),
        a.seconds,
        crate::host::load_average()
    );
    println!(
        "peak RSS = the child's ru_maxrss from wait4(); floor (/bin/true spawned the same way): {:.1} MiB",
        floor as f64 / 1024.0
    );
    println!(
        "{:>8} | {:>38} | {:>38} | {:>13}",
        "size", "vmail-lda", "dovecot-lda", "vmail/dovecot"
    );
    println!(
        "{:>8} | {:>38} | {:>38} | {:>13}",
        "",
        "/s   p50   p99 (ms)  peak RSS (MiB)",
        "/s   p50   p99 (ms)  peak RSS (MiB)",
        "target 5 (1 KiB)"
    );
    let dur = Duration::from_secs_f64(a.seconds);
    let fmt = |f: &Figure| {
        format!(
            "{:>7.1} {:>6.2} {:>6.2}  {:>9.1} (n={})",
            f.per_sec,
            f.p50_ms,
            f.p99_ms,
            f.peak_rss_kib as f64 / 1024.0,
            f.n
        )
    };
    let row = |label: &str, v: &Figure, d: &Figure| {
        println!(
            "{:>8} | {:>38} | {:>38} | {:>13.2}",
            label,
            fmt(v),
            fmt(d),
            v.per_sec / d.per_sec
        );
    };
    let mut dovecot_small = (0.0, 0.0);
    for ((size, label), body) in SIZES.into_iter().zip(&bodies) {
        let v = bench.measure(&vmail, body, dur, 5)?;
        let d = bench.measure(&dove, body, dur, 5)?;
        delivered[0] += v.n;
        delivered[1] += d.n;
        if size == 1024 {
            dovecot_small = (d.p50_ms, d.minflt_p50);
        }
        row(label, &v, &d);
    }
    // Both caches on, 1 KiB: the lookup costs an in-memory answer on both sides.
    let v = bench.measure(&vmail_cached, small, dur, 5)?;
    let d = bench.measure(&dove_cached, small, dur, 5)?;
    delivered[0] += v.n;
    delivered[1] += d.n;
    row("1 KiB *", &v, &d);
    println!(
        "  * caches on: lookupd's (contrib's setting) and Dovecot's auth_cache_size = 10M, both filled by the warm-up, so no delivery asks MariaDB"
    );
    for (homes, want, name) in [
        (&vmail_homes, delivered[0], "vmail-lda"),
        (&dovecot_homes, delivered[1], "dovecot-lda"),
    ] {
        let got = count_delivered(homes);
        if got != want {
            bail!("{name}: {got} messages in new/ after {want} successful deliveries");
        }
    }
    println!("(every delivery exited 0 and left exactly one file in new/)");

    breakdown(
        &bench,
        &vmail_bin,
        &[
            ("via lookupd", &cfg_lookupd),
            ("lookupd cached", &cfg_lookupd_cached),
            ("MariaDB TCP", &cfg_tcp),
            ("MariaDB socket", &cfg_unix),
            ("SQLite", &cfg_sqlite),
        ],
        a.runs.max(1),
        small,
        dovecot_small,
    )?;
    reference(
        &rt,
        &mysql,
        &db,
        a.runs.max(1),
        work,
        user,
        &vmail_bin,
        &dovecot.conf_path(),
        &bench,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::link_mode_of;

    /// An ELF64 little-endian header with program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&u16::try_from(types.len()).unwrap().to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            e.extend(ph);
        }
        e
    }

    #[test]
    fn link_mode_reads_pt_interp() {
        assert_eq!(link_mode_of(&elf(&[6, 3, 1])), "dynamic");
        assert_eq!(link_mode_of(&elf(&[6, 1, 2])), "static");
        let mut cut = elf(&[1, 3]);
        cut.truncate(64 + 56 + 2);
        assert_eq!(link_mode_of(&cut), "truncated ELF");
        assert_eq!(link_mode_of(b"#!/bin/sh\n"), "not ELF64 LE");
        // This test binary is a plain cargo build: dynamically linked.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(link_mode_of(&me), "dynamic");
    }
}
