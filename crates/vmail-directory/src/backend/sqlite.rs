//! The embedded default: an SQLite file, used through a small pool of connections on tokio's
//! blocking threads so that a slow disk never stalls the reactor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{types::Value as SqlValue, Connection, ErrorCode, OpenFlags};

use super::{Dialect, SqlBackend};
use crate::error::{Error, Result};
use crate::sql::{Row, Value};

#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Sqlite {
    /// Opens (creating if needed) the database file. The file holds password hashes, so it is
    /// created readable by its owner and group only.
    pub async fn open(path: &Path, max_idle: usize) -> Result<Sqlite> {
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
        });
        let i = inner.clone();
        blocking(move || {
            create_private(&i.path)?;
            let c = i.connect()?;
            i.put(c);
            Ok(())
        })
        .await?;
        Ok(Sqlite { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| Error::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unavailable(format!("{}: {e}", path.display()))),
    }
}

impl Inner {
    fn connect(&self) -> Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| map_err(&self.path, e))?;
        c.busy_timeout(Duration::from_secs(5))
            .map_err(|e| map_err(&self.path, e))?;
        // WAL lets the daemons read while vmailctl writes.
        c.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| map_err(&self.path, e))?;
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| map_err(&self.path, e))?;
        register_fold(&c).map_err(|e| map_err(&self.path, e))?;
        Ok(c)
    }

    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn put(&self, c: Connection) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < self.max_idle {
                v.push(c);
            }
        }
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut c = self.take()?;
        let r = f(&mut c).map_err(|e| map_err(&self.path, e));
        self.put(c);
        r
    }
}

/// `vmail_fold(x)`: Unicode lower case, as the directory folds keys (`str::to_lowercase`).
/// SQLite's NOCASE and lower() know ASCII only; the directory's folded statements use this
/// where a non-ASCII key found nothing. Registered per connection, so the database file
/// stays usable by any SQLite client.
fn register_fold(c: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::ValueRef;
    c.create_scalar_function(
        "vmail_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).to_lowercase()),
                _ => None,
            })
        },
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("sqlite worker: {e}")))?
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(i) => SqlValue::Integer(i),
        Value::Text(s) => SqlValue::Text(s),
    }
}

fn map_err(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        // A key that exists; the other constraints (NOT NULL, CHECK, a foreign key, a STRICT
        // table's type) refuse the value itself.
        Some(ErrorCode::ConstraintViolation) if !refuses_value(&e) => Error::Exists("row".into()),
        Some(ErrorCode::ConstraintViolation) => Error::Refused(match &e {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
            other => other.to_string(),
        }),
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase,
        ) => Error::Unavailable(format!("{}: {e}", path.display())),
        _ => Error::Query(format!("{}: {e}", path.display())),
    }
}

/// True for a constraint violation that is not a duplicate key (SQLite's extended codes).
fn refuses_value(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.extended_code,
            ffi::SQLITE_CONSTRAINT_NOTNULL
                | ffi::SQLITE_CONSTRAINT_CHECK
                | ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                | ffi::SQLITE_CONSTRAINT_DATATYPE
        ),
        _ => false,
    }
}

impl SqlBackend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn fetch(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        let inner = self.inner.clone();
        let sql = sql.to_owned();
        blocking(move || {
            inner.with_conn(|c| {
                let mut st = c.prepare_cached(&sql)?;
                let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
                let mut rows =
                    st.query(rusqlite::params_from_iter(params.into_iter().map(to_sql)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut columns = Vec::with_capacity(names.len());
                    for (i, n) in names.iter().enumerate() {
                        let v = match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(i) => Some(i.to_string()),
                            rusqlite::types::ValueRef::Real(f) => Some(f.to_string()),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                Some(String::from_utf8_lossy(t).into_owned())
                            }
                        };
                        columns.push((n.clone(), v));
                    }
                    out.push(Row { columns });
                }
                Ok(out)
            })
        })
        .await
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let inner = self.inner.clone();
        let sql = sql.to_owned();
        blocking(move || {
            inner.with_conn(|c| {
                let mut st = c.prepare_cached(&sql)?;
                let n = st.execute(rusqlite::params_from_iter(params.into_iter().map(to_sql)))?;
                Ok(n as u64)
            })
        })
        .await
    }

    async fn batch(&self, stmts: Vec<String>) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.with_conn(|c| {
                let tx = c.transaction()?;
                for s in &stmts {
                    tx.execute_batch(s)?;
                }
                tx.commit()
            })
        })
        .await
    }

    async fn transaction(&self, stmts: Vec<(String, Vec<Value>)>) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.with_conn(|c| {
                let tx = c.transaction()?;
                for (sql, params) in stmts {
                    tx.prepare_cached(&sql)?
                        .execute(rusqlite::params_from_iter(params.into_iter().map(to_sql)))?;
                }
                tx.commit()
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NOT NULL and CHECK refuse the value (EX_DATAERR in vmailctl); only a duplicate key is
    /// `Exists`.
    #[test]
    fn constraint_failures_are_told_apart() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (k TEXT NOT NULL CHECK (length(k) <= 3), PRIMARY KEY (k));
             INSERT INTO t VALUES ('a');",
        )
        .unwrap();
        let path = Path::new(":memory:");
        let err = |sql: &str| map_err(path, c.execute_batch(sql).unwrap_err());
        assert!(matches!(
            err("INSERT INTO t VALUES ('a')"),
            Error::Exists(_)
        ));
        for sql in [
            "INSERT INTO t VALUES ('abcd')",
            "INSERT INTO t VALUES (NULL)",
        ] {
            let e = err(sql);
            assert!(e.is_refused_data() && e.is_temporary(), "{sql}: {e:?}");
        }
    }
}
