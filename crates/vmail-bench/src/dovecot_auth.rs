//! `vmail-bench dovecot-auth`: IMAP logins/s (connect, LOGIN, LOGOUT) through the same
//! Dovecot with each way of getting users and passwords out of the `users` table (issue 16):
//! - Dovecot 2.3 (this host): (a) Dovecot's own SQL passdb (`driver = mysql`, the classic
//!   how-to's `password_query`, static userdb), (b) contrib's dict passdb/userdb ->
//!   vmail-authd, (c) contrib's Lua passdb/userdb -> vmail-authd;
//! - Dovecot 2.4 (a Debian 13 root, `chroot ROOT dovecot`): (a) the SQL passdb in 2.4
//!   syntax, (c) contrib's 2.4 Lua configuration -> vmail-authd.
//!
//! One run, the same MariaDB data (DES hashes, then SHA512-CRYPT), the same client (the
//! stack bench's IMAP load, `stack/load.rs`), Dovecot's auth cache off everywhere, each
//! vmail-authd with its cache as contrib ships it (or off: `--authd-cache-off`). Prints
//! logins/s, Lua/SQL per release and Lua/dict on 2.3, and whether issue 16's targets hold
//! (Lua >= SQL on both, Lua >= dict on 2.3). See docs/BENCHMARKS.md.

pub(crate) mod root24;
pub(crate) mod systems;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vmail_test_support::root::{SystemRoot, DEBIAN13_ROOT};
use vmail_test_support::{set_mode, TestDb};

use crate::rounds::{cell, fmt_rate, fmt_ratio, in_rounds_each, mean_figure, report, Cell};
use crate::stack::load;
use crate::stack::setup::{dict_dovecot, sql_dovecot, Env, MailUser};
use systems::{Authd, Contrib, LuaListener};

#[derive(clap::Args)]
pub struct DovecotAuthArgs {
    /// Seconds measured per figure, after a 1 s warm-up.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Users in the database (logins are spread over all of them).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Parallel IMAP clients, each logging in on a new connection after the other.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Rounds: each system is measured once per round, in an order that rotates every
    /// round; its rate is the mean of its rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Hash schemes, in this order: DES (the how-to's ENCRYPT()) and/or SHA512-CRYPT.
    #[arg(long, value_delimiter = ',', default_value = "DES,SHA512-CRYPT")]
    schemes: Vec<String>,
    /// Systems to run: any of sql23, dict23, lua23, sql24, lua24.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sql23,dict23,lua23,sql24,lua24"
    )]
    only: Vec<String>,
    /// The Debian 13 root with Dovecot 2.4 (docs/testing.md, "Debian 13"; proc mounted).
    /// Its SQL passdb needs `dovecot-mysql` there: the bench installs it when missing
    /// (`chroot ROOT apt-get install -y dovecot-mysql`, with a policy-rc.d exiting 101 in
    /// the root while it installs).
    #[arg(long, default_value = DEBIAN13_ROOT)]
    root: PathBuf,
    /// contrib/ to take the Dovecot and Lua files from (read at run time).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib"))]
    contrib: PathBuf,
    /// Run every vmail-authd with `cache_enabled = false` instead of contrib's setting.
    #[arg(long)]
    authd_cache_off: bool,
    /// Where vmail-authd is; default: next to vmail-bench.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep every system running this many seconds after the figures (to look at them).
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

/// The five systems, in table order: key, Dovecot release, what serves the users.
const SYSTEMS: [(&str, &str, &str); 5] = [
    ("sql23", "2.3", "(a) SQL passdb (mysql) + static userdb"),
    ("dict23", "2.3", "(b) dict passdb/userdb -> vmail-authd"),
    ("lua23", "2.3", "(c) Lua passdb/userdb -> vmail-authd"),
    ("sql24", "2.4", "(a) SQL passdb (mysql) + static userdb"),
    ("lua24", "2.4", "(c) Lua passdb/userdb -> vmail-authd"),
];

/// A system that came up: its IMAP port and its log (for failures).
struct Up {
    port: u16,
    log: PathBuf,
}

/// Issue 16's targets: (label, numerator, denominator) as indexes into [`SYSTEMS`].
const TARGETS: [(&str, usize, usize); 3] = [
    ("Lua/SQL, Dovecot 2.3", 2, 0),
    ("Lua/SQL, Dovecot 2.4", 4, 3),
    ("Lua/dict, Dovecot 2.3", 2, 1),
];

pub fn run(a: DovecotAuthArgs) -> Result<()> {
    crate::host::require_root("private Dovecot masters, chroot and vmail-authd need it")?;
    let want = |k: &str| a.only.iter().any(|o| o == k);
    let bin_dir = crate::host::bin_dir(a.bin_dir.as_ref())?;
    let authd_bin = bin_dir.join("vmail-authd");
    if !load::executable(&authd_bin) {
        bail!(
            "{} not found: scripts/build-release -p vmail-bench -p vmail-authd",
            authd_bin.display()
        );
    }
    let users = a.users.max(1);
    let conc = a.concurrency.max(1);
    let dur = Duration::from_secs(a.seconds.max(1));
    let warm = Duration::from_secs(1);
    let contrib = Contrib {
        dir: a.contrib.clone(),
    };

    // Dovecot 2.4: the root, and dovecot-mysql in it for the SQL passdb.
    let root = SystemRoot::chroot(&a.root);
    let root_ok = root24::check_root(&root).map_err(|e| format!("{e:#}"));
    let mut notes = Vec::new();
    if let (Ok(_), true) = (&root_ok, want("sql24")) {
        if let Some(n) = root24::ensure_dovecot_mysql(&root)? {
            notes.push(n);
        }
    }

    let work = crate::work_dir("vmail-bench-dovecot-auth", None)?;
    set_mode(work.path(), 0o755);
    let db =
        TestDb::create("vmail-bench dovecot-auth").context("no MariaDB (run scripts/test-deps)")?;
    let began = Instant::now();
    crate::stack::populate(&db, users, 0)?;
    let env = Env {
        work: work.path().to_path_buf(),
        user: MailUser::nobody()?,
        db,
        lookupd: bin_dir.join("vmail-lookupd"),
        authd: authd_bin,
        lda: bin_dir.join("vmail-lda"),
    };
    let mut header = crate::host::machine(&env.db);
    header.retain(|l| !l.starts_with("software:"));
    header.push(format!(
        "software: Dovecot {} (host), Dovecot {} (root {}), MariaDB {}",
        crate::host::run_cmd("dovecot", &["--version"]),
        root_ok.as_deref().unwrap_or("?"),
        a.root.display(),
        env.db.sql("SELECT VERSION();").trim()
    ));
    for l in &header {
        println!("{l}");
    }

    // Everything that runs, stopped in reverse order at the end (Dovecots before the
    // authds they use, their shared dirs last).
    let mut shared = Vec::new();
    let mut authds: Vec<Authd> = Vec::new();
    let mut host_dovecots = Vec::new();
    let mut root_dovecots = Vec::new();
    let mut up: Vec<Result<Up, String>> = Vec::new();
    let mail_base = env.mail_base("mail")?;
    for (key, _, _) in SYSTEMS {
        if !want(key) {
            up.push(Err("not run (--only)".into()));
            continue;
        }
        let r: Result<Up> = (|| match key {
            "sql23" => {
                let d = sql_dovecot(&env, &mail_base)?;
                let u = Up {
                    port: d.imap_port,
                    log: d.dir.path().join("dovecot.log"),
                };
                host_dovecots.push(d);
                Ok(u)
            }
            "dict23" => {
                let authd = Authd::start(&env, "authd-dict", &mail_base, None, a.authd_cache_off)?;
                let d = dict_dovecot(&env.user, &authd.dict)?;
                authds.push(authd);
                let u = Up {
                    port: d.imap_port,
                    log: d.dir.path().join("dovecot.log"),
                };
                host_dovecots.push(d);
                Ok(u)
            }
            "lua23" => {
                let sock = env.work.join("authd-lua23.sock");
                let l = LuaListener {
                    socket: &sock,
                    extra_peers: &[],
                    group: None,
                };
                let authd =
                    Authd::start(&env, "authd-lua23", &mail_base, Some(&l), a.authd_cache_off)?;
                authds.push(authd);
                let d = systems::lua23_dovecot(&env, &contrib, &sock)?;
                let u = Up {
                    port: d.imap_port,
                    log: d.dir.path().join("dovecot.log"),
                };
                host_dovecots.push(d);
                Ok(u)
            }
            "sql24" => {
                root_ok.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                let d = systems::sql24_dovecot(&env, &root)?;
                let u = Up {
                    port: d.imap_port,
                    log: d.dir.path().join("dovecot.log"),
                };
                root_dovecots.push(d);
                Ok(u)
            }
            _ => {
                root_ok.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                // authd's socket and the homes in a dir both sides see at one path; the
                // root's Dovecot has its own uids and gids.
                let dir = root.shared_tempdir("vmail-bench-lua24");
                let sock = dir.path().join("authd-lua24.sock");
                let base = dir.path().join("mail");
                std::fs::create_dir(&base)?;
                std::os::unix::fs::chown(&base, Some(env.user.uid), Some(env.user.gid))?;
                set_mode(&base, 0o755);
                shared.push(dir);
                let (peers, group) = systems::root_dovecot_ids(&root);
                let l = LuaListener {
                    socket: &sock,
                    extra_peers: &peers,
                    group,
                };
                let authd = Authd::start(&env, "authd-lua24", &base, Some(&l), a.authd_cache_off)?;
                authds.push(authd);
                let d = systems::lua24_dovecot(&env, &root, &contrib, &sock)?;
                let u = Up {
                    port: d.imap_port,
                    log: d.dir.path().join("dovecot.log"),
                };
                root_dovecots.push(d);
                Ok(u)
            }
        })();
        if let Err(e) = &r {
            println!("{key}: not up: {e:#}");
        }
        up.push(r.map_err(|e| format!("{e:#}")));
    }
    println!(
        "setup: {users} users in MariaDB database {}; mail user {}; work dir {} (2.4: {}/tmp/vmail-dovecot*, vmail-bench-lua24*); systems up in {:.1} s",
        env.db.name,
        env.user.name,
        env.work.display(),
        a.root.display(),
        began.elapsed().as_secs_f64()
    );
    for n in &notes {
        println!("  {n}");
    }

    let cache_note = authds.first().map(|d| d.cache.clone());
    if let Some(c) = &cache_note {
        println!("  vmail-authd: {c}");
    }
    let rt = crate::host::client_runtime()?;
    // cells[scheme][system]: the mean rate; per_round[scheme][system]: each round's.
    let mut cells: Vec<Vec<Cell>> = Vec::new();
    let mut per_round: Vec<Vec<Vec<f64>>> = Vec::new();
    for (si, scheme) in a.schemes.iter().enumerate() {
        match scheme.as_str() {
            "DES" if si == 0 => {}
            "DES" => bail!("--schemes: DES can only come first (the hashes are rehashed once)"),
            "SHA512-CRYPT" => {
                let t = Instant::now();
                crate::stack::rehash_sha512(&env.db, users)?;
                println!(
                    "hashes now SHA512-CRYPT (5000 rounds, no prefix) ({:.1} s)",
                    t.elapsed().as_secs_f64()
                );
            }
            s => bail!("--schemes: unknown scheme {s} (DES, SHA512-CRYPT)"),
        }
        println!(
            "IMAP logins with {scheme} hashes: {conc} clients, each a new connection: LOGIN, LOGOUT; {} s after 1 s warm-up, {} rounds, order rotating",
            dur.as_secs(),
            a.rounds
        );
        let mut row: Vec<Cell> = up
            .iter()
            .map(|u| u.as_ref().map(|_| 0.0).map_err(String::clone))
            .collect();
        // One login per user on every system first: Maildirs exist everywhere (no system
        // pays for creating them in its rounds) and each authd's cache holds every user,
        // as a busy server's would.
        for (i, u) in up.iter().enumerate() {
            let Ok(u) = u else { continue };
            let port = u.port;
            let took = rt.block_on(load::each_user_once(conc, users, move |_c, n| {
                load::imap_login(port, n)
            }));
            match took {
                Ok(t) => println!(
                    "  {:<48} every user logged in once in {:.1} s",
                    name(i),
                    t.as_secs_f64()
                ),
                Err(e) => {
                    println!(
                        "  {:<48} FAILED logging every user in once: {e:#}{}",
                        name(i),
                        crate::rounds::log_hint(&u.log)
                    );
                    row[i] = Err(format!("{e:#}"));
                }
            }
        }
        let live: Vec<usize> = (0..SYSTEMS.len()).filter(|i| row[*i].is_ok()).collect();
        let names: Vec<String> = live.iter().map(|i| name(*i)).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let figures = in_rounds_each(&name_refs, &live, a.rounds, |&i| {
            let port = up[i].as_ref().map(|u| u.port).unwrap_or(0);
            rt.block_on(load::timed(conc, warm, dur, users, move |_c, n| {
                load::imap_login(port, n)
            }))
        });
        let mut each: Vec<Vec<f64>> = vec![Vec::new(); SYSTEMS.len()];
        for (&i, f) in live.iter().zip(figures) {
            let log = up[i].as_ref().map(|u| u.log.clone()).unwrap_or_default();
            if let Ok(v) = &f {
                each[i] = v.iter().map(|f| f.per_sec).collect();
            }
            row[i] = cell(&report(&name(i), &f.map(|v| mean_figure(&v)), &log));
        }
        cells.push(row);
        per_round.push(each);
    }

    println!();
    for l in &header {
        println!("{l}");
    }
    println!();
    print_table(&a.schemes, &cells, &per_round);
    println!(
        "\n{conc} parallel clients; {} s measured per figure after a 1 s warm-up; {} rounds (the mean shown), order rotating; {users} users.\n\
         Dovecot: the same settings on every instance (vmail_test_support::dovecot's on 2.3, the same in 2.4 syntax plus auth_allow_weak_schemes = yes for DES), auth_cache_size = 0 (Dovecot's cache off), each release's defaults otherwise.\n\
         vmail-authd (one per route): {}\n\
         Before each scheme's rounds every user logged in once on every system (Maildirs made; authd's caches, when on, filled).\n\
         load average at the end: {}",
        dur.as_secs(),
        a.rounds,
        if a.authd_cache_off {
            "cache_enabled = false (--authd-cache-off)".to_string()
        } else {
            format!(
                "its cache as contrib/vmail/vmail.toml ships it ({})",
                cache_note.as_deref().unwrap_or("no authd ran")
            )
        },
        crate::host::load_average()
    );
    for n in &notes {
        println!("{n}");
    }
    crate::host::hold(a.hold);
    drop(rt);
    drop(root_dovecots);
    drop(host_dovecots);
    drop(authds);
    drop(shared);
    drop(env);
    drop(work);
    Ok(())
}

/// The ratio of two systems' rates round by round (measured within the same round, so the
/// machine's drift between rounds cancels): `median (min-max)`.
fn round_ratios(num: &[f64], den: &[f64]) -> String {
    let mut r: Vec<f64> = num
        .iter()
        .zip(den)
        .filter(|(_, d)| **d > 0.0)
        .map(|(n, d)| n / d)
        .collect();
    if r.is_empty() {
        return "-".into();
    }
    r.sort_by(f64::total_cmp);
    let k = r.len();
    let median = if k % 2 == 1 {
        r[k / 2]
    } else {
        (r[k / 2 - 1] + r[k / 2]) / 2.0
    };
    format!("{median:.2} ({:.2}-{:.2})", r[0], r[k - 1])
}

fn name(i: usize) -> String {
    let (_, rel, what) = SYSTEMS[i];
    format!("Dovecot {rel} {what}")
}

fn print_table(schemes: &[String], cells: &[Vec<Cell>], per_round: &[Vec<Vec<f64>>]) {
    let mut h = String::from("| Dovecot | users and passwords |");
    let mut sep = String::from("|---|---|");
    for s in schemes {
        h.push_str(&format!(" {s} logins/s |"));
        sep.push_str("---:|");
    }
    println!("{h}\n{sep}");
    for (i, (_, rel, what)) in SYSTEMS.iter().enumerate() {
        let mut l = format!("| {rel} | {what} |");
        for row in cells {
            let rate = match &row[i] {
                Err(e) if e.starts_with("not run") => "not run".into(),
                c => fmt_rate(c),
            };
            l.push_str(&format!(" {rate} |"));
        }
        println!("{l}");
    }
    println!();
    let mut h = String::from("| ratio (target >= 1.00) |");
    let mut sep = String::from("|---|");
    for s in schemes {
        h.push_str(&format!(
            " {s}: of the means | {s}: per round, median (min-max) |"
        ));
        sep.push_str("---:|---:|");
    }
    println!("{h}\n{sep}");
    for (label, num, den) in TARGETS {
        let mut l = format!("| {label} |");
        for (row, rounds) in cells.iter().zip(per_round) {
            let verdict = match (&row[num], &row[den]) {
                (Ok(n), Ok(d)) if *d > 0.0 && n / d >= 1.0 => "met",
                (Ok(_), Ok(d)) if *d > 0.0 => "missed",
                _ => "n/a",
            };
            l.push_str(&format!(
                " {} {verdict} | {} |",
                fmt_ratio(&row[num], &row[den]),
                round_ratios(&rounds[num], &rounds[den])
            ));
        }
        println!("{l}");
    }
    for (si, row) in cells.iter().enumerate() {
        for (i, c) in row.iter().enumerate() {
            if let Err(e) = c.as_ref().map_err(|e| e.as_str()) {
                if e.starts_with("not run") {
                    continue;
                }
                println!("{}: {}: {e}", schemes[si], name(i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_ratios;

    #[test]
    fn ratios_per_round() {
        assert_eq!(round_ratios(&[], &[]), "-");
        assert_eq!(
            round_ratios(&[110.0, 90.0, 100.0], &[100.0, 100.0, 100.0]),
            "1.00 (0.90-1.10)"
        );
        assert_eq!(round_ratios(&[1.0, 3.0], &[1.0, 1.0]), "2.00 (1.00-3.00)");
    }
}
