//! The vmail directory core: the only code that knows the schema.
//!
//! It answers what Postfix, Dovecot and the LDA ask — is this domain ours, which mailbox does
//! this address deliver to, where does this alias go, who may send as this address, which
//! transport, what are this user's credentials — on MySQL/MariaDB or the embedded SQLite
//! default, with the address rules (case folding, recipient delimiter, catch-all, alias
//! domains) applied once, here, for every daemon.
//!
//! Start reading at [`Directory`]; [`Map`] is what lookupd serves and `vmailctl query` shows.
//! The directory is the plain reader: lookupd's cache, memo and address set wrap it from
//! outside (`vmail-lookupd/src/cache/`) through [`rows::Rows`].
//! Every statement is written out in [`queries`]; `read.rs` runs them for the daemons,
//! `admin.rs` and `edit.rs` hold vmailctl's writes, `maps.rs` the virtual(5) search order.

mod admin;
pub mod audit;
pub mod backend;
mod batch;
mod edit;
pub mod error;
mod maps;
pub mod queries;
mod read;
pub mod rows;
pub mod schema;
pub mod sql;
mod transfer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use vmail_config::{Backend as BackendKind, Config};

pub use backend::{AnyBackend, Dialect, SqlBackend};
pub use edit::UserChanges;
pub use error::{Error, Result};
pub use maps::Map;
use queries::Queries;
use schema::Schema;
use sql::Lookup;
pub use transfer::{Import, Record};
/// The record, the address rules and the mailbox check live in `vmail-record` (no database
/// code, so the LDA can use them alone); re-exported for the directory's callers.
pub use vmail_record::{address, mailbox, Address, AddressPolicy, RecipientRecord, User};

/// The directory: one per process, cheap to share behind an `Arc`.
pub struct Directory {
    backend: AnyBackend,
    policy: AddressPolicy,
    config: Config,
    deadline: Duration,
    /// Learned on first contact with the database, so a daemon can start while it is down.
    schema: OnceCell<Learned>,
    /// Statements sent to the database ([`Directory::queries_sent`]); shared with the
    /// batchers' tasks.
    queries: Arc<AtomicU64>,
    /// What every row's mailbox paths are checked against before they are handed out.
    guard: mailbox::PathGuard,
}

/// What the directory learns on first contact with the database: the schema, the statements
/// for it, and (MySQL, `batch_keys` > 1) the batchers that concurrent `user` and `address`
/// lookups share ([`batch`]).
struct Learned {
    schema: Schema,
    queries: Queries,
    batch_user: Option<batch::Batcher>,
    batch_address: Option<batch::Batcher>,
}

impl Directory {
    /// Opens the configured backend. MySQL connections are made lazily: a daemon starts (and
    /// answers "temporary failure") while the database is down.
    pub async fn open(config: &Config) -> Result<Directory> {
        let db = &config.database;
        let backend = match db.backend {
            BackendKind::Sqlite => {
                AnyBackend::Sqlite(backend::Sqlite::open(&db.sqlite_path, db.pool_max).await?)
            }
            BackendKind::Mysql => {
                let password = config
                    .database_password()
                    .map_err(|e| Error::Config(e.to_string()))?
                    .map(|s| s.expose().to_string());
                AnyBackend::Mysql(backend::Mysql::new(&backend::MysqlSettings {
                    hosts: db.hosts.clone(),
                    user: db.user.clone(),
                    password,
                    dbname: db.dbname.clone(),
                    connect_timeout: Duration::from_millis(db.connect_timeout_ms),
                    pool_max: db.pool_max,
                })?)
            }
        };
        // Compile custom queries now: a typo is a start-up error, not a stream of TEMPs.
        for q in [
            &db.queries.domain,
            &db.queries.user,
            &db.queries.alias,
            &db.queries.transport,
        ]
        .into_iter()
        .flatten()
        {
            Lookup::compile(q)?;
        }
        Ok(Directory {
            backend,
            policy: AddressPolicy::from_config(&config.address),
            config: config.clone(),
            deadline: Duration::from_millis(db.query_timeout_ms),
            schema: OnceCell::new(),
            queries: Arc::new(AtomicU64::new(0)),
            guard: mailbox::PathGuard::new(&config.mailbox),
        })
    }

    /// How many lookup statements this directory has sent to the database (not counting
    /// schema detection, administration and reads of the address set).
    pub fn queries_sent(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Says goodbye to the database on idle connections (COM_QUIT), so a short-lived
    /// process such as the LDA does not leave an "aborted connection" behind on the server
    /// at every run. Bounded by the deadline; errors do not matter at this point.
    pub async fn close(&self) {
        if let AnyBackend::Mysql(m) = &self.backend {
            let _ = tokio::time::timeout(self.deadline, m.disconnect()).await;
        }
    }

    /// The budget of one operation (`query_timeout_ms`).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// The configuration the directory was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend(&self) -> &AnyBackend {
        &self.backend
    }

    /// Runs one directory operation under the configured deadline.
    pub(crate) async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.deadline)),
        }
    }

    pub(crate) async fn schema(&self) -> Result<&Learned> {
        self.schema
            .get_or_try_init(|| async {
                let s = schema::inspect(&self.backend).await?;
                if !s.tables_exist && self.config.database.queries.user.is_none() {
                    // Not cached: the tables may be created while we run.
                    return Err(Error::Query(
                        "tables users/domains not found: run `vmailctl init`".into(),
                    ));
                }
                let sqlite = self.backend.dialect() == Dialect::Sqlite;
                let queries = Queries::new(&s, &self.config.database.queries, sqlite)?;
                let (batch_user, batch_address) = self.batchers(&queries)?;
                Ok(Learned {
                    schema: s,
                    queries,
                    batch_user,
                    batch_address,
                })
            })
            .await
    }

    /// MySQL, our own queries, `batch_keys` > 1: the batchers of the `user` and `address`
    /// statements, each arm bound with its single statement's parameters.
    fn batchers(&self, q: &Queries) -> Result<(Option<batch::Batcher>, Option<batch::Batcher>)> {
        let db = &self.config.database;
        if self.backend.dialect() != Dialect::Mysql || db.batch_keys <= 1 {
            return Ok((None, None));
        }
        let limits = batch::Limits {
            max_keys: db.batch_keys,
            in_flight: db.batch_in_flight,
            deadline: self.deadline,
        };
        let batcher = |single: &Lookup, arm: &Option<Lookup>| -> Result<Option<batch::Batcher>> {
            let Some(arm) = arm else {
                return Ok(None);
            };
            queries::check_arm(single, arm)?;
            Ok(Some(batch::Batcher::new(
                self.backend.clone(),
                single.sql.clone(),
                arm.sql.clone(),
                single.params.len(),
                limits,
                self.queries.clone(),
            )))
        };
        let user = batcher(&q.get(queries::Question::User).lookup, &q.user_arm)?;
        let address = match &q.address {
            Some(a) => batcher(a, &q.address_arm)?,
            None => None,
        };
        Ok((user, address))
    }
}
