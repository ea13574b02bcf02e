//! The classic "virtual users in MySQL" schema, what `vmailctl migrate` adds to it, and how we
//! find out at run time which optional columns a database has.
//!
//! The classic tables come from the long-lived Postfix/Courier/Dovecot "virtual users and
//! domains with MySQL" how-tos; an install that still has exactly those tables keeps working.

use crate::backend::{Dialect, SqlBackend};
use crate::error::{Error, Result};
use crate::sql::Value;

/// The how-to's tables, column for column. `password varchar(20)` holds the 13-character DES
/// hash MySQL's `ENCRYPT()` makes, and nothing modern: `migrate` widens it.
pub fn classic_ddl(d: Dialect) -> Vec<String> {
    let v: &[&str] = match d {
        Dialect::Mysql => &[
            "CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain))",
            "CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL, PRIMARY KEY (source))",
            "CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL, PRIMARY KEY (email))",
            "CREATE TABLE transport (domain varchar(128) NOT NULL default '', transport varchar(128) NOT NULL default '', UNIQUE KEY domain (domain))",
        ],
        // SQLite compares case-sensitively unless told; MySQL's default collations do not.
        Dialect::Sqlite => &[
            "CREATE TABLE domains (domain varchar(50) NOT NULL COLLATE NOCASE, PRIMARY KEY (domain))",
            "CREATE TABLE forwardings (source varchar(80) NOT NULL COLLATE NOCASE, destination TEXT NOT NULL, PRIMARY KEY (source))",
            "CREATE TABLE users (email varchar(80) NOT NULL COLLATE NOCASE, password varchar(20) NOT NULL, PRIMARY KEY (email))",
            "CREATE TABLE transport (domain varchar(128) NOT NULL DEFAULT '' COLLATE NOCASE, transport varchar(128) NOT NULL DEFAULT '', UNIQUE (domain))",
        ],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Width `migrate` gives `users.password`: room for every scheme we write (SHA512-CRYPT is
/// 106 characters with its prefix, ARGON2ID about 120).
pub const PASSWORD_WIDTH: u32 = 255;

/// One column of a table as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Declared character width (`varchar(20)` -> 20); `None` for unbounded types.
    pub width: Option<u32>,
}

/// What the directory found in the database: which optional columns exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub tables_exist: bool,
    pub users_active: bool,
    pub users_quota: bool,
    pub users_services: bool,
    pub domains_active: bool,
    pub password_width: Option<u32>,
}

pub async fn columns<B: SqlBackend>(b: &B, table: &str) -> Result<Vec<Column>> {
    let rows = match b.dialect() {
        Dialect::Sqlite => {
            b.fetch(
                "SELECT name, type FROM pragma_table_info(?)",
                vec![Value::from(table)],
            )
            .await?
        }
        Dialect::Mysql => {
            b.fetch(
                "SELECT column_name AS name, character_maximum_length AS width \
                 FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                vec![Value::from(table)],
            )
            .await?
        }
    };
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name = r.columns.first()?.1.clone()?;
            let second = r.columns.get(1).and_then(|(_, v)| v.as_deref());
            let width = match b.dialect() {
                Dialect::Sqlite => second.and_then(declared_width),
                Dialect::Mysql => second
                    .and_then(|w| w.parse::<u64>().ok())
                    .map(|w| w.min(u32::MAX as u64) as u32),
            };
            Some(Column { name, width })
        })
        .collect())
}

/// `varchar(20)` -> 20. Unbounded types (TEXT) give `None`.
fn declared_width(t: &str) -> Option<u32> {
    let open = t.find('(')?;
    let close = t[open..].find(')')? + open;
    t[open + 1..close].trim().parse().ok()
}

fn has(cols: &[Column], name: &str) -> bool {
    cols.iter().any(|c| c.name.eq_ignore_ascii_case(name))
}

pub async fn inspect<B: SqlBackend>(b: &B) -> Result<Schema> {
    let users = columns(b, "users").await?;
    let domains = columns(b, "domains").await?;
    // SQLite ignores declared widths, so only MySQL's matter.
    let password_width = users
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("password"))
        .and_then(|c| c.width)
        .filter(|_| b.dialect() == Dialect::Mysql);
    Ok(Schema {
        tables_exist: !users.is_empty() && !domains.is_empty(),
        users_active: has(&users, "active"),
        users_quota: has(&users, "quota"),
        users_services: has(&users, "services"),
        domains_active: has(&domains, "active"),
        password_width,
    })
}

/// Creates the classic tables (when absent), then migrates them.
pub async fn init<B: SqlBackend>(b: &B, classic_only: bool) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let d = b.dialect();
    let tables = ["domains", "forwardings", "users", "transport"];
    let mut stmts = Vec::new();
    for (t, ddl) in tables.iter().zip(classic_ddl(d)) {
        if columns(b, t).await?.is_empty() {
            stmts.push(ddl);
            done.push(format!("created table {t}"));
        }
    }
    b.batch(stmts).await?;
    if !classic_only {
        done.extend(migrate(b).await?);
    }
    Ok(done)
}

/// Brings a classic database up to what vmail can use, without touching existing data, and
/// without breaking a classic reader: only columns with defaults are added.
pub async fn migrate<B: SqlBackend>(b: &B) -> Result<Vec<String>> {
    let d = b.dialect();
    let users = columns(b, "users").await?;
    let domains = columns(b, "domains").await?;
    if users.is_empty() || domains.is_empty() {
        return Err(Error::Invalid(
            "tables users/domains not found: run `vmailctl init` first".into(),
        ));
    }
    let mut done = Vec::new();
    let mut stmts = Vec::new();
    let flag = match d {
        Dialect::Mysql => "TINYINT(1) NOT NULL DEFAULT 1",
        Dialect::Sqlite => "INTEGER NOT NULL DEFAULT 1",
    };
    // 0 means no limit; the how-to's Courier variant already has `quota INT(10)` in bytes.
    let quota = match d {
        Dialect::Mysql => "BIGINT NOT NULL DEFAULT 0",
        Dialect::Sqlite => "INTEGER NOT NULL DEFAULT 0",
    };
    for (table, cols, name, ty, why) in [
        (
            "users",
            &users,
            "active",
            flag,
            "lets a mailbox be disabled without deleting it",
        ),
        (
            "users",
            &users,
            "quota",
            quota,
            "mailbox quota in bytes, 0 for none",
        ),
        (
            "users",
            &users,
            "services",
            "VARCHAR(64) NULL DEFAULT NULL",
            "allowed services, e.g. 'imap,smtp'; NULL allows all",
        ),
        (
            "domains",
            &domains,
            "active",
            flag,
            "lets a domain be disabled",
        ),
    ] {
        if !has(cols, name) {
            stmts.push(format!("ALTER TABLE {table} ADD COLUMN {name} {ty}"));
            done.push(format!("added {table}.{name} ({why})"));
        }
    }
    // SQLite stores any length whatever the declared type says; only MySQL truncates (or
    // refuses, in strict mode) a hash longer than the column.
    if d == Dialect::Mysql {
        let width = users
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case("password"))
            .and_then(|c| c.width);
        if let Some(w) = width.filter(|w| *w < PASSWORD_WIDTH) {
            stmts.push(format!(
                "ALTER TABLE users MODIFY password VARCHAR({PASSWORD_WIDTH}) NOT NULL"
            ));
            done.push(format!(
                "widened users.password from {w} to {PASSWORD_WIDTH} characters"
            ));
        }
    }
    b.batch(stmts).await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(declared_width("varchar(20)"), Some(20));
        assert_eq!(declared_width("VARCHAR( 255 )"), Some(255));
        assert_eq!(declared_width("TEXT"), None);
    }
}
