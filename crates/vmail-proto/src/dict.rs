//! The Dovecot dict proxy protocol, server side, as Dovecot's `passdb/userdb driver =
//! dict` with `uri = proxy:<socket>:<name>` uses it: a hello, then lookups (`L`) and
//! user iterations (`I`), each answered with one line or, for iterations, rows and an
//! empty line.
//!
//! Sources: `AuthDatabase.Dict.txt` and `Dictionary.txt` (Dovecot wiki); Dovecot 2.3's
//! client `src/lib-dict/dict-client.c` and `dict-client.h` (reply letters, how replies
//! are split and what ends an iteration), its server `src/dict/dict-commands.c` (what a
//! real dict server writes), `src/lib-dict/dict.h` (iterate flags, value types),
//! `src/lib/strescape.c` (escaping); and the transcript captured from Dovecot 2.3.19 in
//! `docs/protocols.md`:
//! ```text
//! C: H3 2 0 <empty user> auth               hello (TAB-separated)
//! C: Lshared/passdb/alice@example.test alice@example.test
//! S: O{"password":"{PLAIN}secret"}
//! C: I0 0 shared/userdb/ *
//! S: Oshared/userdb/alice@example.test {}
//! S: <empty line>
//! ```
//!
//! Decisions:
//! - Lines: at most [`MAX_LINE`] bytes including the LF, checked before anything is
//!   copied (Dovecot's `DICT_CLIENT_MAX_LINE_LENGTH`, 64 KiB). One CR before the LF is
//!   dropped, as `i_stream_next_line()` does. A raw NUL is an error (Dovecot's client
//!   writes C strings, so it never sends one).
//! - Every field is tab-unescaped ([`crate::auth::tab_unescape`]); the command letter is
//!   the first byte of the line. `L` carries the key and, from Dovecot 2.3.17 on (major
//!   version 3), the username; `I` carries flags, row limit, path and the username.
//!   The username is optional so older clients parse too; further fields are ignored
//!   (Dovecot's server ignores extra fields as well), an `I` with fewer than three fields
//!   is an error (`cmd_iterate()`: "ITERATE: broken input"). Numbers are ASCII digits
//!   only, as `str_to_uint()`/`str_to_uint64()`.
//! - No version check here: the hello's major version is 2 up to Dovecot 2.3.16 and 3
//!   afterwards (the transcript); the server decides what it accepts.
//! - Commands other than `H`, `L`, `I` parse as [`Request::Unsupported`]. Dovecot's own
//!   server closes the connection on unknown commands, and transaction commands (`B`,
//!   `S`, `U`, `A`, `R`, `T`) get no reply at all in the protocol, so answering them with
//!   a line would shift every later reply; only the commits `C`/`D` expect one. The
//!   auth process never sends any of them. The safe answer is to close the connection.
//! - Replies: `O<value>` found, `N` not found, `F<reason>` failure. The client reads the
//!   first byte of the first (unescaped) field as the reply letter
//!   (`dict_cmd_callback_line()`). A backend failure must be `F` (Dovecot reports a
//!   temporary failure), never `N` (Dovecot answers "user unknown"). Iteration rows are
//!   `O<key>TAB<value>` (the TAB is required even for an empty value, or the client
//!   calls the reply broken), and the iteration ends with an empty line: the client's
//!   split yields no field, which it reads as `DICT_PROTOCOL_REPLY_ITER_FINISHED`
//!   (`'\0'`), exactly what Dovecot's `dict-commands.c` sends. A failed iteration ends
//!   with `F<reason>` instead.
//! - We never send async ids (`*`/`+` lines) or timing fields: the client matches plain
//!   replies to its oldest pending command, and timings are optional.
//! - Reasons in `F` lines are cut to 200 bytes of printable ASCII (Dovecot logs them).
//!   Values and keys are sent whole; Dovecot's client reads lines of any length.

use thiserror::Error;

use crate::auth::{line_end, parse_decimal, strip_line_end, tab_escape, tab_unescape};
use crate::{sanitize_reason, snippet};

/// Longest request line accepted, LF included (`DICT_CLIENT_MAX_LINE_LENGTH`).
pub const MAX_LINE: usize = 64 * 1024;

/// Prefix of keys shared by all users; the auth process uses only these.
pub const SHARED_PREFIX: &[u8] = b"shared/";

/// Prefix of per-user keys (`priv/`), which need the request's username.
pub const PRIVATE_PREFIX: &[u8] = b"priv/";

/// Iterate flag: return keys below the path recursively (`DICT_ITERATE_FLAG_RECURSE`).
pub const ITERATE_RECURSE: u32 = 0x01;
/// Iterate flag: rows without values (`DICT_ITERATE_FLAG_NO_VALUE`); send `O<key>TAB`.
pub const ITERATE_NO_VALUE: u32 = 0x08;
/// Iterate flag: the path is a whole key, not a prefix (`DICT_ITERATE_FLAG_EXACT_KEY`).
pub const ITERATE_EXACT_KEY: u32 = 0x10;

/// Hello value type: strings (`DICT_DATA_TYPE_STRING`), what the auth process asks for.
pub const VALUE_TYPE_STRING: u32 = 0;
/// Hello value type: unsigned 32-bit numbers (`DICT_DATA_TYPE_UINT32`).
pub const VALUE_TYPE_UINT32: u32 = 1;

/// Longest reason we put into an `F` line.
const REASON_MAX: usize = 200;

/// The client's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol major version: 2 (Dovecot 2.3.0-2.3.16) or 3 (2.3.17 and later).
    pub major: u32,
    /// Protocol minor version. Up to 2 it only enables optional reply features we do not
    /// use.
    pub minor: u32,
    /// [`VALUE_TYPE_STRING`] or [`VALUE_TYPE_UINT32`] (others are possible on the wire).
    pub value_type: u32,
    /// Default username for `priv/` keys (empty for the auth process).
    pub user: Vec<u8>,
    /// The dict name from `uri = proxy:<socket>:<name>`.
    pub dict_name: Vec<u8>,
}

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `H<major>TAB<minor>TAB<value type>TAB<user>TAB<dict name>`.
    Hello(Hello),
    /// `L<key>[TAB<user>]`: look one key up (with its `shared/` or `priv/` prefix).
    Lookup { key: Vec<u8>, user: Option<Vec<u8>> },
    /// `I<flags>TAB<max rows>TAB<path>[TAB<user>]`: list keys under `path` (0 rows =
    /// no limit).
    Iterate {
        flags: u32,
        max_rows: u64,
        path: Vec<u8>,
        user: Option<Vec<u8>>,
    },
    /// Any other command, by its first byte (as a Latin-1 char). See the module
    /// documentation: close the connection.
    Unsupported(char),
}

impl Request {
    /// For a lookup, the key without its `shared/` prefix; `None` for other requests and
    /// for keys outside `shared/` (which the auth process never asks for).
    pub fn shared_key(&self) -> Option<&[u8]> {
        match self {
            Request::Lookup { key, .. } => key.strip_prefix(SHARED_PREFIX),
            _ => None,
        }
    }
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Lookup found: `O<value>`.
    Found(Vec<u8>),
    /// Lookup found nothing: `N`. Only for a definite "no such key".
    NotFound,
    /// Lookup or iteration failed: `F<reason>`. Dovecot treats it as temporary.
    Failed(String),
    /// One iteration row: `O<key>TAB<value>`.
    Row { key: Vec<u8>, value: Vec<u8> },
    /// End of a successful iteration: an empty line.
    EndOfRows,
}

/// Why a dict line is unacceptable. After a request error the server should close the
/// connection: Dovecot's own server does, and the client then fails its pending
/// commands instead of waiting.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DictError {
    /// No LF within [`MAX_LINE`] bytes.
    #[error("dict line too long: no newline within {max} bytes")]
    LineTooLong { max: usize },
    /// An empty request line.
    #[error("empty dict request")]
    EmptyLine,
    /// A raw NUL byte in the line.
    #[error("dict line contains a NUL byte")]
    Nul,
    /// A command with too few fields.
    #[error("malformed dict {command} line: {what}")]
    Malformed {
        command: &'static str,
        what: &'static str,
    },
    /// A number field that is not a decimal in range.
    #[error("dict {command} {field} is not a valid number: \"{input}\"")]
    BadNumber {
        command: &'static str,
        field: &'static str,
        input: String,
    },
    /// A reply line a Dovecot dict client could not use (from the reply parsers).
    #[error("malformed dict reply \"{0}\"")]
    MalformedReply(String),
}

/// Finds the end of the first line in `buf`: the bytes it takes, LF included;
/// `Ok(None)` while there is no LF; [`DictError::LineTooLong`] once [`MAX_LINE`] bytes
/// have arrived without one (close the connection).
pub fn find_line(buf: &[u8]) -> Result<Option<usize>, DictError> {
    line_end(buf, MAX_LINE).map_err(|()| DictError::LineTooLong { max: MAX_LINE })
}

/// Parses one request line (with or without its LF; at most [`MAX_LINE`] bytes).
pub fn parse_request(line: &[u8]) -> Result<Request, DictError> {
    if line.len() > MAX_LINE {
        return Err(DictError::LineTooLong { max: MAX_LINE });
    }
    let line = strip_line_end(line);
    let Some((&command, args)) = line.split_first() else {
        return Err(DictError::EmptyLine);
    };
    if line.contains(&0) {
        return Err(DictError::Nul);
    }
    let fields: Vec<Vec<u8>> = args.split(|&b| b == b'\t').map(tab_unescape).collect();
    match command {
        b'H' => {
            let [major, minor, value_type, user, dict_name, ..] = &fields[..] else {
                return Err(DictError::Malformed {
                    command: "hello",
                    what: "expected major, minor, value type, user and dict name",
                });
            };
            Ok(Request::Hello(Hello {
                major: number("hello", "major version", major)?,
                minor: number("hello", "minor version", minor)?,
                value_type: number("hello", "value type", value_type)?,
                user: user.clone(),
                dict_name: dict_name.clone(),
            }))
        }
        b'L' => {
            let mut fields = fields.into_iter();
            Ok(Request::Lookup {
                key: fields.next().unwrap_or_default(),
                user: fields.next(),
            })
        }
        b'I' => {
            let mut fields = fields.into_iter();
            let (Some(flags), Some(max_rows), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(DictError::Malformed {
                    command: "iterate",
                    what: "expected flags, max rows and path",
                });
            };
            Ok(Request::Iterate {
                flags: number("iterate", "flags", &flags)?,
                max_rows: parse_decimal(&max_rows).ok_or_else(|| DictError::BadNumber {
                    command: "iterate",
                    field: "max rows",
                    input: snippet(&max_rows),
                })?,
                path,
                user: fields.next(),
            })
        }
        other => Ok(Request::Unsupported(char::from(other))),
    }
}

fn number(command: &'static str, field: &'static str, input: &[u8]) -> Result<u32, DictError> {
    parse_decimal(input)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| DictError::BadNumber {
            command,
            field,
            input: snippet(input),
        })
}

/// Appends `reply` as one line, escaped. Reasons are cut to 200 bytes of printable
/// ASCII.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Found(value) => {
            out.push(b'O');
            tab_escape(value, out);
        }
        Reply::NotFound => out.push(b'N'),
        Reply::Failed(reason) => {
            out.push(b'F');
            tab_escape(sanitize_reason(reason, REASON_MAX).as_bytes(), out);
        }
        Reply::Row { key, value } => {
            out.push(b'O');
            tab_escape(key, out);
            out.push(b'\t');
            tab_escape(value, out);
        }
        Reply::EndOfRows => {}
    }
    out.push(b'\n');
}

/// Appends `req` as a request line, the way Dovecot's client writes it (for tests and
/// test clients). `Unsupported(c)` writes just the letter (as UTF-8).
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    fn field(out: &mut Vec<u8>, value: &[u8]) {
        out.push(b'\t');
        tab_escape(value, out);
    }
    match req {
        Request::Hello(h) => {
            out.extend_from_slice(
                format!("H{}\t{}\t{}", h.major, h.minor, h.value_type).as_bytes(),
            );
            field(out, &h.user);
            field(out, &h.dict_name);
        }
        Request::Lookup { key, user } => {
            out.push(b'L');
            tab_escape(key, out);
            if let Some(user) = user {
                field(out, user);
            }
        }
        Request::Iterate {
            flags,
            max_rows,
            path,
            user,
        } => {
            out.extend_from_slice(format!("I{flags}\t{max_rows}").as_bytes());
            field(out, path);
            if let Some(user) = user {
                field(out, user);
            }
        }
        Request::Unsupported(c) => {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out.push(b'\n');
}

/// Parses a reply to a lookup as Dovecot's client reads it: `O<value>` (extra fields,
/// such as timings, ignored), `N`, `F<reason>`. For tests and test clients.
pub fn parse_lookup_reply(line: &[u8]) -> Result<Reply, DictError> {
    let line = strip_line_end(line);
    let malformed = || DictError::MalformedReply(snippet(line));
    let first = line.split(|&b| b == b'\t').next().unwrap_or_default();
    let first = tab_unescape(first);
    match first.split_first() {
        Some((b'O', value)) => Ok(Reply::Found(value.to_vec())),
        Some((b'N', _)) => Ok(Reply::NotFound),
        Some((b'F', reason)) => Ok(Reply::Failed(String::from_utf8_lossy(reason).into_owned())),
        _ => Err(malformed()),
    }
}

/// Parses one line of an iteration reply as Dovecot's client reads it: an empty line
/// (or one whose first field is empty) ends it, `O<key>TAB<value>` is a row (the value
/// field is required), `F<reason>` is a failure. For tests and test clients.
pub fn parse_iterate_reply(line: &[u8]) -> Result<Reply, DictError> {
    let line = strip_line_end(line);
    let malformed = || DictError::MalformedReply(snippet(line));
    let mut fields = line.split(|&b| b == b'\t').map(tab_unescape);
    let first = fields.next().unwrap_or_default();
    match first.split_first() {
        None => Ok(Reply::EndOfRows),
        Some((b'O', key)) => Ok(Reply::Row {
            key: key.to_vec(),
            value: fields.next().ok_or_else(malformed)?,
        }),
        Some((b'F', reason)) => Ok(Reply::Failed(String::from_utf8_lossy(reason).into_owned())),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests;
