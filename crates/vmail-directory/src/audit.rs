//! The stored keys that vmail's lookups match differently from the classic `mysql:` maps:
//! what `vmailctl audit` lists before a switch.
//!
//! The classic maps and pam_mysql compare with the column's collation. MariaDB's defaults
//! (`utf8mb4_general_ci`, `latin1_swedish_ci`) ignore case, accents and trailing spaces: a
//! stored `alicé@example.org` answers a lookup of `alice@example.org`, and `a@d ` one of
//! `a@d`. vmail checks every row's key itself (so that both backends answer alike): trailing
//! spaces are ignored as the collation does, everything else must be the same address.

use crate::address::norm_key;
use crate::address::AddressPolicy;
use crate::backend::{Dialect, SqlBackend};
use crate::error::Result;
use crate::Directory;

/// Why a stored key is listed, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// Not an address (or domain) vmail's address rules accept: never matched.
    Invalid,
    /// Whitespace or control characters other than trailing spaces (and those too where the
    /// column's collation does not ignore them: SQLite, NO PAD), or a form no lookup key
    /// takes (a domain ending in a dot): never matched.
    Unmatchable,
    /// An upper-case local part with `[address] fold_local_part = false`: the classic maps
    /// match it in any case, vmail only in this one.
    CaseVariant,
    /// Non-ASCII under an accent-insensitive collation: the classic maps also answer it for
    /// accent variants (`alice@` for `alicé@`), vmail only for this spelling.
    AccentVariant,
    /// Trailing spaces under a PAD SPACE collation (MariaDB's defaults): matched as if they
    /// were not there; other tools may disagree, so trimming the row is better.
    TrailingSpaces,
}

impl Problem {
    /// Whether vmail still matches the row for its plain spelling.
    pub fn matched(self) -> bool {
        matches!(
            self,
            Problem::CaseVariant | Problem::AccentVariant | Problem::TrailingSpaces
        )
    }

    pub fn explain(self) -> &'static str {
        match self {
            Problem::Invalid => "not a valid address or domain: vmail never matches it",
            Problem::Unmatchable => {
                "spaces, control characters or a trailing dot: no lookup matches it"
            }
            Problem::CaseVariant => {
                "upper case in the local part with fold_local_part = false: the classic maps match any case, vmail only this one"
            }
            Problem::AccentVariant => {
                "non-ASCII under an accent-insensitive collation: the classic maps also match accent variants, vmail only this spelling"
            }
            Problem::TrailingSpaces => {
                "trailing spaces: matched as if absent (as MariaDB's PAD SPACE collations do); trim the row"
            }
        }
    }
}

/// One listed row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub table: &'static str,
    pub column: &'static str,
    /// The key as stored.
    pub value: String,
    pub problem: Problem,
}

/// What a key column holds.
#[derive(Clone, Copy)]
enum Kind {
    Address,
    /// An address, or `@domain` for a catch-all.
    Source,
    Domain,
}

/// The key columns, each read by its own whole statement.
const COLUMNS: [(&str, &str, &str, Kind); 4] = [
    ("users", "email", "SELECT email FROM users", Kind::Address),
    (
        "forwardings",
        "source",
        "SELECT source FROM forwardings",
        Kind::Source,
    ),
    (
        "domains",
        "domain",
        "SELECT domain FROM domains",
        Kind::Domain,
    ),
    (
        "transport",
        "domain",
        "SELECT domain FROM transport",
        Kind::Domain,
    ),
];

impl Directory {
    /// Every stored key (users, forwardings, domains, transport) that vmail matches
    /// differently from the column's collation, in table order.
    pub async fn audit(&self) -> Result<Vec<Finding>> {
        let fold = self.config.address.fold_local_part;
        let mut out = Vec::new();
        for (table, column, sql, kind) in COLUMNS {
            let c = self.collation(table, column).await?;
            for value in self.backend.fetch_column(sql).await?.into_iter().flatten() {
                if let Some(problem) = problem(&self.policy, fold, c, kind, &value) {
                    out.push(Finding {
                        table,
                        column,
                        value,
                        problem,
                    });
                }
            }
        }
        Ok(out)
    }

    /// What the column's collation ignores (MySQL; SQLite's NOCASE ignores neither accents
    /// nor trailing spaces).
    async fn collation(&self, table: &str, column: &str) -> Result<Collation> {
        if self.backend.dialect() != Dialect::Mysql {
            return Ok(Collation::default());
        }
        let rows = self
            .backend
            .fetch(
                "SELECT collation_name FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?",
                vec![table.into(), column.into()],
            )
            .await?;
        // No collation: a binary column, compared byte for byte.
        let Some(c) = rows.first().and_then(|r| r.first()) else {
            return Ok(Collation::default());
        };
        Ok(Collation {
            // `_bin` compares bytes; `_as_` names an accent-sensitive collation (MySQL 8).
            accents: !c.ends_with("_bin") && !c.contains("_as_"),
            // NO PAD: MariaDB's `_nopad_` collations and all of MySQL 8's `_0900_` ones.
            pads: !c.contains("nopad") && !c.contains("_0900_"),
        })
    }
}

/// What a key column's comparison ignores.
#[derive(Debug, Clone, Copy, Default)]
struct Collation {
    /// Accents (`alicé` = `alice`).
    accents: bool,
    /// Trailing spaces (PAD SPACE). Where they count (SQLite, NO PAD, binary columns) the
    /// database never returns a padded row for a lookup, so vmail never matches it.
    pads: bool,
}

/// Why `stored` is listed, if it is.
fn problem(
    policy: &AddressPolicy,
    fold: bool,
    collation: Collation,
    kind: Kind,
    stored: &str,
) -> Option<Problem> {
    let key = stored.trim_end_matches(' ');
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(Problem::Unmatchable);
    }
    // What a lookup of this key would send and compare.
    let looked_up = match kind {
        Kind::Domain => policy.domain(key),
        Kind::Source if key.starts_with('@') => policy.domain(&key[1..]).map(|d| format!("@{d}")),
        Kind::Source | Kind::Address => policy.parse(key).map(|a| a.to_string()),
    };
    let Some(looked_up) = looked_up else {
        return Some(Problem::Invalid);
    };
    if looked_up != norm_key(fold, key) {
        return Some(Problem::Unmatchable);
    }
    let local = key.rsplit_once('@').map_or("", |(l, _)| l);
    if !fold && local.chars().any(char::is_uppercase) {
        return Some(Problem::CaseVariant);
    }
    let padded = key.len() != stored.len();
    if padded && !collation.pads {
        return Some(Problem::Unmatchable);
    }
    if collation.accents && !key.is_ascii() {
        return Some(Problem::AccentVariant);
    }
    padded.then_some(Problem::TrailingSpaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: Kind, fold: bool, stored: &str) -> Option<Problem> {
        let policy = AddressPolicy::from_config(&vmail_config::AddressConfig {
            fold_local_part: fold,
            ..Default::default()
        });
        let mariadb = Collation {
            accents: true,
            pads: true,
        };
        problem(&policy, fold, mariadb, kind, stored)
    }

    #[test]
    fn stored_keys_are_classified() {
        assert_eq!(p(Kind::Address, true, "alice@example.org"), None);
        assert_eq!(p(Kind::Address, true, "Alice@Example.ORG"), None);
        assert_eq!(
            p(Kind::Address, true, "alice@example.org  "),
            Some(Problem::TrailingSpaces)
        );
        assert_eq!(
            p(Kind::Address, true, " alice@example.org"),
            Some(Problem::Unmatchable)
        );
        assert_eq!(
            p(Kind::Address, true, "a b@example.org"),
            Some(Problem::Unmatchable)
        );
        assert_eq!(
            p(Kind::Address, true, "alice@example.org."),
            Some(Problem::Unmatchable)
        );
        assert_eq!(p(Kind::Address, true, "no-at-sign"), Some(Problem::Invalid));
        assert_eq!(
            p(Kind::Address, true, "@example.org"),
            Some(Problem::Invalid)
        );
        assert_eq!(
            p(Kind::Address, true, "alicé@example.org"),
            Some(Problem::AccentVariant)
        );
        assert_eq!(
            p(Kind::Address, false, "Alice@example.org"),
            Some(Problem::CaseVariant)
        );
        assert_eq!(p(Kind::Source, true, "@example.org"), None);
        assert_eq!(
            p(Kind::Source, true, "@exämple.org "),
            Some(Problem::AccentVariant)
        );
        assert_eq!(p(Kind::Domain, true, "Example.org"), None);
        assert_eq!(
            p(Kind::Domain, true, "example.org "),
            Some(Problem::TrailingSpaces)
        );
        assert_eq!(
            p(Kind::Domain, true, "@example.org"),
            Some(Problem::Invalid)
        );
        assert!(!Problem::Invalid.matched() && Problem::TrailingSpaces.matched());
        // Where trailing spaces count, the database never returns the padded row.
        let policy = AddressPolicy::default();
        assert_eq!(
            problem(
                &policy,
                true,
                Collation::default(),
                Kind::Address,
                "alice@example.org "
            ),
            Some(Problem::Unmatchable)
        );
    }
}
