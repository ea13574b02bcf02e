//! Administration, continued: the edits of rows that exist (`vmailctl user set`, `domain
//! disable`/`enable`) and the transport table's listing and removal. Kept apart from
//! `admin.rs`, which creates and deletes, so neither grows past a screenful of concerns.

use crate::backend::{Dialect, SqlBackend};
use crate::error::{Error, Result};
use crate::queries::admin;
use crate::schema;
use crate::sql::Value;
use crate::Directory;

/// Width of `users.services` as `vmailctl migrate` creates it (`VARCHAR(64)`).
const SERVICES_WIDTH: u32 = 64;

/// What `user set` changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    /// Quota in bytes; `Some(0)` removes the limit (the column's "none").
    pub quota_bytes: Option<u64>,
    /// Allowed services; `Some(None)` allows all (NULL).
    pub services: Option<Option<Vec<String>>>,
    pub active: Option<bool>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self == &UserChanges::default()
    }
}

impl Directory {
    /// Applies `changes` to an existing user. Every column it needs is checked before
    /// anything is written, so a classic database refuses the whole change, not half of it.
    pub async fn set_user(&self, email: &str, changes: &UserChanges) -> Result<()> {
        let a = self.parse_address(email)?;
        if changes.is_empty() {
            return Err(Error::Invalid("nothing to change".into()));
        }
        let s = schema::inspect(&self.backend).await?;
        for (wanted, present, column) in [
            (changes.quota_bytes.is_some(), s.users_quota, "users.quota"),
            (
                changes.services.is_some(),
                s.users_services,
                "users.services",
            ),
            (changes.active.is_some(), s.users_active, "users.active"),
        ] {
            if wanted && !present {
                return Err(Error::NeedsMigrate(column));
            }
        }
        let services = match &changes.services {
            Some(list) => Some(services_value(list.as_deref(), self.backend.dialect())?),
            None => None,
        };
        if !self.user_exists(&a).await? {
            return Err(Error::Missing(format!("user {a}")));
        }
        let key = a.to_string();
        // One transaction: all the changes or none (a refused value, a lost connection).
        let mut stmts: Vec<(String, Vec<Value>)> = Vec::new();
        if let Some(q) = changes.quota_bytes {
            let q = Value::Int(q.min(i64::MAX as u64) as i64);
            stmts.push((admin::SET_QUOTA.into(), vec![q, key.clone().into()]));
        }
        if let Some(v) = services {
            stmts.push((admin::SET_SERVICES.into(), vec![v, key.clone().into()]));
        }
        if let Some(active) = changes.active {
            stmts.push((admin::SET_ACTIVE.into(), vec![active.into(), key.into()]));
        }
        self.backend.transaction(stmts).await
    }

    /// Enables or disables a domain (needs `domains.active` from `vmailctl migrate`): a
    /// disabled domain answers nothing in any map and its users cannot log in.
    pub async fn set_domain_active(&self, domain: &str, active: bool) -> Result<()> {
        let d = self.parse_domain(domain)?;
        if !schema::inspect(&self.backend).await?.domains_active {
            return Err(Error::NeedsMigrate("domains.active"));
        }
        self.require_domain(&d).await?;
        self.backend
            .execute(admin::SET_DOMAIN_ACTIVE, vec![active.into(), d.into()])
            .await?;
        Ok(())
    }

    /// Domains as (domain, active); every domain is active on a classic schema.
    pub async fn list_domains_flagged(&self) -> Result<Vec<(String, bool)>> {
        if !schema::inspect(&self.backend).await?.domains_active {
            return Ok(self
                .list_domains()
                .await?
                .into_iter()
                .map(|d| (d, true))
                .collect());
        }
        let rows = self
            .backend
            .fetch(admin::LIST_DOMAINS_ACTIVE, vec![])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let d = r.first()?.to_string();
                Some((d, r.get("active").is_none_or(|v| v != "0")))
            })
            .collect())
    }

    /// Removes the transport of a domain.
    pub async fn del_transport(&self, domain: &str) -> Result<()> {
        let d = self.parse_domain(domain)?;
        let n = self
            .backend
            .execute(admin::DEL_TRANSPORT, vec![d.clone().into()])
            .await?;
        if n == 0 {
            return Err(Error::Missing(format!("transport of {d}")));
        }
        Ok(())
    }

    /// Transports as (domain, transport).
    pub async fn list_transports(&self) -> Result<Vec<(String, String)>> {
        let rows = self.backend.fetch(admin::LIST_TRANSPORTS, vec![]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.first()?.to_string(),
                    r.get("transport").unwrap_or("").to_string(),
                ))
            })
            .collect())
    }
}

/// The stored form of a services list: lower-case names joined by `,` (what the read side
/// splits on), or NULL for "all". Names are letters, digits, `-` and `_` only.
pub(crate) fn services_value(list: Option<&[String]>, dialect: Dialect) -> Result<Value> {
    let Some(list) = list else {
        return Ok(Value::Null);
    };
    let mut names: Vec<String> = Vec::new();
    for n in list {
        let n = n.trim().to_ascii_lowercase();
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Invalid(format!("{n:?} is not a service name")));
        }
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if names.is_empty() {
        return Err(Error::Invalid(
            "an empty services list allows nothing; give at least one service".into(),
        ));
    }
    let joined = names.join(",");
    // SQLite stores any length; MySQL would truncate or refuse.
    if dialect == Dialect::Mysql && joined.len() > SERVICES_WIDTH as usize {
        return Err(Error::Invalid(format!(
            "the services list is {} characters; users.services holds at most {SERVICES_WIDTH}",
            joined.len()
        )));
    }
    Ok(Value::Text(joined))
}
