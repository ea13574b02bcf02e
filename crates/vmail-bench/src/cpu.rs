//! The machine's CPU accounting, for the figures that explain a rate.

/// The first eight fields of `/proc/stat`'s `cpu` line (all CPUs, clock ticks): user, nice,
/// system, idle, iowait, irq, softirq, steal (guest time is inside user).
pub fn machine() -> Option<[u64; 8]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut f = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse::<u64>().ok());
    let mut out = [0u64; 8];
    for slot in &mut out {
        *slot = f.next().flatten()?;
    }
    Some(out)
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The calling thread's id, for [`thread_ns`] from another thread.
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time a thread of this process has run, in nanoseconds (`/proc/self/task/TID/schedstat`,
/// first field): exact, unlike the clock ticks of `stat`.
pub fn thread_ns(tid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}
