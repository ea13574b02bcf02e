//! The directory as lookupd reads it: map lookups share the rows they read (the memo) and
//! answer addresses stored nowhere without a statement (the address set). Both are off by
//! default and wrap [`Directory`] from outside, through the sub-answers of
//! [`vmail_directory::rows::Rows`]: authd and the LDA read rows as they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vmail_directory::address::norm_key;
use vmail_directory::rows::{self, Rows};
use vmail_directory::{Address, Directory, Error, Map, Result, User};

use super::{known, memo};

/// The memoized sub-queries: user rows by address, forwardings by (source, local, domain).
struct SubMemo {
    users: memo::Memo<String, Option<User>>,
    forwardings: memo::Memo<(String, String, String), Vec<String>>,
}

/// The directory with lookupd's memo and address set.
pub struct Shared {
    dir: Arc<Directory>,
    /// Sub-answers shared between map lookups ([`Shared::with_memo`]); off by default.
    memo: Option<SubMemo>,
    /// Every stored address, for "not found" without a statement
    /// ([`Shared::with_address_set`]); off by default.
    known: Option<Arc<known::Known>>,
}

impl Shared {
    /// The plain directory: every sub-answer read when asked.
    pub fn new(dir: Directory) -> Shared {
        Shared {
            dir: Arc::new(dir),
            memo: None,
            known: None,
        }
    }

    /// The directory underneath.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// Answers `key` in `map` exactly as the directory would, sharing rows where on.
    pub async fn lookup(&self, map: Map, key: &str) -> Result<Option<String>> {
        rows::lookup(self, map, key).await
    }

    /// The user with exactly this login, for authentication: never from the memo (a login
    /// is checked against the row as it is now, and the memo keeps no password).
    pub async fn user(&self, login: &str) -> Result<Option<User>> {
        self.dir.user(login).await
    }

    /// The user mail for `recipient` is delivered to, as [`Directory::recipient`], with the
    /// rows through the memo (never the address set's word).
    pub async fn recipient(&self, recipient: &str) -> Result<Option<(User, Option<String>)>> {
        rows::recipient(self, recipient).await
    }

    /// How many lookup statements the directory has sent (not counting schema detection,
    /// administration and reads of the address set).
    pub fn queries_sent(&self) -> u64 {
        self.dir.queries_sent()
    }

    /// The budget of one operation (`query_timeout_ms`).
    pub fn deadline(&self) -> Duration {
        self.dir.deadline()
    }

    /// Lets map lookups share the rows they read for up to [`memo::MEMO_TTL`] (never longer
    /// than `positive`, or `negative` for "no such row"), holding at most `max_entries` of
    /// each kind. For lookupd with its cache on; see the `memo` module for why.
    /// [`Directory::user`] (authentication) always reads the row.
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
        let builtin = self.dir.builtin_queries();
        if !tokio::time::timeout(self.dir.deadline(), builtin)
            .await
            .map_err(|_| Error::Timeout(self.dir.deadline()))??
        {
            return Ok(None);
        }
        let fold = self.dir.config().address.fold_local_part;
        let (installed, result) = read_address_set(&self.dir, ticket, k.ttl(), fold).await;
        result?;
        Ok(installed.then(|| k.len()).flatten())
    }

    /// [`known_absent`](Self::known_absent), where the set applies: the built-in queries.
    async fn set_says_absent(&self, key: &str) -> Result<bool> {
        if self.known.is_none() {
            return Ok(false);
        }
        Ok(self.dir.builtin_queries().await? && self.known_absent(key))
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
            let dir = self.dir.clone();
            let (ttl, fold) = (k.ttl(), self.dir.config().address.fold_local_part);
            h.spawn(async move {
                if let (_, Err(e)) = read_address_set(&dir, ticket, ttl, fold).await {
                    tracing::debug!(error = %e, "reading the address set failed");
                }
            });
        }
        verdict == known::Verdict::Absent
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

    /// A user row through the memo (for the maps and the LDA's `recipient`).
    async fn user_at(&self, a: &Address) -> Result<Option<User>> {
        let Some(m) = &self.memo else {
            return self.dir.read_user(a).await;
        };
        m.users
            .get_or_read(a.to_string(), self.dir.read_user(a), |u| {
                u.clone().map(User::without_password)
            })
            .await
    }
}

impl Rows for Shared {
    fn directory(&self) -> &Directory {
        &self.dir
    }

    /// "None" from the address set when it says so, else as the memo has it. Never for
    /// [`recipient_user`](Rows::recipient_user): a delivery must not bounce on a set read
    /// just before the user was added.
    async fn map_user(&self, a: &Address) -> Result<Option<User>> {
        if self.set_says_absent(&a.to_string()).await? {
            return Ok(None);
        }
        self.user_at(a).await
    }

    async fn map_forwardings(&self, key: &str, local: &str, domain: &str) -> Result<Vec<String>> {
        let Some(m) = &self.memo else {
            return self.dir.read_forwardings(key, local, domain).await;
        };
        if self.set_says_absent(key).await? {
            return Ok(Vec::new());
        }
        let k = (key.to_string(), local.to_string(), domain.to_string());
        m.forwardings
            .get_or_read(k, self.dir.read_forwardings(key, local, domain), Vec::clone)
            .await
    }

    /// With the memo on and our own queries: reads the forwardings and the user row of `a`
    /// in one statement ([`Directory::read_address`]), memoizes both and returns them, so
    /// that the `mailboxes` lookup Postfix makes after `aliases` reads the same memo.
    /// Returned as well as memoized: a memo with a zero TTL keeps nothing, and the caller
    /// must not have to read the rows again.
    async fn prefetch_address(&self, a: &Address) -> Result<Option<(Option<User>, Vec<String>)>> {
        let Some(m) = &self.memo else {
            return Ok(None);
        };
        let key = a.to_string();
        if !self.dir.reads_address_at_once(&key).await? {
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
        let Some((user, dest)) = self.dir.read_address(a).await? else {
            return Ok(None);
        };
        let user = user.map(User::without_password);
        let now = Instant::now();
        m.users.put(key, user.clone(), now);
        m.forwardings.put(fkey, dest.clone(), now);
        Ok(Some((user, dest)))
    }

    async fn recipient_user(&self, a: &Address) -> Result<Option<User>> {
        self.user_at(a).await
    }
}

/// Reads every stored address for the address set (at most `max_keys` + 1 rows) and hands
/// the result to the ticket, whatever it is. Returns whether a set was installed, and the
/// read's error.
async fn read_address_set(
    dir: &Directory,
    ticket: known::Ticket,
    ttl: Duration,
    fold: bool,
) -> (bool, Result<()>) {
    let started = Instant::now();
    let max = ticket.max_keys;
    let read = async {
        let rows = dir.stored_addresses(max).await?;
        if rows.len() > max {
            return Ok(None);
        }
        // Normalizing and hashing a big table takes tens of milliseconds: off the event loop
        // (lookupd has one by default). Decoding the rows above ran on it (one value per row,
        // `fetch_column`); reads are spaced at least 20 times their duration apart (`known`).
        let build = move || {
            rows.iter()
                .flatten()
                .map(|v| norm_key(fold, v).into_boxed_str())
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
