//! Per-map outcome counters and latency histograms: logged periodically and at shutdown,
//! and exposed as Prometheus metrics when `[lookupd] metrics` is set.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use vmail_daemon::metrics::{self, Histogram};
use vmail_directory::Map;

use crate::service::Outcome;

const OUTCOMES: usize = 4; // found, notfound, temp, timeout
const OUTCOME_NAMES: [&str; OUTCOMES] = ["found", "notfound", "temp", "timeout"];

#[derive(Default)]
pub struct Stats {
    by_map: [[AtomicU64; OUTCOMES]; Map::ALL.len()],
    latency: [Histogram; Map::ALL.len()],
    cache_hits: AtomicU64,
    stale: AtomicU64,
    unknown_map: AtomicU64,
    bad_requests: AtomicU64,
    slow_requests: AtomicU64,
}

impl Stats {
    pub fn count(&self, map: Map, o: &Outcome) {
        let i = Map::ALL.iter().position(|m| *m == map).unwrap_or(0);
        let j = match o {
            Outcome::Found(_) => 0,
            Outcome::NotFound => 1,
            Outcome::Temp(_) | Outcome::UnknownMap(_) => 2,
            Outcome::Timeout(_) => 3,
        };
        self.by_map[i][j].fetch_add(1, Relaxed);
    }
    pub fn observe(&self, map: Map, took: Duration) {
        let i = Map::ALL.iter().position(|m| *m == map).unwrap_or(0);
        self.latency[i].observe(took);
    }
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }
    pub fn stale_served(&self) {
        self.stale.fetch_add(1, Relaxed);
    }
    pub fn unknown_map(&self) {
        self.unknown_map.fetch_add(1, Relaxed);
    }
    pub fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Relaxed);
    }
    pub fn slow_request(&self) {
        self.slow_requests.fetch_add(1, Relaxed);
    }

    /// One log line per map with traffic, plus the totals.
    pub fn log(&self) {
        for (i, m) in Map::ALL.iter().enumerate() {
            let c: Vec<u64> = self.by_map[i].iter().map(|a| a.load(Relaxed)).collect();
            if c.iter().any(|n| *n > 0) {
                tracing::info!(
                    map = m.name(),
                    found = c[0],
                    notfound = c[1],
                    temp = c[2],
                    timeout = c[3],
                    "lookup counters"
                );
            }
        }
        tracing::info!(
            cache_hits = self.cache_hits.load(Relaxed),
            stale_served = self.stale.load(Relaxed),
            unknown_map = self.unknown_map.load(Relaxed),
            bad_requests = self.bad_requests.load(Relaxed),
            slow_requests = self.slow_requests.load(Relaxed),
            "lookupd counters"
        );
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let n = "vmail_lookupd_requests_total";
        metrics::header(
            &mut out,
            n,
            "counter",
            "Lookups answered, by map and outcome.",
        );
        for (i, m) in Map::ALL.iter().enumerate() {
            for (j, o) in OUTCOME_NAMES.iter().enumerate() {
                let labels = format!("map=\"{}\",outcome=\"{o}\"", m.name());
                metrics::sample(&mut out, n, &labels, self.by_map[i][j].load(Relaxed));
            }
        }
        let n = "vmail_lookupd_request_duration_seconds";
        metrics::header(&mut out, n, "histogram", "Time to answer a lookup, by map.");
        for (i, m) in Map::ALL.iter().enumerate() {
            self.latency[i].render(n, &format!("map=\"{}\"", m.name()), &mut out);
        }
        for (n, help, v) in [
            (
                "vmail_lookupd_cache_hits_total",
                "Lookups answered from the cache.",
                &self.cache_hits,
            ),
            (
                "vmail_lookupd_stale_answers_total",
                "Stale cached answers served while the database was unavailable.",
                &self.stale,
            ),
            (
                "vmail_lookupd_unknown_map_total",
                "Requests naming a map lookupd does not serve.",
                &self.unknown_map,
            ),
            (
                "vmail_lookupd_bad_requests_total",
                "Malformed requests (connection closed).",
                &self.bad_requests,
            ),
            (
                "vmail_lookupd_slow_requests_total",
                "Connections closed because a request took longer than request_read_timeout_ms to arrive.",
                &self.slow_requests,
            ),
        ] {
            metrics::header(&mut out, n, "counter", help);
            metrics::sample(&mut out, n, "", v.load(Relaxed));
        }
        // Backend errors are the temp and timeout outcomes; summed for alerting.
        let errors: u64 = self
            .by_map
            .iter()
            .map(|m| m[2].load(Relaxed) + m[3].load(Relaxed))
            .sum();
        let n = "vmail_lookupd_backend_errors_total";
        metrics::header(
            &mut out,
            n,
            "counter",
            "Lookups answered TEMP or TIMEOUT because the directory failed.",
        );
        metrics::sample(&mut out, n, "", errors);
        out
    }

    /// Total requests answered for a map with a given outcome index (tests).
    pub fn get(&self, map: Map, outcome: usize) -> u64 {
        let i = Map::ALL.iter().position(|m| *m == map).unwrap_or(0);
        self.by_map[i][outcome].load(Relaxed)
    }
}
