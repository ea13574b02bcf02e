//! Administration: the writes `vmailctl` makes (and tests use), on the classic schema and
//! what `vmailctl migrate` adds to it. The daemons never call these.

use crate::address::{self, Address};
use crate::backend::{Dialect, SqlBackend};
use crate::error::{Error, Result};
use crate::queries::{admin, Question};
use crate::schema::{self, Schema};
use crate::sql::Value;
use crate::Directory;

impl Directory {
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

    pub(crate) fn parse_domain(&self, d: &str) -> Result<String> {
        self.policy
            .domain(d)
            .filter(|d| d.contains('.') || d == "localhost")
            .ok_or_else(|| Error::Invalid(format!("{d:?} is not a valid domain name")))
    }

    pub(crate) fn parse_address(&self, a: &str) -> Result<Address> {
        self.policy
            .parse(a)
            .filter(|x| !x.local.contains(char::is_whitespace) && x.domain.contains('.'))
            .ok_or_else(|| Error::Invalid(format!("{a:?} is not a valid address (user@domain)")))
    }

    /// Refuses a name an administrative write is about to store (normalized: `local@domain`,
    /// `@domain` or `domain`) when it breaks a rule of [`address::rules`]. Deleting or
    /// changing a row does not ask, so that a bad row written with plain SQL can be removed.
    pub(crate) fn check_new(&self, what: &str, key: &str) -> Result<()> {
        let r = match key.rsplit_once('@') {
            None => address::rules::check_domain(key),
            Some(("", d)) => address::rules::check_domain(d),
            Some((l, d)) => {
                address::rules::check_local(l).and_then(|()| address::rules::check_domain(d))
            }
        };
        r.map_err(|e| Error::Invalid(format!("{what} {key:?} refused: {e}")))
    }

    pub(crate) async fn require_domain(&self, d: &str) -> Result<()> {
        let rows = self.backend.fetch(admin::DOMAIN, vec![d.into()]).await?;
        if !rows.is_empty() {
            return Ok(());
        }
        // SQLite's NOCASE folds ASCII only: `ÉXAMPLE.net` is `éxample.net` on MariaDB.
        if self.backend.dialect() == Dialect::Sqlite && !d.is_ascii() {
            let rows = self
                .backend
                .fetch(admin::DOMAIN_FOLDED, vec![d.into()])
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
            .execute(admin::ADD_DOMAIN, vec![d.clone().into()])
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
        let users = self.count(admin::COUNT_USERS_OF_DOMAIN, &like).await?;
        let aliases = self.count(admin::COUNT_ALIASES_OF_DOMAIN, &like).await?;
        if (users > 0 || aliases > 0) && !force {
            return Err(Error::Invalid(format!(
                "domain {d} still has {users} user(s) and {aliases} alias(es); delete them first or use --force"
            )));
        }
        // One transaction: never a domain left half deleted, and (MySQL) never run twice
        // after a lost COMMIT reply.
        self.backend
            .transaction(vec![
                (admin::DEL_USERS_OF_DOMAIN.into(), vec![like.clone().into()]),
                (admin::DEL_ALIASES_OF_DOMAIN.into(), vec![like.into()]),
                (admin::DEL_TRANSPORT.into(), vec![d.clone().into()]),
                (admin::DEL_DOMAIN.into(), vec![d.into()]),
            ])
            .await
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
        let rows = self.backend.fetch(admin::LIST_DOMAINS, vec![]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.first().map(str::to_string))
            .collect())
    }

    /// Refuses a hash that the column cannot hold whole.
    pub(crate) async fn check_password_fits(&self, hash: &str) -> Result<()> {
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
                .run(Question::User, &key, &a.local, &a.domain)
                .await?
                .is_empty()
        {
            return Err(Error::Exists(format!("user {key}")));
        }
        let r = match (quota_bytes, s.users_quota) {
            (Some(q), true) => {
                self.backend
                    .execute(
                        admin::ADD_USER_WITH_QUOTA,
                        vec![
                            key.clone().into(),
                            hash.into(),
                            Value::Int(q.min(i64::MAX as u64) as i64),
                        ],
                    )
                    .await
            }
            (Some(_), false) => return Err(Error::NeedsMigrate("users.quota")),
            (None, _) => {
                self.backend
                    .execute(admin::ADD_USER, vec![key.clone().into(), hash.into()])
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
            .execute(admin::SET_PASSWORD, vec![hash.into(), a.to_string().into()])
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
                admin::REPLACE_PASSWORD,
                vec![new.into(), a.to_string().into(), old.into()],
            )
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn user_exists(&self, a: &Address) -> Result<bool> {
        Ok(!self
            .backend
            .fetch(admin::USER_EXISTS, vec![a.to_string().into()])
            .await?
            .is_empty())
    }

    /// Enables or disables a user (needs the `active` column from `vmailctl migrate`).
    pub async fn set_active(&self, email: &str, active: bool) -> Result<()> {
        let a = self.parse_address(email)?;
        if !schema::inspect(&self.backend).await?.users_active {
            return Err(Error::NeedsMigrate("users.active"));
        }
        let n = self
            .backend
            .execute(admin::SET_ACTIVE, vec![active.into(), a.to_string().into()])
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
            .execute(admin::DEL_USER, vec![a.to_string().into()])
            .await?;
        if n == 0 {
            return Err(Error::Missing(format!("user {a}")));
        }
        Ok(())
    }

    /// Users, optionally of one domain, as (email, active).
    pub async fn list_users(&self, domain: Option<&str>) -> Result<Vec<(String, bool)>> {
        let active = schema::inspect(&self.backend).await?.users_active;
        let rows = match domain {
            Some(d) => {
                let d = self.parse_domain(d)?;
                let sql = if active {
                    admin::LIST_USERS_OF_DOMAIN_ACTIVE
                } else {
                    admin::LIST_USERS_OF_DOMAIN
                };
                let like = format!("%@{}", like_escape(&d));
                self.backend.fetch(sql, vec![like.into()]).await?
            }
            None => {
                let sql = if active {
                    admin::LIST_USERS_ACTIVE
                } else {
                    admin::LIST_USERS
                };
                self.backend.fetch(sql, vec![]).await?
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
                .execute(admin::SET_DESTINATIONS, vec![joined.into(), src.into()])
                .await?;
        } else {
            self.backend
                .execute(admin::ADD_ALIAS, vec![src.clone().into(), joined.into()])
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
                .execute(admin::DEL_ALIAS, vec![src.into()])
                .await?;
        } else {
            self.backend
                .execute(
                    admin::SET_DESTINATIONS,
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
                        admin::LIST_ALIASES_OF_DOMAIN,
                        vec![format!("%@{}", like_escape(&d)).into()],
                    )
                    .await?
            }
            None => self.backend.fetch(admin::LIST_ALIASES, vec![]).await?,
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

    pub(crate) fn alias_source(&self, s: &str) -> Result<String> {
        if let Some(d) = s.strip_prefix('@') {
            return Ok(format!("@{}", self.parse_domain(d)?));
        }
        Ok(self.parse_address(s)?.to_string())
    }

    pub(crate) fn alias_destination(&self, s: &str) -> Result<String> {
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
        check_transport(transport)?;
        // One transaction: a refused new transport leaves the old one in place.
        self.backend
            .transaction(vec![
                (admin::DEL_TRANSPORT.into(), vec![d.clone().into()]),
                (
                    admin::ADD_TRANSPORT.into(),
                    vec![d.into(), transport.into()],
                ),
            ])
            .await
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

/// What `set_transport` and an import accept as a transport: one word, as transport(5)'s
/// `transport:nexthop` is.
pub(crate) fn check_transport(transport: &str) -> Result<()> {
    if transport.is_empty() || transport.contains(char::is_whitespace) {
        return Err(Error::Invalid(format!(
            "{transport:?} is not a valid transport"
        )));
    }
    Ok(())
}
