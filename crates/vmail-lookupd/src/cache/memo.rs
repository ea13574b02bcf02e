//! A seconds-long memo of the two sub-queries that map lookups share: a user's row and the
//! forwardings of one source. For one RCPT, Postfix asks `aliases` and then `mailboxes` for
//! the same address, and `aliases` of an unknown user also asks the domain's catch-all, the
//! same row for every unknown user of the domain. Without the memo an unknown recipient costs
//! about four queries; with it, one (`Shared::prefetch_address` reads the address's
//! forwardings and user row together) plus the domain's catch-all once; with the address set
//! (`known`), nothing. Opt-in (lookupd turns it on with its cache): authd and a directly
//! connected LDA read rows as they are. What the memo holds always came from a statement,
//! never from the address set, because lookupd's `recipient` lookup for the LDA reads it too.
//!
//! Errors are never memoized, so a database outage still answers "try again". The memo is
//! cleared with lookupd's cache, so `vmailctl` changes (which flush) apply at once; a change
//! made in SQL directly is seen after at most the memo's lifetime on top of the cache TTLs.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sub-answer is shared at most: long enough for the lookups of one RCPT (and the
/// catch-all row under load), short against the cache TTLs it adds to.
pub const MEMO_TTL: Duration = Duration::from_secs(2);

/// Answers by key, each kept for `positive` or `negative` (empty) time.
pub(crate) struct Memo<K, V> {
    positive: Duration,
    negative: Duration,
    max_entries: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

/// Whether an answer says "nothing there" (kept for the negative time).
pub(crate) trait Empty {
    fn is_empty_answer(&self) -> bool;
}

impl<T> Empty for Option<T> {
    fn is_empty_answer(&self) -> bool {
        self.is_none()
    }
}

impl<T> Empty for Vec<T> {
    fn is_empty_answer(&self) -> bool {
        self.is_empty()
    }
}

impl<K: Eq + Hash, V: Clone + Empty> Memo<K, V> {
    pub(crate) fn new(positive: Duration, negative: Duration, max_entries: usize) -> Self {
        Memo {
            positive,
            negative,
            max_entries: max_entries.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<V> {
        // A poisoned lock only means a panic elsewhere; the entries are plain data.
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(key) {
            Some((expires, v)) if now < *expires => Some(v.clone()),
            _ => None,
        }
    }

    pub(crate) fn put(&self, key: K, value: V, now: Instant) {
        let ttl = if value.is_empty_answer() {
            self.negative
        } else {
            self.positive
        };
        if ttl.is_zero() {
            return;
        }
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max_entries {
            m.retain(|_, (expires, _)| now < *expires);
            // Mostly live entries: start over, or the next inserts would each scan the map
            // again for the few that expired.
            if m.len() > self.max_entries / 8 * 7 {
                m.clear();
            }
        }
        m.insert(key, (now + ttl, value));
    }

    /// The answer kept for `key`, else the one `read` gives, kept as `keep` makes it (an
    /// error is returned and not kept).
    pub(crate) async fn get_or_read<E>(
        &self,
        key: K,
        read: impl std::future::Future<Output = Result<V, E>>,
        keep: impl FnOnce(&V) -> V,
    ) -> Result<V, E> {
        if let Some(v) = self.get(&key, Instant::now()) {
            return Ok(v);
        }
        let v = read.await?;
        self.put(key, keep(&v), Instant::now());
        Ok(v)
    }

    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn answers_within_their_lifetime_only() {
        let m: Memo<&str, Option<u32>> = Memo::new(2 * S, S, 10);
        let t = Instant::now();
        m.put("found", Some(1), t);
        m.put("missing", None, t);
        assert_eq!(m.get(&"found", t), Some(Some(1)));
        assert_eq!(m.get(&"missing", t), Some(None));
        // The negative lifetime is the shorter one.
        assert_eq!(m.get(&"missing", t + S), None);
        assert_eq!(m.get(&"found", t + S), Some(Some(1)));
        assert_eq!(m.get(&"found", t + 2 * S), None);
        assert_eq!(m.get(&"other", t), None);
    }

    #[test]
    fn zero_lifetime_keeps_nothing() {
        let m: Memo<&str, Vec<u32>> = Memo::new(S, Duration::ZERO, 10);
        let t = Instant::now();
        m.put("none", vec![], t);
        m.put("some", vec![7], t);
        assert_eq!(m.get(&"none", t), None);
        assert_eq!(m.get(&"some", t), Some(vec![7]));
    }

    #[test]
    fn stays_bounded_and_clears() {
        let m: Memo<u32, Option<u32>> = Memo::new(S, S, 16);
        let t = Instant::now();
        for k in 0..16 {
            m.put(k, Some(k), t);
        }
        // Full of live entries: the next insert starts over.
        m.put(100, Some(100), t);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&100, t), Some(Some(100)));
        // Full again, mostly of expired entries: those go, the live one stays.
        for k in 0..14 {
            m.put(k, Some(k), t);
        }
        m.put(300, Some(300), t + S / 2);
        assert_eq!(m.len(), 16);
        let later = t + S + S / 4;
        m.put(201, Some(201), later);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&300, later), Some(Some(300)));
        m.clear();
        assert_eq!(m.get(&201, later), None);
    }
}
