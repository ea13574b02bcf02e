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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
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

/// One finished child process.
struct Run {
    wall: Duration,
    maxrss_kib: u64,
    /// Minor page faults: in this kind of VM each costs microseconds, and a fresh process
    /// takes one for every page of code and heap it touches first.
    minflt: u64,
    /// Exit status, or minus the signal number.
    status: i32,
    /// stdout and stderr together.
    output: String,
}

/// What to run for one delivery.
enum Lda {
    Vmail { bin: PathBuf, config: PathBuf },
    Dovecot { bin: PathBuf, config: PathBuf },
}

impl Lda {
    fn name(&self) -> &'static str {
        match self {
            Lda::Vmail { .. } => "vmail-lda",
            Lda::Dovecot { .. } => "dovecot-lda",
        }
    }

    fn command(&self, user: &MailUser, recipient: &str) -> Command {
        let (bin, config_opt, config) = match self {
            Lda::Vmail { bin, config } => (bin, "--config", config),
            Lda::Dovecot { bin, config } => (bin, "-c", config),
        };
        let mut c = Command::new(bin);
        c.arg(config_opt)
            .arg(config)
            .args(["-f", SENDER, "-a", recipient, "-d", recipient]);
        as_mail_user(&mut c, user);
        c
    }
}

/// pipe(8) runs its command with a minimal environment, as the `user=` of master.cf, from
/// the queue directory. (std drops root's supplementary groups itself when `uid` is set.)
fn as_mail_user(c: &mut Command, user: &MailUser) {
    c.env_clear().current_dir("/").uid(user.uid).gid(user.gid);
}

/// Runs `cmd` with `head` and then the file `body` on its stdin (one pipe, like pipe(8)),
/// reaps it with wait4() for its resource usage, and collects its output through `out` (a
/// memory file from [`output_file`], so a chatty child can never block on a full pipe while
/// we wait for it).
///
/// The body is streamed from a file rather than held in memory because Linux carries the
/// parent's resident size at fork() into the child's `ru_maxrss` (exec records the old
/// address space's high-water mark): a 10 MiB message in our heap would show up as 10 MiB
/// of every LDA's peak. `floor` in the output is what remains of that effect.
fn run_child(cmd: &mut Command, head: &[u8], body: Option<&Path>, out: &File) -> Result<Run> {
    out.set_len(0)?;
    (&*out).seek(SeekFrom::Start(0))?;
    let mut body = body.map(File::open).transpose()?;
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that stops reading early (an error) reports why in its status.
        let _ = feed(&mut stdin, head, body.as_mut());
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped; both pointers are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let wall = start.elapsed();
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Ok(Run {
        wall,
        maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        minflt: u64::try_from(ru.ru_minflt).unwrap_or(0),
        status,
        output: read_output(out),
    })
}

/// Where children write stdout and stderr: a memfd, because truncating a file on ext4 that
/// still has unwritten data forces it out (`auto_da_alloc`), and that disk traffic would land
/// in the middle of the LDAs' fsyncs.
fn output_file() -> Result<File> {
    // SAFETY: the name is a valid C string; the returned descriptor is checked and owned.
    let fd = unsafe { libc::memfd_create(c"vmail-bench-lda-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn read_output(out: &File) -> String {
    let mut s = String::new();
    if (&*out).seek(SeekFrom::Start(0)).is_ok() {
        let _ = (&*out).read_to_string(&mut s);
    }
    s
}

fn feed(to: &mut impl Write, head: &[u8], body: Option<&mut File>) -> std::io::Result<()> {
    to.write_all(head)?;
    if let Some(f) = body {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            to.write_all(&buf[..n])?;
        }
    }
    Ok(())
}

/// A message of about `size` bytes as it leaves Postfix's queue file (LF line ends), after
/// the lines pipe(8)'s `D` and `R` flags prepend, which differ per recipient.
fn message_body(size: usize) -> Vec<u8> {
    let mut m = format!(
        "Received: from mx.remote.test (mx.remote.test [192.0.2.1])\n\
         \tby mail.example.org (Postfix) with ESMTPS id 4dBnch1LxVz9sWj\n\
         \tfor <user@example.org>; Sat, 29 Nov 2026 12:00:00 +0000 (UTC)\n\
         From: Bob <{SENDER}>\n\
         To: <user@example.org>\n\
         Subject: benchmark message of {size} bytes\n\
         Date: Sat, 29 Nov 2026 12:00:00 +0000\n\
         Message-ID: <bench.{size}@remote.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\n"
    )
    .into_bytes();
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0usize;
    while m.len() + 77 <= size {
        for _ in 0..76 {
            m.push(B64[i % 64]);
            i = i.wrapping_mul(31).wrapping_add(7) % 1_000_003;
        }
        m.push(b'\n');
    }
    m
}

fn trace_lines(recipient: &str) -> Vec<u8> {
    format!("Return-Path: <{SENDER}>\nDelivered-To: {recipient}\n").into_bytes()
}

fn recipient(i: usize, recipients: usize) -> String {
    format!("user{}@example.org", i % recipients)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

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

/// Files in every `new/` below `dir`: what the LDAs have delivered.
fn count_delivered(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|f| f == "new") {
            n += std::fs::read_dir(&p).map_or(0, |r| r.count());
        } else {
            n += count_delivered(&p);
        }
    }
    n
}

fn chown_tree(p: &Path, user: &MailUser) -> Result<()> {
    std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid))
        .with_context(|| format!("chown {}", p.display()))?;
    if p.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), user)?;
        }
    }
    Ok(())
}

fn write_file(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?;
    vmail_test_support::set_mode(p, 0o644);
    Ok(())
}

fn fs_type(p: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// "static" or "dynamic": whether the ELF binary at `p` names a program interpreter
/// (`PT_INTERP`, the dynamic loader). scripts/build-release links vmail-lda statically; a plain
/// `cargo build` does not, which the figures should say.
fn link_mode(p: &Path) -> String {
    // The headers only: reading the whole binary would raise this process's peak RSS, which
    // every child's ru_maxrss inherits (see run_child).
    let mut head = Vec::new();
    match File::open(p).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)) {
        Ok(_) => link_mode_of(&head).into(),
        Err(e) => format!("unreadable: {e}"),
    }
}

fn link_mode_of(elf: &[u8]) -> &'static str {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64 little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return "not ELF64 LE";
    }
    let (Some(phoff), Some(size), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return "truncated ELF";
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return "truncated ELF";
    };
    let mut interp = false;
    for i in 0..num {
        match elf.get(phoff + i * size..phoff + i * size + 4) {
            Some(t) => interp |= t == 3u32.to_le_bytes(),
            None => return "truncated ELF",
        }
    }
    if interp {
        "dynamic"
    } else {
        "static"
    }
}

/// The name of group `gid` (lookupd's socket is given to the group the LDA runs as).
fn group_name(gid: u32) -> Result<String> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == gid.to_string()).then(|| name.to_string())
        })
        .with_context(|| format!("no group with gid {gid} in /etc/group"))
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

/// The phases `VMAIL_LDA_TIMING=1` reports, in order, with what each covers.
const PHASES: [(&str, &str); 9] = [
    ("args", "args: parse argv"),
    ("config", "config: read + parse vmail.toml"),
    ("runtime", "runtime: tokio current-thread"),
    ("open", "directory open (no I/O for MariaDB)"),
    ("stage", "stage: ask lookupd, write + fsync meanwhile"),
    ("lookup", "lookup: (rest of) lookupd's answer, or SQL"),
    ("close", "close: drop directory + connection"),
    ("deliver", "deliver: (write, fsync,) link, fsync"),
    ("teardown", "teardown: drop runtime"),
];

/// Runs 1 KiB deliveries with `VMAIL_LDA_TIMING=1` on each configuration and prints the
/// median of each phase.
fn breakdown(
    bench: &Bench,
    bin: &Path,
    variants: &[(&str, &PathBuf)],
    runs: usize,
    body: &Path,
    (dovecot_p50_ms, dovecot_minflt): (f64, f64),
) -> Result<()> {
    let mut columns = Vec::new();
    for (name, cfg) in variants {
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut rss = 0;
        for i in 0..runs {
            let rcpt = recipient(i, bench.recipients);
            let lda = Lda::Vmail {
                bin: bin.to_path_buf(),
                config: (*cfg).clone(),
            };
            let mut cmd = lda.command(&bench.user, &rcpt);
            cmd.env("VMAIL_LDA_TIMING", "1");
            let r = run_child(&mut cmd, &trace_lines(&rcpt), Some(body), &bench.out)?;
            if r.status != 0 {
                bail!(
                    "vmail-lda ({name}) exited {}: {}",
                    r.status,
                    r.output.trim()
                );
            }
            let line = r
                .output
                .lines()
                .find_map(|l| l.strip_prefix("vmail-lda timing:"))
                .context("no timing line from vmail-lda")?;
            let mut total = 0.0;
            for kv in line.split_whitespace() {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let us: f64 = v.parse().context("timing value")?;
                if k == "total" {
                    total = us;
                }
                phases.entry(k.to_string()).or_default().push(us);
            }
            let wall = r.wall.as_secs_f64() * 1e6;
            phases.entry("wall".into()).or_default().push(wall);
            phases
                .entry("process".into())
                .or_default()
                .push(wall - total);
            phases
                .entry("minflt".into())
                .or_default()
                .push(r.minflt as f64);
            rss = rss.max(r.maxrss_kib);
        }
        columns.push((name, phases, rss));
    }
    println!();
    println!(
        "Where one vmail-lda invocation's time goes: 1 KiB message, median µs of {runs} runs \
         (VMAIL_LDA_TIMING=1; process = wall - in-process total)"
    );
    print!("{:>42}", "phase");
    for (name, _, _) in &columns {
        print!(" | {name:>14}");
    }
    println!();
    let row = |label: &str, key: &str| {
        print!("{label:>42}");
        for (_, phases, _) in &columns {
            let v = phases.get(key).map_or(0.0, |v| median(v));
            print!(" | {v:>14.0}");
        }
        println!();
    };
    row("process: fork, exec, ld.so, exit, wait4", "process");
    for (key, label) in PHASES {
        row(label, key);
    }
    row("in-process total", "total");
    row("wall (spawn to wait4)", "wall");
    row("minor page faults", "minflt");
    print!("{:>42}", "peak RSS (KiB)");
    for (_, _, rss) in &columns {
        print!(" | {rss:>14}");
    }
    println!();
    println!(
        "{:>42} | {:>14.0}",
        "dovecot-lda wall, for comparison (p50)",
        dovecot_p50_ms * 1000.0
    );
    println!(
        "{:>42} | {:>14.0}",
        "dovecot-lda minor page faults (p50)", dovecot_minflt
    );
    Ok(())
}

/// Reference points that split the phases further: a bare process, a bare MariaDB
/// connection, the directory's cold and warm lookups, and the durable-write floor of the
/// file system.
#[allow(clippy::too_many_arguments)]
fn reference(
    rt: &tokio::runtime::Runtime,
    mysql: &Config,
    db: &TestDb,
    runs: usize,
    work: &Path,
    user: MailUser,
    vmail_bin: &Path,
    dovecot_conf: &Path,
    bench: &Bench,
) -> Result<()> {
    let time_us = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(median(&v))
    };
    let mut rows: Vec<(&str, f64)> = Vec::new();

    let out = &bench.out;
    rows.push((
        "fork+exec+wait4 of /bin/true as the mail user",
        time_us(&mut || {
            let mut c = Command::new("/bin/true");
            as_mail_user(&mut c, &user);
            run_child(&mut c, b"", None, out).map(drop)
        })?,
    ));
    rows.push((
        "vmail-lda --version (exec, Rust start, clap, exit)",
        time_us(&mut || {
            let mut c = Command::new(vmail_bin);
            c.arg("--version");
            as_mail_user(&mut c, &user);
            run_child(&mut c, b"", None, out).map(drop)
        })?,
    ));

    rows.push((
        "doveconf -c (dovecot-lda re-execs it per message)",
        time_us(&mut || {
            let mut c = Command::new("/usr/bin/doveconf");
            c.arg("-c").arg(dovecot_conf).args(["-h", "base_dir"]);
            as_mail_user(&mut c, &user);
            let r = run_child(&mut c, b"", None, out)?;
            if r.status != 0 {
                bail!("doveconf: {}", r.output.trim());
            }
            Ok(())
        })?,
    ));

    let (host, port) = db.host.rsplit_once(':').context("db host:port")?;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port.parse()?)
        .user(Some(db.user.clone()))
        .pass(Some(db.password.clone()))
        .db_name(Some(db.name.clone()))
        .prefer_socket(false)
        .into();
    let mut conns = Vec::new();
    rows.push((
        "MariaDB TCP connect + auth (mysql_async)",
        time_us(&mut || {
            conns.push(rt.block_on(mysql_async::Conn::new(opts.clone()))?);
            Ok(())
        })?,
    ));
    rt.block_on(async {
        for c in conns.drain(..) {
            let _ = c.disconnect().await;
        }
    });
    let rcpt = recipient(0, bench.recipients);
    rows.push((
        "fresh Directory + inspect() (connect + schema)",
        time_us(&mut || {
            rt.block_on(async {
                Directory::open(mysql).await?.inspect().await?;
                anyhow::Ok(())
            })
        })?,
    ));
    rows.push((
        "fresh Directory + recipient() (as the LDA)",
        time_us(&mut || {
            rt.block_on(async {
                let d = Directory::open(mysql).await?;
                d.recipient(&rcpt).await?.context("recipient not found")?;
                anyhow::Ok(())
            })
        })?,
    ));
    let dir = rt.block_on(Directory::open(mysql))?;
    rt.block_on(dir.recipient(&rcpt))?;
    rows.push((
        "recipient() on an open Directory (warm)",
        time_us(&mut || {
            rt.block_on(dir.recipient(&rcpt))?;
            Ok(())
        })?,
    ));
    rows.push((
        "schema detection (information_schema, warm)",
        time_us(&mut || {
            rt.block_on(dir.inspect())?;
            Ok(())
        })?,
    ));

    let floor = work.join("floor");
    for sub in ["tmp", "new"] {
        std::fs::create_dir_all(floor.join(sub))?;
    }
    let data = vec![b'x'; 1024];
    let mut n = 0u64;
    for (label, sync) in [
        ("1 KiB: create, write, fsync, link, fsync new/", true),
        ("1 KiB: create, write, link (no fsync)", false),
    ] {
        rows.push((
            label,
            time_us(&mut || {
                n += 1;
                let tmp = floor.join("tmp").join(n.to_string());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)?;
                f.write_all(&data)?;
                if sync {
                    f.sync_all()?;
                }
                std::fs::hard_link(&tmp, floor.join("new").join(n.to_string()))?;
                if sync {
                    File::open(floor.join("new"))?.sync_all()?;
                }
                std::fs::remove_file(&tmp)?;
                Ok(())
            })?,
        ));
    }

    println!();
    println!("Reference points (median µs of {runs}, from the benchmark process):");
    for (label, us) in rows {
        println!("{label:>52} | {us:>8.0}");
    }
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
