//! Peak resident set size of a system's delivery processes during one batch of messages:
//! - vmail-lda (a process per recipient under pipe(8)): GNU time's `%M` per run, appended to
//!   a file (time's own size at fork is the floor every run reports, measured apart);
//! - vmail-lmtpd: `VmHWM` of its one process, reset before the batch by writing `5` to
//!   `/proc/PID/clear_refs` (Linux >= 4.0);
//! - Dovecot's LMTP: the largest `VmHWM` among the master's `lmtp` children (reset the same
//!   way before the batch; a process started during it starts at zero), sampled every 10 ms
//!   during the batch, since a process may exit before it ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

#[derive(Clone)]
pub enum Probe {
    /// GNU time's output file (KiB per line).
    TimeFile(PathBuf),
    /// One long-running process.
    Pid(u32),
    /// Dovecot's master pid file: its `lmtp` children.
    Dovecot(PathBuf),
    /// Not measured (the sink lives in the bench's own process).
    None,
}

/// `VmHWM` of `pid` in KiB.
fn hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn reset_hwm(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("reset the peak RSS of pid {pid} (/proc/{pid}/clear_refs)"))
}

/// Pids whose parent is `parent` and whose `comm` is `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split at the last ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let name = head.split_once('(').map_or("", |(_, n)| n);
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            name == comm && ppid == Some(parent)
        })
        .collect()
}

fn master_pid(pid_file: &Path) -> Result<u32> {
    let s = std::fs::read_to_string(pid_file)
        .with_context(|| format!("read {}", pid_file.display()))?;
    s.trim()
        .parse()
        .with_context(|| format!("{}: not a pid", pid_file.display()))
}

/// A batch being watched: for processes, a thread sampling their `VmHWM` every 10 ms
/// (Dovecot's `lmtp` processes may exit before the batch ends; their last sample counts).
pub struct Watch<'a> {
    probe: &'a Probe,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<HashMap<u32, u64>>>,
}

impl Probe {
    /// The roots of the agent's process trees, for CPU accounting: lmtpd; Dovecot's master.
    pub fn roots(&self) -> Vec<u32> {
        match self {
            Probe::Pid(pid) => vec![*pid],
            Probe::Dovecot(pid_file) => master_pid(pid_file).into_iter().collect(),
            Probe::TimeFile(_) | Probe::None => Vec::new(),
        }
    }

    /// The processes to sample now.
    fn pids(&self) -> Vec<u32> {
        match self {
            Probe::Pid(pid) => vec![*pid],
            Probe::Dovecot(pid_file) => {
                master_pid(pid_file).map_or_else(|_| Vec::new(), |m| children(m, "lmtp"))
            }
            Probe::TimeFile(_) | Probe::None => Vec::new(),
        }
    }

    /// Starts a batch: clears what the last one left and starts sampling.
    pub fn watch(&self) -> Result<Watch<'_>> {
        if let Probe::TimeFile(f) = self {
            std::fs::write(f, "").context("truncate GNU time's file")?;
        }
        for pid in self.pids() {
            reset_hwm(pid)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = match self {
            Probe::Pid(_) | Probe::Dovecot(_) => {
                let stop = stop.clone();
                let probe = self.clone();
                Some(std::thread::spawn(move || {
                    let mut seen: HashMap<u32, u64> = HashMap::new();
                    loop {
                        let last = stop.load(Ordering::Relaxed);
                        for pid in probe.pids() {
                            if let Some(k) = hwm_kib(pid) {
                                let e = seen.entry(pid).or_default();
                                *e = (*e).max(k);
                            }
                        }
                        if last {
                            return seen;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }))
            }
            _ => None,
        };
        Ok(Watch {
            probe: self,
            stop,
            sampler,
        })
    }
}

impl Watch<'_> {
    /// Ends the batch of `runs` deliveries: the peak in KiB and how many processes (or runs)
    /// it covers; `None` when not measured.
    pub fn finish(mut self, runs: usize) -> Result<Option<(u64, usize)>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let seen = h
                .join()
                .map_err(|_| anyhow::anyhow!("the RSS sampler panicked"))?;
            return Ok(seen.values().max().map(|m| (*m, seen.len())));
        }
        let Probe::TimeFile(f) = self.probe else {
            return Ok(None);
        };
        // GNU time writes its line after vmail-lda exits, which is after the message is in
        // new/: wait for every run's line.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(f).context("read GNU time's file")?;
            let v: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if v.len() >= runs || Instant::now() > deadline {
                return Ok(v.iter().max().map(|m| (*m, v.len())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// GNU time's own contribution: `%M` of `/bin/true` run under it.
pub fn time_floor_kib() -> Option<u64> {
    let o = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "/bin/true"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stderr).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_peak_is_read_and_children_are_found_by_parent_and_name() {
        let me = std::process::id();
        assert!(hwm_kib(me).is_some_and(|k| k > 0));
        let mut c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children(me, "sleep");
        let _ = c.kill();
        let _ = c.wait();
        assert_eq!(found, vec![c.id()]);
        assert!(children(me, "nosuch").is_empty());
    }
}
