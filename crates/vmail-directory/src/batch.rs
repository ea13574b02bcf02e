//! Coalescing of concurrent lookups of one kind into one statement: the kind's own
//! statement once per key, joined by `UNION ALL`, each arm with its key's own parameters.
//!
//! Under load most of a key lookup's cost on the database side is per statement (a network
//! round trip, a thread wake-up, parsing and planning), not per row: eight indexed
//! lookups in one statement cost MariaDB little more than one. So while `in_flight`
//! statements of a kind are already running, further keys wait in a queue, and whichever
//! statement finishes first takes the whole queue (up to `max_keys`) into one statement.
//! Nothing waits on a timer: with fewer than `in_flight` lookups at once, each key runs
//! alone and at once, exactly as without the batcher.
//!
//! Each arm is the single-key statement with that key's parameters (its domain included),
//! plus a constant column ([`KEY_COLUMN`]) numbering the arm, and every waiter gets only
//! its own arm's rows: the answer is the one its own statement would have given, whatever
//! the collations.
//!
//! A statement that runs for queued keys belongs to a task of its own, not to any request:
//! a caller that gives up (its deadline) does not take other callers' statement with it.
//! The task has the same deadline itself, so a hung statement frees its slot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::backend::{AnyBackend, SqlBackend};
use crate::error::{Error, Result};
use crate::sql::{Row, Value};

/// Placeholder in an arm template for the arm's number.
pub(crate) const ARM: &str = "{arm}";

/// The column that carries the arm's number, last in every arm's select list.
pub(crate) const KEY_COLUMN: &str = "vmail_arm";

/// A queued lookup: its single-statement parameters, and where its rows go.
type Waiter = (Vec<Value>, oneshot::Sender<Result<Vec<Row>>>);

/// One kind of lookup (user rows, or an address's user row and forwardings).
#[derive(Clone)]
pub(crate) struct Batcher {
    inner: Arc<Inner>,
}

struct Inner {
    backend: AnyBackend,
    /// The directory's own statement for one key, bound by the caller.
    single: String,
    /// The same statement with `, {arm} AS vmail_arm` ending each select list; same
    /// parameters.
    arm: String,
    max_keys: usize,
    in_flight_max: usize,
    deadline: Duration,
    /// Statements sent, shared with the directory's counter.
    sent: Arc<AtomicU64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Statements running now, for one key or for a batch.
    in_flight: usize,
    queue: VecDeque<Waiter>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("arm", &self.inner.arm)
            .field("max_keys", &self.inner.max_keys)
            .field("in_flight_max", &self.inner.in_flight_max)
            .finish_non_exhaustive()
    }
}

/// Settings of a batcher; see `[database] batch_keys` and `batch_in_flight`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_keys: usize,
    pub in_flight: usize,
    pub deadline: Duration,
}

impl Batcher {
    /// `single` is the statement for one key; `arm` the same statement numbered by [`ARM`]
    /// in a [`KEY_COLUMN`] column.
    pub(crate) fn new(
        backend: AnyBackend,
        single: String,
        arm: String,
        limits: Limits,
        sent: Arc<AtomicU64>,
    ) -> Batcher {
        Batcher {
            inner: Arc::new(Inner {
                backend,
                single,
                arm,
                max_keys: limits.max_keys.max(1),
                in_flight_max: limits.in_flight.max(1),
                deadline: limits.deadline,
                sent,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The rows the single statement with parameters `single` finds, possibly read in one
    /// statement together with other lookups.
    pub(crate) async fn fetch(&self, single: Vec<Value>) -> Result<Vec<Row>> {
        let queued = {
            let mut st = self.inner.lock();
            if st.in_flight < self.inner.in_flight_max {
                st.in_flight += 1;
                Err(single)
            } else {
                let (tx, rx) = oneshot::channel();
                st.queue.push_back((single, tx));
                Ok(rx)
            }
        };
        match queued {
            Err(single) => {
                // Our own statement; the guard hands the queue on however this ends.
                let _slot = Slot(self.inner.clone());
                self.inner.send(self.inner.single.clone(), single).await
            }
            Ok(rx) => match rx.await {
                Ok(r) => r,
                Err(_) => Err(Error::Unavailable(
                    "batched lookup was abandoned (its statement failed to run)".into(),
                )),
            },
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is plain counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One statement, under the deadline.
    async fn send(&self, sql: String, params: Vec<Value>) -> Result<Vec<Row>> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.deadline, self.backend.fetch(&sql, params)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.deadline)),
        }
    }

    /// The statement for `waiters` and its parameters: one arm per waiter, numbered in
    /// order, then arms repeating the last waiter's parameters up to a power of two (their
    /// numbers match no waiter), so that at most a handful of distinct statements stay
    /// prepared on each connection.
    fn statement(&self, waiters: &[&[Value]]) -> (String, Vec<Value>) {
        let n = waiters.len().max(1).next_power_of_two();
        let arms: Vec<String> = (0..n)
            .map(|i| self.arm.replace(ARM, &i.to_string()))
            .collect();
        let params = (0..n)
            .flat_map(|i| {
                waiters[i.min(waiters.len().saturating_sub(1))]
                    .iter()
                    .cloned()
            })
            .collect();
        (arms.join(" UNION ALL "), params)
    }

    /// Runs the queue until it is empty, in statements of up to `max_keys` keys. Holds one
    /// in-flight slot, taken by the caller.
    async fn drain(self: Arc<Self>) {
        // Gives the slot back if this task dies (a panic in the driver) rather than
        // finishing: otherwise every later lookup of the kind would queue behind a slot
        // nobody holds. Its queue is served by the next caller's hand-over.
        struct Unwind(Arc<Inner>, bool);
        impl Drop for Unwind {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.lock().in_flight -= 1;
                }
            }
        }
        let mut guard = Unwind(self.clone(), false);
        loop {
            let batch: Vec<Waiter> = {
                let mut st = self.lock();
                // Callers that gave up (their deadline, while the database hung) need no
                // statement: after an outage the queue is mostly them.
                st.queue.retain(|(_, tx)| !tx.is_closed());
                if st.queue.is_empty() {
                    st.in_flight -= 1;
                    guard.1 = true;
                    return;
                }
                let n = st.queue.len().min(self.max_keys);
                st.queue.drain(..n).collect()
            };
            let params: Vec<&[Value]> = batch.iter().map(|(p, _)| p.as_slice()).collect();
            let (sql, params) = self.statement(&params);
            // A waiter that gave up has dropped its receiver; sends to it go nowhere.
            match self.send(sql, params).await {
                Ok(rows) => {
                    let mut mine: Vec<Vec<Row>> = batch.iter().map(|_| Vec::new()).collect();
                    for row in rows {
                        let arm = row.get(KEY_COLUMN).and_then(|v| v.parse::<usize>().ok());
                        if let Some(m) = arm.and_then(|a| mine.get_mut(a)) {
                            m.push(row);
                        }
                    }
                    for ((_, tx), rows) in batch.into_iter().zip(mine) {
                        let _ = tx.send(Ok(rows));
                    }
                }
                Err(e) => {
                    for (_, tx) in batch {
                        let _ = tx.send(Err(copy_error(&e)));
                    }
                }
            }
        }
    }
}

/// An in-flight slot of a caller's own statement: on release, queued keys (that arrived
/// while every slot was busy) get a task that runs them.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        if st.queue.is_empty() {
            st.in_flight -= 1;
            return;
        }
        // The slot passes to the task; in_flight stays as it is.
        drop(st);
        let inner = self.0.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(inner.drain());
            }
            Err(_) => {
                // Not inside a runtime (cannot happen from an async caller): fail the queue
                // rather than leave it waiting for ever.
                let mut st = self.0.lock();
                st.in_flight -= 1;
                st.queue.clear();
            }
        }
    }
}

/// Errors are not `Clone` (they wrap no sources, but stay open to it); every waiter of a
/// failed statement gets the same kind and message.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Timeout(d) => Error::Timeout(*d),
        Error::Query(m) => Error::Query(m.clone()),
        Error::Config(m) => Error::Config(m.clone()),
        // Lookups raise none of the administrative errors; keep them temporary if one shows.
        other => Error::Query(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        Inner {
            backend: AnyBackend::Mysql(
                crate::backend::Mysql::new(&crate::backend::MysqlSettings {
                    hosts: vec!["127.0.0.1:1".into()],
                    user: "u".into(),
                    password: None,
                    dbname: "d".into(),
                    connect_timeout: Duration::from_millis(100),
                    pool_max: 1,
                })
                .unwrap(),
            ),
            single: "SELECT a FROM t WHERE k = ? AND d = ?".into(),
            arm: format!("SELECT a, {ARM} AS {KEY_COLUMN} FROM t WHERE k = ? AND d = ?"),
            max_keys: 8,
            in_flight_max: 1,
            deadline: Duration::from_secs(1),
            sent: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(State::default()),
        }
    }

    fn vals(v: &[&str]) -> Vec<Value> {
        v.iter().map(|s| Value::from(*s)).collect()
    }

    #[test]
    fn one_arm_per_waiter_with_its_own_parameters() {
        let (a, b) = (vals(&["a@x", "x"]), vals(&["b@y", "y"]));
        let (sql, p) = inner().statement(&[&a, &b]);
        assert_eq!(
            sql,
            "SELECT a, 0 AS vmail_arm FROM t WHERE k = ? AND d = ? UNION ALL \
             SELECT a, 1 AS vmail_arm FROM t WHERE k = ? AND d = ?"
        );
        assert_eq!(p, vals(&["a@x", "x", "b@y", "y"]));
    }

    #[test]
    fn arms_are_padded_to_a_power_of_two_with_numbers_of_no_waiter() {
        let (a, b, c) = (vals(&["a", "1"]), vals(&["b", "2"]), vals(&["c", "3"]));
        let (sql, p) = inner().statement(&[&a, &b, &c]);
        assert_eq!(sql.matches(" UNION ALL ").count(), 3);
        assert!(sql.contains("3 AS vmail_arm"), "{sql}");
        assert_eq!(p, vals(&["a", "1", "b", "2", "c", "3", "c", "3"]));
        let (sql, p) = inner().statement(&[&a]);
        assert_eq!(sql, "SELECT a, 0 AS vmail_arm FROM t WHERE k = ? AND d = ?");
        assert_eq!(p, a);
    }

    #[test]
    fn errors_keep_their_kind() {
        for e in [
            Error::Unavailable("x".into()),
            Error::Timeout(Duration::from_secs(1)),
            Error::Query("q".into()),
            Error::Config("c".into()),
            Error::Missing("m".into()),
        ] {
            let c = copy_error(&e);
            assert!(c.is_temporary(), "{e:?} -> {c:?}");
            if e.is_temporary() {
                assert_eq!(c.to_string(), e.to_string());
            }
        }
    }
}
