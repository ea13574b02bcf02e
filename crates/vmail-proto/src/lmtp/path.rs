//! Reverse- and forward-paths of MAIL and RCPT (RFC 5321 4.1.2, RFC 6531 3.3).

use super::{MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH};

/// A mailbox from a path: the local part unquoted, the domain as sent (a name or an
/// address literal with its brackets). Both are valid UTF-8; see [`Mailbox::is_ascii`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    local: String,
    domain: String,
}

impl Mailbox {
    /// The local part, unquoted: `<"john doe"@x>` gives `john doe`.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain as sent.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `local@domain`, unquoted: Postfix's internal form, which vmail-lda gets as its
    /// recipient argument from pipe(8). A quoted local part may hold '@'
    /// (`<"a@b"@c>` gives `a@b@c`), so split it at the last '@', as vmail-record does.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// Whether the address is all ASCII (otherwise MAIL needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

/// Why a path is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    Syntax,
    TooLong,
}

/// Parses the path at the start of `s` (which must begin with '<'): `Ok((None, n))` for
/// `<>`, the mailbox otherwise, `n` being the bytes up to and including the '>'.
pub(crate) fn parse_path(s: &[u8]) -> Result<(Option<Mailbox>, usize), PathError> {
    if s.first() != Some(&b'<') {
        return Err(PathError::Syntax);
    }
    let mut i = 1;
    // A source route `@a,@b:` is syntax to accept and meaning to ignore (RFC 5321 4.1.2,
    // appendix C): the mailbox after it is the address.
    if s.get(i) == Some(&b'@') {
        let colon = s[i..]
            .iter()
            .position(|&b| b == b':')
            .ok_or(PathError::Syntax)?;
        for hop in s[i..i + colon].split(|&b| b == b',') {
            match hop.split_first() {
                Some((b'@', domain)) if valid_domain(domain) => {}
                _ => return Err(PathError::Syntax),
            }
        }
        i += colon + 1;
    }
    if s.get(i) == Some(&b'>') {
        return if i == 1 {
            Ok((None, 2))
        } else {
            Err(PathError::Syntax)
        };
    }
    let local_start = i;
    let local = if s.get(i) == Some(&b'"') {
        let (local, n) = quoted(&s[i..])?;
        i += n;
        local
    } else {
        let n = s[i..].iter().take_while(|&&b| dot_string_byte(b)).count();
        let raw = &s[i..i + n];
        if raw.is_empty() || raw.starts_with(b".") || raw.ends_with(b".") {
            return Err(PathError::Syntax);
        }
        i += n;
        raw.to_vec()
    };
    let local_len = i - local_start;
    if s.get(i) != Some(&b'@') || local.is_empty() {
        return Err(PathError::Syntax);
    }
    i += 1;
    let domain_start = i;
    let n = if s.get(i) == Some(&b'[') {
        let close = s[i..]
            .iter()
            .position(|&b| b == b']')
            .ok_or(PathError::Syntax)?;
        if !s[i + 1..i + close].iter().all(|&b| literal_byte(b)) || close == 1 {
            return Err(PathError::Syntax);
        }
        close + 1
    } else {
        let n = s[i..].iter().take_while(|&&b| domain_byte(b)).count();
        if !valid_domain(&s[i..i + n]) {
            return Err(PathError::Syntax);
        }
        n
    };
    i += n;
    if s.get(i) != Some(&b'>') {
        return Err(PathError::Syntax);
    }
    i += 1;
    if local_len > MAX_LOCAL_PART || n > MAX_DOMAIN || i > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let local = String::from_utf8(local).map_err(|_| PathError::Syntax)?;
    let domain = std::str::from_utf8(&s[domain_start..domain_start + n])
        .map_err(|_| PathError::Syntax)?
        .to_string();
    Ok((Some(Mailbox { local, domain }), i))
}

/// A quoted local part at the start of `s`: its unquoted bytes and the length with the
/// quotes. qtextSMTP and quoted-pairSMTP of RFC 5321 4.1.2, plus UTF-8 (RFC 6531).
fn quoted(s: &[u8]) -> Result<(Vec<u8>, usize), PathError> {
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        match s.get(i) {
            Some(b'"') => return Ok((out, i + 1)),
            Some(b'\\') => match s.get(i + 1) {
                Some(&b) if (32..=126).contains(&b) => {
                    out.push(b);
                    i += 2;
                }
                _ => return Err(PathError::Syntax),
            },
            Some(&b) if (32..=126).contains(&b) || b >= 0x80 => {
                out.push(b);
                i += 1;
            }
            _ => return Err(PathError::Syntax),
        }
    }
}

/// atext or '.' (RFC 5322 3.2.3), or a byte of a UTF-8 character (RFC 6531 3.3).
/// Consecutive dots are accepted as Postfix accepts them (old mailers produce them).
fn dot_string_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

/// Letters, digits, '-' and (as Postfix tolerates) '_', or UTF-8 (U-labels).
fn domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b >= 0x80
}

/// dcontent of an address literal: printable ASCII but '[', '\' and ']'.
fn literal_byte(b: u8) -> bool {
    (33..=90).contains(&b) || (94..=126).contains(&b)
}

/// Dot-separated non-empty labels of [`domain_byte`]s.
fn valid_domain(d: &[u8]) -> bool {
    !d.is_empty()
        && d.split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label.iter().all(|&b| domain_byte(b)))
}
