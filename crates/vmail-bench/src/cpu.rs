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
