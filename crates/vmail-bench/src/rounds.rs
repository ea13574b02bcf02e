//! Measuring in rounds and reporting: each system measured once per round with the order
//! rotating, the machine's CPU use per round, the figures' means, and the table's cells.

use std::time::Instant;

use anyhow::{bail, Result};

/// One cell of the table: a rate, or why there is none.
pub(crate) type Cell = Result<f64, String>;

pub(crate) fn fmt_rate(c: &Cell) -> String {
    match c {
        Ok(v) if *v >= 100.0 => format!("{v:.0}"),
        Ok(v) => format!("{v:.1}"),
        Err(_) => "error".into(),
    }
}

pub(crate) fn fmt_ratio(a: &Cell, b: &Cell) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) if *b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

pub(crate) fn cell(r: &Result<f64>) -> Cell {
    r.as_ref().map(|v| *v).map_err(|e| format!("{e:#}"))
}

/// The last few warnings and errors in a log, to say why a figure failed.
pub(crate) fn log_hint(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["warning:", "fatal:", "error:", "Error:", "panic"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    let tail = &bad[bad.len().saturating_sub(5)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "\n    last problems in {}:\n    {}",
            path.display(),
            tail.join("\n    ")
        )
    }
}

/// The machine's CPU time so far (`/proc/stat`, all CPUs, in clock ticks): to tell a round
/// that was slow because the machine had less CPU (stolen by the hypervisor) from one whose
/// system needed more CPU per operation.
struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let f = crate::cpu::machine()?;
        let busy = f[0] + f[1] + f[2] + f[5] + f[6];
        Some(CpuTimes {
            busy,
            steal: f[7],
            total: f.iter().sum(),
        })
    }

    /// `   cpu 93% busy, 2% stolen, 612 µs CPU/op` for the time since `b` and `ops`
    /// operations (the warm-up's included: an estimate from the measured rate).
    fn since(&self, b: &CpuTimes, ops: f64) -> String {
        let total = self.total.saturating_sub(b.total).max(1) as f64;
        let busy = self.busy.saturating_sub(b.busy) as f64;
        let steal = self.steal.saturating_sub(b.steal) as f64;
        let per_op = if ops > 0.0 {
            format!(
                ", {:.0} µs CPU/op",
                busy / crate::cpu::ticks_per_sec() / ops * 1e6
            )
        } else {
            String::new()
        };
        format!(
            "   cpu {:.0}% busy, {:.0}% stolen{per_op}",
            busy / total * 100.0,
            steal / total * 100.0
        )
    }
}

/// Measures each of `systems` once per round for `rounds` rounds, rotating which goes first,
/// so that no system always runs right after a phase change or always last while the
/// machine's speed drifts. Per system: its rounds' figures (printed round by round under
/// `names`), or its first failure.
pub(crate) fn in_rounds_each<S>(
    names: &[&str],
    systems: &[S],
    rounds: usize,
    mut measure: impl FnMut(&S) -> Result<crate::Figure>,
) -> Vec<Result<Vec<crate::Figure>>> {
    let n = systems.len();
    let mut acc: Vec<Result<Vec<crate::Figure>>> = (0..n).map(|_| Ok(Vec::new())).collect();
    for r in 0..rounds.max(1) {
        for k in 0..n {
            let i = (r + k) % n;
            let Ok(done) = &mut acc[i] else { continue };
            let (t, before) = (Instant::now(), CpuTimes::now());
            match measure(&systems[i]) {
                Ok(f) => {
                    let cpu = match (before, CpuTimes::now()) {
                        (Some(b), Some(a)) => a.since(&b, f.per_sec * t.elapsed().as_secs_f64()),
                        _ => String::new(),
                    };
                    println!(
                        "    round {} {:<38} {:>9.1}/s{cpu}",
                        r + 1,
                        names.get(i).copied().unwrap_or("?"),
                        f.per_sec
                    );
                    done.push(f);
                }
                Err(e) => acc[i] = Err(e),
            }
        }
    }
    acc
}

/// [`in_rounds_each`], and per system the mean of its rounds' rates and latencies.
pub(crate) fn in_rounds<S>(
    names: &[&str],
    systems: &[S],
    rounds: usize,
    measure: impl FnMut(&S) -> Result<crate::Figure>,
) -> Vec<Result<crate::Figure>> {
    in_rounds_each(names, systems, rounds, measure)
        .into_iter()
        .map(|a| a.map(|v| mean_figure(&v)))
        .collect()
}

/// The mean of figures' rates and latencies.
pub(crate) fn mean_figure(v: &[crate::Figure]) -> crate::Figure {
    let k = v.len().max(1) as f64;
    crate::Figure {
        per_sec: v.iter().map(|f| f.per_sec).sum::<f64>() / k,
        p50_us: v.iter().map(|f| f.p50_us).sum::<f64>() / k,
        p99_us: v.iter().map(|f| f.p99_us).sum::<f64>() / k,
    }
}

/// Prints one measurement as it finishes, so a long run shows progress; on failure with the
/// last problems `log` reported.
pub(crate) fn report(what: &str, r: &Result<crate::Figure>, log: &std::path::Path) -> Result<f64> {
    match r {
        Ok(f) => {
            println!(
                "  {what:<44} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
                f.per_sec,
                f.p50_us / 1000.0,
                f.p99_us / 1000.0
            );
            Ok(f.per_sec)
        }
        Err(e) => {
            println!("  {what:<44} FAILED: {e:#}{}", log_hint(log));
            bail!("{e:#}")
        }
    }
}
