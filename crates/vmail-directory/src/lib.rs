//! The vmail directory core: the only code that knows the schema.
//!
//! It answers what Postfix, Dovecot and the LDA ask — is this domain ours, which mailbox does
//! this address deliver to, where does this alias go, who may send as this address, which
//! transport, what are this user's credentials — on MySQL/MariaDB or the embedded SQLite
//! default, with the address rules (case folding, recipient delimiter, catch-all, alias
//! domains) applied once, here, for every daemon.
//!
//! Start reading at [`Directory`]; [`Map`] is what lookupd serves and `vmailctl query` shows.

pub mod address;
pub mod audit;
pub mod backend;
mod batch;
pub mod cache;
pub mod error;
mod known;
pub mod mailbox;
mod maps;
pub mod memo;
pub mod schema;
pub mod sql;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use vmail_config::{expand_template, Backend as BackendKind, Config};

pub use address::{Address, AddressPolicy};
pub use backend::{AnyBackend, Dialect, SqlBackend};
pub use error::{Error, Result};
pub use maps::{Map, RecipientRecord};
use schema::Schema;
use sql::{Lookup, Row, Value};

/// A user record, as authd and the LDA need it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The address as stored.
    pub email: String,
    /// The stored hash, possibly with a `{SCHEME}` prefix. Never logged.
    pub password: Option<String>,
    /// False when the user or its domain is disabled.
    pub active: bool,
    /// Quota in bytes; `None` for no limit.
    pub quota_bytes: Option<u64>,
    /// Allowed services (`smtp`, `imap`, `pop3`, ...); `None` allows all.
    pub services: Option<Vec<String>>,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub mail: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("active", &self.active)
            .field("quota_bytes", &self.quota_bytes)
            .field("services", &self.services)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("home", &self.home)
            .field("mail", &self.mail)
            .finish()
    }
}

impl User {
    /// Whether the user may use `service` (case-insensitive).
    pub fn allows(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(service)))
    }
}

/// The SELECTs in use: the classic schema's, or the operator's own.
#[derive(Debug, Clone)]
struct Queries {
    domain: Lookup,
    user: Lookup,
    alias: Lookup,
    transport: Lookup,
    /// The operator wrote the user query; it decides activity itself.
    custom_user: bool,
    /// Forwardings and user row of one address in one round trip (see
    /// [`Directory::prefetch_address`]); only when both are our own queries.
    address: Option<Lookup>,
    /// For our own queries, the column holding the key each row matched. MySQL's default
    /// collations are accent- and trailing-space-insensitive (`exämple.com` = `example.com`),
    /// so we check the match ourselves and both backends answer alike. `None` for custom
    /// queries, whose author decides what matches.
    verify: [Option<&'static str>; 4],
    /// SQLite, our own queries: each lookup again with both sides folded by `vmail_fold`
    /// (Unicode lower case, registered on every connection), run only when a key with
    /// non-ASCII characters found nothing. SQLite's NOCASE folds ASCII alone, so a row
    /// `Élise@example.org` written with plain SQL would otherwise never match `élise@...`,
    /// which MariaDB's default collations do match. A full scan, but only then; the
    /// indexed statement answers everything else.
    folded: [Option<Lookup>; 4],
    /// MySQL, our own queries, `batch_keys` > 1: concurrent `user` and `address` lookups
    /// share statements ([`batch`]).
    batch_user: Option<batch::Batcher>,
    batch_address: Option<batch::Batcher>,
}

/// Column of the user query naming the user's active domain (when domains have flags).
const ACTIVE_DOMAIN: &str = "vmail_active_domain";

/// Column of the alias and transport queries naming the key's domain when it is disabled
/// (when domains have flags): a disabled domain answers nothing in any map, and the flag
/// comes back with the rows instead of costing a statement of its own.
const DISABLED_DOMAIN: &str = "vmail_disabled_domain";

/// Column of the combined address query saying which table a row comes from.
const KIND: &str = "vmail_kind";

const Q_DOMAIN: usize = 0;
const Q_USER: usize = 1;
const Q_ALIAS: usize = 2;
const Q_TRANSPORT: usize = 3;

/// The directory: one per process, cheap to share behind an `Arc`.
pub struct Directory {
    backend: AnyBackend,
    policy: AddressPolicy,
    config: Config,
    deadline: Duration,
    /// Learned on first contact with the database, so a daemon can start while it is down.
    schema: OnceCell<(Schema, Queries)>,
    /// Sub-answers shared between map lookups ([`Directory::with_memo`]); off by default.
    memo: Option<SubMemo>,
    /// Statements sent to the database ([`Directory::queries_sent`]); shared with the
    /// batchers' tasks.
    queries: Arc<AtomicU64>,
    /// Every stored address, for "not found" without a statement
    /// ([`Directory::with_address_set`]); off by default.
    known: Option<Arc<known::Known>>,
    /// What every row's mailbox paths are checked against before they are handed out.
    guard: mailbox::PathGuard,
}

/// The memoized sub-queries: user rows by address, forwardings by (source, local, domain).
struct SubMemo {
    users: memo::Memo<String, Option<User>>,
    forwardings: memo::Memo<(String, String, String), Vec<String>>,
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
            memo: None,
            queries: Arc::new(AtomicU64::new(0)),
            known: None,
            guard: mailbox::PathGuard::new(&config.mailbox),
        })
    }

    /// Lets map lookups share the rows they read for up to [`memo::MEMO_TTL`] (never longer
    /// than `positive`, or `negative` for "no such row"), holding at most `max_entries` of
    /// each kind. For lookupd with its cache on; see the `memo` module for why. [`user`]
    /// (authentication) always reads the row.
    ///
    /// [`user`]: Directory::user
    pub fn with_memo(mut self, positive: Duration, negative: Duration, max_entries: usize) -> Self {
        let (p, n) = (positive.min(memo::MEMO_TTL), negative.min(memo::MEMO_TTL));
        self.memo = Some(SubMemo {
            users: memo::Memo::new(p, n, max_entries),
            forwardings: memo::Memo::new(p, n, max_entries),
        });
        self
    }

    /// With the memo ([`with_memo`](Self::with_memo)) on and the built-in queries: keeps
    /// the set of every stored address (`users.email`, `forwardings.source`; at most
    /// `max_keys` rows) and answers an address outside it "no such row" without a statement,
    /// for up to `ttl` after the set's read began (lookupd's negative TTL: the bound a cached
    /// "not found" already has). Read in the background while lookups come in; see the
    /// `known` module. Off for `ttl` or `max_keys` zero.
    pub fn with_address_set(mut self, ttl: Duration, max_keys: usize) -> Self {
        self.known =
            (!ttl.is_zero() && max_keys > 0).then(|| Arc::new(known::Known::new(ttl, max_keys)));
        self
    }

    /// Reads the address set now (a warm-up, e.g. at start). `Ok(Some(n))`: `n` keys held;
    /// `Ok(None)`: no set (off, custom queries, more rows than allowed, a read already in
    /// flight, or a flush meanwhile).
    pub async fn load_address_set(&self) -> Result<Option<usize>> {
        let Some(k) = &self.known else {
            return Ok(None);
        };
        // Dropped unused on every early return: counts as a failed read.
        let Some(ticket) = k.ticket() else {
            return Ok(None);
        };
        let (_, q) = self.bounded(self.schema()).await?;
        if q.address.is_none() {
            return Ok(None);
        }
        let fold = self.config.address.fold_local_part;
        let (installed, result) = read_address_set(&self.backend, ticket, k.ttl(), fold).await;
        result?;
        Ok(installed.then(|| k.len()).flatten())
    }

    /// [`known_absent`](Self::known_absent), where the set applies: the built-in queries.
    async fn set_says_absent(&self, key: &str) -> Result<bool> {
        if self.known.is_none() {
            return Ok(false);
        }
        let (_, q) = self.schema().await?;
        Ok(q.address.is_some() && self.known_absent(key))
    }

    /// Whether the address set says `key` (a normalized address or `@domain`) is stored
    /// nowhere; starts a read of the set when one is due. Callers make sure the built-in
    /// queries are in use.
    fn known_absent(&self, key: &str) -> bool {
        let Some(k) = &self.known else {
            return false;
        };
        let (verdict, ticket) = k.check(key, Instant::now());
        // Without a runtime the ticket is dropped: a failed read, tried again later.
        if let (Some(ticket), Ok(h)) = (ticket, tokio::runtime::Handle::try_current()) {
            let backend = self.backend.clone();
            let (ttl, fold) = (k.ttl(), self.config.address.fold_local_part);
            h.spawn(async move {
                if let (_, Err(e)) = read_address_set(&backend, ticket, ttl, fold).await {
                    tracing::debug!(error = %e, "reading the address set failed");
                }
            });
        }
        verdict == known::Verdict::Absent
    }

    /// A user for the maps: "none" from the address set when it says so, else as
    /// [`user_at`](Self::user_at). Never for [`recipient`](Self::recipient): a delivery must
    /// not bounce on a set read just before the user was added.
    async fn map_user(&self, a: &Address) -> Result<Option<User>> {
        if self.set_says_absent(&a.to_string()).await? {
            return Ok(None);
        }
        self.user_at(a).await
    }

    /// How many lookup statements this directory has sent to the database (not counting
    /// schema detection, administration and reads of the address set).
    pub fn queries_sent(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Forgets the memoized rows and the address set (with lookupd's cache flush).
    pub fn clear_memo(&self) {
        if let Some(m) = &self.memo {
            m.users.clear();
            m.forwardings.clear();
        }
        if let Some(k) = &self.known {
            k.clear();
        }
    }

    /// The budget of one operation (`query_timeout_ms`).
    /// Says goodbye to the database on idle connections (COM_QUIT), so a short-lived
    /// process such as the LDA does not leave an "aborted connection" behind on the server
    /// at every run. Bounded by the deadline; errors do not matter at this point.
    pub async fn close(&self) {
        if let AnyBackend::Mysql(m) = &self.backend {
            let _ = tokio::time::timeout(self.deadline, m.disconnect()).await;
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    pub fn backend(&self) -> &AnyBackend {
        &self.backend
    }

    /// Runs one directory operation under the configured deadline.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.deadline)),
        }
    }

    async fn schema(&self) -> Result<&(Schema, Queries)> {
        self.schema
            .get_or_try_init(|| async {
                let s = schema::inspect(&self.backend).await?;
                if !s.tables_exist && self.config.database.queries.user.is_none() {
                    // Not cached: the tables may be created while we run.
                    return Err(Error::Query(
                        "tables users/domains not found: run `vmailctl init`".into(),
                    ));
                }
                let q = self.queries_for(&s)?;
                Ok((s, q))
            })
            .await
    }

    fn queries_for(&self, s: &Schema) -> Result<Queries> {
        let c = &self.config.database.queries;
        let pick = |custom: &Option<String>, default: String| -> Result<Lookup> {
            Lookup::compile(custom.as_deref().unwrap_or(&default))
        };
        let mut user_cols = String::from("email, password");
        for (present, col) in [
            (s.users_active, "active"),
            (s.users_quota, "quota"),
            (s.users_services, "services"),
        ] {
            if present {
                user_cols.push_str(", ");
                user_cols.push_str(col);
            }
        }
        let active = if s.domains_active {
            " AND active = 1"
        } else {
            ""
        };
        let mine = |custom: &Option<String>, col: &'static str| custom.is_none().then_some(col);
        // The user's active domain, when domains have flags.
        let domain_col = if s.domains_active {
            format!(", (SELECT domain FROM domains WHERE domain = %d{active} LIMIT 1) AS {ACTIVE_DOMAIN}")
        } else {
            String::new()
        };
        // The key's domain if it is disabled. Only a disabled row counts: forwardings and
        // transports of domains missing from `domains` (relay domains) keep working.
        let (disabled_col, disabled_null) = if s.domains_active {
            (
                format!(", (SELECT domain FROM domains WHERE domain = %d AND active = 0 LIMIT 1) AS {DISABLED_DOMAIN}"),
                format!(", NULL AS {DISABLED_DOMAIN}"),
            )
        } else {
            (String::new(), String::new())
        };
        // The user's row, then the forwardings' two columns; each half fills the other's
        // columns with NULL. vmail_kind tells the rows apart. `extra` ends both select lists.
        let address_sql = |extra: &str| {
            let nulls = ", NULL".repeat(user_cols.split(',').count());
            let domain_null = if s.domains_active { ", NULL" } else { "" };
            format!(
                "SELECT 'u' AS {KIND}, {user_cols}{domain_col}, NULL AS destination, NULL AS source{disabled_null}{extra} \
                 FROM users WHERE email = %s \
                 UNION ALL \
                 SELECT 'f'{nulls}{domain_null}, destination, source{disabled_col}{extra} FROM forwardings WHERE source = %s"
            )
        };
        let user_sql = |extra: &str| {
            format!("SELECT {user_cols}{domain_col}{extra} FROM users WHERE email = %s")
        };
        let db = &self.config.database;
        let batching = self.backend.dialect() == backend::Dialect::Mysql
            && db.batch_keys > 1
            && c.user.is_none();
        let limits = batch::Limits {
            max_keys: db.batch_keys,
            in_flight: db.batch_in_flight,
            deadline: self.deadline,
        };
        // A batch arm: the statement with its number as a last column, the same parameters.
        let arm = format!(", {} AS {}", batch::ARM, batch::KEY_COLUMN);
        let batcher = |single: &Lookup, arm: String| -> Result<batch::Batcher> {
            let arm = Lookup::compile(&arm)?;
            // The arms are bound with the single statement's parameters.
            if arm.params != single.params {
                return Err(Error::Config(format!(
                    "batch statement binds {:?}, its single statement {:?}",
                    arm.params, single.params
                )));
            }
            Ok(batch::Batcher::new(
                self.backend.clone(),
                single.sql.clone(),
                arm.sql,
                single.params.len(),
                limits,
                self.queries.clone(),
            ))
        };
        let sqlite = self.backend.dialect() == backend::Dialect::Sqlite;
        let folded = |custom: &Option<String>, sql: String| -> Result<Option<Lookup>> {
            (sqlite && custom.is_none())
                .then(|| Lookup::compile(&sql))
                .transpose()
        };
        let folded_domain_col = if s.domains_active {
            format!(", (SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(%d){active} LIMIT 1) AS {ACTIVE_DOMAIN}")
        } else {
            String::new()
        };
        let user = pick(&c.user, user_sql(""))?;
        let address = (c.user.is_none() && c.alias.is_none())
            .then(|| Lookup::compile(&address_sql("")))
            .transpose()?;
        Ok(Queries {
            domain: pick(
                &c.domain,
                format!("SELECT domain FROM domains WHERE domain = %d{active}"),
            )?,
            // With domain flags, the user's domain comes back in the same round trip: one
            // query per user lookup instead of two (the directory's hottest path).
            batch_user: batching
                .then(|| batcher(&user, user_sql(&arm)))
                .transpose()?,
            batch_address: match &address {
                Some(a) if batching => Some(batcher(a, address_sql(&arm))?),
                _ => None,
            },
            user,
            address,
            alias: pick(
                &c.alias,
                format!(
                    "SELECT destination, source{disabled_col} FROM forwardings WHERE source = %s"
                ),
            )?,
            transport: pick(
                &c.transport,
                format!("SELECT transport, domain{disabled_col} FROM transport WHERE domain = %s"),
            )?,
            custom_user: c.user.is_some(),
            folded: [
                folded(
                    &c.domain,
                    format!("SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(%d){active}"),
                )?,
                folded(
                    &c.user,
                    format!("SELECT {user_cols}{folded_domain_col} FROM users WHERE vmail_fold(email) = vmail_fold(%s)"),
                )?,
                folded(
                    &c.alias,
                    "SELECT destination, source FROM forwardings WHERE vmail_fold(source) = vmail_fold(%s)".into(),
                )?,
                folded(
                    &c.transport,
                    "SELECT transport, domain FROM transport WHERE vmail_fold(domain) = vmail_fold(%s)".into(),
                )?,
            ],
            verify: [
                mine(&c.domain, "domain"),
                mine(&c.user, "email"),
                mine(&c.alias, "source"),
                mine(&c.transport, "domain"),
            ],
        })
    }

    /// Runs lookup `which` and keeps the rows whose key column really equals the key (see
    /// [`Queries::verify`]).
    async fn run(&self, which: usize, key: &str, local: &str, domain: &str) -> Result<Vec<Row>> {
        let (_, q) = self.schema().await?;
        let lookup = [&q.domain, &q.user, &q.alias, &q.transport][which];
        let batcher = if which == Q_USER {
            q.batch_user.as_ref()
        } else {
            None
        };
        let mut rows = self
            .send(lookup, batcher, lookup.bind(key, local, domain))
            .await?;
        let verify = |rows: &mut Vec<Row>| {
            if let Some(col) = q.verify[which] {
                rows.retain(|r| r.get(col).is_some_and(|stored| self.same_key(stored, key)));
            }
        };
        verify(&mut rows);
        if let (true, false, Some(f)) = (rows.is_empty(), key.is_ascii(), &q.folded[which]) {
            rows = self.send(f, None, f.bind(key, local, domain)).await?;
            verify(&mut rows);
        }
        Ok(rows)
    }

    /// Sends one lookup statement, through `batcher` when it has one ([`batch`]); counted
    /// either way ([`Directory::queries_sent`]).
    async fn send(
        &self,
        lookup: &Lookup,
        batcher: Option<&batch::Batcher>,
        params: Vec<Value>,
    ) -> Result<Vec<Row>> {
        match batcher {
            Some(b) => b.fetch(params).await,
            None => {
                self.queries.fetch_add(1, Ordering::Relaxed);
                self.backend.fetch(&lookup.sql, params).await
            }
        }
    }

    /// Whether a stored key equals a (folded) lookup key under this installation's rules.
    /// The address set holds stored keys normalized the same way, so that it can never
    /// disagree with this check.
    fn same_key(&self, stored: &str, key: &str) -> bool {
        known::norm_key(self.config.address.fold_local_part, stored) == key
    }

    // ---- lookups -------------------------------------------------------------------------

    /// Whether `domain` is one of ours (and active).
    pub async fn domain_exists(&self, domain: &str) -> Result<bool> {
        let Some(d) = self.policy.domain(domain) else {
            return Ok(false);
        };
        self.bounded(self.domain_exists_folded(&d)).await
    }

    async fn domain_exists_folded(&self, d: &str) -> Result<bool> {
        Ok(!self.run(Q_DOMAIN, d, "", d).await?.is_empty())
    }

    /// Whether `d` (folded) has a row in `domains`, enabled or not (with a custom domain
    /// query: whether that query answers it). For the alias-domain search: a catch-all
    /// `@d` to a domain that is not ours forwards a whole domain to another server.
    pub(crate) async fn domain_listed(&self, d: &str) -> Result<bool> {
        if self.config.database.queries.domain.is_some() {
            return self.domain_exists_folded(d).await;
        }
        self.queries.fetch_add(1, Ordering::Relaxed);
        let rows = self
            .backend
            .fetch(
                "SELECT domain FROM domains WHERE domain = ?",
                vec![d.into()],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(Row::first)
            .any(|stored| self.same_key(stored, d)))
    }

    /// The user with exactly this login (case folded, no extension stripping): for
    /// authentication.
    pub async fn user(&self, login: &str) -> Result<Option<User>> {
        let Some(a) = self.policy.parse(login) else {
            return Ok(None);
        };
        // Never from the memo: a login is checked against the row as it is now, and the
        // memo keeps no password.
        self.bounded(self.read_user(&a)).await
    }

    /// The user mail for `recipient` is delivered to: exact address, then without its
    /// extension. Returns the user and the extension (delimiter included). For the LDA.
    pub async fn recipient(&self, recipient: &str) -> Result<Option<(User, Option<String>)>> {
        let Some(a) = self.policy.parse(recipient) else {
            return Ok(None);
        };
        self.bounded(async {
            if let Some(u) = self.user_at(&a).await? {
                return Ok(Some((u, None)));
            }
            let (base, ext) = a.base(&self.policy);
            if ext.is_some() {
                if let Some(u) = self.user_at(&base).await? {
                    return Ok(Some((u, ext)));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn user_at(&self, a: &Address) -> Result<Option<User>> {
        let Some(m) = &self.memo else {
            return self.read_user(a).await;
        };
        m.users
            .get_or_read(a.to_string(), self.read_user(a), |u| {
                u.clone().map(without_password)
            })
            .await
    }

    async fn read_user(&self, a: &Address) -> Result<Option<User>> {
        let rows = self
            .run(Q_USER, &a.to_string(), &a.local, &a.domain)
            .await?;
        self.user_from_rows(&rows, a).await
    }

    /// The user of the first of `rows` (those the key matched), with the domain's flag.
    async fn user_from_rows(&self, rows: &[Row], a: &Address) -> Result<Option<User>> {
        let (schema, q) = self.schema().await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut user = self.user_from_row(row, a)?;
        // A custom user query is expected to apply its own domain rules.
        if user.active && schema.domains_active && !q.custom_user {
            user.active = match row.get(ACTIVE_DOMAIN) {
                // SQLite: the domain row may differ in the case of a non-ASCII letter.
                None if q.folded[Q_DOMAIN].is_some() && !a.domain.is_ascii() => {
                    self.domain_exists_folded(&a.domain).await?
                }
                // No active domain row matched, not even a collation-equal one.
                None => false,
                Some(d) if d.trim_end_matches(' ').to_lowercase() == a.domain => true,
                // MariaDB matched an accent- or space-variant of the domain: ask exactly.
                Some(_) => self.domain_exists_folded(&a.domain).await?,
            };
        }
        Ok(Some(user))
    }

    /// The user of `row`, found as `a`; refused (a temporary error, logged) when its mailbox
    /// paths are not its own under the base ([`mailbox::PathGuard`]).
    fn user_from_row(&self, row: &Row, a: &Address) -> Result<User> {
        let user = self.user_from_row_unchecked(row, a);
        // The address the templates were expanded with, then the stored one (which Dovecot
        // gets as the login's `user`).
        let stored = row.get("email").and_then(|e| e.rsplit_once('@'));
        let checked = self
            .guard
            .check(&a.local, &a.domain, &user.home, &user.mail)
            .and_then(|()| match stored {
                Some((l, d)) => address::rules::check_path_safe(l, d).map_err(|e| e.to_string()),
                None => Ok(()),
            });
        match checked {
            Ok(()) => Ok(user),
            Err(reason) => {
                tracing::warn!(
                    row = ?user.email,
                    reason = %reason,
                    "refusing a stored mailbox (temporary failure until the row is fixed)"
                );
                Err(Error::UnsafeMailbox {
                    row: user.email,
                    reason,
                })
            }
        }
    }

    fn user_from_row_unchecked(&self, row: &Row, a: &Address) -> User {
        let m = &self.config.mailbox;
        let flag = |v: Option<&str>| match v {
            None => true,
            Some(s) => !matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "0" | "n" | "no" | "false" | ""
            ),
        };
        // Trailing spaces matched (see `known::norm_key`) but are no part of the address.
        let email = row
            .get("email")
            .map(|e| e.trim_end_matches(' ').to_string())
            .unwrap_or_else(|| a.to_string());
        User {
            password: row.get("password").map(str::to_string),
            active: flag(row.get("active")),
            quota_bytes: row
                .get("quota")
                .and_then(|q| q.trim().parse::<u64>().ok())
                .filter(|q| *q > 0),
            services: row.get("services").map(|s| {
                s.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|x| !x.is_empty())
                    .map(|x| x.to_ascii_lowercase())
                    .collect()
            }),
            uid: row.get("uid").and_then(|v| v.parse().ok()).unwrap_or(m.uid),
            gid: row.get("gid").and_then(|v| v.parse().ok()).unwrap_or(m.gid),
            home: row
                .get("home")
                .map(str::to_string)
                .unwrap_or_else(|| expand_template(&m.home, &a.local, &a.domain)),
            mail: row
                .get("mail")
                .map(str::to_string)
                .unwrap_or_else(|| expand_template(&m.mail, &a.local, &a.domain)),
            email,
        }
    }

    /// Alias destinations stored for exactly `key` (an address or `@domain`), whatever the
    /// domain's flag: for administration.
    async fn forwardings(&self, key: &str, local: &str, domain: &str) -> Result<Vec<String>> {
        let rows = self.run(Q_ALIAS, key, local, domain).await?;
        Ok(destinations(rows.iter().filter_map(Row::first)))
    }

    /// Alias destinations of exactly `key` (an address or `@domain`) for the maps: none in a
    /// disabled domain.
    async fn map_forwardings(&self, key: &str, local: &str, domain: &str) -> Result<Vec<String>> {
        let Some(m) = &self.memo else {
            return self.read_forwardings(key, local, domain).await;
        };
        if self.set_says_absent(key).await? {
            return Ok(Vec::new());
        }
        let k = (key.to_string(), local.to_string(), domain.to_string());
        m.forwardings
            .get_or_read(k, self.read_forwardings(key, local, domain), Vec::clone)
            .await
    }

    async fn read_forwardings(&self, key: &str, local: &str, domain: &str) -> Result<Vec<String>> {
        let rows = self.run(Q_ALIAS, key, local, domain).await?;
        if self.domain_disabled(&rows, domain).await? {
            return Ok(Vec::new());
        }
        Ok(destinations(rows.iter().filter_map(Row::first)))
    }

    /// Whether `rows` (of the alias or transport query, or the forwardings half of the
    /// address query) say that `domain` is disabled.
    async fn domain_disabled(&self, rows: &[Row], domain: &str) -> Result<bool> {
        match rows.iter().find_map(|r| r.get(DISABLED_DOMAIN)) {
            None => Ok(false),
            Some(d) if d.trim_end_matches(' ').to_lowercase() == domain => Ok(true),
            // MariaDB matched an accent- or space-variant of the domain: ask exactly.
            Some(_) => Ok(self
                .backend
                .fetch(
                    "SELECT domain FROM domains WHERE domain = ? AND active = 0",
                    vec![domain.into()],
                )
                .await?
                .iter()
                .filter_map(Row::first)
                .any(|d| d.trim_end_matches(' ').to_lowercase() == domain)),
        }
    }

    /// With the memo on and our own queries: reads the forwardings and the user row of `a`
    /// in one statement, memoizes both and returns them (`None`: not read, use
    /// [`forwardings`](Self::forwardings) and [`user_at`](Self::user_at)), so that the
    /// `aliases` lookup of an address that is in neither cache costs one round trip instead
    /// of two (the `mailboxes` lookup Postfix makes next reads the same memo). Postfix asks
    /// about every unknown recipient this way, so this is the query that a stream of new
    /// unknown addresses repeats. Returned as well as memoized: a memo with a zero TTL keeps
    /// nothing, and the caller must not have to read the rows again.
    async fn prefetch_address(&self, a: &Address) -> Result<Option<(Option<User>, Vec<String>)>> {
        let Some(m) = &self.memo else {
            return Ok(None);
        };
        let (_, q) = self.schema().await?;
        let Some(lookup) = &q.address else {
            return Ok(None);
        };
        let key = a.to_string();
        // SQLite: a miss may need the folded statements, which `run` knows.
        if q.folded[Q_USER].is_some() && !key.is_ascii() {
            return Ok(None);
        }
        let fkey = (key.clone(), a.local.clone(), a.domain.clone());
        let now = Instant::now();
        if m.users.get(&key, now).is_some() || m.forwardings.get(&fkey, now).is_some() {
            return Ok(None);
        }
        if self.known_absent(&key) {
            // Exactly what the statement would have found: no row. Not memoized: the memo
            // also serves the LDA's `recipient`, which never takes the set's word; the
            // `mailboxes` lookup that follows asks the set itself.
            return Ok(Some((None, Vec::new())));
        }
        let rows = self
            .send(
                lookup,
                q.batch_address.as_ref(),
                lookup.bind(&key, &a.local, &a.domain),
            )
            .await?;
        // As `run` does for each query: keep the rows whose key really equals ours.
        let (users, forwardings): (Vec<Row>, Vec<Row>) =
            rows.into_iter().partition(|r| r.get(KIND) == Some("u"));
        let users: Vec<Row> = users
            .into_iter()
            .filter(|r| r.get("email").is_some_and(|e| self.same_key(e, &key)))
            .collect();
        let forwardings: Vec<Row> = forwardings
            .into_iter()
            .filter(|r| r.get("source").is_some_and(|s| self.same_key(s, &key)))
            .collect();
        let dest = if self.domain_disabled(&forwardings, &a.domain).await? {
            Vec::new()
        } else {
            destinations(forwardings.iter().filter_map(|r| r.get("destination")))
        };
        let user = self.user_from_rows(&users, a).await?.map(without_password);
        let now = Instant::now();
        m.users.put(key, user.clone(), now);
        m.forwardings.put(fkey, dest.clone(), now);
        Ok(Some((user, dest)))
    }

    /// The transport stored for `key` (a domain or an address in `domain`); none when the
    /// domain is disabled.
    async fn transport_for(&self, key: &str, domain: &str) -> Result<Option<String>> {
        let rows = self.run(Q_TRANSPORT, key, "", domain).await?;
        if self.domain_disabled(&rows, domain).await? {
            return Ok(None);
        }
        Ok(rows.first().and_then(|r| r.first()).map(str::to_string))
    }

    /// Answers `key` in `map` exactly as vmail-lookupd will: `Ok(None)` is NOTFOUND,
    /// an error with [`Error::is_temporary`] is TEMP.
    pub async fn lookup(&self, map: Map, key: &str) -> Result<Option<String>> {
        self.bounded(maps::lookup(self, map, key)).await
    }

    // ---- administration (classic schema only) --------------------------------------------

    /// Creates the classic tables and, unless `classic_only`, the optional columns.
    pub async fn init(&self, classic_only: bool) -> Result<Vec<String>> {
        schema::init(&self.backend, classic_only).await
    }

    pub async fn migrate(&self) -> Result<Vec<String>> {
        schema::migrate(&self.backend).await
    }

    /// The schema as found now (not cached).
    pub async fn inspect(&self) -> Result<Schema> {
        self.bounded(schema::inspect(&self.backend)).await
    }

    fn parse_domain(&self, d: &str) -> Result<String> {
        self.policy
            .domain(d)
            .filter(|d| d.contains('.') || d == "localhost")
            .ok_or_else(|| Error::Invalid(format!("{d:?} is not a valid domain name")))
    }

    fn parse_address(&self, a: &str) -> Result<Address> {
        self.policy
            .parse(a)
            .filter(|x| !x.local.contains(char::is_whitespace) && x.domain.contains('.'))
            .ok_or_else(|| Error::Invalid(format!("{a:?} is not a valid address (user@domain)")))
    }

    /// Refuses a name an administrative write is about to store (normalized: `local@domain`,
    /// `@domain` or `domain`) when it breaks a rule of [`address::rules`]. Deleting or
    /// changing a row does not ask, so that a bad row written with plain SQL can be removed.
    fn check_new(&self, what: &str, key: &str) -> Result<()> {
        let r = match key.rsplit_once('@') {
            None => address::rules::check_domain(key),
            Some(("", d)) => address::rules::check_domain(d),
            Some((l, d)) => {
                address::rules::check_local(l).and_then(|()| address::rules::check_domain(d))
            }
        };
        r.map_err(|e| Error::Invalid(format!("{what} {key:?} refused: {e}")))
    }

    async fn require_domain(&self, d: &str) -> Result<()> {
        let rows = self
            .backend
            .fetch(
                "SELECT domain FROM domains WHERE domain = ?",
                vec![d.into()],
            )
            .await?;
        if !rows.is_empty() {
            return Ok(());
        }
        // SQLite's NOCASE folds ASCII only: `ÉXAMPLE.net` is `éxample.net` on MariaDB.
        if self.backend.dialect() == Dialect::Sqlite && !d.is_ascii() {
            let rows = self
                .backend
                .fetch(
                    "SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(?)",
                    vec![d.into()],
                )
                .await?;
            if !rows.is_empty() {
                return Ok(());
            }
        }
        Err(Error::Missing(format!("domain {d}")))
    }

    pub async fn add_domain(&self, domain: &str) -> Result<()> {
        let d = self.parse_domain(domain)?;
        self.check_new("domain", &d)?;
        self.backend
            .execute(
                "INSERT INTO domains (domain) VALUES (?)",
                vec![d.clone().into()],
            )
            .await
            .map_err(|e| exists_as(e, format!("domain {d}")))?;
        Ok(())
    }

    /// Deletes a domain; with `force` also its users and aliases, else refuses while any
    /// exist (deleting a domain with live mailboxes is rarely what anyone meant).
    pub async fn del_domain(&self, domain: &str, force: bool) -> Result<()> {
        let d = self.parse_domain(domain)?;
        self.require_domain(&d).await?;
        let like = format!("%@{}", like_escape(&d));
        let users = self
            .count(
                "SELECT COUNT(*) FROM users WHERE email LIKE ? ESCAPE '!'",
                &like,
            )
            .await?;
        let aliases = self
            .count(
                "SELECT COUNT(*) FROM forwardings WHERE source LIKE ? ESCAPE '!'",
                &like,
            )
            .await?;
        if (users > 0 || aliases > 0) && !force {
            return Err(Error::Invalid(format!(
                "domain {d} still has {users} user(s) and {aliases} alias(es); delete them first or use --force"
            )));
        }
        for sql in [
            "DELETE FROM users WHERE email LIKE ? ESCAPE '!'",
            "DELETE FROM forwardings WHERE source LIKE ? ESCAPE '!'",
        ] {
            self.backend.execute(sql, vec![like.clone().into()]).await?;
        }
        self.backend
            .execute(
                "DELETE FROM transport WHERE domain = ?",
                vec![d.clone().into()],
            )
            .await?;
        self.backend
            .execute("DELETE FROM domains WHERE domain = ?", vec![d.into()])
            .await?;
        Ok(())
    }

    async fn count(&self, sql: &str, p: &str) -> Result<u64> {
        let rows = self.backend.fetch(sql, vec![p.into()]).await?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub async fn list_domains(&self) -> Result<Vec<String>> {
        let rows = self
            .backend
            .fetch("SELECT domain FROM domains ORDER BY domain", vec![])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.first().map(str::to_string))
            .collect())
    }

    /// Refuses a hash that the column cannot hold whole.
    async fn check_password_fits(&self, hash: &str) -> Result<()> {
        let s = schema::inspect(&self.backend).await?;
        if let Some(w) = s.password_width {
            if hash.chars().count() > w as usize {
                return Err(Error::TooLong {
                    what: "the password hash",
                    len: hash.chars().count(),
                    column: "users.password",
                    width: w,
                });
            }
        }
        Ok(())
    }

    /// Adds a mailbox user with an already hashed password.
    pub async fn add_user(&self, email: &str, hash: &str, quota_bytes: Option<u64>) -> Result<()> {
        let a = self.parse_address(email)?;
        self.check_new("user", &a.to_string())?;
        self.require_domain(&a.domain).await?;
        self.check_password_fits(hash).await?;
        let s = schema::inspect(&self.backend).await?;
        let key = a.to_string();
        // SQLite's NOCASE would let `élise@` in beside `Élise@`, which MariaDB's key refuses
        // (the new row would shadow the old one in every lookup).
        if self.backend.dialect() == Dialect::Sqlite
            && !key.is_ascii()
            && !self
                .run(Q_USER, &key, &a.local, &a.domain)
                .await?
                .is_empty()
        {
            return Err(Error::Exists(format!("user {key}")));
        }
        let r = match (quota_bytes, s.users_quota) {
            (Some(q), true) => {
                self.backend
                    .execute(
                        "INSERT INTO users (email, password, quota) VALUES (?, ?, ?)",
                        vec![
                            key.clone().into(),
                            hash.into(),
                            Value::Int(q.min(i64::MAX as u64) as i64),
                        ],
                    )
                    .await
            }
            (Some(_), false) => {
                return Err(Error::Invalid(
                    "this database has no users.quota column; run `vmailctl migrate`".into(),
                ))
            }
            (None, _) => {
                self.backend
                    .execute(
                        "INSERT INTO users (email, password) VALUES (?, ?)",
                        vec![key.clone().into(), hash.into()],
                    )
                    .await
            }
        };
        r.map_err(|e| exists_as(e, format!("user {key}")))?;
        Ok(())
    }

    pub async fn set_password(&self, email: &str, hash: &str) -> Result<()> {
        let a = self.parse_address(email)?;
        self.check_password_fits(hash).await?;
        let n = self
            .backend
            .execute(
                "UPDATE users SET password = ? WHERE email = ?",
                vec![hash.into(), a.to_string().into()],
            )
            .await?;
        if n == 0 && !self.user_exists(&a).await? {
            return Err(Error::Missing(format!("user {a}")));
        }
        Ok(())
    }

    /// Replaces the stored hash only if it is still `old` (a compare-and-set, so a login
    /// that re-hashes an old password can never undo a password change made meanwhile).
    /// Returns whether it was replaced. Refused for custom user queries, whose table we do
    /// not know.
    pub async fn replace_password(&self, email: &str, old: &str, new: &str) -> Result<bool> {
        if self.config.database.queries.user.is_some() {
            return Err(Error::Invalid(
                "database.queries.user is custom: vmail does not know where to store a new hash"
                    .into(),
            ));
        }
        let a = self.parse_address(email)?;
        self.check_password_fits(new).await?;
        let n = self
            .backend
            .execute(
                "UPDATE users SET password = ? WHERE email = ? AND password = ?",
                vec![new.into(), a.to_string().into(), old.into()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn user_exists(&self, a: &Address) -> Result<bool> {
        Ok(!self
            .backend
            .fetch(
                "SELECT email FROM users WHERE email = ?",
                vec![a.to_string().into()],
            )
            .await?
            .is_empty())
    }

    /// Enables or disables a user (needs the `active` column from `vmailctl migrate`).
    pub async fn set_active(&self, email: &str, active: bool) -> Result<()> {
        let a = self.parse_address(email)?;
        if !schema::inspect(&self.backend).await?.users_active {
            return Err(Error::Invalid(
                "this database has no users.active column; run `vmailctl migrate`".into(),
            ));
        }
        let n = self
            .backend
            .execute(
                "UPDATE users SET active = ? WHERE email = ?",
                vec![active.into(), a.to_string().into()],
            )
            .await?;
        if n == 0 && !self.user_exists(&a).await? {
            return Err(Error::Missing(format!("user {a}")));
        }
        Ok(())
    }

    pub async fn del_user(&self, email: &str) -> Result<()> {
        let a = self.parse_address(email)?;
        let n = self
            .backend
            .execute(
                "DELETE FROM users WHERE email = ?",
                vec![a.to_string().into()],
            )
            .await?;
        if n == 0 {
            return Err(Error::Missing(format!("user {a}")));
        }
        Ok(())
    }

    /// Users, optionally of one domain, as (email, active).
    pub async fn list_users(&self, domain: Option<&str>) -> Result<Vec<(String, bool)>> {
        let s = schema::inspect(&self.backend).await?;
        let cols = if s.users_active {
            "email, active"
        } else {
            "email"
        };
        let rows = match domain {
            Some(d) => {
                let d = self.parse_domain(d)?;
                self.backend
                    .fetch(
                        &format!(
                            "SELECT {cols} FROM users WHERE email LIKE ? ESCAPE '!' ORDER BY email"
                        ),
                        vec![format!("%@{}", like_escape(&d)).into()],
                    )
                    .await?
            }
            None => {
                self.backend
                    .fetch(&format!("SELECT {cols} FROM users ORDER BY email"), vec![])
                    .await?
            }
        };
        Ok(rows
            .iter()
            .filter_map(|r| {
                let e = r.first()?.to_string();
                Some((e, r.get("active").is_none_or(|v| v != "0")))
            })
            .collect())
    }

    /// Adds destinations to the alias `source` (an address, or `@domain` for a catch-all),
    /// creating it if needed. A destination `@otherdomain` on a source `@domain` makes
    /// `domain` an alias domain of `otherdomain`.
    pub async fn add_alias(&self, source: &str, destinations: &[String]) -> Result<()> {
        let src = self.alias_source(source)?;
        self.check_new("alias", &src)?;
        let domain = src
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        self.require_domain(&domain).await?;
        if destinations.is_empty() {
            return Err(Error::Invalid(
                "an alias needs at least one destination".into(),
            ));
        }
        let mut dests = self.forwardings(&src, "", &domain).await?;
        let existed = !dests.is_empty();
        for d in destinations {
            let d = self.alias_destination(d)?;
            self.check_new("destination", &d)?;
            if !dests.contains(&d) {
                dests.push(d);
            }
        }
        let joined = dests.join(", ");
        if existed {
            self.backend
                .execute(
                    "UPDATE forwardings SET destination = ? WHERE source = ?",
                    vec![joined.into(), src.into()],
                )
                .await?;
        } else {
            self.backend
                .execute(
                    "INSERT INTO forwardings (source, destination) VALUES (?, ?)",
                    vec![src.clone().into(), joined.into()],
                )
                .await
                .map_err(|e| exists_as(e, format!("alias {src}")))?;
        }
        Ok(())
    }

    /// Removes one destination of an alias, or the whole alias when `destination` is None.
    pub async fn del_alias(&self, source: &str, destination: Option<&str>) -> Result<()> {
        let src = self.alias_source(source)?;
        let domain = src
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let mut dests = self.forwardings(&src, "", &domain).await?;
        if dests.is_empty() {
            return Err(Error::Missing(format!("alias {src}")));
        }
        if let Some(d) = destination {
            let d = self.alias_destination(d)?;
            let before = dests.len();
            dests.retain(|x| !x.eq_ignore_ascii_case(&d));
            if dests.len() == before {
                return Err(Error::Missing(format!("destination {d} of alias {src}")));
            }
        } else {
            dests.clear();
        }
        if dests.is_empty() {
            self.backend
                .execute("DELETE FROM forwardings WHERE source = ?", vec![src.into()])
                .await?;
        } else {
            self.backend
                .execute(
                    "UPDATE forwardings SET destination = ? WHERE source = ?",
                    vec![dests.join(", ").into(), src.into()],
                )
                .await?;
        }
        Ok(())
    }

    /// Aliases, optionally of one domain, as (source, destinations).
    pub async fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<(String, Vec<String>)>> {
        let rows = match domain {
            Some(d) => {
                let d = self.parse_domain(d)?;
                self.backend
                    .fetch(
                        "SELECT source, destination FROM forwardings WHERE source LIKE ? ESCAPE '!' ORDER BY source",
                        vec![format!("%@{}", like_escape(&d)).into()],
                    )
                    .await?
            }
            None => {
                self.backend
                    .fetch(
                        "SELECT source, destination FROM forwardings ORDER BY source",
                        vec![],
                    )
                    .await?
            }
        };
        Ok(rows
            .iter()
            .filter_map(|r| {
                let s = r.first()?.to_string();
                let d = r.get("destination").unwrap_or("");
                Some((
                    s,
                    address::split_destinations(d).map(str::to_string).collect(),
                ))
            })
            .collect())
    }

    fn alias_source(&self, s: &str) -> Result<String> {
        if let Some(d) = s.strip_prefix('@') {
            return Ok(format!("@{}", self.parse_domain(d)?));
        }
        Ok(self.parse_address(s)?.to_string())
    }

    fn alias_destination(&self, s: &str) -> Result<String> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix('@') {
            return Ok(format!("@{}", self.parse_domain(d)?));
        }
        // Remote destinations keep their case: only the receiving system may fold them.
        if s.is_empty() || s.contains(|c: char| c == ',' || c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid(format!(
                "{s:?} is not a valid destination address"
            )));
        }
        match s.rsplit_once('@') {
            Some((l, d)) if !l.is_empty() => Ok(format!("{l}@{}", self.parse_domain(d)?)),
            _ => Err(Error::Invalid(format!(
                "{s:?} is not a valid destination address"
            ))),
        }
    }

    /// Sets the transport of a domain (classic `transport` table).
    pub async fn set_transport(&self, domain: &str, transport: &str) -> Result<()> {
        let d = self.parse_domain(domain)?;
        self.check_new("domain", &d)?;
        if transport.is_empty() || transport.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "{transport:?} is not a valid transport"
            )));
        }
        self.backend
            .execute(
                "DELETE FROM transport WHERE domain = ?",
                vec![d.clone().into()],
            )
            .await?;
        self.backend
            .execute(
                "INSERT INTO transport (domain, transport) VALUES (?, ?)",
                vec![d.into(), transport.into()],
            )
            .await?;
        Ok(())
    }
}

fn exists_as(e: Error, what: String) -> Error {
    match e {
        Error::Exists(_) => Error::Exists(what),
        other => other,
    }
}

/// Escapes LIKE metacharacters with `!` (declared with `ESCAPE '!'`): a domain's `_` must
/// not match any character.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// Reads every stored address for the address set (at most `max_keys` + 1 rows) and hands
/// the result to the ticket, whatever it is. Returns whether a set was installed, and the
/// read's error.
async fn read_address_set(
    backend: &AnyBackend,
    ticket: known::Ticket,
    ttl: Duration,
    fold: bool,
) -> (bool, Result<()>) {
    let started = Instant::now();
    let max = ticket.max_keys;
    // One statement, so that both tables are read as of one moment (an alias turned into a
    // mailbox in one transaction is never missing from both). The combined address
    // statement reads exactly these two columns by key.
    let sql = format!(
        "SELECT email FROM users UNION ALL SELECT source FROM forwardings LIMIT {}",
        max.saturating_add(1)
    );
    let read = async {
        let rows = backend.fetch_column(&sql).await?;
        if rows.len() > max {
            return Ok(None);
        }
        // Normalizing and hashing a big table takes tens of milliseconds: off the event loop
        // (lookupd has one by default). Decoding the rows above ran on it (one value per row,
        // `fetch_column`); reads are spaced at least 20 times their duration apart (`known`).
        let build = move || {
            rows.iter()
                .flatten()
                .map(|v| known::norm_key(fold, v).into_boxed_str())
                .collect::<std::collections::HashSet<_>>()
        };
        tokio::task::spawn_blocking(build)
            .await
            .map(Some)
            .map_err(|e| Error::Query(format!("building the address set: {e}")))
    };
    // Past its TTL a set answers nothing: a read that slow is a failure.
    let limit = ttl.min(Duration::from_secs(60));
    let result = match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(limit)),
    };
    let now = Instant::now();
    match result {
        Ok(Some(keys)) => {
            let n = keys.len();
            let installed = ticket.install(known::Read::Keys(keys), started, now);
            tracing::debug!(
                keys = n,
                ms = now.saturating_duration_since(started).as_millis() as u64,
                installed,
                "address set read"
            );
            (installed, Ok(()))
        }
        Ok(None) => {
            tracing::warn!(
                max_keys = max,
                "more stored addresses than [cache] address_set_max: unknown addresses are read one by one"
            );
            ticket.install(known::Read::TooMany, started, now);
            (false, Ok(()))
        }
        Err(e) => {
            ticket.install(known::Read::Failed, started, now);
            (false, Err(e))
        }
    }
}

/// Alias destinations from the stored values (each may list several), first occurrence kept.
/// Deduplicated through a set: a TEXT column holds some 8000 short destinations, and a
/// scan of the list per destination took 0.1 s of the event loop per row (seconds for an
/// alias-domain search reading dozens of such catch-alls).
fn destinations<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for v in values {
        for d in address::split_destinations(v) {
            if seen.insert(d) {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// Map answers never need the hash; lookupd should not hold one in memory.
fn without_password(u: User) -> User {
    User {
        password: None,
        ..u
    }
}

#[cfg(test)]
mod destination_tests {
    use super::destinations;

    #[test]
    fn destinations_keep_the_first_of_each_in_order() {
        let got = destinations(["b@x, a@x,b@x", "c@x a@x"].into_iter());
        assert_eq!(got, ["b@x", "a@x", "c@x"]);
    }

    /// 100 000 distinct destinations (a custom query may return a row per destination;
    /// SQLite's TEXT has no 64 kB limit): linear work, not quadratic (which took minutes).
    #[test]
    fn many_destinations_cost_linear_time() {
        let field: String = (0..100_000).map(|i| format!("u{i}@x,")).collect();
        let t = std::time::Instant::now();
        assert_eq!(destinations(std::iter::once(field.as_str())).len(), 100_000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }
}
