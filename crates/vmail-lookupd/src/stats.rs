//! Per-map outcome counters, logged periodically and at shutdown.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vmail_directory::Map;

use crate::service::Outcome;

const OUTCOMES: usize = 4; // found, notfound, temp, timeout

#[derive(Default)]
pub struct Stats {
    by_map: [[AtomicU64; OUTCOMES]; Map::ALL.len()],
    cache_hits: AtomicU64,
    stale: AtomicU64,
    unknown_map: AtomicU64,
    bad_requests: AtomicU64,
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
            "lookupd counters"
        );
    }

    /// Total requests answered for a map with a given outcome index (tests).
    pub fn get(&self, map: Map, outcome: usize) -> u64 {
        let i = Map::ALL.iter().position(|m| *m == map).unwrap_or(0);
        self.by_map[i][outcome].load(Relaxed)
    }
}
