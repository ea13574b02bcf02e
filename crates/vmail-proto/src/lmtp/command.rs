//! Command lines: framing ([`find_line`]) and parsing into a [`Command`] or the reply
//! that refuses it ([`parse_command`]).

use super::path::{parse_path, PathError};
use super::{Mailbox, Reply, Status, MAX_LINE};
use crate::auth::{line_end, strip_line_end};

/// No line end within [`MAX_LINE`] bytes: the line must be discarded up to its LF and
/// answered 500 5.5.2 (what [`super::Session`] does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// The length of the first line of `buf` with its LF: `Ok(None)` while no LF has
/// arrived, [`LineTooLong`] once [`MAX_LINE`] bytes have come without one. Only the
/// first [`MAX_LINE`] bytes are looked at.
pub fn find_line(buf: &[u8]) -> Result<Option<usize>, LineTooLong> {
    line_end(buf, MAX_LINE).map_err(|()| LineTooLong)
}

/// `BODY=` of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// A MAIL command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// The sender; `None` for the null reverse-path `<>` (bounces).
    pub sender: Option<Mailbox>,
    /// `SIZE=`: the client's estimate of the message size (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

/// A command the server accepts (subject to the session's state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `LHLO domain`: the client's name.
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail(MailFrom),
    /// `RCPT TO:<path>`.
    Rcpt(Mailbox),
    Data,
    Rset,
    /// `NOOP [string]`.
    Noop,
    Quit,
    /// `VRFY string`: answered 252.
    Vrfy,
}

fn reply(code: u16, subject: u16, detail: u16, text: &str) -> Reply {
    Reply::syntax(code, subject, detail, text)
}

/// Parses one command line (with or without its line end). `Err` is the reply refusing
/// it; the session goes on.
pub fn parse_command(line: &[u8]) -> Result<Command, Reply> {
    // The limit counts the line end as sent, as find_line() does: CRLF, a bare LF, or
    // (a line given without one) the CRLF it would have needed.
    let with_end = if line.ends_with(b"\n") {
        line.len()
    } else {
        line.len() + 2
    };
    let line = strip_line_end(line);
    if with_end > MAX_LINE {
        return Err(reply(500, 5, 2, "Error: line too long"));
    }
    if line.iter().any(|&b| b < 32 && b != b'\t' || b == 127) {
        return Err(reply(500, 5, 2, "Error: bad character in command"));
    }
    let line = trim_end(line);
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], Some(&line[sp + 1..])),
        None => (line, None),
    };
    let verb = verb.to_ascii_uppercase();
    match (verb.as_slice(), rest) {
        (b"LHLO", Some(domain)) if !domain.is_empty() => match std::str::from_utf8(domain) {
            Ok(d) => Ok(Command::Lhlo(d.to_string())),
            Err(_) => Err(reply(501, 5, 4, "Syntax: LHLO hostname")),
        },
        (b"LHLO", _) => Err(reply(501, 5, 4, "Syntax: LHLO hostname")),
        (b"MAIL", rest) => mail(rest.unwrap_or_default()).map(Command::Mail),
        (b"RCPT", rest) => rcpt(rest.unwrap_or_default()).map(Command::Rcpt),
        (b"DATA", None) => Ok(Command::Data),
        (b"RSET", None) => Ok(Command::Rset),
        (b"QUIT", None) => Ok(Command::Quit),
        (b"DATA" | b"RSET" | b"QUIT", Some(_)) => {
            Err(reply(501, 5, 4, "Error: this command takes no parameters"))
        }
        (b"NOOP", _) => Ok(Command::Noop),
        (b"VRFY", Some(arg)) if !arg.is_empty() => Ok(Command::Vrfy),
        (b"VRFY", _) => Err(reply(501, 5, 4, "Syntax: VRFY address")),
        (b"HELO" | b"EHLO", _) => Err(reply(500, 5, 1, "Error: this is LMTP, send LHLO")),
        (b"BDAT" | b"STARTTLS" | b"AUTH" | b"EXPN" | b"HELP" | b"ETRN" | b"TURN", _) => {
            Err(reply(502, 5, 1, "Error: command not implemented"))
        }
        _ => Err(reply(500, 5, 1, "Error: command not recognized")),
    }
}

/// Trailing blanks are dropped, as Postfix's smtpd drops them: some clients add them.
fn trim_end(mut s: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', head)) = s.split_last() {
        s = head;
    }
    s
}

/// `prefix` (case-insensitive) and the path after it, with blanks after the colon
/// tolerated as Postfix's smtpd does; returns the path and what follows it.
fn path_after<'a>(
    rest: &'a [u8],
    prefix: &[u8],
    address_status: u16,
) -> Result<(Option<Mailbox>, &'a [u8]), Reply> {
    let usage = if prefix == b"FROM:" {
        "Syntax: MAIL FROM:<address>"
    } else {
        "Syntax: RCPT TO:<address>"
    };
    if rest.len() < prefix.len() || !rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return Err(reply(501, 5, 4, usage));
    }
    let mut s = &rest[prefix.len()..];
    while let Some((b' ', tail)) = s.split_first() {
        s = tail;
    }
    if s.first() != Some(&b'<') {
        return Err(reply(501, 5, 4, usage));
    }
    match parse_path(s) {
        Ok((mailbox, n)) => Ok((mailbox, &s[n..])),
        Err(PathError::Syntax) => Err(reply(501, 1, address_status, "Bad address syntax")),
        Err(PathError::TooLong) => Err(reply(501, 1, address_status, "Path too long")),
    }
}

/// The `SP keyword[=value]` parameters after a path.
/// A `keyword[=value]` parameter.
type Param<'a> = (&'a [u8], Option<&'a [u8]>);

fn params(s: &[u8]) -> Result<Vec<Param<'_>>, Reply> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some((b' ', s)) = s.split_first() else {
        return Err(reply(501, 5, 4, "Error: garbage after the address"));
    };
    let mut out = Vec::new();
    for field in s.split(|&b| b == b' ').filter(|f| !f.is_empty()) {
        let (key, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], Some(&field[eq + 1..])),
            None => (field, None),
        };
        if out
            .iter()
            .any(|(k, _): &Param<'_>| k.eq_ignore_ascii_case(key))
        {
            return Err(reply(501, 5, 4, "Error: repeated parameter"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn unknown_param() -> Reply {
    Reply::new(
        555,
        Some(Status::new(5, 5, 4)),
        "Error: unsupported parameter",
    )
}

fn mail(rest: &[u8]) -> Result<MailFrom, Reply> {
    let (sender, tail) = path_after(rest, b"FROM:", 7)?;
    let mut mail = MailFrom {
        sender,
        size: None,
        body: None,
        smtputf8: false,
    };
    for (key, value) in params(tail)? {
        let key = key.to_ascii_uppercase();
        match (key.as_slice(), value) {
            (b"SIZE", Some(v)) => {
                let digits = !v.is_empty() && v.len() <= 20 && v.iter().all(u8::is_ascii_digit);
                let n = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
                match n {
                    Some(n) if digits => mail.size = Some(n),
                    _ => return Err(reply(501, 5, 4, "Error: bad SIZE value")),
                }
            }
            (b"BODY", Some(v)) if v.eq_ignore_ascii_case(b"7BIT") => {
                mail.body = Some(Body::SevenBit)
            }
            (b"BODY", Some(v)) if v.eq_ignore_ascii_case(b"8BITMIME") => {
                mail.body = Some(Body::EightBitMime)
            }
            (b"SMTPUTF8", None) => mail.smtputf8 = true,
            _ => return Err(unknown_param()),
        }
    }
    Ok(mail)
}

fn rcpt(rest: &[u8]) -> Result<Mailbox, Reply> {
    let (mailbox, tail) = path_after(rest, b"TO:", 3)?;
    let Some(mailbox) = mailbox else {
        return Err(reply(501, 1, 3, "Bad recipient address syntax"));
    };
    if !params(tail)?.is_empty() {
        return Err(unknown_param());
    }
    Ok(mailbox)
}
