//! The memo and the address set on the read path (lookupd only, both off by default): the
//! switches that turn them on, and the reads that consult them before a statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::backend::{AnyBackend, SqlBackend};
use crate::error::{Error, Result};
use crate::{known, memo, queries, Directory, SubMemo, User};

impl Directory {
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
        let learned = self.bounded(self.schema()).await?;
        if learned.queries.address.is_none() {
            return Ok(None);
        }
        let fold = self.config.address.fold_local_part;
        let (installed, result) = read_address_set(&self.backend, ticket, k.ttl(), fold).await;
        result?;
        Ok(installed.then(|| k.len()).flatten())
    }

    /// [`known_absent`](Self::known_absent), where the set applies: the built-in queries.
    pub(crate) async fn set_says_absent(&self, key: &str) -> Result<bool> {
        if self.known.is_none() {
            return Ok(false);
        }
        Ok(self.schema().await?.queries.address.is_some() && self.known_absent(key))
    }

    /// Whether the address set says `key` (a normalized address or `@domain`) is stored
    /// nowhere; starts a read of the set when one is due. Callers make sure the built-in
    /// queries are in use.
    pub(crate) fn known_absent(&self, key: &str) -> bool {
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
    pub(crate) async fn map_user(&self, a: &Address) -> Result<Option<User>> {
        if self.set_says_absent(&a.to_string()).await? {
            return Ok(None);
        }
        self.user_at(a).await
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
    // The limit is a number of ours, not a value a client sent (see `queries::ADDRESS_SET`).
    let sql = queries::ADDRESS_SET.replace("{limit}", &max.saturating_add(1).to_string());
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
