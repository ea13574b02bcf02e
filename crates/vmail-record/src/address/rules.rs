//! What a stored name may be. Mailbox paths are made by putting the domain and the local part
//! into templates (`/home/vmail/%d/%n`), so a name that is not exactly one ordinary path
//! component (`alice/.`, `..`, `../../etc`) shares another account's Maildir or leaves the
//! base directory. Two sets of rules:
//!
//! - [`check_local`] and [`check_domain`]: every name an administrative write stores.
//!   RFC 5321 lengths, domains as IDNA host names (UTS #46 with the STD3 rules, through the
//!   `idna` crate), and the path rules below.
//! - [`check_path_safe`]: what a reader demands of a row before it derives paths from it,
//!   whoever wrote the row: only the path rules, so that a stored name that is merely not a
//!   valid host name (`a_b.org`, written with plain SQL years ago) keeps working.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// RFC 5321 4.5.3.1.1.
pub const MAX_LOCAL: usize = 64;
/// RFC 1035 2.3.4 (of the ASCII form).
pub const MAX_LABEL: usize = 63;
/// RFC 1035 2.3.4 less the root's length octet and final dot, as RFC 1123 hosts count it.
pub const MAX_DOMAIN: usize = 253;
/// NAME_MAX on Linux: a longer name can never be a directory, whatever it is.
const MAX_COMPONENT: usize = 255;

/// Which half of an address a rule was broken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Local,
    Domain,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Local => "the local part",
            Part::Domain => "the domain",
        })
    }
}

/// The rule a name breaks; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0} is empty")]
    Empty(Part),
    #[error("{0} contains '/', which would split its mailbox path")]
    Slash(Part),
    #[error("{0} contains a NUL or control character")]
    Control(Part),
    #[error("{0} starts with '.' (a '.' or '..' path component, or a hidden directory)")]
    LeadingDot(Part),
    #[error("the local part contains ':', which separates the fields of a Dovecot mail location")]
    Colon,
    #[error("the local part is {0} octets long; at most {MAX_LOCAL} are allowed")]
    LocalTooLong(usize),
    #[error("{0} is {1} octets long; no path component can be longer than {MAX_COMPONENT}")]
    ComponentTooLong(Part, usize),
    #[error("the domain has an empty label ('..', or a dot at its start)")]
    EmptyLabel,
    #[error("domain label {0:?} is {1} octets long; at most {MAX_LABEL} are allowed")]
    LabelTooLong(String, usize),
    #[error("the domain is {0} octets long; at most {MAX_DOMAIN} are allowed")]
    DomainTooLong(usize),
    #[error(
        "the domain is not a valid IDNA host name (letters, digits and inner hyphens; \
         xn-- labels must be valid Punycode)"
    )]
    NotHostname,
    #[error("the domain is not in normalized form; write it as {0:?}")]
    NotNormalized(String),
}

/// The path rules, for one half: exactly one ordinary path component.
fn path_rules(s: &str, part: Part) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty(part));
    }
    if s.contains('/') {
        return Err(NameError::Slash(part));
    }
    if s.chars().any(char::is_control) {
        return Err(NameError::Control(part));
    }
    // Covers `.` and `..` themselves.
    if s.starts_with('.') {
        return Err(NameError::LeadingDot(part));
    }
    // Dovecot reads `maildir:/home/vmail/%d/%n/Maildir` as fields split at ':', so a local
    // part `bob:LAYOUT=fs:INBOX=` would add options (and reach bob's Maildir as a folder).
    // Domains cannot hold ':' once they are host names; readers refuse it there too.
    if s.contains(':') {
        return Err(match part {
            Part::Local => NameError::Colon,
            Part::Domain => NameError::NotHostname,
        });
    }
    Ok(())
}

/// Writes have stricter limits, checked after the path rules so that the message names them.
fn component_length(s: &str, part: Part) -> Result<(), NameError> {
    if s.len() > MAX_COMPONENT {
        return Err(NameError::ComponentTooLong(part, s.len()));
    }
    Ok(())
}

/// Whether a stored `local` and `domain` can be put into mailbox templates: each is one
/// ordinary path component (no '/', no NUL or control character, no leading '.', no ':',
/// at most 255 octets). What every reader asks of a row.
pub fn check_path_safe(local: &str, domain: &str) -> Result<(), NameError> {
    path_rules(local, Part::Local)?;
    path_rules(domain, Part::Domain)?;
    component_length(local, Part::Local)?;
    component_length(domain, Part::Domain)
}

/// The local part of an address an administrative write stores (already case-folded if the
/// installation folds): the path rules and at most 64 octets.
pub fn check_local(local: &str) -> Result<(), NameError> {
    path_rules(local, Part::Local)?;
    if local.len() > MAX_LOCAL {
        return Err(NameError::LocalTooLong(local.len()));
    }
    Ok(())
}

/// A domain an administrative write stores (lower case, no trailing dot): the path rules, no
/// empty label, a host name under UTS #46 (ASCII letters, digits and hyphens not first or
/// last; Unicode labels and `xn--` labels that decode to valid ones), labels of at most 63
/// and the whole of at most 253 octets in ASCII (Punycode) form, and written as it maps
/// (`ｅxample.org` is refused: it would be a second spelling of `example.org`).
pub fn check_domain(domain: &str) -> Result<(), NameError> {
    path_rules(domain, Part::Domain)?;
    if domain.split('.').any(str::is_empty) {
        return Err(NameError::EmptyLabel);
    }
    let uts46 = Uts46::new();
    // Lengths are checked below, on the ASCII form, so that the error names the rule.
    let ascii = uts46
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map_err(|_| NameError::NotHostname)?;
    if let Some(l) = ascii.split('.').find(|l| l.len() > MAX_LABEL) {
        return Err(NameError::LabelTooLong(l.to_string(), l.len()));
    }
    if ascii.len() > MAX_DOMAIN {
        return Err(NameError::DomainTooLong(ascii.len()));
    }
    if ascii == domain {
        return Ok(());
    }
    // Each label must be written either as its A-label or as its U-label.
    let (unicode, r) = uts46.to_unicode(
        ascii.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::CheckFirstLast,
    );
    r.map_err(|_| NameError::NotHostname)?;
    let mut given = domain.split('.');
    let same = ascii
        .split('.')
        .zip(unicode.split('.'))
        .all(|(a, u)| given.next().is_some_and(|g| g == a || g == u));
    if !same || given.next().is_some() {
        return Err(NameError::NotNormalized(unicode.into_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_local_parts_are_refused() {
        for (l, e) in [
            ("alice/.", NameError::Slash(Part::Local)),
            ("../x", NameError::Slash(Part::Local)),
            ("a/../../b", NameError::Slash(Part::Local)),
            (".", NameError::LeadingDot(Part::Local)),
            ("..", NameError::LeadingDot(Part::Local)),
            (".hidden", NameError::LeadingDot(Part::Local)),
            ("a\0b", NameError::Control(Part::Local)),
            ("a\x1bb", NameError::Control(Part::Local)),
            ("bob:LAYOUT=fs", NameError::Colon),
            ("", NameError::Empty(Part::Local)),
        ] {
            assert_eq!(check_local(l), Err(e.clone()), "{l:?}");
            assert_eq!(check_path_safe(l, "example.org"), Err(e), "{l:?}");
        }
        let long = "a".repeat(300);
        assert_eq!(check_local(&long), Err(NameError::LocalTooLong(300)));
        assert_eq!(
            check_path_safe(&long, "example.org"),
            Err(NameError::ComponentTooLong(Part::Local, 300))
        );
        assert_eq!(check_local(&"a".repeat(64)), Ok(()));
        assert_eq!(
            check_local(&"a".repeat(65)),
            Err(NameError::LocalTooLong(65))
        );
    }

    #[test]
    fn ordinary_local_parts_pass() {
        for l in [
            "alice", "Alice", "a.b", "a..b", "a+b", "o'neil", "élise", "\"a@b\"", "a.",
        ] {
            assert_eq!(check_local(l), Ok(()), "{l:?}");
            assert_eq!(check_path_safe(l, "example.org"), Ok(()), "{l:?}");
        }
    }

    #[test]
    fn the_issue_s_domains_are_refused() {
        for (d, e) in [
            ("../../etc", NameError::Slash(Part::Domain)),
            ("a/b.org", NameError::Slash(Part::Domain)),
            ("example.org/", NameError::Slash(Part::Domain)),
            ("..org", NameError::LeadingDot(Part::Domain)),
            (".example.org", NameError::LeadingDot(Part::Domain)),
            ("a..org", NameError::EmptyLabel),
            ("xn--bad-.org", NameError::NotHostname),
            ("-a.org", NameError::NotHostname),
            ("a_b.org", NameError::NotHostname),
            ("a b.org", NameError::NotHostname),
            ("a:b.org", NameError::NotHostname),
            ("xn--zz.org", NameError::NotHostname),
        ] {
            assert_eq!(check_domain(d), Err(e), "{d:?}");
        }
        let label = "a".repeat(64);
        assert_eq!(
            check_domain(&format!("{label}.org")),
            Err(NameError::LabelTooLong(label, 64))
        );
        let long = vec!["a".repeat(63); 3].join(".") + "." + &"a".repeat(62);
        assert_eq!(
            check_domain(&long),
            Err(NameError::DomainTooLong(long.len()))
        );
        // Fullwidth letters map to ASCII: a second spelling of example.org.
        assert!(matches!(
            check_domain("ｅxample.org"),
            Err(NameError::NotNormalized(n)) if n == "example.org"
        ));
    }

    #[test]
    fn host_names_pass_in_either_form() {
        for d in [
            "example.org",
            "localhost",
            "mail-1.example.org",
            "r3---sn-abc.example.com",
            "exämple.com",
            "xn--exmple-cua.com",
            "bücher.xn--exmple-cua.com",
            "faß.de",
            "例え.jp",
        ] {
            assert_eq!(check_domain(d), Ok(()), "{d:?}");
        }
        // Readers are lenient with what is not a path question.
        assert_eq!(check_path_safe("a", "a_b.org"), Ok(()));
        assert_eq!(check_path_safe("a", "xn--bad-.org"), Ok(()));
        assert_eq!(
            check_path_safe("a", "../../etc"),
            Err(NameError::Slash(Part::Domain))
        );
    }
}
