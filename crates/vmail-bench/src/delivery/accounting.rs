//! CPU time of process trees, to say where a drain's CPU went: Postfix (master, qmgr, the
//! lmtp or pipe processes, and under pipe(8) every vmail-lda, which pipe reaps) and the
//! delivery agent's own processes (vmail-lmtpd; Dovecot's master and its children).
//!
//! A tree's time is the sum over its live processes of their own and their reaped
//! children's time (`utime + stime + cutime + cstime` of `/proc/PID/stat`): a process that
//! exits in between is counted by the parent that reaps it, if that parent is in the tree.

/// `(ppid, own + reaped children's ticks)` of `pid`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split at the last ')'.
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    // After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((
        u32::try_from(n(1)?).ok()?,
        n(11)? + n(12)? + n(13)? + n(14)?,
    ))
}

/// Every live pid with its parent and ticks.
fn all() -> Vec<(u32, u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, t)| (pid, ppid, t)))
        .collect()
}

/// Ticks of the trees rooted at `roots` (the roots and all their descendants).
pub fn tree_ticks(roots: &[u32]) -> u64 {
    let procs = all();
    let mut inside: Vec<u32> = roots.to_vec();
    let mut total = 0;
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid, _) in &procs {
            if !inside.contains(pid) && inside.contains(ppid) {
                inside.push(*pid);
                grew = true;
            }
        }
    }
    for (pid, _, t) in &procs {
        if inside.contains(pid) {
            total += t;
        }
    }
    total
}

/// The pid in a pid file (Postfix pads it with spaces).
pub fn pid_in(file: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_counts_in_its_parents_tree() {
        let me = std::process::id();
        let before = tree_ticks(&[me]);
        let mut c = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let busy = || tree_ticks(&[c.id()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while busy() < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(busy() >= 5, "the child's time is not seen");
        assert!(tree_ticks(&[me]) >= before + 5, "not in the parent's tree");
        let _ = c.kill();
        let _ = c.wait();
    }
}
