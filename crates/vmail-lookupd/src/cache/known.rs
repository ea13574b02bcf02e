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

/// The longest wait before looking again at tables that had too many rows.
const TOO_MANY_WAIT: Duration = Duration::from_secs(3600);

/// Whether an address is stored, as far as the set can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Neither a user nor a forwarding source, as of a read within the TTL.
    Absent,
    /// Stored, or no fresh set: ask the database.
    Ask,
}

/// Permission to read the set, for the generation it was given in. Hand the result to
/// [`Ticket::install`]; a ticket dropped without that (a cancelled or panicking read) counts
/// as a failed read, so that the set keeps being refreshed.
pub(crate) struct Ticket {
    known: Option<Arc<Known>>,
    generation: u64,
    pub(crate) max_keys: usize,
}

impl Ticket {
    /// Takes the result of a read that began at `started`. Returns whether a set was
    /// installed.
    pub(crate) fn install(mut self, read: Read, started: Instant, now: Instant) -> bool {
        match self.known.take() {
            Some(k) => k.finish(self.generation, read, started, now),
            None => false,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(k) = self.known.take() {
            let now = Instant::now();
            k.finish(self.generation, Read::Failed, now, now);
        }
    }
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
    /// A read is in flight. One at a time, whatever its generation: a burst of flushes must
    /// not start a burst of full-table reads.
    reading: bool,
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
                reading: false,
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
        last_read
            .saturating_mul(20)
            .max(REFRESH_MIN)
            .min(self.ttl / 2)
    }

    /// A ticket, unless a read is in flight (then it is marked in flight).
    fn take_ticket(self: &Arc<Self>, s: &mut State) -> Option<Ticket> {
        if s.reading {
            return None;
        }
        s.reading = true;
        Some(Ticket {
            known: Some(self.clone()),
            generation: s.generation,
            max_keys: self.max_keys,
        })
    }

    /// Whether `key` (normalized as stored keys are) is absent, and a ticket when the caller
    /// should read the set now.
    pub(crate) fn check(self: &Arc<Self>, key: &str, now: Instant) -> (Verdict, Option<Ticket>) {
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
        let ticket = if due && s.next_try.is_none_or(|t| now >= t) {
            self.take_ticket(&mut s)
        } else {
            None
        };
        (verdict, ticket)
    }

    /// A ticket for a read now, whatever the set's age (a warm-up); `None` while a read is
    /// in flight.
    pub(crate) fn ticket(self: &Arc<Self>) -> Option<Ticket> {
        let mut s = self.lock();
        self.take_ticket(&mut s)
    }

    fn finish(&self, generation: u64, read: Read, started: Instant, now: Instant) -> bool {
        // A replaced set (up to `max_keys` strings) is freed after the lock is released.
        let mut _old = None;
        let mut s = self.lock();
        s.reading = false;
        if generation != s.generation {
            // Flushed meanwhile: the read may predate the change the flush announced.
            return false;
        }
        match read {
            Read::Keys(keys) => {
                s.last_read = now.saturating_duration_since(started);
                s.next_try = None;
                _old = s.set.replace(Arc::new(Snapshot { keys, started }));
                true
            }
            Read::TooMany => {
                // Tables do not shrink fast: look again after a while.
                _old = s.set.take();
                let wait = self.ttl.max(RETRY).saturating_mul(30).min(TOO_MANY_WAIT);
                s.next_try = Some(now + wait);
                false
            }
            Read::Failed => {
                s.next_try = Some(now + RETRY);
                false
            }
        }
    }

    /// Forgets the set; a read in flight will be discarded (`vmailctl` changed something).
    pub(crate) fn clear(&self) {
        let old = {
            let mut s = self.lock();
            s.generation += 1;
            s.next_try = None;
            s.set.take()
        };
        // Freed outside the lock.
        drop(old);
    }

    /// How many keys the current set holds (fresh or not); `None` without one.
    pub(crate) fn len(&self) -> Option<usize> {
        self.lock().set.as_ref().map(|s| s.keys.len())
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

    fn loaded(k: &[&str], t: Instant) -> Arc<Known> {
        let known = Arc::new(Known::new(TTL, 100));
        let (v, ticket) = known.check("x@y", t);
        assert_eq!(v, Verdict::Ask);
        assert!(ticket.expect("first lookup reads").install(keys(k), t, t));
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
        assert!(k.ticket().is_none(), "not even for a warm-up");
        let t2 = t + REFRESH_MIN;
        assert!(ticket.install(keys(&["a@b", "x@b"]), t2, t2 + S));
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
        // Flushes do not start reads while one is in flight.
        k.clear();
        assert!(k.check("x@b", t + REFRESH_MIN).1.is_none());
        // The read that began before the flush may lack what was just added.
        assert!(!ticket.install(keys(&["a@b"]), t, t + REFRESH_MIN));
        assert_eq!(k.check("x@b", t + REFRESH_MIN).0, Verdict::Ask);
        assert_eq!(k.len(), None);
        // Then the next lookup reads again, and that read counts.
        let t3 = t + REFRESH_MIN;
        let ticket = k.check("x@b", t3).1.expect("a read after the flush");
        assert!(ticket.install(keys(&["a@b"]), t3, t3));
        assert_eq!(k.check("x@b", t3).0, Verdict::Absent);
    }

    #[test]
    fn a_dropped_ticket_frees_the_next_read() {
        let t = Instant::now();
        let k = Arc::new(Known::new(TTL, 100));
        let ticket = k.check("x@b", t).1.expect("first");
        assert!(k.check("x@b", t).1.is_none());
        // A cancelled or panicking read: counts as failed, retried after RETRY.
        drop(ticket);
        let later = Instant::now() + RETRY;
        assert!(k.check("x@b", later).1.is_some());
    }

    #[test]
    fn failures_and_big_tables_hold_nothing_and_wait() {
        let t = Instant::now();
        let k = Arc::new(Known::new(TTL, 1));
        let ticket = k.check("x@b", t).1.expect("first");
        assert!(!ticket.install(Read::Failed, t, t));
        assert_eq!(k.check("x@b", t).0, Verdict::Ask);
        assert!(k.check("x@b", t + S / 2).1.is_none(), "retry waits");
        let ticket = k.check("x@b", t + RETRY).1.expect("retry");
        assert!(!ticket.install(Read::TooMany, t + RETRY, t + RETRY));
        assert_eq!(k.check("x@b", t + RETRY).0, Verdict::Ask);
        assert!(k.check("x@b", t + RETRY + TTL).1.is_none());
        assert!(k.check("x@b", t + RETRY + TTL * 30).1.is_some());
    }

    #[test]
    fn absurd_ttls_do_not_overflow() {
        let t = Instant::now();
        let k = Arc::new(Known::new(Duration::from_secs(u64::MAX / 4), 1));
        let ticket = k.check("x@b", t).1.expect("first");
        assert!(!ticket.install(Read::TooMany, t, t));
        assert!(k.check("x@b", t + TOO_MANY_WAIT).1.is_some());
        let k = Arc::new(Known::new(Duration::from_secs(u64::MAX / 4), 10));
        let ticket = k.check("x@b", t).1.expect("first");
        assert!(ticket.install(keys(&["a@b"]), t, t + Duration::from_secs(u64::MAX / 64)));
    }

    #[test]
    fn a_failed_read_keeps_a_fresh_set() {
        let t = Instant::now();
        let k = loaded(&["a@b"], t);
        let ticket = k.check("x@b", t + REFRESH_MIN).1.expect("due");
        assert!(!ticket.install(Read::Failed, t, t + REFRESH_MIN));
        // Still as of t, which the TTL bounds.
        assert_eq!(k.check("x@b", t + REFRESH_MIN).0, Verdict::Absent);
        assert_eq!(k.check("x@b", t + TTL).0, Verdict::Ask);
    }
}
