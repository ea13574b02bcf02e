//! Every statement the directory sends, written out whole: read this file to know what any
//! lookup asks the database.
//!
//! The maps (`maps.rs`) ask four questions ([`Question`]), plus one that answers two of them
//! at once ([`Statements::address`]). Each question has one statement per schema shape:
//! [`CLASSIC`] for the how-to's tables, [`DOMAIN_FLAGS`] when `vmailctl migrate` gave
//! `domains` its `active` column (then a disabled domain answers nothing, and its flag comes
//! back with the rows instead of costing a statement of its own). The statements are the
//! same on MySQL/MariaDB and SQLite; SQLite alone has a second, case-folding form of each
//! ([`CLASSIC_FOLDED`], [`DOMAIN_FLAGS_FOLDED`]).
//!
//! Two things are filled in at run time, and only these:
//! - `{user_columns}` (and `{user_nulls}`, one `NULL` per user column): `users` has the
//!   optional columns `active`, `quota` and `services` only after `vmailctl migrate`, and
//!   which of them exist is learned on first contact with the database ([`UserColumns`]).
//! - `{arm}` in a batch statement's arm ([`Statements::user_arm`]): the arm's number, put in
//!   by the batcher (`batch.rs`) when it joins arms with `UNION ALL`.
//!
//! An operator's own queries (`[database.queries]` in vmail.toml) replace the built-in
//! statement of their question; they are compiled from their template as written
//! ([`Lookup::compile`]). `%s` is the whole key, `%u` its local part, `%d` its domain, each
//! bound as a parameter.

use vmail_config::QueryConfig;

use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::sql::Lookup;

/// What the read side asks the database, one statement each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// Whether a domain is ours (and active).
    Domain,
    /// A user's row, by address.
    User,
    /// The forwardings of one source (an address, or `@domain` for a catch-all).
    Alias,
    /// The transport of an address or a domain.
    Transport,
}

/// The built-in statements for one schema shape.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    pub domain: &'static str,
    pub user: &'static str,
    pub alias: &'static str,
    pub transport: &'static str,
    /// The user row and the forwardings of one address in one round trip: the `aliases`
    /// lookup of an unknown address, which Postfix repeats for every new recipient. The
    /// user's row, then the forwardings' two columns; each half fills the other's columns
    /// with NULL, and `vmail_kind` tells the rows apart.
    pub address: &'static str,
    /// [`user`](Self::user) as one arm of a MySQL batch: the same statement and parameters,
    /// with the arm's number as a last column (`vmail_arm`).
    pub user_arm: &'static str,
    /// [`address`](Self::address) as one arm of a MySQL batch, likewise.
    pub address_arm: &'static str,
}

/// The classic schema: domains have no `active` column.
pub const CLASSIC: Statements = Statements {
    domain: "SELECT domain FROM domains WHERE domain = %d",
    user: "SELECT {user_columns} FROM users WHERE email = %s",
    alias: "SELECT destination, source FROM forwardings WHERE source = %s",
    transport: "SELECT transport, domain FROM transport WHERE domain = %s",
    address: "SELECT 'u' AS vmail_kind, {user_columns}, NULL AS destination, NULL AS source \
              FROM users WHERE email = %s \
              UNION ALL \
              SELECT 'f', {user_nulls}, destination, source \
              FROM forwardings WHERE source = %s",
    user_arm: "SELECT {user_columns}, {arm} AS vmail_arm FROM users WHERE email = %s",
    address_arm: "SELECT 'u' AS vmail_kind, {user_columns}, NULL AS destination, NULL AS source, \
                  {arm} AS vmail_arm \
                  FROM users WHERE email = %s \
                  UNION ALL \
                  SELECT 'f', {user_nulls}, destination, source, {arm} AS vmail_arm \
                  FROM forwardings WHERE source = %s",
};

/// Domains with an `active` column. The user's row comes with its domain when that is
/// active (`vmail_active_domain`): one statement per user lookup instead of two, on the
/// directory's hottest path. Forwardings and transports come with their domain when that is
/// disabled (`vmail_disabled_domain`): only a disabled row counts, so forwardings and
/// transports of domains missing from `domains` (relay domains) keep working.
pub const DOMAIN_FLAGS: Statements = Statements {
    domain: "SELECT domain FROM domains WHERE domain = %d AND active = 1",
    user: "SELECT {user_columns}, \
           (SELECT domain FROM domains WHERE domain = %d AND active = 1 LIMIT 1) AS vmail_active_domain \
           FROM users WHERE email = %s",
    alias: "SELECT destination, source, \
            (SELECT domain FROM domains WHERE domain = %d AND active = 0 LIMIT 1) AS vmail_disabled_domain \
            FROM forwardings WHERE source = %s",
    transport: "SELECT transport, domain, \
                (SELECT domain FROM domains WHERE domain = %d AND active = 0 LIMIT 1) AS vmail_disabled_domain \
                FROM transport WHERE domain = %s",
    address: "SELECT 'u' AS vmail_kind, {user_columns}, \
              (SELECT domain FROM domains WHERE domain = %d AND active = 1 LIMIT 1) AS vmail_active_domain, \
              NULL AS destination, NULL AS source, NULL AS vmail_disabled_domain \
              FROM users WHERE email = %s \
              UNION ALL \
              SELECT 'f', {user_nulls}, NULL, destination, source, \
              (SELECT domain FROM domains WHERE domain = %d AND active = 0 LIMIT 1) AS vmail_disabled_domain \
              FROM forwardings WHERE source = %s",
    user_arm: "SELECT {user_columns}, \
               (SELECT domain FROM domains WHERE domain = %d AND active = 1 LIMIT 1) AS vmail_active_domain, \
               {arm} AS vmail_arm \
               FROM users WHERE email = %s",
    address_arm: "SELECT 'u' AS vmail_kind, {user_columns}, \
                  (SELECT domain FROM domains WHERE domain = %d AND active = 1 LIMIT 1) AS vmail_active_domain, \
                  NULL AS destination, NULL AS source, NULL AS vmail_disabled_domain, {arm} AS vmail_arm \
                  FROM users WHERE email = %s \
                  UNION ALL \
                  SELECT 'f', {user_nulls}, NULL, destination, source, \
                  (SELECT domain FROM domains WHERE domain = %d AND active = 0 LIMIT 1) AS vmail_disabled_domain, \
                  {arm} AS vmail_arm \
                  FROM forwardings WHERE source = %s",
};

/// SQLite, the built-in queries: each lookup again with both sides folded by `vmail_fold`
/// (Unicode lower case, registered on every connection), run only when a key with non-ASCII
/// characters found nothing. SQLite's NOCASE folds ASCII alone, so a row
/// `Élise@example.org` written with plain SQL would otherwise never match `élise@...`, which
/// MariaDB's default collations do match. A full scan, but only then; the indexed statement
/// answers everything else.
#[derive(Debug, Clone, Copy)]
pub struct Folded {
    pub domain: &'static str,
    pub user: &'static str,
    pub alias: &'static str,
    pub transport: &'static str,
}

/// [`CLASSIC`], folded (SQLite).
pub const CLASSIC_FOLDED: Folded = Folded {
    domain: "SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(%d)",
    user: "SELECT {user_columns} FROM users WHERE vmail_fold(email) = vmail_fold(%s)",
    alias: "SELECT destination, source FROM forwardings WHERE vmail_fold(source) = vmail_fold(%s)",
    transport: "SELECT transport, domain FROM transport WHERE vmail_fold(domain) = vmail_fold(%s)",
};

/// [`DOMAIN_FLAGS`], folded (SQLite). The alias and transport statements are those of
/// [`CLASSIC_FOLDED`]: without the disabled-domain column.
pub const DOMAIN_FLAGS_FOLDED: Folded = Folded {
    domain: "SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(%d) AND active = 1",
    user: "SELECT {user_columns}, \
           (SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(%d) AND active = 1 LIMIT 1) AS vmail_active_domain \
           FROM users WHERE vmail_fold(email) = vmail_fold(%s)",
    alias: CLASSIC_FOLDED.alias,
    transport: CLASSIC_FOLDED.transport,
};

/// Whether `d` (folded) has a row in `domains`, enabled or not: the alias-domain search asks
/// it of a catch-all's target domain (a domain that is not ours is forwarded elsewhere).
pub const DOMAIN_LISTED: &str = "SELECT domain FROM domains WHERE domain = ?";

/// Whether a domain is disabled, asked exactly when MariaDB matched an accent- or
/// space-variant of it in `vmail_disabled_domain`.
pub const DOMAIN_DISABLED: &str = "SELECT domain FROM domains WHERE domain = ? AND active = 0";

/// Every stored address, for lookupd's address set. One statement, so that both tables are
/// read as of one moment (an alias turned into a mailbox in one transaction is never missing
/// from both); the combined address statement reads exactly these two columns by key.
/// `{limit}` is the configured `address_set_max` plus one, a number put in at run time: the
/// statement takes no parameters (it is read with `fetch_column`).
pub const ADDRESS_SET: &str =
    "SELECT email FROM users UNION ALL SELECT source FROM forwardings LIMIT {limit}";

/// The writes and listings of `vmailctl` (`admin.rs`), on the classic schema and what
/// `vmailctl migrate` adds to it. Positional `?` parameters; the same on both backends.
pub mod admin {
    /// Whether a domain has a row (enabled or not), before a write that needs it.
    pub const DOMAIN: &str = "SELECT domain FROM domains WHERE domain = ?";
    /// The same on SQLite for a non-ASCII name: NOCASE folds ASCII only, and `ÉXAMPLE.net` is
    /// `éxample.net` on MariaDB.
    pub const DOMAIN_FOLDED: &str =
        "SELECT domain FROM domains WHERE vmail_fold(domain) = vmail_fold(?)";
    pub const ADD_DOMAIN: &str = "INSERT INTO domains (domain) VALUES (?)";
    /// Bound with `%@domain`, its LIKE metacharacters escaped with `!`: a domain's `_` must not
    /// match any character.
    pub const COUNT_USERS_OF_DOMAIN: &str =
        "SELECT COUNT(*) FROM users WHERE email LIKE ? ESCAPE '!'";
    pub const COUNT_ALIASES_OF_DOMAIN: &str =
        "SELECT COUNT(*) FROM forwardings WHERE source LIKE ? ESCAPE '!'";
    pub const DEL_USERS_OF_DOMAIN: &str = "DELETE FROM users WHERE email LIKE ? ESCAPE '!'";
    pub const DEL_ALIASES_OF_DOMAIN: &str =
        "DELETE FROM forwardings WHERE source LIKE ? ESCAPE '!'";
    pub const DEL_TRANSPORT: &str = "DELETE FROM transport WHERE domain = ?";
    pub const DEL_DOMAIN: &str = "DELETE FROM domains WHERE domain = ?";
    pub const LIST_DOMAINS: &str = "SELECT domain FROM domains ORDER BY domain";
    pub const ADD_USER_WITH_QUOTA: &str =
        "INSERT INTO users (email, password, quota) VALUES (?, ?, ?)";
    pub const ADD_USER: &str = "INSERT INTO users (email, password) VALUES (?, ?)";
    pub const SET_PASSWORD: &str = "UPDATE users SET password = ? WHERE email = ?";
    /// A compare-and-set: replaces the hash only while it is still the old one.
    pub const REPLACE_PASSWORD: &str =
        "UPDATE users SET password = ? WHERE email = ? AND password = ?";
    pub const USER_EXISTS: &str = "SELECT email FROM users WHERE email = ?";
    pub const SET_ACTIVE: &str = "UPDATE users SET active = ? WHERE email = ?";
    pub const DEL_USER: &str = "DELETE FROM users WHERE email = ?";
    /// Users, without and with the `active` column (`vmailctl migrate` adds it), of every
    /// domain or of one (`%@domain`, escaped as above).
    pub const LIST_USERS: &str = "SELECT email FROM users ORDER BY email";
    pub const LIST_USERS_ACTIVE: &str = "SELECT email, active FROM users ORDER BY email";
    pub const LIST_USERS_OF_DOMAIN: &str =
        "SELECT email FROM users WHERE email LIKE ? ESCAPE '!' ORDER BY email";
    pub const LIST_USERS_OF_DOMAIN_ACTIVE: &str =
        "SELECT email, active FROM users WHERE email LIKE ? ESCAPE '!' ORDER BY email";
    pub const SET_DESTINATIONS: &str = "UPDATE forwardings SET destination = ? WHERE source = ?";
    pub const ADD_ALIAS: &str = "INSERT INTO forwardings (source, destination) VALUES (?, ?)";
    pub const DEL_ALIAS: &str = "DELETE FROM forwardings WHERE source = ?";
    pub const LIST_ALIASES: &str = "SELECT source, destination FROM forwardings ORDER BY source";
    pub const LIST_ALIASES_OF_DOMAIN: &str = "SELECT source, destination FROM forwardings WHERE source LIKE ? ESCAPE '!' ORDER BY source";
    /// After [`DEL_TRANSPORT`]: a domain has one transport.
    pub const ADD_TRANSPORT: &str = "INSERT INTO transport (domain, transport) VALUES (?, ?)";
    pub const LIST_TRANSPORTS: &str = "SELECT domain, transport FROM transport ORDER BY domain";
    /// `user set` (each only after `vmailctl migrate` added its column); quota 0 is no limit,
    /// services NULL allows all.
    pub const SET_QUOTA: &str = "UPDATE users SET quota = ? WHERE email = ?";
    pub const SET_SERVICES: &str = "UPDATE users SET services = ? WHERE email = ?";
    /// `domain disable`/`enable` and `domain list` once `domains.active` exists.
    pub const SET_DOMAIN_ACTIVE: &str = "UPDATE domains SET active = ? WHERE domain = ?";
    pub const LIST_DOMAINS_ACTIVE: &str = "SELECT domain, active FROM domains ORDER BY domain";
    /// `vmailctl export`: whole rows, without and with the columns `vmailctl migrate` adds
    /// (users' three come together, as migrate adds them together).
    pub const EXPORT_USERS: &str = "SELECT email, password FROM users ORDER BY email";
    pub const EXPORT_USERS_FLAGGED: &str =
        "SELECT email, password, active, quota, services FROM users ORDER BY email";
    /// `vmailctl import`: the rows as exported. `--replace` deletes a row's old version first
    /// ([`DEL_DOMAIN`], [`DEL_USER`], [`DEL_ALIAS`], [`DEL_TRANSPORT`]).
    pub const IMPORT_DOMAIN_FLAGGED: &str = "INSERT INTO domains (domain, active) VALUES (?, ?)";
    pub const IMPORT_USER_FLAGGED: &str =
        "INSERT INTO users (email, password, active, quota, services) VALUES (?, ?, ?, ?, ?)";
}

/// Column of the user query naming the user's active domain (when domains have flags).
pub(crate) const ACTIVE_DOMAIN: &str = "vmail_active_domain";

/// Column of the alias and transport queries naming the key's domain when it is disabled
/// (when domains have flags).
pub(crate) const DISABLED_DOMAIN: &str = "vmail_disabled_domain";

/// Column of the combined address query saying which table a row comes from (`u` or `f`).
pub(crate) const KIND: &str = "vmail_kind";

/// The columns of `users` the user statements read: `email, password` and the optional ones
/// the database has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserColumns(Vec<&'static str>);

impl UserColumns {
    pub fn of(s: &Schema) -> UserColumns {
        let mut cols = vec!["email", "password"];
        for (present, col) in [
            (s.users_active, "active"),
            (s.users_quota, "quota"),
            (s.users_services, "services"),
        ] {
            if present {
                cols.push(col);
            }
        }
        UserColumns(cols)
    }

    /// `template` with its `{user_columns}` and `{user_nulls}` filled in.
    pub fn fill(&self, template: &str) -> String {
        let nulls = vec!["NULL"; self.0.len()].join(", ");
        template
            .replace("{user_columns}", &self.0.join(", "))
            .replace("{user_nulls}", &nulls)
    }
}

/// A question's statement as it is sent, and how its rows are checked.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub lookup: Lookup,
    /// For our own statements, the column holding the key each row matched. MySQL's default
    /// collations are accent- and trailing-space-insensitive (`exämple.com` = `example.com`),
    /// so we check the match ourselves and both backends answer alike. `None` for custom
    /// queries, whose author decides what matches.
    pub verify: Option<&'static str>,
    /// SQLite, our own statements: the folded form ([`Folded`]).
    pub folded: Option<Lookup>,
}

/// The statements in use: the built-in ones for the schema found, or the operator's own.
#[derive(Debug, Clone)]
pub(crate) struct Queries {
    domain: Prepared,
    user: Prepared,
    alias: Prepared,
    transport: Prepared,
    /// The operator wrote the user query; it decides activity itself.
    pub custom_user: bool,
    /// Forwardings and user row of one address in one round trip; only when both are our
    /// own queries.
    pub address: Option<Lookup>,
    /// The batch arms of `user` and `address`, for our own queries ([`Statements::user_arm`]).
    pub user_arm: Option<Lookup>,
    pub address_arm: Option<Lookup>,
}

impl Queries {
    /// The statements for schema `s`: custom ones where `custom` has them, else the
    /// built-in ones (folded forms only when `sqlite`).
    pub fn new(s: &Schema, custom: &QueryConfig, sqlite: bool) -> Result<Queries> {
        let (own, folded) = if s.domains_active {
            (DOMAIN_FLAGS, DOMAIN_FLAGS_FOLDED)
        } else {
            (CLASSIC, CLASSIC_FOLDED)
        };
        let cols = UserColumns::of(s);
        let compile = |template: &str| Lookup::compile(&cols.fill(template));
        let prepare = |custom: &Option<String>,
                       own: &str,
                       folded: &str,
                       verify: &'static str|
         -> Result<Prepared> {
            Ok(match custom {
                Some(c) => Prepared {
                    lookup: Lookup::compile(c)?,
                    verify: None,
                    folded: None,
                },
                None => Prepared {
                    lookup: compile(own)?,
                    verify: Some(verify),
                    folded: sqlite.then(|| compile(folded)).transpose()?,
                },
            })
        };
        let ours = custom.user.is_none() && custom.alias.is_none();
        Ok(Queries {
            domain: prepare(&custom.domain, own.domain, folded.domain, "domain")?,
            user: prepare(&custom.user, own.user, folded.user, "email")?,
            alias: prepare(&custom.alias, own.alias, folded.alias, "source")?,
            transport: prepare(&custom.transport, own.transport, folded.transport, "domain")?,
            custom_user: custom.user.is_some(),
            address: ours.then(|| compile(own.address)).transpose()?,
            user_arm: custom
                .user
                .is_none()
                .then(|| compile(own.user_arm))
                .transpose()?,
            address_arm: ours.then(|| compile(own.address_arm)).transpose()?,
        })
    }

    pub fn get(&self, q: Question) -> &Prepared {
        match q {
            Question::Domain => &self.domain,
            Question::User => &self.user,
            Question::Alias => &self.alias,
            Question::Transport => &self.transport,
        }
    }
}

/// Checks that a batch arm binds what its single statement binds (both are written out
/// above; the batcher binds each arm with the single statement's parameters).
pub(crate) fn check_arm(single: &Lookup, arm: &Lookup) -> Result<()> {
    if arm.params != single.params {
        return Err(Error::Config(format!(
            "batch statement binds {:?}, its single statement {:?}",
            arm.params, single.params
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_schemas() -> Vec<Schema> {
        let mut v = Vec::new();
        for bits in 0..16u8 {
            v.push(Schema {
                tables_exist: true,
                users_active: bits & 1 != 0,
                users_quota: bits & 2 != 0,
                users_services: bits & 4 != 0,
                domains_active: bits & 8 != 0,
                password_width: None,
            });
        }
        v
    }

    /// An arm is its single statement with `, {arm} AS vmail_arm` ending each select list:
    /// the two are written out apart, this keeps them alike.
    #[test]
    fn arms_are_their_single_statements_numbered() {
        let arm = ", {arm} AS vmail_arm";
        for s in [CLASSIC, DOMAIN_FLAGS] {
            let user = s.user.replace(" FROM users", &format!("{arm} FROM users"));
            assert_eq!(user, s.user_arm);
            let address = s
                .address
                .replace(" FROM users", &format!("{arm} FROM users"))
                .replace(" FROM forwardings", &format!("{arm} FROM forwardings"));
            assert_eq!(address, s.address_arm);
        }
    }

    #[test]
    fn every_schema_compiles_and_arms_bind_alike() {
        for s in all_schemas() {
            for sqlite in [false, true] {
                let q = Queries::new(&s, &QueryConfig::default(), sqlite).unwrap();
                check_arm(&q.user.lookup, q.user_arm.as_ref().unwrap()).unwrap();
                check_arm(q.address.as_ref().unwrap(), q.address_arm.as_ref().unwrap()).unwrap();
                assert_eq!(q.user.folded.is_some(), sqlite);
                assert!(!q.user.lookup.sql.contains('{'), "{}", q.user.lookup.sql);
            }
        }
    }

    /// Both halves of the address statement have as many columns.
    #[test]
    fn address_halves_have_as_many_columns() {
        for s in all_schemas() {
            let q = Queries::new(&s, &QueryConfig::default(), false).unwrap();
            let sql = q.address.unwrap().sql;
            let (a, b) = sql.split_once(" UNION ALL ").unwrap();
            let count = |half: &str| {
                let list = half.rsplit_once(" FROM ").unwrap().0;
                // The last FROM is the table's; subqueries hold no commas.
                list.matches(',').count()
            };
            assert_eq!(count(a), count(b), "{sql}");
        }
    }

    #[test]
    fn user_columns_follow_the_schema() {
        let s = Schema {
            users_active: true,
            users_services: true,
            ..Schema::default()
        };
        let c = UserColumns::of(&s);
        assert_eq!(
            c.fill(CLASSIC.user),
            "SELECT email, password, active, services FROM users WHERE email = %s"
        );
        assert_eq!(
            c.fill("SELECT 'f', {user_nulls} FROM t"),
            "SELECT 'f', NULL, NULL, NULL, NULL FROM t"
        );
    }

    #[test]
    fn custom_queries_replace_their_question_only() {
        let custom = QueryConfig {
            user: Some("SELECT email, password FROM accounts WHERE login = %s".into()),
            ..QueryConfig::default()
        };
        let q = Queries::new(&Schema::default(), &custom, true).unwrap();
        assert!(q.custom_user);
        assert!(q.address.is_none() && q.user_arm.is_none() && q.address_arm.is_none());
        let user = q.get(Question::User);
        assert!(user.verify.is_none() && user.folded.is_none());
        assert_eq!(q.get(Question::Alias).verify, Some("source"));
    }
}
