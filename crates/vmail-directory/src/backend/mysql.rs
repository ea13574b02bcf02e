//! MySQL/MariaDB through `mysql_async`: a pool per server, servers tried in order, and quick
//! recovery after a restart.
//!
//! Postfix's own `mysql:` client marks a host dead for a minute after one failure, so on the
//! classic setup mail keeps deferring for 40-140 s after MariaDB is back. Here a failed
//! connection only throws away that server's pool (its idle connections died with the server)
//! and the very next request tries again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use super::{Dialect, SqlBackend};
use crate::error::{Error, Result};
use crate::sql::{Row, Value};

/// How to reach the servers; built from `[database]`.
#[derive(Clone)]
pub struct MysqlSettings {
    /// `host`, `host:port` or `/path/to/socket`, tried in order.
    pub hosts: Vec<String>,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub connect_timeout: Duration,
    pub pool_max: usize,
}

impl std::fmt::Debug for MysqlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSettings")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Mysql {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    /// Index of the server that answered last; tried first.
    preferred: AtomicUsize,
    connect_timeout: Duration,
}

/// One server and its pool. The pool is ours rather than `mysql_async::Pool`: that one hands
/// every returned connection to a background recycler task, which on a two-core machine cost
/// a fifth of an uncached lookup's CPU. Here a connection goes back on a list.
struct Server {
    name: String,
    opts: Opts,
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// Bounds open connections to this server (`pool_max`).
    slots: Arc<Semaphore>,
}

/// Connection-level attempts per operation: the first may hit a connection that died with a
/// restarted server, the next gets a fresh one.
const ATTEMPTS: usize = 3;

/// One attempt's failure, and whether it may have changed the database. A connection lost
/// before COMMIT (or before an autocommitted write was sent) rolled back on the server, so
/// the attempt is repeated on a fresh connection; lost after, the write may have been
/// committed with only its reply lost, and a second run would store it twice or report
/// "exists" (or "does not exist") for what the first one did.
struct Failure {
    error: mysql_async::Error,
    /// The write that commits was sent.
    sent: bool,
}

impl Failure {
    fn sent(error: mysql_async::Error) -> Failure {
        Failure { error, sent: true }
    }
}

impl From<mysql_async::Error> for Failure {
    fn from(error: mysql_async::Error) -> Failure {
        Failure { error, sent: false }
    }
}

/// Idle connections older than this are closed instead of reused: servers often run with a
/// short `wait_timeout` and would drop them anyway.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// A connection on loan, with the slot it occupies.
struct Lease {
    server: usize,
    conn: Conn,
    _slot: OwnedSemaphorePermit,
}

impl Mysql {
    pub fn new(s: &MysqlSettings) -> Result<Mysql> {
        if s.hosts.is_empty() {
            return Err(Error::Config("database.hosts is empty".into()));
        }
        let max = s.pool_max.max(1);
        let mut servers = Vec::new();
        for h in &s.hosts {
            let mut b = OptsBuilder::default()
                .user(Some(s.user.clone()))
                .pass(s.password.clone())
                .db_name(Some(s.dbname.clone()))
                .prefer_socket(false)
                .stmt_cache_size(64);
            if h.starts_with('/') {
                b = b.socket(Some(h.clone()));
            } else {
                let (host, port) = split_host_port(h)?;
                b = b.ip_or_hostname(host).tcp_port(port);
            }
            servers.push(Server {
                name: h.clone(),
                opts: Opts::from(b),
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(max)),
            });
        }
        Ok(Mysql {
            inner: Arc::new(Inner {
                servers,
                preferred: AtomicUsize::new(0),
                connect_timeout: s.connect_timeout,
            }),
        })
    }

    /// Closes every idle connection (for clean shutdown).
    pub async fn disconnect(&self) {
        for s in &self.inner.servers {
            let conns: Vec<_> = s
                .idle
                .lock()
                .map(|mut v| v.drain(..).collect())
                .unwrap_or_default();
            for (c, _) in conns {
                let _ = c.disconnect().await;
            }
        }
    }

    /// Takes a connection: an idle one from the preferred server, else a new one, trying the
    /// servers in order.
    async fn lease(&self) -> Result<Lease> {
        let n = self.inner.servers.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for k in 0..n {
            let i = (start + k) % n;
            let server = &self.inner.servers[i];
            let slot = server
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::Unavailable("pool closed".into()))?;
            let reused = server.idle.lock().ok().and_then(|mut v| {
                while let Some((c, at)) = v.pop() {
                    if at.elapsed() < MAX_IDLE {
                        return Some(c);
                    }
                }
                None
            });
            if let Some(conn) = reused {
                return Ok(Lease {
                    server: i,
                    conn,
                    _slot: slot,
                });
            }
            match timeout(self.inner.connect_timeout, Conn::new(server.opts.clone())).await {
                Ok(Ok(conn)) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(Lease {
                        server: i,
                        conn,
                        _slot: slot,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(server = %server.name, error = %e, "cannot connect to database server");
                    last = format!("{}: {e}", server.name);
                }
                Err(_) => {
                    tracing::warn!(server = %server.name, "timed out connecting to database server");
                    last = format!(
                        "{}: connect timed out after {:?}",
                        server.name, self.inner.connect_timeout
                    );
                }
            }
        }
        Err(Error::Unavailable(last))
    }

    fn give_back(&self, lease: Lease) {
        if let Ok(mut v) = self.inner.servers[lease.server].idle.lock() {
            v.push((lease.conn, Instant::now()));
        }
    }

    /// After a connection-level failure the server's idle connections most likely died with
    /// it: drop them all so the retry opens a fresh one.
    fn forget_idle(&self, server: usize) {
        let stale: Vec<_> = self.inner.servers[server]
            .idle
            .lock()
            .map(|mut v| v.drain(..).collect())
            .unwrap_or_default();
        drop(stale);
    }

    /// Runs `op` on a pooled connection, retrying on a fresh one when the failure was the
    /// connection's rather than the statement's — unless `op` had sent a write that commits
    /// ([`Failure::sent`]): that one is never run again, its outcome is unknown.
    async fn with_conn<T, E, F, Fut>(&self, mut op: F) -> Result<T>
    where
        E: Into<Failure>,
        F: FnMut(Conn) -> Fut,
        Fut: std::future::Future<Output = (Conn, std::result::Result<T, E>)>,
    {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let Lease {
                server,
                conn,
                _slot,
            } = self.lease().await?;
            let (conn, r) = op(conn).await;
            match r {
                Ok(v) => {
                    self.give_back(Lease {
                        server,
                        conn,
                        _slot,
                    });
                    return Ok(v);
                }
                Err(e) => {
                    let Failure { error, sent } = e.into();
                    match classify(error) {
                        Error::Unavailable(m) if sent => {
                            tracing::warn!(server = %self.inner.servers[server].name, error = %m, "database connection lost after a write was sent; not retried");
                            drop(conn);
                            self.forget_idle(server);
                            return Err(Error::OutcomeUnknown(m));
                        }
                        Error::Unavailable(m) => {
                            tracing::warn!(server = %self.inner.servers[server].name, error = %m, "database connection failed; retrying");
                            drop(conn);
                            self.forget_idle(server);
                            last = Some(Error::Unavailable(m));
                        }
                        other => {
                            // The statement failed, the connection is fine.
                            self.give_back(Lease {
                                server,
                                conn,
                                _slot,
                            });
                            return Err(other);
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no attempt made".into())))
    }
}

fn split_host_port(h: &str) -> Result<(String, u16)> {
    // `[::1]:3306`, `host:3306`, `host`
    if let Some(rest) = h.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| Error::Config(format!("database.hosts: bad address {h:?}")))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => parse_port(h, p)?,
            None => 3306,
        };
        return Ok((host.to_string(), port));
    }
    match h.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Ok((host.to_string(), parse_port(h, p)?)),
        _ => Ok((h.to_string(), 3306)),
    }
}

fn parse_port(h: &str, p: &str) -> Result<u16> {
    p.parse()
        .map_err(|_| Error::Config(format!("database.hosts: bad port in {h:?}")))
}

/// Server error codes that mean "this connection or server is going away", not "your
/// statement is wrong": retried on another connection, reported as unavailable.
const CONNECTION_CODES: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    4031, // ER_CLIENT_INTERACTION_TIMEOUT (wait_timeout, MySQL 8)
];

/// Server error codes that refuse the data a write gave (strict mode, constraints): the
/// same write fails the same way every time, so vmailctl reports bad data, not "try later".
const REFUSED_CODES: &[u16] = &[
    1048, // ER_BAD_NULL_ERROR: column cannot be null
    1216, // ER_NO_REFERENCED_ROW: foreign key (old servers)
    1217, // ER_ROW_IS_REFERENCED: foreign key (old servers)
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1265, // WARN_DATA_TRUNCATED (strict mode)
    1292, // ER_TRUNCATED_WRONG_VALUE: incorrect value
    1364, // ER_NO_DEFAULT_FOR_FIELD: a column of the admin's own that needs a value
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: incorrect value for the column
    1406, // ER_DATA_TOO_LONG
    1451, // ER_ROW_IS_REFERENCED_2: foreign key
    1452, // ER_NO_REFERENCED_ROW_2: foreign key
    3819, // ER_CHECK_CONSTRAINT_VIOLATED (MySQL 8)
    4025, // ER_CONSTRAINT_FAILED: CHECK constraint (MariaDB)
];

fn classify(e: mysql_async::Error) -> Error {
    match &e {
        mysql_async::Error::Server(s) if s.code == 1062 => Error::Exists("row".into()),
        mysql_async::Error::Server(s) if REFUSED_CODES.contains(&s.code) => {
            Error::Refused(s.message.clone())
        }
        mysql_async::Error::Server(s) if CONNECTION_CODES.contains(&s.code) => {
            Error::Unavailable(e.to_string())
        }
        mysql_async::Error::Server(_) => Error::Query(e.to_string()),
        mysql_async::Error::Url(_) => Error::Config(e.to_string()),
        _ => Error::Unavailable(e.to_string()),
    }
}

fn to_my(v: Value) -> mysql_async::Value {
    match v {
        Value::Null => mysql_async::Value::NULL,
        Value::Int(i) => mysql_async::Value::Int(i),
        Value::Text(s) => mysql_async::Value::Bytes(s.into_bytes()),
    }
}

fn from_my(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value as V;
    match v {
        V::NULL => None,
        V::Bytes(b) => Some(match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        V::Int(i) => Some(i.to_string()),
        V::UInt(u) => Some(u.to_string()),
        V::Float(f) => Some(f.to_string()),
        V::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn params(v: Vec<Value>) -> mysql_async::Params {
    if v.is_empty() {
        mysql_async::Params::Empty
    } else {
        mysql_async::Params::Positional(v.into_iter().map(to_my).collect())
    }
}

impl SqlBackend for Mysql {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }

    async fn fetch(&self, sql: &str, p: Vec<Value>) -> Result<Vec<Row>> {
        self.with_conn(|mut conn| {
            let p = p.clone();
            async move {
                let r: std::result::Result<Vec<mysql_async::Row>, _> =
                    conn.exec(sql, params(p)).await;
                (conn, r)
            }
        })
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|r| {
                    let names: Vec<String> = r
                        .columns_ref()
                        .iter()
                        .map(|c| c.name_str().into_owned())
                        .collect();
                    let values = r.unwrap();
                    Row {
                        columns: names
                            .into_iter()
                            .zip(values.into_iter().map(from_my))
                            .collect(),
                    }
                })
                .collect()
        })
    }

    /// One allocation per row (the value), none for column names: the rows of a big table
    /// are decoded on the event loop.
    async fn fetch_column(&self, sql: &str) -> Result<Vec<Option<String>>> {
        self.with_conn(|mut conn| async move {
            let r = conn
                .exec_map(
                    sql,
                    mysql_async::Params::Empty,
                    |mut row: mysql_async::Row| {
                        row.take::<mysql_async::Value, usize>(0).and_then(from_my)
                    },
                )
                .await;
            (conn, r)
        })
        .await
    }

    /// A write commits by itself (autocommit): once sent it is not repeated. A ping first
    /// finds a pooled connection that died with a restarted server while a retry is still
    /// safe.
    async fn execute(&self, sql: &str, p: Vec<Value>) -> Result<u64> {
        self.with_conn(|mut conn| {
            let p = p.clone();
            async move {
                if let Err(e) = conn.ping().await {
                    return (conn, Err(Failure::from(e)));
                }
                let r = conn.exec_drop(sql, params(p)).await;
                let n = conn.affected_rows();
                (conn, r.map(|_| n).map_err(Failure::sent))
            }
        })
        .await
    }

    /// Each statement (DDL) commits by itself: as [`Mysql::execute`], not repeated once sent.
    async fn batch(&self, stmts: Vec<String>) -> Result<()> {
        for s in stmts {
            self.with_conn(|mut conn| {
                let s = s.clone();
                async move {
                    if let Err(e) = conn.ping().await {
                        return (conn, Err(Failure::from(e)));
                    }
                    let r = conn.query_drop(s).await;
                    (conn, r.map_err(Failure::sent))
                }
            })
            .await?;
        }
        Ok(())
    }

    /// One connection, one transaction. A connection lost midway rolls back on the server,
    /// so `with_conn`'s retry on another connection runs the whole transaction again; lost
    /// once COMMIT was sent, it is not retried ([`Error::OutcomeUnknown`]).
    async fn transaction(&self, stmts: Vec<(String, Vec<Value>)>) -> Result<()> {
        self.with_conn(|mut conn| {
            let stmts = stmts.clone();
            async move {
                let r = run_transaction(&mut conn, stmts).await;
                (conn, r)
            }
        })
        .await
    }
}

/// Runs `stmts` in a transaction on `conn`; dropped uncommitted (an error), it is rolled back.
async fn run_transaction(
    conn: &mut Conn,
    stmts: Vec<(String, Vec<Value>)>,
) -> std::result::Result<(), Failure> {
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await?;
    for (sql, p) in stmts {
        tx.exec_drop(sql, params(p)).await?;
    }
    tx.commit().await.map_err(Failure::sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("db1").unwrap(), ("db1".into(), 3306));
        assert_eq!(split_host_port("db1:3307").unwrap(), ("db1".into(), 3307));
        assert_eq!(split_host_port("[::1]:3308").unwrap(), ("::1".into(), 3308));
        assert_eq!(split_host_port("[::1]").unwrap(), ("::1".into(), 3306));
        assert!(split_host_port("db1:x").is_err());
    }
}
