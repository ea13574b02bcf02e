//! `vmailctl export` and `import`: the whole directory as rows, so that moving it between
//! SQLite and MariaDB is one export and one import. The rows go over as stored (hashes
//! included); the text format is vmailctl's business, not this module's.

use crate::backend::SqlBackend;
use crate::error::{Error, Result};
use crate::queries::admin;
use crate::schema::{self, Schema};
use crate::sql::Value;
use crate::Directory;

/// One row of the directory. The optional columns (`vmailctl migrate`) have their defaults
/// on a classic schema: active, no quota (0), all services (None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Domain {
        domain: String,
        active: bool,
    },
    User {
        email: String,
        password: String,
        active: bool,
        quota_bytes: u64,
        services: Option<String>,
    },
    Alias {
        source: String,
        /// As stored: the destinations joined by `, `.
        destination: String,
    },
    Transport {
        domain: String,
        transport: String,
    },
}

fn users_flagged(s: &Schema) -> bool {
    s.users_active && s.users_quota && s.users_services
}

/// How [`Directory::import`] treats what is already there and what it would refuse.
#[derive(Debug, Clone, Copy, Default)]
pub struct Import {
    /// Replace rows whose key exists (else they are an error).
    pub replace: bool,
    /// Accept users with an empty password (else refused).
    pub empty_passwords: bool,
}

impl Directory {
    /// Every domain, user, alias and transport, in that order, each sorted by key.
    pub async fn export(&self) -> Result<Vec<Record>> {
        let s = schema::inspect(&self.backend).await?;
        let mut out: Vec<Record> = self
            .list_domains_flagged()
            .await?
            .into_iter()
            .map(|(domain, active)| Record::Domain { domain, active })
            .collect();
        let flagged = users_flagged(&s);
        let sql = if flagged {
            admin::EXPORT_USERS_FLAGGED
        } else {
            admin::EXPORT_USERS
        };
        for r in self.backend.fetch(sql, vec![]).await? {
            let Some(email) = r.first() else { continue };
            out.push(Record::User {
                email: email.to_string(),
                password: r.get("password").unwrap_or("").to_string(),
                active: r.get("active").is_none_or(|v| v != "0"),
                quota_bytes: r
                    .get("quota")
                    .and_then(|q| q.trim().parse().ok())
                    .unwrap_or(0),
                services: r.get("services").map(str::to_string),
            });
        }
        for r in self.backend.fetch(admin::LIST_ALIASES, vec![]).await? {
            let Some(source) = r.first() else { continue };
            out.push(Record::Alias {
                source: source.to_string(),
                destination: r.get("destination").unwrap_or("").to_string(),
            });
        }
        out.extend(
            self.list_transports()
                .await?
                .into_iter()
                .map(|(domain, transport)| Record::Transport { domain, transport }),
        );
        Ok(out)
    }

    /// Writes `records` in one transaction: all or nothing. A row whose key exists is an
    /// error unless `how.replace`, which deletes the old row first. Names are checked as the
    /// other administrative writes check them; a classic schema refuses rows that need the
    /// optional columns (a disabled domain or user, a quota, a services list). A user with
    /// an empty password is refused unless `how.empty_passwords` (a database that held
    /// mail-only accounts so: its export imports back).
    pub async fn import(&self, records: &[Record], how: Import) -> Result<usize> {
        let replace = how.replace;
        let s = schema::inspect(&self.backend).await?;
        if !s.tables_exist {
            return Err(Error::Invalid(
                "tables users/domains not found: run `vmailctl init` first".into(),
            ));
        }
        let mut stmts: Vec<(String, Vec<Value>)> = Vec::new();
        let mut add = |replace_sql: &str, key: &str, sql: &str, params: Vec<Value>| {
            if replace {
                stmts.push((replace_sql.to_string(), vec![key.into()]));
            }
            stmts.push((sql.to_string(), params));
        };
        // A user or alias needs its domain, in the database or earlier in the input, as
        // `user add` and `alias add` do. Each domain is asked of the database once, not once
        // per user: an import holds many users of few domains.
        let mut domains: std::collections::HashSet<String> = std::collections::HashSet::new();
        for r in records {
            match r {
                Record::Domain { domain, active } => {
                    let d = self.parse_domain(domain)?;
                    self.check_new("domain", &d)?;
                    domains.insert(d.clone());
                    if s.domains_active {
                        let p = vec![d.clone().into(), (*active).into()];
                        add(admin::DEL_DOMAIN, &d, admin::IMPORT_DOMAIN_FLAGGED, p);
                    } else if !active {
                        return Err(Error::NeedsMigrate("domains.active"));
                    } else {
                        add(
                            admin::DEL_DOMAIN,
                            &d,
                            admin::ADD_DOMAIN,
                            vec![d.clone().into()],
                        );
                    }
                }
                Record::User {
                    email,
                    password,
                    active,
                    quota_bytes,
                    services,
                } => {
                    let a = self.parse_address(email)?;
                    let key = a.to_string();
                    self.check_new("user", &key)?;
                    if !domains.contains(&a.domain) {
                        self.require_domain(&a.domain).await?;
                        domains.insert(a.domain.clone());
                    }
                    // The stored form, checked as `user set --services` checks it.
                    let services = match services {
                        None => Value::Null,
                        Some(list) => {
                            let names: Vec<String> = list.split(',').map(str::to_string).collect();
                            crate::edit::services_value(Some(&names), self.backend.dialect())?
                        }
                    };
                    let len = password.chars().count();
                    if let Some(width) = s.password_width.filter(|w| len > *w as usize) {
                        return Err(Error::TooLong {
                            what: "a password hash",
                            len,
                            column: "users.password",
                            width,
                        });
                    }
                    if password.is_empty() && !how.empty_passwords {
                        return Err(Error::Invalid(format!("user {key} has no password")));
                    }
                    if users_flagged(&s) {
                        let q = Value::Int((*quota_bytes).min(i64::MAX as u64) as i64);
                        let p = vec![
                            key.clone().into(),
                            password.as_str().into(),
                            (*active).into(),
                            q,
                            services,
                        ];
                        add(admin::DEL_USER, &key, admin::IMPORT_USER_FLAGGED, p);
                    } else if !active || *quota_bytes > 0 || services != Value::Null {
                        return Err(Error::NeedsMigrate("users.active/quota/services"));
                    } else {
                        let p = vec![key.clone().into(), password.as_str().into()];
                        add(admin::DEL_USER, &key, admin::ADD_USER, p);
                    }
                }
                Record::Alias {
                    source,
                    destination,
                } => {
                    let src = self.alias_source(source)?;
                    self.check_new("alias", &src)?;
                    let domain = src.rsplit_once('@').map_or("", |(_, d)| d);
                    if !domains.contains(domain) {
                        self.require_domain(domain).await?;
                        domains.insert(domain.to_string());
                    }
                    // Each destination checked as `alias add` checks it.
                    let mut dests: Vec<String> = Vec::new();
                    for d in destination.split(',').filter(|d| !d.trim().is_empty()) {
                        let d = self.alias_destination(d)?;
                        self.check_new("destination", &d)?;
                        if !dests.contains(&d) {
                            dests.push(d);
                        }
                    }
                    if dests.is_empty() {
                        return Err(Error::Invalid(format!("alias {src} has no destination")));
                    }
                    let p = vec![src.clone().into(), dests.join(", ").into()];
                    add(admin::DEL_ALIAS, &src, admin::ADD_ALIAS, p);
                }
                Record::Transport { domain, transport } => {
                    let d = self.parse_domain(domain)?;
                    self.check_new("domain", &d)?;
                    crate::admin::check_transport(transport)?;
                    let p = vec![d.clone().into(), transport.as_str().into()];
                    add(admin::DEL_TRANSPORT, &d, admin::ADD_TRANSPORT, p);
                }
            }
        }
        self.backend.transaction(stmts).await.map_err(|e| match e {
            Error::Exists(_) => Error::Invalid(
                "a row of the import already exists, or the input has it twice: nothing \
                 imported (--replace overwrites existing rows)"
                    .into(),
            ),
            other => other,
        })?;
        Ok(records.len())
    }
}
