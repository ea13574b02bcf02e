//! What a lookup request becomes: directory answer through the cache, under a deadline, with
//! every failure turned into "try again" (Postfix defers), never "not found" (Postfix
//! rejects or bounces).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use vmail_proto::socketmap::temp_text;

use vmail_directory::Map;

use crate::cache::shared::Shared;
use crate::cache::{Cached, MapCache};

use crate::stats::Stats;

/// The answer to one request, before it is put into a protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Found(String),
    NotFound,
    /// Backend trouble: socketmap `TEMP`, tcp_table `400`.
    Temp(String),
    /// Over the deadline: socketmap `TIMEOUT`, tcp_table `400`.
    Timeout(String),
    /// The client asked for a map we do not serve: a Postfix configuration error.
    UnknownMap(String),
}

/// How long map lookups may share the rows they read (`Shared::with_memo`).
#[derive(Debug, Clone, Copy)]
pub struct Memo {
    pub positive: Duration,
    pub negative: Duration,
    pub max_entries: usize,
}

pub struct Service {
    dir: RwLock<Arc<Shared>>,
    cache: Option<MapCache>,
    memo: Option<Memo>,
    timeout: Duration,
    pub stats: Stats,
}

impl Service {
    pub fn new(
        dir: Shared,
        cache: Option<MapCache>,
        memo: Option<Memo>,
        timeout: Duration,
    ) -> Service {
        Service {
            dir: RwLock::new(Arc::new(dir)),
            cache,
            memo,
            timeout,
            stats: Stats::default(),
        }
    }

    fn directory(&self) -> Option<Arc<Shared>> {
        self.dir.read().ok().map(|d| d.clone())
    }

    /// The memo the directory was opened with; a reloaded directory gets the same.
    pub fn memo(&self) -> Option<Memo> {
        self.memo
    }

    /// Swaps in a directory built from a reloaded configuration.
    pub fn replace_directory(&self, dir: Shared) {
        if let Ok(mut d) = self.dir.write() {
            *d = Arc::new(dir);
        }
    }

    pub fn flush_cache(&self) {
        if let Some(c) = &self.cache {
            c.clear();
        }
        if let Some(d) = self.directory() {
            d.clear_memo();
        }
    }

    /// Answers `key` from the map named `map_name` (as Postfix sent it).
    pub async fn answer(&self, map_name: &str, key: Option<&str>) -> Outcome {
        let Ok(map) = map_name.parse::<Map>() else {
            self.stats.unknown_map();
            return Outcome::UnknownMap(format!("no map named {map_name:?}"));
        };
        let started = Instant::now();
        let outcome = match key {
            // Empty, non-UTF-8 or NUL keys cannot name anything we store.
            None => Outcome::NotFound,
            Some(key) => self.lookup(map, key.trim()).await,
        };
        self.stats.count(map, &outcome);
        self.stats.observe(map, started.elapsed());
        tracing::debug!(map = map.name(), key, outcome = ?outcome, "lookup");
        outcome
    }

    async fn lookup(&self, map: Map, key: &str) -> Outcome {
        if let Some(c) = &self.cache {
            if let Cached::Fresh(v) = c.get(map, key, Instant::now()) {
                self.stats.cache_hit();
                return v.map_or(Outcome::NotFound, Outcome::Found);
            }
        }
        let Some(dir) = self.directory() else {
            return Outcome::Temp(temp_text::DIRECTORY_UNAVAILABLE.into());
        };
        // The directory bounds every lookup by query_timeout_ms already; a second timer is
        // armed only when lookupd's own limit is the tighter one (timers are not free).
        let r = if self.timeout < dir.deadline() {
            tokio::time::timeout(self.timeout, dir.lookup(map, key)).await
        } else {
            Ok(dir.lookup(map, key).await)
        };
        let failure = match r {
            Ok(Ok(v)) => {
                if let Some(c) = &self.cache {
                    c.put(map, key, v.clone(), Instant::now());
                }
                return v.map_or(Outcome::NotFound, Outcome::Found);
            }
            Ok(Err(vmail_directory::Error::Timeout(d))) => {
                tracing::warn!(map = map.name(), timeout = ?d, "lookup timed out");
                Outcome::Timeout(format!("{} {d:?}", temp_text::TOOK_LONGER))
            }
            // Every directory error defers: a bad custom query or a missing table must not
            // reject mail while an operator fixes it.
            // A search limit is logged where it is hit, at most once a minute: a table that
            // makes every lookup hit it must not fill the log.
            Ok(Err(e @ vmail_directory::Error::Limit(_))) => {
                tracing::debug!(map = map.name(), error = %e, "lookup over a search limit; answering temporary failure");
                Outcome::Temp(e.to_string())
            }
            Ok(Err(e)) => {
                tracing::warn!(map = map.name(), error = %e, "lookup failed; answering temporary failure");
                Outcome::Temp(e.to_string())
            }
            Err(_) => {
                tracing::warn!(map = map.name(), timeout = ?self.timeout, "lookup timed out");
                Outcome::Timeout(format!("{} {:?}", temp_text::TOOK_LONGER, self.timeout))
            }
        };
        if let Some(v) = self
            .cache
            .as_ref()
            .and_then(|c| c.stale(map, key, Instant::now()))
        {
            self.stats.stale_served();
            tracing::warn!(
                map = map.name(),
                "database unavailable; serving a stale cached answer"
            );
            return Outcome::Found(v);
        }
        failure
    }
}
