//! Coalescing of concurrent lookups of one kind into one `... IN (?, ?, ...)` statement.
//!
//! Under load most of a key lookup's cost on the database side is per statement (a network
//! round trip, a thread wake-up, executing a prepared statement), not per row: an indexed
//! `IN` list of eight keys costs MariaDB little more than one key. So while
//! `in_flight` statements of a kind are already running, further keys wait in a queue, and
//! whichever statement finishes first takes the whole queue (up to `max_keys`) into one
//! statement. Nothing waits on a timer: with fewer than `in_flight` lookups at once, each
//! key runs alone and at once, exactly as without the batcher.
//!
//! Every waiter gets the rows of the whole statement and keeps those whose key column equals
//! its own key (`Directory::same_key`), as it does with the rows of its own statement. For
//! that to give the same answer as a statement of its own, the keys must compare alike in
//! SQL and in Rust; the directory batches only ASCII keys, only its own queries, and not
//! with domain flags (whose column is looked up by each key's own domain).
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

/// Placeholder in a batch template for the `?, ?, ...` list.
pub(crate) const KEYS: &str = "{keys}";

/// The rows of one statement, shared by every key it answered.
pub(crate) type Rows = Arc<Vec<Row>>;

type Waiter = (String, oneshot::Sender<Result<Rows>>);

/// One kind of lookup (user rows, or an address's user row and forwardings).
#[derive(Clone)]
pub(crate) struct Batcher {
    inner: Arc<Inner>,
}

struct Inner {
    backend: AnyBackend,
    /// The directory's own statement for one key, bound by the caller.
    single: String,
    /// The statement for several keys, binding nothing but the keys: the single statement
    /// with each `= ?` of the key written as `IN ({keys})`.
    template: String,
    /// How often the key list appears in the statement.
    per_key: usize,
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
            .field("template", &self.inner.template)
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
    /// `single` is the statement for one key; `template` the same lookup with a [`KEYS`]
    /// list in each of `per_key` places, and no other parameter.
    pub(crate) fn new(
        backend: AnyBackend,
        single: String,
        template: String,
        per_key: usize,
        limits: Limits,
        sent: Arc<AtomicU64>,
    ) -> Batcher {
        Batcher {
            inner: Arc::new(Inner {
                backend,
                single,
                template,
                per_key,
                max_keys: limits.max_keys.max(1),
                in_flight_max: limits.in_flight.max(1),
                deadline: limits.deadline,
                sent,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The rows of a statement that looked up `key`, possibly together with other keys.
    /// `single` are the parameters of the single statement for `key`.
    pub(crate) async fn fetch(&self, key: &str, single: Vec<Value>) -> Result<Rows> {
        let rx = {
            let mut st = self.inner.lock();
            if st.in_flight < self.inner.in_flight_max {
                st.in_flight += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.queue.push_back((key.to_string(), tx));
                Some(rx)
            }
        };
        match rx {
            None => {
                // Our own statement; the guard hands the queue on however this ends.
                let _slot = Slot(self.inner.clone());
                self.inner.send(self.inner.single.clone(), single).await
            }
            Some(rx) => match rx.await {
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
    async fn send(&self, sql: String, params: Vec<Value>) -> Result<Rows> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let rows = match tokio::time::timeout(self.deadline, self.backend.fetch(&sql, params)).await
        {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout(self.deadline)),
        };
        Ok(Arc::new(rows))
    }

    /// The batch statement for `keys` and its parameters. The list is padded to a power of
    /// two by repeating the last key (harmless in `IN`), so that at most a handful of
    /// distinct statements stay prepared on each connection.
    fn statement(&self, keys: &[&str]) -> (String, Vec<Value>) {
        let n = keys.len().next_power_of_two();
        let padded: Vec<&str> = (0..n).map(|i| keys[i.min(keys.len() - 1)]).collect();
        let list = vec!["?"; n].join(", ");
        let sql = self.template.replace(KEYS, &list);
        let params = (0..self.per_key)
            .flat_map(|_| padded.iter().map(|k| Value::from(*k)))
            .collect();
        (sql, params)
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
            let keys: Vec<&str> = batch.iter().map(|(k, _)| k.as_str()).collect();
            let (sql, params) = self.statement(&keys);
            let r = self.send(sql, params).await;
            for (_, tx) in batch {
                // A waiter that gave up has dropped its receiver; nothing to do for it.
                let _ = tx.send(match &r {
                    Ok(rows) => Ok(rows.clone()),
                    Err(e) => Err(copy_error(e)),
                });
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

    fn inner(per_key: usize) -> Inner {
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
            single: "SELECT a FROM t WHERE k = ?".into(),
            template: format!("SELECT a FROM t WHERE k IN ({KEYS})"),
            per_key,
            max_keys: 8,
            in_flight_max: 1,
            deadline: Duration::from_secs(1),
            sent: Arc::new(AtomicU64::new(0)),
            state: Mutex::new(State::default()),
        }
    }

    #[test]
    fn one_queued_key_is_a_list_of_one() {
        let (sql, p) = inner(2).statement(&["a@x"]);
        assert_eq!(sql, "SELECT a FROM t WHERE k IN (?)");
        assert_eq!(p, [Value::from("a@x"), Value::from("a@x")]);
    }

    #[test]
    fn lists_are_padded_to_a_power_of_two_per_occurrence() {
        let (sql, p) = inner(2).statement(&["a", "b", "c"]);
        assert_eq!(sql, "SELECT a FROM t WHERE k IN (?, ?, ?, ?)");
        let want: Vec<Value> = ["a", "b", "c", "c", "a", "b", "c", "c"]
            .into_iter()
            .map(Value::from)
            .collect();
        assert_eq!(p, want);
        let (sql, p) = inner(1).statement(&["a", "b"]);
        assert_eq!(sql, "SELECT a FROM t WHERE k IN (?, ?)");
        assert_eq!(p.len(), 2);
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
