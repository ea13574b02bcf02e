//! lookupd's answer cache: bounded, with separate lifetimes for found and not-found answers,
//! flushable at once, and able to serve an old *found* answer while the database is down.
//!
//! Sharded so that 128 concurrent connections on two cores do not queue on one lock.
//!
//! Below the answers, lookupd shares what answers are made of: [`shared::Shared`] wraps the
//! directory with the [`memo`] (rows shared for a second or two) and the address set
//! ([`known`]). All of this is lookupd's; the directory itself is a plain reader.

pub mod known;
pub mod memo;
pub mod shared;

use std::collections::hash_map::{DefaultHasher, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vmail_config::CacheConfig;

use vmail_directory::Map;

const SHARDS: usize = 16;

struct Entry {
    value: Option<String>,
    at: Instant,
}

/// What the cache knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Within its lifetime: answer without asking the database.
    Fresh(Option<String>),
    /// Nothing usable.
    Miss,
}

pub struct MapCache {
    shards: Vec<Mutex<HashMap<(Map, String), Entry>>>,
    per_shard: usize,
    positive: Duration,
    negative: Duration,
    stale: Duration,
}

impl MapCache {
    pub fn new(c: &CacheConfig) -> MapCache {
        MapCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: c.max_entries.div_ceil(SHARDS).max(1),
            positive: Duration::from_secs(c.positive_ttl_s),
            negative: Duration::from_secs(c.negative_ttl_s),
            stale: Duration::from_secs(c.serve_stale_s),
        }
    }

    fn shard(&self, map: Map, key: &str) -> &Mutex<HashMap<(Map, String), Entry>> {
        let mut h = DefaultHasher::new();
        map.hash(&mut h);
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    pub fn get(&self, map: Map, key: &str, now: Instant) -> Cached {
        let Ok(s) = self.shard(map, key).lock() else {
            return Cached::Miss;
        };
        match s.get(&(map, key.to_string())) {
            Some(e) => {
                let ttl = if e.value.is_some() {
                    self.positive
                } else {
                    self.negative
                };
                if now.saturating_duration_since(e.at) < ttl {
                    Cached::Fresh(e.value.clone())
                } else {
                    Cached::Miss
                }
            }
            None => Cached::Miss,
        }
    }

    /// A found answer no older than `serve_stale_s`, for use while the database is down.
    pub fn stale(&self, map: Map, key: &str, now: Instant) -> Option<String> {
        if self.stale.is_zero() {
            return None;
        }
        let s = self.shard(map, key).lock().ok()?;
        let e = s.get(&(map, key.to_string()))?;
        let v = e.value.as_ref()?;
        (now.saturating_duration_since(e.at) < self.stale).then(|| v.clone())
    }

    pub fn put(&self, map: Map, key: &str, value: Option<String>, now: Instant) {
        let ttl = if value.is_some() {
            self.positive
        } else {
            self.negative
        };
        if ttl.is_zero() && self.stale.is_zero() {
            return;
        }
        let Ok(mut s) = self.shard(map, key).lock() else {
            return;
        };
        if s.len() >= self.per_shard && !s.contains_key(&(map, key.to_string())) {
            self.evict(&mut s, now);
        }
        s.insert((map, key.to_string()), Entry { value, at: now });
    }

    /// Makes room: first everything past every use, then the oldest eighth.
    fn evict(&self, s: &mut HashMap<(Map, String), Entry>, now: Instant) {
        let keep = self.positive.max(self.negative).max(self.stale);
        s.retain(|_, e| now.saturating_duration_since(e.at) < keep);
        if s.len() >= self.per_shard {
            let mut ages: Vec<Instant> = s.values().map(|e| e.at).collect();
            ages.sort_unstable();
            let cut = ages[(ages.len() / 8).min(ages.len() - 1)];
            s.retain(|_, e| e.at > cut);
        }
    }

    pub fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: usize, pos: u64, neg: u64, stale: u64) -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_entries: max,
            positive_ttl_s: pos,
            negative_ttl_s: neg,
            serve_stale_s: stale,
            ..CacheConfig::default()
        }
    }

    #[test]
    fn ttls_differ_for_found_and_not_found() {
        let c = MapCache::new(&cfg(100, 60, 10, 0));
        let t0 = Instant::now();
        c.put(Map::Aliases, "a@x", Some("b@x".into()), t0);
        c.put(Map::Aliases, "n@x", None, t0);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            c.get(Map::Aliases, "a@x", t1),
            Cached::Fresh(Some("b@x".into()))
        );
        assert_eq!(c.get(Map::Aliases, "n@x", t1), Cached::Miss);
        assert_eq!(
            c.get(Map::Mailboxes, "a@x", t1),
            Cached::Miss,
            "maps are separate"
        );
        assert_eq!(
            c.get(Map::Aliases, "a@x", t0 + Duration::from_secs(61)),
            Cached::Miss
        );
    }

    #[test]
    fn stale_serves_only_found_answers_within_its_window() {
        let c = MapCache::new(&cfg(100, 1, 1, 3600));
        let t0 = Instant::now();
        c.put(Map::Aliases, "a@x", Some("b@x".into()), t0);
        c.put(Map::Aliases, "n@x", None, t0);
        let later = t0 + Duration::from_secs(600);
        assert_eq!(c.get(Map::Aliases, "a@x", later), Cached::Miss);
        assert_eq!(c.stale(Map::Aliases, "a@x", later).as_deref(), Some("b@x"));
        assert_eq!(c.stale(Map::Aliases, "n@x", later), None);
        assert_eq!(
            c.stale(Map::Aliases, "a@x", t0 + Duration::from_secs(3601)),
            None
        );
        let off = MapCache::new(&cfg(100, 1, 1, 0));
        off.put(Map::Aliases, "a@x", Some("b@x".into()), t0);
        assert_eq!(off.stale(Map::Aliases, "a@x", t0), None);
    }

    #[test]
    fn bounded_and_flushable() {
        let c = MapCache::new(&cfg(160, 60, 60, 0));
        let t0 = Instant::now();
        for i in 0..10_000 {
            c.put(
                Map::Domains,
                &format!("d{i}.test"),
                None,
                t0 + Duration::from_millis(i),
            );
        }
        assert!(c.len() <= 160, "{}", c.len());
        assert!(!c.is_empty());
        // The newest survive.
        let late = t0 + Duration::from_millis(10_000);
        assert_eq!(c.get(Map::Domains, "d9999.test", late), Cached::Fresh(None));
        c.clear();
        assert!(c.is_empty());
    }
}
