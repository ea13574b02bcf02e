//! The set of every stored address, so that lookupd can answer "no such address" without a
//! statement.
//!
//! Postfix asks about every recipient of every RCPT. Known addresses come from lookupd's
//! cache, but each new unknown address (a typo, a directory-harvest attack walking a
//! dictionary) costs a database statement, and under such a flood the statements are most of
//! the database's work. With the set, an address that is neither a `users.email` nor a
//! `forwardings.source` is answered from memory; everything else is read as before.
//!
//! **Freshness.** A set answers "absent" only until its TTL (lookupd: `negative_ttl_s`) has
//! passed since its read *began*: as long as lookupd's cache keeps a "not found". Under load it
//! is re-read well before that (every [`REFRESH_MIN`], longer for big tables), so an address
//! added with plain SQL is usually accepted within a few seconds. The worst case adds up:
//! a set read just before the INSERT answers for the TTL, and lookupd caches that answer (and
//! the memo keeps it up to 2 s) for `negative_ttl_s` more: 2 × `negative_ttl_s` + 2 s, where
//! it was `negative_ttl_s` + 2 s without the set. `vmailctl` changes flush it at once: a flush
//! also discards a read that was in flight, which may have missed the change. An idle lookupd reads nothing: the first lookup
//! after a pause asks the database while the set is read again. A table with more rows than
//! configured is never held (the statements read at most that many plus one), and lookups
//! work as without the set.
//!
//! Errors are never held either: a failed read leaves the lookups to the database (and their
//! temporary failures), and is retried after [`RETRY`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Re-read the set when it is this old (or 20 reads' time, for big tables), so that under
/// load a new address is usually seen within this time, not the whole TTL.
pub(crate) const REFRESH_MIN: Duration = Duration::from_secs(2);

/// Wait after a failed read.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Whether an address is stored, as far as the set can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Neither a user nor a forwarding source, as of a read within the TTL.
    Absent,
    /// Stored, or no fresh set: ask the database.
    Ask,
}

/// Permission to read the set, for the generation it was given in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    generation: u64,
    pub(crate) max_keys: usize,
}

/// What a read gave.
pub(crate) enum Read {
    /// The normalized keys.
    Keys(HashSet<Box<str>>),
    /// More rows than `max_keys`.
    TooMany,
    Failed,
}

pub(crate) struct Known {
    ttl: Duration,
    max_keys: usize,
    state: Mutex<State>,
}

struct State {
    set: Option<Arc<Snapshot>>,
    /// Bumped by every flush: a read given an older ticket is discarded.
    generation: u64,
    /// The generation a read is in flight for.
    reading: Option<u64>,
    /// No read before this (after a failure or a table too big).
    next_try: Option<Instant>,
    /// How long the last read took.
    last_read: Duration,
}

struct Snapshot {
    keys: HashSet<Box<str>>,
    /// When its read began: "absent" is true as of then, at the latest.
    started: Instant,
}

impl Known {
    /// `ttl`: how long a set may answer "absent"; `max_keys`: the most rows held.
    pub(crate) fn new(ttl: Duration, max_keys: usize) -> Known {
        Known {
            ttl,
            max_keys,
            state: Mutex::new(State {
                set: None,
                generation: 0,
                reading: None,
                next_try: None,
                last_read: Duration::ZERO,
            }),
        }
    }

    /// How long a set may answer "absent".
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How old a set may get before it is read again.
    fn refresh_after(&self, last_read: Duration) -> Duration {
        let half = self.ttl / 2;
        (last_read * 20).max(REFRESH_MIN).min(half)
    }

    /// Whether `key` (normalized as stored keys are) is absent, and a ticket when the caller
    /// should read the set now ([`Known::install`] must follow, whatever happens).
    pub(crate) fn check(&self, key: &str, now: Instant) -> (Verdict, Option<Ticket>) {
        let mut s = self.lock();
        let fresh = s
            .set
            .as_ref()
            .filter(|set| now.saturating_duration_since(set.started) < self.ttl);
        let verdict = match fresh {
            Some(set) if !set.keys.contains(key) => Verdict::Absent,
            _ => Verdict::Ask,
        };
        let due = fresh.is_none_or(|set| {
            now.saturating_duration_since(set.started) >= self.refresh_after(s.last_read)
        });
        let ticket = (due
            && s.reading != Some(s.generation)
            && s.next_try.is_none_or(|t| now >= t))
        .then(|| {
            s.reading = Some(s.generation);
            Ticket {
                generation: s.generation,
                max_keys: self.max_keys,
            }
        });
        (verdict, ticket)
    }

    /// A ticket for a read now, regardless of age (for a warm-up); `None` while one is in
    /// flight.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        let mut s = self.lock();
        (s.reading != Some(s.generation)).then(|| {
            s.reading = Some(s.generation);
            Ticket {
                generation: s.generation,
                max_keys: self.max_keys,
            }
        })
    }

    /// Takes the result of a read that began at `started`. Returns whether a set was
    /// installed.
    pub(crate) fn install(
        &self,
        ticket: Ticket,
        read: Read,
        started: Instant,
        now: Instant,
    ) -> bool {
        let mut s = self.lock();
        if s.reading == Some(ticket.generation) {
            s.reading = None;
        }
        if ticket.generation != s.generation {
            // Flushed meanwhile: the read may predate the change the flush announced.
            return false;
        }
        match read {
            Read::Keys(keys) => {
                s.last_read = now.saturating_duration_since(started);
                s.next_try = None;
                s.set = Some(Arc::new(Snapshot { keys, started }));
                true
            }
            Read::TooMany => {
                // Tables do not shrink fast: look again after a while.
                s.set = None;
                s.next_try = Some(now + self.ttl.max(RETRY) * 30);
                false
            }
            Read::Failed => {
                s.next_try = Some(now + RETRY);
                false
            }
        }
    }

    /// Forgets the set and any read in flight (`vmailctl` changed something).
    pub(crate) fn clear(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.set = None;
        s.next_try = None;
    }

    /// How many keys the current set holds (fresh or not); `None` without one.
    pub(crate) fn len(&self) -> Option<usize> {
        self.lock().set.as_ref().map(|s| s.keys.len())
    }
}

/// A stored address as lookups compare keys: the domain lowercased, the local part too when
/// `fold` (the `[address] fold_local_part` rule). Keys equal under this are the same address
/// for every lookup ([`crate::Directory`]'s row check uses it too).
pub(crate) fn norm_key(fold: bool, stored: &str) -> String {
    if fold {
        return stored.to_lowercase();
    }
    match stored.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => stored.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const S: Duration = Duration::from_secs(1);

    fn keys(k: &[&str]) -> Read {
        Read::Keys(k.iter().map(|s| Box::from(*s)).collect())
    }

    fn loaded(k: &[&str], t: Instant) -> Known {
        let known = Known::new(TTL, 100);
        let (v, ticket) = known.check("x@y", t);
        assert_eq!(v, Verdict::Ask);
        assert!(known.install(ticket.expect("first lookup reads"), keys(k), t, t));
        known
    }

    #[test]
    fn absent_only_while_fresh() {
        let t = Instant::now();
        let k = loaded(&["alice@example.org", "@example.com"], t);
        assert_eq!(k.check("bob@example.org", t).0, Verdict::Absent);
        assert_eq!(k.check("alice@example.org", t).0, Verdict::Ask);
        assert_eq!(k.check("@example.com", t).0, Verdict::Ask);
        assert_eq!(k.check("bob@example.org", t + TTL - S).0, Verdict::Absent);
        // The TTL counts from when the read began, not from when it ended.
        assert_eq!(k.check("bob@example.org", t + TTL).0, Verdict::Ask);
        assert_eq!(k.check("bob@example.org", t + 2 * TTL).0, Verdict::Ask);
    }

    #[test]
    fn one_read_at_a_time_and_again_when_due() {
        let t = Instant::now();
        let k = loaded(&["a@b"], t);
        // Young set: nothing to read.
        assert!(k.check("x@b", t + S).1.is_none());
        // Due (REFRESH_MIN): one ticket, not two.
        let (v, ticket) = k.check("x@b", t + REFRESH_MIN);
        assert_eq!(v, Verdict::Absent, "the old set answers meanwhile");
        let ticket = ticket.expect("due");
        assert!(k.check("x@b", t + REFRESH_MIN).1.is_none());
        let t2 = t + REFRESH_MIN;
        assert!(k.install(ticket, keys(&["a@b", "x@b"]), t2, t2 + S));
        assert_eq!(k.check("x@b", t2 + S).0, Verdict::Ask);
        // A slow read (1 s) stretches the refresh interval, never beyond half the TTL.
        assert!(k.check("y@b", t2 + 3 * S).1.is_none());
        assert!(k.check("y@b", t2 + TTL / 2).1.is_some());
    }

    #[test]
    fn a_flush_discards_the_set_and_a_read_in_flight() {
        let t = Instant::now();
        let k = loaded(&["a@b"], t);
        let ticket = k.check("x@b", t + REFRESH_MIN).1.expect("due");
        k.clear();
        assert_eq!(k.check("x@b", t + REFRESH_MIN).0, Verdict::Ask);
        // The read that began before the flush may lack what was just added.
        assert!(!k.install(ticket, keys(&["a@b"]), t, t + REFRESH_MIN));
        assert_eq!(k.check("x@b", t + REFRESH_MIN).0, Verdict::Ask);
        assert_eq!(k.len(), None);
    }

    #[test]
    fn a_flush_allows_a_new_read_at_once() {
        let t = Instant::now();
        let k = Known::new(TTL, 100);
        let old = k.check("x@b", t).1.expect("first");
        k.clear();
        let new = k.check("x@b", t).1.expect("a new generation reads again");
        assert!(!k.install(old, keys(&[]), t, t));
        assert!(k.install(new, keys(&["a@b"]), t, t));
        assert_eq!(k.check("x@b", t).0, Verdict::Absent);
    }

    #[test]
    fn failures_and_big_tables_hold_nothing_and_wait() {
        let t = Instant::now();
        let k = Known::new(TTL, 1);
        let ticket = k.check("x@b", t).1.expect("first");
        assert!(!k.install(ticket, Read::Failed, t, t));
        assert_eq!(k.check("x@b", t).0, Verdict::Ask);
        assert!(k.check("x@b", t + S / 2).1.is_none(), "retry waits");
        let ticket = k.check("x@b", t + RETRY).1.expect("retry");
        assert!(!k.install(ticket, Read::TooMany, t + RETRY, t + RETRY));
        assert_eq!(k.check("x@b", t + RETRY).0, Verdict::Ask);
        assert!(k.check("x@b", t + RETRY + TTL).1.is_none());
        assert!(k.check("x@b", t + RETRY + TTL * 30).1.is_some());
    }

    #[test]
    fn a_failed_read_keeps_a_fresh_set() {
        let t = Instant::now();
        let k = loaded(&["a@b"], t);
        let ticket = k.check("x@b", t + REFRESH_MIN).1.expect("due");
        assert!(!k.install(ticket, Read::Failed, t, t + REFRESH_MIN));
        // Still as of t, which the TTL bounds.
        assert_eq!(k.check("x@b", t + REFRESH_MIN).0, Verdict::Absent);
        assert_eq!(k.check("x@b", t + TTL).0, Verdict::Ask);
    }

    #[test]
    fn keys_normalize_like_the_row_check() {
        assert_eq!(norm_key(true, "Bob@Example.ORG"), "bob@example.org");
        assert_eq!(norm_key(false, "Bob@Example.ORG"), "Bob@example.org");
        assert_eq!(norm_key(false, "@Example.ORG"), "@example.org");
        assert_eq!(norm_key(false, "a@b@C"), "a@b@c");
        assert_eq!(norm_key(false, "Example.ORG"), "example.org");
        assert_eq!(norm_key(true, "ÄRGER@Bücher.de"), "ärger@bücher.de");
    }
}
