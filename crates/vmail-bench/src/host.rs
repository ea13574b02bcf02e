//! The machine a run measures on and the run's scaffolding: who we are, where the binaries
//! are, what the machine is (for the report's header), the client runtime, the hold at the end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmail_test_support::TestDb;

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
        format!("load average at start: {}", load_average()),
    ]
}

/// The load average (1, 5, 15 min) as `/proc/loadavg` says it.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fails unless we run as root; `why` says what needs it.
pub(crate) fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: {why}");
    }
    Ok(())
}

/// Where the release binaries are: `--bin-dir`, else vmail-bench's own directory.
pub(crate) fn bin_dir(given: Option<&PathBuf>) -> Result<PathBuf> {
    Ok(match given {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("vmail-bench has no directory")?
            .to_path_buf(),
    })
}

/// The runtime of the load generator's clients: two workers, named so that their CPU time
/// is told apart from the servers'.
pub(crate) fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
}

/// `--hold`: keeps the systems up for a look before they are stopped.
pub(crate) fn hold(secs: u64) {
    if secs > 0 {
        println!("holding the systems up for {secs} s");
        std::thread::sleep(Duration::from_secs(secs));
    }
}
