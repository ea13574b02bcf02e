//! The storage backends behind one trait. Both speak SQL; the directory core decides what to
//! ask, a backend only runs statements and maps its failures to temporary or permanent errors.

mod mysql;
mod sqlite;

use std::future::Future;

pub use mysql::{Mysql, MysqlSettings};
pub use sqlite::Sqlite;

use crate::error::Result;
use crate::sql::{Row, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
}

/// What the directory core needs from a database.
pub trait SqlBackend: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Runs a query with positional `?` parameters.
    fn fetch(&self, sql: &str, params: Vec<Value>)
        -> impl Future<Output = Result<Vec<Row>>> + Send;
    /// Runs a query without parameters and returns its first column only: for reading a
    /// whole table (lookupd's address set) with as little work per row as the backend
    /// allows. Values are converted exactly as [`Row::first`] would give them.
    fn fetch_column(&self, sql: &str) -> impl Future<Output = Result<Vec<Option<String>>>> + Send {
        let rows = self.fetch(sql, Vec::new());
        async move {
            Ok(rows
                .await?
                .into_iter()
                .map(|r| r.first().map(str::to_string))
                .collect())
        }
    }
    /// Runs a statement; returns the number of affected rows.
    fn execute(&self, sql: &str, params: Vec<Value>) -> impl Future<Output = Result<u64>> + Send;
    /// Runs statements in order, in one transaction where the database allows it (SQLite;
    /// MySQL commits DDL implicitly).
    fn batch(&self, stmts: Vec<String>) -> impl Future<Output = Result<()>> + Send;
    /// Runs statements with their parameters in one transaction: all of them or none
    /// (`vmailctl import`). DML only; MySQL would commit DDL implicitly.
    fn transaction(
        &self,
        stmts: Vec<(String, Vec<Value>)>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The configured backend.
#[derive(Clone)]
pub enum AnyBackend {
    Sqlite(Sqlite),
    Mysql(Mysql),
}

impl SqlBackend for AnyBackend {
    fn dialect(&self) -> Dialect {
        match self {
            AnyBackend::Sqlite(_) => Dialect::Sqlite,
            AnyBackend::Mysql(_) => Dialect::Mysql,
        }
    }

    async fn fetch(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        match self {
            AnyBackend::Sqlite(b) => b.fetch(sql, params).await,
            AnyBackend::Mysql(b) => b.fetch(sql, params).await,
        }
    }

    async fn fetch_column(&self, sql: &str) -> Result<Vec<Option<String>>> {
        match self {
            AnyBackend::Sqlite(b) => b.fetch_column(sql).await,
            AnyBackend::Mysql(b) => b.fetch_column(sql).await,
        }
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self {
            AnyBackend::Sqlite(b) => b.execute(sql, params).await,
            AnyBackend::Mysql(b) => b.execute(sql, params).await,
        }
    }

    async fn batch(&self, stmts: Vec<String>) -> Result<()> {
        match self {
            AnyBackend::Sqlite(b) => b.batch(stmts).await,
            AnyBackend::Mysql(b) => b.batch(stmts).await,
        }
    }

    async fn transaction(&self, stmts: Vec<(String, Vec<Value>)>) -> Result<()> {
        match self {
            AnyBackend::Sqlite(b) => b.transaction(stmts).await,
            AnyBackend::Mysql(b) => b.transaction(stmts).await,
        }
    }
}
