//! The Postfix tcp_table protocol: one request line `get SP key LF`, one reply line
//! `200 SP data LF` (found), `500 SP text LF` (not found) or `400 SP text LF` (try
//! again later), with parameters %XX-encoded.
//!
//! Sources: `man 5 tcp_table` (Postfix 3.7), Postfix's client `src/util/dict_tcp.c`
//! and its codec `src/util/hex_quote.c`:
//! - `hex_quote()` encodes '%', whitespace and every byte that is not printable ASCII
//!   (so 0x00-0x20, 0x25 and 0x7f-0xff) as `%XX` with upper-case hex; [`encode_param`]
//!   does exactly that. `hex_unquote()` accepts either case and fails on a '%' not
//!   followed by two hex digits; other bytes pass through raw. [`decode_param`] does
//!   the same, failing on `%G1` or a truncated `%4`.
//! - `dict_tcp_lookup()` reads at most 4096 bytes (`DICT_TCP_MAXLEN`) of reply line
//!   including the newline, requires three digits and a space, then `hex_unquote()`s
//!   the *whole* rest of the line whatever the status, and calls the reply malformed
//!   (and defers) if that fails. So the text of `400` and `500` replies is encoded too,
//!   not just `200` data: a literal "100%" in a not-found text would defer mail.
//!
//! Decisions:
//! - A `put` request (described in old `dict_tcp.c` comments, never sent by Postfix,
//!   "Only the lookup method is currently implemented" in the man page) parses as
//!   [`TcpRequest::Put`]; the server answers it with `500` "not supported". 5xx is the
//!   permanent class: retrying the same update will not make it work.
//! - A malformed request line (unknown command, bad `%XX`, wrong parameter count) is a
//!   [`TcpTableError`], but the line framing is intact: the server answers `400`, never
//!   `500`, because Postfix reads `500` as "no such entry" and might bounce mail on it.
//! - A `get` key that [`crate::lookup_key`] rejects (empty, not UTF-8, NUL) is answered
//!   `500`, as Postfix's own UTF-8 check does (see there).
//! - A found value that cannot be sent intact becomes `400`, never a truncated `200`:
//!   an encoded line over [`MAX_REPLY_LINE`] (Postfix would drop it as "text longer
//!   than 4096") or data with NUL (Postfix reads the decoded value as a C string).
//! - One trailing CR before the LF is ignored in requests, so the protocol can be tried
//!   by hand with telnet; Postfix never sends one (it would arrive as `%0D`).

use thiserror::Error;

use crate::{sanitize_reason, snippet};

/// Longest request line we accept, LF included. Postfix imposes no limit of its own;
/// keys are addresses or domains, and even fully %XX-encoded (three bytes per byte) a
/// 30 kB key fits.
pub const MAX_REQUEST_LINE: usize = 100_000;

/// Longest reply line Postfix accepts, LF included: `DICT_TCP_MAXLEN` in `dict_tcp.c`,
/// "no longer than 4096 characters including the newline terminator" in the man page.
pub const MAX_REPLY_LINE: usize = 4096;

/// Reasons are for Postfix's log; keep them short (they grow up to threefold when
/// encoded, and must leave the reply well under [`MAX_REPLY_LINE`]).
const REASON_MAX: usize = 200;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpRequest {
    /// `get SP key`: look up the (decoded) key.
    Get(Vec<u8>),
    /// `put SP key SP value`: not supported; answer [`TcpReply::NotFound`] with a reason.
    Put { key: Vec<u8>, value: Vec<u8> },
}

/// A reply. Texts are descriptive and made protocol-safe by the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpReply {
    /// `200`: found, with the table value.
    Ok(String),
    /// `500`: not found (or request not supported); the text is only logged.
    NotFound(String),
    /// `400`: temporary error; Postfix defers.
    Temp(String),
}

/// Why a tcp_table line is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TcpTableError {
    /// No LF within the first `max` bytes. The stream cannot be resynchronised.
    #[error("tcp_table line has no newline within {max} bytes")]
    LineTooLong { max: usize },
    /// An empty request line.
    #[error("empty tcp_table request")]
    EmptyRequest,
    /// A command other than `get` or `put`.
    #[error("unknown tcp_table command \"{0}\"")]
    UnknownCommand(String),
    /// `get` without exactly one parameter, `put` without exactly two.
    #[error("tcp_table {command} request needs {expected} parameter(s), got {got}")]
    WrongParamCount {
        command: &'static str,
        expected: usize,
        got: usize,
    },
    /// A '%' not followed by two hex digits.
    #[error("invalid %XX escape at offset {offset} in \"{input}\"")]
    BadEscape { offset: usize, input: String },
    /// A reply that Postfix's client would call malformed.
    #[error("malformed tcp_table reply \"{0}\"")]
    MalformedReply(String),
}

/// Finds the end of the first line in `buf`. Returns the number of bytes the line takes,
/// LF included (pass `&buf[..n]` to [`parse_request`], then drop `n` bytes); `Ok(None)`
/// if there is no LF yet; an error once `max` bytes have arrived without one.
pub fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, TcpTableError> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => Ok(Some(lf + 1)),
        None if buf.len() >= max => Err(TcpTableError::LineTooLong { max }),
        None => Ok(None),
    }
}

/// Parses one request line (with or without its LF).
pub fn parse_request(line: &[u8]) -> Result<TcpRequest, TcpTableError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(TcpTableError::EmptyRequest);
    }
    // Postfix separates with exactly one space and encodes every space inside a
    // parameter, so splitting on each space is unambiguous.
    let mut fields = line.split(|&b| b == b' ');
    let command = fields.next().unwrap_or_default();
    let params: Vec<&[u8]> = fields.collect();
    let expect = |name: &'static str, n: usize| {
        if params.len() == n {
            Ok(())
        } else {
            Err(TcpTableError::WrongParamCount {
                command: name,
                expected: n,
                got: params.len(),
            })
        }
    };
    if command.eq_ignore_ascii_case(b"get") {
        expect("get", 1)?;
        Ok(TcpRequest::Get(decode_param(params[0])?))
    } else if command.eq_ignore_ascii_case(b"put") {
        expect("put", 2)?;
        Ok(TcpRequest::Put {
            key: decode_param(params[0])?,
            value: decode_param(params[1])?,
        })
    } else {
        Err(TcpTableError::UnknownCommand(snippet(command)))
    }
}

/// Appends `req` as a request line, as Postfix's client sends it. For tests and test
/// clients.
pub fn encode_request(req: &TcpRequest, out: &mut Vec<u8>) {
    match req {
        TcpRequest::Get(key) => {
            out.extend_from_slice(b"get ");
            encode_param(key, out);
        }
        TcpRequest::Put { key, value } => {
            out.extend_from_slice(b"put ");
            encode_param(key, out);
            out.push(b' ');
            encode_param(value, out);
        }
    }
    out.push(b'\n');
}

/// Appends `reply` as one reply line. Never produces something Postfix would misread:
/// a found value that does not fit in [`MAX_REPLY_LINE`] or contains NUL turns into a
/// `400` (see the module documentation); texts are cut to 200 printable ASCII bytes.
pub fn encode_reply(reply: &TcpReply, out: &mut Vec<u8>) {
    match reply {
        TcpReply::Ok(data) => match ok_line(data) {
            Ok(line) => out.extend_from_slice(&line),
            Err(reason) => status_line("400", &reason, out),
        },
        TcpReply::NotFound(text) => status_line("500", text, out),
        TcpReply::Temp(text) => status_line("400", text, out),
    }
}

fn ok_line(data: &str) -> Result<Vec<u8>, String> {
    if data.contains('\0') {
        return Err("lookup result contains a NUL byte".to_owned());
    }
    let mut line = Vec::with_capacity(data.len() + 5);
    line.extend_from_slice(b"200 ");
    encode_param(data.as_bytes(), &mut line);
    line.push(b'\n');
    if line.len() > MAX_REPLY_LINE {
        return Err(format!(
            "lookup result of {} bytes ({} encoded) exceeds the tcp_table reply limit of \
             {MAX_REPLY_LINE} bytes",
            data.len(),
            line.len()
        ));
    }
    Ok(line)
}

fn status_line(code: &str, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(code.as_bytes());
    out.push(b' ');
    encode_param(sanitize_reason(text, REASON_MAX).as_bytes(), out);
    out.push(b'\n');
}

/// Parses a reply line (with or without its LF) the way Postfix's `dict_tcp_lookup()`
/// does: three digits, a space, then the %XX-encoded text; the first digit decides.
/// For tests and test clients.
pub fn parse_reply(line: &[u8]) -> Result<TcpReply, TcpTableError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let malformed = || TcpTableError::MalformedReply(snippet(line));
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) || line[3] != b' ' {
        return Err(malformed());
    }
    let text = decode_param(&line[4..]).map_err(|_| malformed())?;
    let text = String::from_utf8(text).map_err(|_| malformed())?;
    match line[0] {
        b'2' => Ok(TcpReply::Ok(text)),
        b'4' => Ok(TcpReply::Temp(text)),
        b'5' => Ok(TcpReply::NotFound(text)),
        _ => Err(malformed()),
    }
}

/// Appends `raw` %XX-encoded as Postfix's `hex_quote()` does: '%', whitespace, control
/// bytes and everything outside printable ASCII (bytes <= 0x20, 0x25, >= 0x7f).
pub fn encode_param(raw: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw {
        if b == b'%' || !b.is_ascii_graphic() {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// Decodes %XX escapes (hex digits in any case) as Postfix's `hex_unquote()` does; other
/// bytes are taken as they are. A '%' without two hex digits after it is an error.
pub fn decode_param(encoded: &[u8]) -> Result<Vec<u8>, TcpTableError> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hi = encoded.get(i + 1).and_then(|&h| hex_value(h));
        let lo = encoded.get(i + 2).and_then(|&l| hex_value(l));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(TcpTableError::BadEscape {
                offset: i,
                input: snippet(&encoded[i..]),
            });
        };
        out.push(hi << 4 | lo);
        i += 3;
    }
    Ok(out)
}

fn hex_value(h: u8) -> Option<u8> {
    match h {
        b'0'..=b'9' => Some(h - b'0'),
        b'a'..=b'f' => Some(h - b'a' + 10),
        b'A'..=b'F' => Some(h - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
