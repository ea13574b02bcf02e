//! Address handling written once for every daemon: parsing, case folding, the recipient
//! delimiter, and the keys a lookup tries in virtual(5) order.
//!
//! Postfix sends socketmap tables only the full key (they are "pattern" tables, like regexp),
//! so the search order Postfix applies itself to `mysql:` tables — `user+ext@domain`,
//! `user@domain`, `@domain` — has to be done here.

use vmail_config::AddressConfig;

pub mod rules;

/// Longest address we will consider; RFC 5321 allows 64 + 1 + 255. Longer keys cannot match
/// any stored address and are answered "not found" without a query.
pub const MAX_ADDRESS_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Folded local part, extension included.
    pub local: String,
    /// Folded domain.
    pub domain: String,
}

/// How this installation compares addresses.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    delimiters: Vec<char>,
    fold_local: bool,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy::from_config(&AddressConfig::default())
    }
}

impl AddressPolicy {
    pub fn from_config(c: &AddressConfig) -> Self {
        AddressPolicy {
            delimiters: c.recipient_delimiter.chars().collect(),
            fold_local: c.fold_local_part,
        }
    }

    /// Folds a domain; `None` when it cannot be a domain name.
    pub fn domain(&self, d: &str) -> Option<String> {
        let d = d.strip_suffix('.').unwrap_or(d);
        if d.is_empty() || d.len() > 255 || d.bytes().any(|b| b <= b' ' || b == b'@' || b == 0x7f) {
            return None;
        }
        Some(d.to_lowercase())
    }

    /// Parses `local@domain` (split at the last `@`, as Postfix does), folding case.
    /// `None` for keys that cannot be a mailbox address: no `@`, empty parts, control
    /// characters, oversize.
    pub fn parse(&self, key: &str) -> Option<Address> {
        if key.len() > MAX_ADDRESS_LEN {
            return None;
        }
        let (local, domain) = key.rsplit_once('@')?;
        if local.is_empty() || local.bytes().any(|b| b < b' ' || b == 0x7f) {
            return None;
        }
        let domain = self.domain(domain)?;
        let local = if self.fold_local {
            local.to_lowercase()
        } else {
            local.to_string()
        };
        Some(Address { local, domain })
    }

    /// Splits `user+ext` into (`user`, `+ext`), keeping the delimiter with the extension so it
    /// can be appended again. Like Postfix, the first delimiter wins and a local part that
    /// starts with a delimiter is not split (there would be no user left).
    pub fn split_extension<'a>(&self, local: &'a str) -> (&'a str, Option<&'a str>) {
        if self.delimiters.is_empty() {
            return (local, None);
        }
        match local
            .char_indices()
            .find(|(_, c)| self.delimiters.contains(c))
        {
            Some((0, _)) | None => (local, None),
            Some((i, _)) => (&local[..i], Some(&local[i..])),
        }
    }
}

impl Address {
    pub fn new(local: impl Into<String>, domain: impl Into<String>) -> Self {
        Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    /// The address without its extension, and the extension (delimiter included).
    pub fn base(&self, policy: &AddressPolicy) -> (Address, Option<String>) {
        let (user, ext) = policy.split_extension(&self.local);
        (
            Address::new(user, self.domain.clone()),
            ext.map(str::to_string),
        )
    }

    /// `@domain`, the catch-all key.
    pub fn catch_all(&self) -> String {
        format!("@{}", self.domain)
    }

    /// `local+ext@domain` with an extension appended to the local part.
    pub fn with_extension(&self, ext: &str) -> String {
        format!("{}{}@{}", self.local, ext, self.domain)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Splits an alias destination field: the classic schema allows several addresses separated by
/// commas and/or white space in one `forwardings.destination`.
pub fn split_destinations(field: &str) -> impl Iterator<Item = &str> {
    field
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// A stored address as lookups compare keys: the domain lowercased, the local part too when
/// `fold` (the `[address] fold_local_part` rule), trailing spaces ignored as MariaDB's PAD
/// SPACE collations (and so the classic maps and pam_mysql) ignore them. Keys equal under
/// this are the same address for every lookup (the directory's row check and lookupd's
/// address set both use it).
pub fn norm_key(fold: bool, stored: &str) -> String {
    let stored = stored.trim_end_matches(' ');
    if fold {
        return stored.to_lowercase();
    }
    match stored.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => stored.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(delim: &str, fold: bool) -> AddressPolicy {
        AddressPolicy::from_config(&AddressConfig {
            recipient_delimiter: delim.into(),
            fold_local_part: fold,
        })
    }

    #[test]
    fn parse_folds_and_splits_at_last_at() {
        let p = pol("+", true);
        assert_eq!(
            p.parse("Alice@Example.ORG").unwrap(),
            Address::new("alice", "example.org")
        );
        assert_eq!(
            p.parse("\"a@b\"@example.org").unwrap(),
            Address::new("\"a@b\"", "example.org")
        );
        assert_eq!(p.parse("bob@example.org.").unwrap().domain, "example.org");
        let keep = pol("+", false);
        assert_eq!(keep.parse("Alice@Example.ORG").unwrap().local, "Alice");
    }

    #[test]
    fn parse_rejects_non_addresses() {
        let p = pol("+", true);
        for k in [
            "",
            "alice",
            "@example.org",
            "alice@",
            "a\0b@example.org",
            "a@exa mple.org",
            "a@ex\nample.org",
            "alice@@",
        ] {
            assert!(p.parse(k).is_none(), "{k:?}");
        }
        let long = format!("{}@example.org", "a".repeat(10_000));
        assert!(p.parse(&long).is_none());
    }

    #[test]
    fn extension_splitting_follows_postfix() {
        let p = pol("+-", true);
        assert_eq!(p.split_extension("alice+news"), ("alice", Some("+news")));
        assert_eq!(p.split_extension("alice-a+b"), ("alice", Some("-a+b")));
        assert_eq!(p.split_extension("+alice"), ("+alice", None));
        assert_eq!(p.split_extension("alice"), ("alice", None));
        assert_eq!(pol("", true).split_extension("a+b"), ("a+b", None));
    }

    #[test]
    fn destinations_split_on_commas_and_space() {
        let v: Vec<_> = split_destinations(" a@x, b@y\tc@z,,\n").collect();
        assert_eq!(v, ["a@x", "b@y", "c@z"]);
    }

    #[test]
    fn keys_normalize_like_the_row_check() {
        assert_eq!(norm_key(true, "Bob@Example.ORG"), "bob@example.org");
        assert_eq!(norm_key(false, "Bob@Example.ORG"), "Bob@example.org");
        assert_eq!(norm_key(false, "@Example.ORG"), "@example.org");
        assert_eq!(norm_key(false, "a@b@C"), "a@b@c");
        assert_eq!(norm_key(false, "Example.ORG"), "example.org");
        assert_eq!(norm_key(true, "ÄRGER@Bücher.de"), "ärger@bücher.de");
    }
}
