//! Phase timings of one invocation, printed to stderr when `VMAIL_LDA_TIMING` is set, so that
//! `vmail-bench lda` can show where a delivery's time goes. pipe(8) passes only the variables
//! in `export_environment` to the LDA, so a delivery from Postfix never prints them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Set (to anything) to get one `vmail-lda timing:` line on stderr at exit.
pub const ENV: &str = "VMAIL_LDA_TIMING";

static ENABLED: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());

/// Starts the clock if the variable is set; call first thing in `main`.
pub fn start() {
    if std::env::var_os(ENV).is_some() {
        ENABLED.store(true, Ordering::Relaxed);
        mark("start");
    }
}

/// Records the end of `phase` (the time since the previous mark is its duration).
pub fn mark(phase: &'static str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    // A poisoned lock only means a panic elsewhere; the marks themselves are still valid.
    let mut m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    m.push((phase, Instant::now()));
}

/// `vmail-lda timing: args=12 config=85 ... total=2345` (microseconds), or `None` when
/// timing is off.
pub fn report() -> Option<String> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    let (_, first) = *m.first()?;
    let mut line = String::from("vmail-lda timing:");
    for w in m.windows(2) {
        let us = w[1].1.duration_since(w[0].1).as_micros();
        line.push_str(&format!(" {}={us}", w[1].0));
    }
    let total = m
        .last()
        .map_or(0, |(_, t)| t.duration_since(first).as_micros());
    line.push_str(&format!(" total={total}"));
    Some(line)
}
