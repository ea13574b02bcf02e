//! What the daemons ask: each question run through its statement ([`crate::queries`]), the
//! rows checked against the key, and turned into users, destinations and transports.

use std::sync::atomic::Ordering;

use vmail_config::expand_template;

use crate::address::{self, Address};
use crate::backend::SqlBackend;
use crate::error::{Error, Result};
use crate::queries::{self, Question, ACTIVE_DOMAIN, DISABLED_DOMAIN, KIND};
use crate::sql::{Lookup, Row, Value};
use crate::{batch, rows, Directory, Map, User};

impl Directory {
    /// Asks `question` and keeps the rows whose key column really equals the key (see
    /// [`queries::Prepared::verify`]).
    pub(crate) async fn run(
        &self,
        question: Question,
        key: &str,
        local: &str,
        domain: &str,
    ) -> Result<Vec<Row>> {
        let learned = self.schema().await?;
        let q = learned.queries.get(question);
        let batcher = match question {
            Question::User => learned.batch_user.as_ref(),
            _ => None,
        };
        let mut rows = self
            .send(&q.lookup, batcher, q.lookup.bind(key, local, domain))
            .await?;
        let verify = |rows: &mut Vec<Row>| {
            if let Some(col) = q.verify {
                rows.retain(|r| r.get(col).is_some_and(|stored| self.same_key(stored, key)));
            }
        };
        verify(&mut rows);
        if let (true, false, Some(f)) = (rows.is_empty(), key.is_ascii(), &q.folded) {
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
        address::norm_key(self.config.address.fold_local_part, stored) == key
    }

    /// Whether `domain` is one of ours (and active).
    pub async fn domain_exists(&self, domain: &str) -> Result<bool> {
        let Some(d) = self.policy.domain(domain) else {
            return Ok(false);
        };
        self.bounded(self.domain_exists_folded(&d)).await
    }

    pub async fn domain_exists_folded(&self, d: &str) -> Result<bool> {
        Ok(!self.run(Question::Domain, d, "", d).await?.is_empty())
    }

    /// Whether `d` (folded) has a row in `domains`, enabled or not (with a custom domain
    /// query: whether that query answers it). For the alias-domain search: a catch-all
    /// `@d` to a domain that is not ours forwards a whole domain to another server.
    pub async fn domain_listed(&self, d: &str) -> Result<bool> {
        if self.config.database.queries.domain.is_some() {
            return self.domain_exists_folded(d).await;
        }
        self.queries.fetch_add(1, Ordering::Relaxed);
        let rows = self
            .backend
            .fetch(queries::DOMAIN_LISTED, vec![d.into()])
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
        // Always a statement, also under lookupd's memo: a login is checked against the row
        // as it is now, and the memo keeps no password.
        self.bounded(self.read_user(&a)).await
    }

    /// The user mail for `recipient` is delivered to: exact address, then without its
    /// extension. Returns the user and the extension (delimiter included). For the LDA.
    pub async fn recipient(&self, recipient: &str) -> Result<Option<(User, Option<String>)>> {
        rows::recipient(self, recipient).await
    }

    /// The user row of `a` (through the batcher on MySQL when it is on), with its domain's
    /// flag applied.
    pub async fn read_user(&self, a: &Address) -> Result<Option<User>> {
        let rows = self
            .run(Question::User, &a.to_string(), &a.local, &a.domain)
            .await?;
        self.user_from_rows(&rows, a).await
    }

    /// The user of the first of `rows` (those the key matched), with the domain's flag.
    async fn user_from_rows(&self, rows: &[Row], a: &Address) -> Result<Option<User>> {
        let learned = self.schema().await?;
        let (schema, q) = (&learned.schema, &learned.queries);
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut user = self.user_from_row(row, a)?;
        // A custom user query is expected to apply its own domain rules.
        if user.active && schema.domains_active && !q.custom_user {
            user.active = match row.get(ACTIVE_DOMAIN) {
                // SQLite: the domain row may differ in the case of a non-ASCII letter.
                None if q.get(Question::Domain).folded.is_some() && !a.domain.is_ascii() => {
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
        // Trailing spaces matched (see `address::norm_key`) but are no part of the address.
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
    pub(crate) async fn forwardings(
        &self,
        key: &str,
        local: &str,
        domain: &str,
    ) -> Result<Vec<String>> {
        let rows = self.run(Question::Alias, key, local, domain).await?;
        Ok(destinations(rows.iter().filter_map(Row::first)))
    }

    /// Alias destinations of exactly `key` (an address or `@domain`) for the maps: none in a
    /// disabled domain.
    pub async fn read_forwardings(
        &self,
        key: &str,
        local: &str,
        domain: &str,
    ) -> Result<Vec<String>> {
        let rows = self.run(Question::Alias, key, local, domain).await?;
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
                .fetch(queries::DOMAIN_DISABLED, vec![domain.into()])
                .await?
                .iter()
                .filter_map(Row::first)
                .any(|d| d.trim_end_matches(' ').to_lowercase() == domain)),
        }
    }

    /// Whether [`read_address`](Self::read_address) can answer `key`: with our own user
    /// and alias queries, and on SQLite only for an ASCII key (a miss may need the folded
    /// statements, which the single questions know).
    pub async fn reads_address_at_once(&self, key: &str) -> Result<bool> {
        let q = &self.schema().await?.queries;
        Ok(q.address.is_some() && (q.get(Question::User).folded.is_none() || key.is_ascii()))
    }

    /// Whether the built-in queries are in use (the address set lists what they read).
    pub async fn builtin_queries(&self) -> Result<bool> {
        Ok(self.schema().await?.queries.address.is_some())
    }

    /// The user row and the forwardings of `a` in one statement ([`queries::Statements::address`]),
    /// so that the `aliases` lookup of an address that is in no cache costs one round trip
    /// instead of two. Postfix asks about every unknown recipient this way, so this is the
    /// query that a stream of new unknown addresses repeats. `None` where
    /// [`reads_address_at_once`](Self::reads_address_at_once) says no.
    pub async fn read_address(&self, a: &Address) -> Result<Option<(Option<User>, Vec<String>)>> {
        let key = a.to_string();
        if !self.reads_address_at_once(&key).await? {
            return Ok(None);
        }
        let learned = self.schema().await?;
        let Some(lookup) = &learned.queries.address else {
            return Ok(None);
        };
        let rows = self
            .send(
                lookup,
                learned.batch_address.as_ref(),
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
        let user = self.user_from_rows(&users, a).await?;
        Ok(Some((user, dest)))
    }

    /// Every stored address (`users.email`, `forwardings.source`), at most `max` + 1 of them,
    /// as stored: for lookupd's address set ([`queries::ADDRESS_SET`]). Not counted in
    /// [`queries_sent`](Self::queries_sent).
    pub async fn stored_addresses(&self, max: usize) -> Result<Vec<Option<String>>> {
        // The limit is a number of ours, not a value a client sent.
        let sql = queries::ADDRESS_SET.replace("{limit}", &max.saturating_add(1).to_string());
        self.backend.fetch_column(&sql).await
    }

    /// The transport stored for `key` (a domain or an address in `domain`); none when the
    /// domain is disabled.
    pub async fn transport_for(&self, key: &str, domain: &str) -> Result<Option<String>> {
        let rows = self.run(Question::Transport, key, "", domain).await?;
        if self.domain_disabled(&rows, domain).await? {
            return Ok(None);
        }
        Ok(rows.first().and_then(|r| r.first()).map(str::to_string))
    }

    /// Answers `key` in `map` exactly as vmail-lookupd will: `Ok(None)` is NOTFOUND,
    /// an error with [`Error::is_temporary`] is TEMP.
    pub async fn lookup(&self, map: Map, key: &str) -> Result<Option<String>> {
        rows::lookup(self, map, key).await
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
