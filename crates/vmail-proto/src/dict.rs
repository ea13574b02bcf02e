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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply_bytes(reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(reply, &mut out);
        out
    }

    #[test]
    fn parses_the_captured_transcript() {
        assert_eq!(
            parse_request(b"H3\t2\t0\t\tauth\n"),
            Ok(Request::Hello(Hello {
                major: 3,
                minor: 2,
                value_type: VALUE_TYPE_STRING,
                user: Vec::new(),
                dict_name: b"auth".to_vec(),
            }))
        );
        let req =
            parse_request(b"Lshared/passdb/alice@example.test\talice@example.test\n").unwrap();
        assert_eq!(
            req,
            Request::Lookup {
                key: b"shared/passdb/alice@example.test".to_vec(),
                user: Some(b"alice@example.test".to_vec()),
            }
        );
        assert_eq!(req.shared_key(), Some(&b"passdb/alice@example.test"[..]));
        assert_eq!(
            parse_request(b"I0\t0\tshared/userdb/\t*\n"),
            Ok(Request::Iterate {
                flags: 0,
                max_rows: 0,
                path: b"shared/userdb/".to_vec(),
                user: Some(b"*".to_vec()),
            })
        );
    }

    #[test]
    fn encodes_the_captured_replies() {
        assert_eq!(
            reply_bytes(&Reply::Found(br#"{"password":"{PLAIN}secret"}"#.to_vec())),
            b"O{\"password\":\"{PLAIN}secret\"}\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Row {
                key: b"shared/userdb/alice@example.test".to_vec(),
                value: b"{}".to_vec()
            }),
            b"Oshared/userdb/alice@example.test\t{}\n"
        );
        assert_eq!(reply_bytes(&Reply::EndOfRows), b"\n");
        assert_eq!(reply_bytes(&Reply::NotFound), b"N\n");
        assert_eq!(reply_bytes(&Reply::Failed("db down".into())), b"Fdb down\n");
        assert_eq!(
            reply_bytes(&Reply::Row {
                key: b"k".to_vec(),
                value: Vec::new()
            }),
            b"Ok\t\n",
            "the TAB stays for an empty value"
        );
    }

    #[test]
    fn lookup_variants() {
        // Pre-2.3.17 clients send no username.
        let req = parse_request(b"Lshared/userdb/a@b").unwrap();
        assert_eq!(
            req,
            Request::Lookup {
                key: b"shared/userdb/a@b".to_vec(),
                user: None
            }
        );
        let req = parse_request(b"Lpriv/quota\tu").unwrap();
        assert_eq!(req.shared_key(), None);
        assert_eq!(
            parse_request(b"L"),
            Ok(Request::Lookup {
                key: Vec::new(),
                user: None
            })
        );
        // Escaped key, extra fields ignored, CRLF accepted, non-UTF-8 kept.
        assert_eq!(
            parse_request(b"Lshared/x\x01ty\x011\x01n\tu\xff\textra\r\n"),
            Ok(Request::Lookup {
                key: b"shared/x\ty\x01\n".to_vec(),
                user: Some(b"u\xff".to_vec())
            })
        );
        assert_eq!(
            parse_request(b"Lshared/a\x010b"),
            Ok(Request::Lookup {
                key: b"shared/a\0b".to_vec(),
                user: None
            })
        );
        assert_eq!(
            parse_request(b"Iabc\t0\tshared/"),
            Err(DictError::BadNumber {
                command: "iterate",
                field: "flags",
                input: "abc".into()
            })
        );
    }

    #[test]
    fn iterate_variants() {
        assert_eq!(
            parse_request(b"I9\t18446744073709551615\tshared/userdb/"),
            Ok(Request::Iterate {
                flags: ITERATE_RECURSE | ITERATE_NO_VALUE,
                max_rows: u64::MAX,
                path: b"shared/userdb/".to_vec(),
                user: None
            })
        );
        for line in [&b"I0\t0"[..], b"I0", b"I"] {
            assert!(
                matches!(parse_request(line), Err(DictError::Malformed { .. })),
                "{line:?}"
            );
        }
        for line in [
            &b"I0\t18446744073709551616\tp"[..],
            b"I4294967296\t0\tp",
            b"I-1\t0\tp",
            b"I\t0\tp",
            b"I0\t 1\tp",
        ] {
            assert!(
                matches!(parse_request(line), Err(DictError::BadNumber { .. })),
                "{line:?}"
            );
        }
    }

    #[test]
    fn hello_variants() {
        assert_eq!(
            parse_request(b"H2\t1\t1\tuser\x01t1\tquota\textra"),
            Ok(Request::Hello(Hello {
                major: 2,
                minor: 1,
                value_type: VALUE_TYPE_UINT32,
                user: b"user\t1".to_vec(),
                dict_name: b"quota".to_vec(),
            }))
        );
        assert!(matches!(
            parse_request(b"H3\t2\t0\t"),
            Err(DictError::Malformed { .. })
        ));
        assert!(matches!(
            parse_request(b"Hx\t2\t0\t\tauth"),
            Err(DictError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_request(b"H\t2\t0\t\tauth"),
            Err(DictError::BadNumber { .. })
        ));
    }

    #[test]
    fn other_commands_are_unsupported() {
        for (line, c) in [
            (&b"B1"[..], 'B'),
            (b"C1", 'C'),
            (b"S1\tk\tv", 'S'),
            (b"U1\tk", 'U'),
            (b"A1\tk\t1", 'A'),
            (b"R1", 'R'),
            (b"x", 'x'),
            (b"\xe9", '\u{e9}'),
            (b"\t", '\t'),
        ] {
            assert_eq!(parse_request(line), Ok(Request::Unsupported(c)), "{line:?}");
        }
    }

    #[test]
    fn framing_errors() {
        assert_eq!(parse_request(b""), Err(DictError::EmptyLine));
        assert_eq!(parse_request(b"\n"), Err(DictError::EmptyLine));
        assert_eq!(parse_request(b"\r\n"), Err(DictError::EmptyLine));
        assert_eq!(parse_request(b"Lshared/a\0b"), Err(DictError::Nul));
        assert_eq!(find_line(b""), Ok(None));
        assert_eq!(find_line(b"Lshared/a"), Ok(None));
        assert_eq!(find_line(b"N\nO"), Ok(Some(2)));
        let mut line = vec![b'L'; MAX_LINE - 1];
        line.push(b'\n');
        assert_eq!(find_line(&line), Ok(Some(MAX_LINE)));
        assert!(parse_request(&line).is_ok());
        let long = vec![b'L'; MAX_LINE];
        assert_eq!(
            find_line(&long),
            Err(DictError::LineTooLong { max: MAX_LINE })
        );
        let mut longer = long.clone();
        longer.push(b'\n');
        assert_eq!(
            parse_request(&longer),
            Err(DictError::LineTooLong { max: MAX_LINE })
        );
        let line = b"Lshared/passdb/a@b\ta@b\n";
        for cut in 0..line.len() {
            assert_eq!(find_line(&line[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn errors_quote_little() {
        let mut line = b"I".to_vec();
        line.extend(std::iter::repeat_n(b'9', 60_000));
        line.extend_from_slice(b"\t0\tp");
        let msg = parse_request(&line).unwrap_err().to_string();
        assert!(msg.len() < 200, "{}", msg.len());
    }

    #[test]
    fn escaping_in_replies() {
        let bytes = reply_bytes(&Reply::Found(b"a\tb\nc\x01d\re\0".to_vec()));
        assert_eq!(bytes, b"Oa\x01tb\x01nc\x011d\x01re\x010\n");
        assert_eq!(
            parse_lookup_reply(&bytes),
            Ok(Reply::Found(b"a\tb\nc\x01d\re\0".to_vec()))
        );
        let bytes = reply_bytes(&Reply::Failed("broken\tpipe\nF".into()));
        assert_eq!(bytes, b"Fbroken?pipe?F\n");
        let long = reply_bytes(&Reply::Failed("x".repeat(10_000)));
        assert_eq!(long.len(), 1 + REASON_MAX + 1);
        let row = Reply::Row {
            key: b"shared/userdb/\t\x01".to_vec(),
            value: b"{\"home\":\"/a\tb\"}".to_vec(),
        };
        let bytes = reply_bytes(&row);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\t').count(), 1);
        assert_eq!(parse_iterate_reply(&bytes), Ok(row));
    }

    #[test]
    fn reply_parsers_read_like_dovecot() {
        // Dovecot servers append timings; the client ignores them.
        assert_eq!(
            parse_lookup_reply(b"Ovalue\t1\t2\t3\t4\n"),
            Ok(Reply::Found(b"value".to_vec()))
        );
        assert_eq!(parse_lookup_reply(b"N\n"), Ok(Reply::NotFound));
        assert_eq!(parse_lookup_reply(b"F"), Ok(Reply::Failed(String::new())));
        assert!(parse_lookup_reply(b"").is_err());
        assert!(parse_lookup_reply(b"X").is_err());
        assert_eq!(parse_iterate_reply(b"\n"), Ok(Reply::EndOfRows));
        assert_eq!(parse_iterate_reply(b"\t1\t2\t3\t4\n"), Ok(Reply::EndOfRows));
        assert!(
            parse_iterate_reply(b"Okey-without-value\n").is_err(),
            "Dovecot: broken iterate reply"
        );
        assert_eq!(
            parse_iterate_reply(b"Fdb\n"),
            Ok(Reply::Failed("db".into()))
        );
        // The wrong letter makes Dovecot report "User listing returned failure".
        assert!(parse_iterate_reply(b"Nshared/userdb/a\t{}").is_err());
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn requests_round_trip(key in arb_bytes(128), user in proptest::option::of(arb_bytes(32)),
                               flags in any::<u32>(), max_rows in any::<u64>(),
                               major in any::<u32>(), minor in any::<u32>(), vt in any::<u32>(),
                               huser in arb_bytes(16), name in arb_bytes(16)) {
            for req in [
                Request::Lookup { key: key.clone(), user: user.clone() },
                Request::Iterate { flags, max_rows, path: key.clone(), user: user.clone() },
                Request::Hello(Hello { major, minor, value_type: vt, user: huser.clone(),
                                       dict_name: name.clone() }),
            ] {
                let mut line = Vec::new();
                encode_request(&req, &mut line);
                prop_assert_eq!(find_line(&line), Ok(Some(line.len())));
                prop_assert_eq!(parse_request(&line), Ok(req));
            }
        }

        #[test]
        fn replies_round_trip(key in arb_bytes(128), value in arb_bytes(256)) {
            let bytes = reply_bytes(&Reply::Found(value.clone()));
            prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(parse_lookup_reply(&bytes), Ok(Reply::Found(value.clone())));
            let row = Reply::Row { key, value };
            let bytes = reply_bytes(&row);
            prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(parse_iterate_reply(&bytes), Ok(row));
        }

        #[test]
        fn failures_always_parse_back(reason in "(?s).{0,300}") {
            let bytes = reply_bytes(&Reply::Failed(reason));
            prop_assert!(matches!(parse_lookup_reply(&bytes), Ok(Reply::Failed(_))));
            prop_assert!(matches!(parse_iterate_reply(&bytes), Ok(Reply::Failed(_))));
        }

        #[test]
        fn parsers_never_panic(line in arb_bytes(600)) {
            let _ = parse_request(&line);
            let _ = parse_lookup_reply(&line);
            let _ = parse_iterate_reply(&line);
            if let Ok(Some(n)) = find_line(&line) {
                prop_assert!(n <= line.len() && line[n - 1] == b'\n');
            }
        }
    }
}
