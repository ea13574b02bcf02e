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
    /// How many parameters one arm binds.
    width: usize,
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
    /// in a [`KEY_COLUMN`] column; both bind `width` parameters.
    pub(crate) fn new(
        backend: AnyBackend,
        single: String,
        arm: String,
        width: usize,
        limits: Limits,
        sent: Arc<AtomicU64>,
    ) -> Batcher {
        Batcher {
            inner: Arc::new(Inner {
                backend,
                single,
                arm,
                width,
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
    /// order, then padding arms up to a power of two, so that at most a handful of distinct
    /// statements stay prepared on each connection. Padding arms bind NULL, which equals
    /// nothing: each costs an index probe that finds no row, not a second run of a real
    /// lookup (and their numbers match no waiter anyway).
    fn statement(&self, waiters: &[&[Value]]) -> (String, Vec<Value>) {
        let n = waiters.len().max(1).next_power_of_two();
        let arms: Vec<String> = (0..n)
            .map(|i| self.arm.replace(ARM, &i.to_string()))
            .collect();
        let padding = (n - waiters.len()) * self.width;
        let params = waiters
            .iter()
            .flat_map(|w| w.iter().cloned())
            .chain(std::iter::repeat_n(Value::Null, padding))
            .collect();
        (arms.join(" UNION ALL "), params)
    }

    /// Runs the queue until it is empty, in statements of up to `max_keys` keys. Holds the
    /// in-flight slot that `guard` gives back if the task never finishes.
    async fn drain(self: Arc<Self>, mut guard: Unwind) {
        loop {
            let batch: Vec<Waiter> = {
                let mut st = self.lock();
                // Callers that gave up (their deadline, while the database hung) need no
                // statement: after an outage the queue is mostly them.
                st.queue.retain(|(_, tx)| !tx.is_closed());
                if st.queue.is_empty() {
                    st.in_flight -= 1;
                    guard.finish();
                    return;
                }
                let n = st.queue.len().min(self.max_keys);
                st.queue.drain(..n).collect()
            };
            let params: Vec<&[Value]> = batch.iter().map(|(p, _)| p.as_slice()).collect();
            let (sql, params) = self.statement(&params);
            // A waiter that gave up has dropped its receiver; sends to it go nowhere.
            let arms = batch.len().next_power_of_two();
            match self
                .send(sql, params)
                .await
                .and_then(|rows| route(rows, batch.len(), arms))
            {
                Ok(mine) => {
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

/// Hands each of `waiters` the rows of its own arm, of the `arms` the statement had. A row
/// without a readable arm number, or with one past the last arm, means the statement did
/// not come back as built: the whole batch fails (temporarily) rather than answer "not
/// found" for a key whose rows went astray. Rows of padding arms are dropped.
fn route(rows: Vec<Row>, waiters: usize, arms: usize) -> Result<Vec<Vec<Row>>> {
    let mut mine: Vec<Vec<Row>> = (0..waiters).map(|_| Vec::new()).collect();
    for row in rows {
        match row.get(KEY_COLUMN).and_then(|v| v.parse::<usize>().ok()) {
            Some(a) if a < waiters => mine[a].push(row),
            Some(a) if a < arms => {}
            // The row's values stay out of the message: they may hold a password hash.
            _ => {
                return Err(Error::Query(format!(
                    "a batched lookup returned a row without a valid {KEY_COLUMN} column"
                )))
            }
        }
    }
    Ok(mine)
}

/// The in-flight slot a drain task holds. Dropped without [`Unwind::finish`] (the task
/// panicked in the driver, or the runtime shut down before running it), it gives the slot
/// back, or every later lookup of the kind would queue behind a slot nobody holds, and
/// fails the queue at once (its waiters answer temporarily) instead of leaving it to the
/// next caller's hand-over.
struct Unwind(Arc<Inner>, bool);

impl Unwind {
    fn finish(&mut self) {
        self.1 = true;
    }
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if !self.1 {
            let mut st = self.0.lock();
            st.in_flight -= 1;
            st.queue.clear();
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
        // The guard is made here, not in the task, so that a task the runtime drops unpolled
        // still gives the slot back; and not inside a runtime at all (cannot happen from an
        // async caller) it is dropped at once: the queue fails rather than wait for ever.
        let guard = Unwind(self.0.clone(), false);
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(self.0.clone().drain(guard));
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
            width: 2,
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
        let mut want = vals(&["a", "1", "b", "2", "c", "3"]);
        want.extend([Value::Null, Value::Null]);
        assert_eq!(p, want);
        let (sql, p) = inner().statement(&[&a]);
        assert_eq!(sql, "SELECT a, 0 AS vmail_arm FROM t WHERE k = ? AND d = ?");
        assert_eq!(p, a);
    }

    fn row(arm: Option<&str>, a: &str) -> Row {
        let mut columns = vec![("a".to_string(), Some(a.to_string()))];
        if let Some(arm) = arm {
            columns.push((KEY_COLUMN.to_uppercase(), Some(arm.to_string())));
        }
        Row { columns }
    }

    #[test]
    fn each_waiter_gets_its_own_arms_rows_and_padding_rows_are_dropped() {
        let rows = vec![
            row(Some("2"), "c1"),
            row(Some("0"), "a1"),
            row(Some("3"), "pad"),
            row(Some("2"), "c2"),
        ];
        let mine = route(rows, 3, 4).unwrap();
        let names = |i: usize| -> Vec<&str> { mine[i].iter().filter_map(|r| r.get("a")).collect() };
        assert_eq!(names(0), ["a1"]);
        assert!(names(1).is_empty());
        assert_eq!(names(2), ["c1", "c2"]);
    }

    #[test]
    fn a_row_of_no_arm_fails_the_batch_temporarily() {
        for bad in [
            None,
            Some("x"),
            Some("-1"),
            Some("1.0"),
            Some("4"),
            Some(""),
        ] {
            let rows = vec![row(Some("0"), "a"), row(bad, "lost")];
            let e = route(rows, 3, 4).expect_err(&format!("{bad:?}"));
            assert!(e.is_temporary(), "{bad:?}: {e:?}");
            assert!(!e.to_string().contains("lost"), "row values leak: {e}");
        }
        assert_eq!(
            route(Vec::new(), 2, 2).unwrap(),
            vec![Vec::new(), Vec::new()]
        );
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
