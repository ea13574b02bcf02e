//! The line protocol between Dovecot's Lua passdb/userdb script
//! (`contrib/dovecot/vmail-auth.lua`) and vmail-authd, version 1 (contract:
//! the "Lua channel" spec, issue 16). Lines end with LF; fields are separated by TAB and
//! tab-escaped as Dovecot's `str_tabescape()` does (`\001` → `\0011`, TAB → `\001t`,
//! CR → `\001r`, LF → `\001n`).
//!
//! ```text
//! C: VERSION 1                                  (no reply)
//! C: PASS <id> <service> <rip> <login> <password>
//! S: OK <id> <user> userdb_uid=5000 ...  |  FAIL <id>  |  TEMP <id> <reason>
//! C: LOOKUP <id> <service> <login>
//! S: OK <id> <user> userdb_uid=5000 ...  |  DISABLED <id>  |  NOTFOUND <id>  |  TEMP ...
//! C: USER <id> <login>
//! S: OK <id> <user> uid=5000 ...  |  NOTFOUND <id>  |  TEMP <id> <reason>
//! C: LIST <id>
//! S: ROW <id> <user> ... END <id>  |  TEMP <id> <reason>
//! ```
//!
//! Decisions:
//! - At most [`MAX_LINE`] bytes per line, LF included, checked before anything is copied;
//!   one CR before the LF is dropped. A NUL, raw or escaped (`\0010`), is refused: no
//!   login, service or password of ours holds one, and the script never sends one.
//! - Requests have exactly their fields (a password's TAB must come escaped, so a count
//!   that does not fit is a broken client, not a password to cut). `VERSION` carries the
//!   major version and may carry more fields, which are ignored. An empty `<id>` is
//!   refused: the client tells stale replies by it.
//! - A `<rip>` that is not an IP address counts as none, as `rip=` does on the auth
//!   protocol ([`crate::auth`]): the penalty then shares one bucket for such requests.
//! - Unknown commands parse as [`Request::Unsupported`]; the server closes the connection.
//! - Reasons in `TEMP` are cut to 200 bytes of printable ASCII (Dovecot logs them).

use std::net::IpAddr;

use thiserror::Error;

use crate::auth::{line_end, parse_decimal, strip_line_end, tab_escape, tab_unescape, Secret};
use crate::{sanitize_reason, snippet};

/// Longest line, LF included; a longer one closes the connection.
pub const MAX_LINE: usize = 16 * 1024;

/// The protocol's major version (`VERSION\t1`).
pub const MAJOR_VERSION: u32 = 1;

/// Longest reason we put into a `TEMP` line.
const REASON_MAX: usize = 200;

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `VERSION\t<major>`: the client's first line, not answered.
    Version { major: u32 },
    /// `PASS\t<id>\t<service>\t<rip>\t<login>\t<password>`: verify a password.
    Pass {
        id: Vec<u8>,
        service: Vec<u8>,
        /// `None` for an empty field (or one that is not an address).
        rip: Option<IpAddr>,
        login: Vec<u8>,
        password: Secret,
    },
    /// `LOOKUP\t<id>\t<service>\t<login>`: the passdb record without a password.
    Lookup {
        id: Vec<u8>,
        service: Vec<u8>,
        login: Vec<u8>,
    },
    /// `USER\t<id>\t<login>`: the userdb record.
    User { id: Vec<u8>, login: Vec<u8> },
    /// `LIST\t<id>`: every active user.
    List { id: Vec<u8> },
    /// Any other command (escaped, cut, for the log): close the connection.
    Unsupported(String),
}

impl Request {
    /// The request's id (`None` for `VERSION` and unsupported commands).
    pub fn id(&self) -> Option<&[u8]> {
        match self {
            Request::Pass { id, .. }
            | Request::Lookup { id, .. }
            | Request::User { id, .. }
            | Request::List { id } => Some(id),
            Request::Version { .. } | Request::Unsupported(_) => None,
        }
    }

    /// The command word, for spans and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Version { .. } => "version",
            Request::Pass { .. } => "pass",
            Request::Lookup { .. } => "lookup",
            Request::User { .. } => "user",
            Request::List { .. } => "list",
            Request::Unsupported(_) => "unsupported",
        }
    }
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK\t<id>\t<user>[\t<key>=<value>]...`.
    Ok {
        id: Vec<u8>,
        user: Vec<u8>,
        fields: Vec<(String, String)>,
    },
    /// `FAIL\t<id>`: PASS refused, whatever the reason.
    Fail { id: Vec<u8> },
    /// `DISABLED\t<id>`: LOOKUP of an account, domain or service that is refused.
    Disabled { id: Vec<u8> },
    /// `NOTFOUND\t<id>`.
    NotFound { id: Vec<u8> },
    /// `TEMP\t<id>\t<reason>`: the directory is down or slow.
    Temp { id: Vec<u8>, reason: String },
    /// `ROW\t<id>\t<user>`: one user of a LIST.
    Row { id: Vec<u8>, user: Vec<u8> },
    /// `END\t<id>`: the LIST is complete.
    End { id: Vec<u8> },
}

/// Why a line is unacceptable; the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LuaError {
    #[error("lua channel line too long: no newline within {max} bytes")]
    LineTooLong { max: usize },
    #[error("empty lua channel line")]
    EmptyLine,
    #[error("lua channel line contains a NUL byte")]
    Nul,
    #[error("malformed lua channel {command} line: {what}")]
    Malformed {
        command: &'static str,
        what: &'static str,
    },
    #[error("lua channel VERSION is not a number: \"{0}\"")]
    BadVersion(String),
    #[error("malformed lua channel reply \"{0}\"")]
    MalformedReply(String),
}

/// The end of the first line in `buf` (LF included); `Ok(None)` while incomplete;
/// [`LuaError::LineTooLong`] once [`MAX_LINE`] bytes came without an LF.
pub fn find_line(buf: &[u8]) -> Result<Option<usize>, LuaError> {
    line_end(buf, MAX_LINE).map_err(|()| LuaError::LineTooLong { max: MAX_LINE })
}

/// The TAB-separated, unescaped fields of a line (LF and one CR dropped). A NUL, raw or
/// escaped, is refused.
fn fields(line: &[u8]) -> Result<Vec<Vec<u8>>, LuaError> {
    if line.len() > MAX_LINE {
        return Err(LuaError::LineTooLong { max: MAX_LINE });
    }
    let line = strip_line_end(line);
    if line.is_empty() {
        return Err(LuaError::EmptyLine);
    }
    if line.contains(&0) {
        return Err(LuaError::Nul);
    }
    let fields: Vec<Vec<u8>> = line.split(|&b| b == b'\t').map(tab_unescape).collect();
    if fields.iter().any(|f| f.contains(&0)) {
        return Err(LuaError::Nul);
    }
    Ok(fields)
}

/// Parses one request line (with or without its LF).
pub fn parse_request(line: &[u8]) -> Result<Request, LuaError> {
    let mut fields = fields(line)?.into_iter();
    let command = fields.next().unwrap_or_default();
    let mut rest: Vec<Vec<u8>> = fields.collect();
    let name: &'static str = match &command[..] {
        b"VERSION" => "VERSION",
        b"PASS" => "PASS",
        b"LOOKUP" => "LOOKUP",
        b"USER" => "USER",
        b"LIST" => "LIST",
        other => return Ok(Request::Unsupported(snippet(other))),
    };
    if name == "VERSION" {
        let Some(major) = rest.first() else {
            return Err(LuaError::Malformed {
                command: name,
                what: "no version",
            });
        };
        let major = parse_decimal(major)
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| LuaError::BadVersion(snippet(major)))?;
        return Ok(Request::Version { major });
    }
    let want = match name {
        "PASS" => 5,
        "LOOKUP" => 3,
        "USER" => 2,
        _ => 1,
    };
    if rest.len() != want {
        return Err(LuaError::Malformed {
            command: name,
            what: if rest.len() < want {
                "missing fields"
            } else {
                "too many fields"
            },
        });
    }
    if rest[0].is_empty() {
        return Err(LuaError::Malformed {
            command: name,
            what: "empty id",
        });
    }
    let mut take = || rest.remove(0);
    let id = take();
    Ok(match name {
        "PASS" => {
            let service = take();
            let rip = std::str::from_utf8(&take())
                .ok()
                .and_then(|s| s.parse().ok());
            let login = take();
            Request::Pass {
                id,
                service,
                rip,
                login,
                password: Secret::new(take()),
            }
        }
        "LOOKUP" => {
            let service = take();
            Request::Lookup {
                id,
                service,
                login: take(),
            }
        }
        "USER" => Request::User { id, login: take() },
        _ => Request::List { id },
    })
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.push(b'\t');
    tab_escape(field, out);
}

fn line(out: &mut Vec<u8>, command: &[u8], fields: &[&[u8]]) {
    out.extend_from_slice(command);
    for f in fields {
        push_field(out, f);
    }
    out.push(b'\n');
}

/// Appends `reply` as one line to `out`.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Ok { id, user, fields } => {
            out.extend_from_slice(b"OK");
            push_field(out, id);
            push_field(out, user);
            for (k, v) in fields {
                push_field(out, format!("{k}={v}").as_bytes());
            }
            out.push(b'\n');
        }
        Reply::Fail { id } => line(out, b"FAIL", &[id]),
        Reply::Disabled { id } => line(out, b"DISABLED", &[id]),
        Reply::NotFound { id } => line(out, b"NOTFOUND", &[id]),
        Reply::Temp { id, reason } => {
            let reason = sanitize_reason(reason, REASON_MAX);
            line(out, b"TEMP", &[id, reason.as_bytes()])
        }
        Reply::Row { id, user } => line(out, b"ROW", &[id, user]),
        Reply::End { id } => line(out, b"END", &[id]),
    }
}

/// Appends `req` as one line to `out` (the client side: tests and the fuzz target).
/// [`Request::Unsupported`] writes its text as the command.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    match req {
        Request::Version { major } => line(out, b"VERSION", &[major.to_string().as_bytes()]),
        Request::Pass {
            id,
            service,
            rip,
            login,
            password,
        } => {
            let rip = rip.map(|r| r.to_string()).unwrap_or_default();
            line(
                out,
                b"PASS",
                &[id, service, rip.as_bytes(), login, password.expose()],
            )
        }
        Request::Lookup { id, service, login } => line(out, b"LOOKUP", &[id, service, login]),
        Request::User { id, login } => line(out, b"USER", &[id, login]),
        Request::List { id } => line(out, b"LIST", &[id]),
        Request::Unsupported(c) => line(out, c.as_bytes(), &[]),
    }
}

/// Parses one reply line (the client side: tests and the fuzz target).
pub fn parse_reply(line: &[u8]) -> Result<Reply, LuaError> {
    let bad = || LuaError::MalformedReply(snippet(line));
    let mut f = fields(line).map_err(|_| bad())?.into_iter();
    let command = f.next().unwrap_or_default();
    let id = f.next().filter(|id| !id.is_empty()).ok_or_else(bad)?;
    let rest: Vec<Vec<u8>> = f.collect();
    let only_id = |r: Reply| if rest.is_empty() { Ok(r) } else { Err(bad()) };
    match &command[..] {
        b"OK" => {
            let (user, kv) = rest.split_first().ok_or_else(bad)?;
            let fields = kv
                .iter()
                .map(|f| {
                    let s = std::str::from_utf8(f).map_err(|_| bad())?;
                    let (k, v) = s.split_once('=').ok_or_else(bad)?;
                    Ok((k.to_string(), v.to_string()))
                })
                .collect::<Result<_, LuaError>>()?;
            Ok(Reply::Ok {
                id,
                user: user.clone(),
                fields,
            })
        }
        b"FAIL" => only_id(Reply::Fail { id }),
        b"DISABLED" => only_id(Reply::Disabled { id }),
        b"NOTFOUND" => only_id(Reply::NotFound { id }),
        b"END" => only_id(Reply::End { id }),
        b"TEMP" | b"ROW" if rest.len() == 1 => {
            let v = rest.into_iter().next().unwrap_or_default();
            Ok(if command == b"TEMP" {
                Reply::Temp {
                    id,
                    reason: String::from_utf8(v).map_err(|_| bad())?,
                }
            } else {
                Reply::Row { id, user: v }
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A PASS request's id, service, rip, login and password.
    type Pass = (Vec<u8>, Vec<u8>, Option<IpAddr>, Vec<u8>, Vec<u8>);

    fn pass(line: &[u8]) -> Pass {
        match parse_request(line) {
            Ok(Request::Pass {
                id,
                service,
                rip,
                login,
                password,
            }) => (id, service, rip, login, password.expose().to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_line() {
        assert_eq!(
            parse_request(b"VERSION\t1\n"),
            Ok(Request::Version { major: 1 })
        );
        assert_eq!(
            parse_request(b"VERSION\t2\t7\r\n"),
            Ok(Request::Version { major: 2 })
        );
        assert!(matches!(
            parse_request(b"VERSION\tx\n"),
            Err(LuaError::BadVersion(_))
        ));
        assert!(matches!(
            parse_request(b"VERSION\n"),
            Err(LuaError::Malformed { .. })
        ));
    }

    #[test]
    fn pass_fields_are_unescaped() {
        let (id, service, rip, login, pw) =
            pass(b"PASS\t7\timap\t2001:db8::5\talice@example.org\tp\x01tw\x011\x01r\x01n=\n");
        assert_eq!(id, b"7");
        assert_eq!(service, b"imap");
        assert_eq!(rip, "2001:db8::5".parse().ok());
        assert_eq!(login, b"alice@example.org");
        assert_eq!(pw, b"p\tw\x01\r\n=");
    }

    #[test]
    fn empty_or_unusable_rip_is_none() {
        assert_eq!(pass(b"PASS\t1\tsmtp\t\ta\tb\n").2, None);
        assert_eq!(pass(b"PASS\t1\tsmtp\tnot-an-ip\ta\tb\n").2, None);
        // An empty password is a field too.
        assert_eq!(pass(b"PASS\t1\tsmtp\t192.0.2.1\ta\t\n").4, b"");
    }

    #[test]
    fn nul_is_refused_raw_or_escaped() {
        assert_eq!(
            parse_request(b"PASS\t1\ts\t\ta\tb\0c\n"),
            Err(LuaError::Nul)
        );
        assert_eq!(
            parse_request(b"PASS\t1\ts\t\ta\tb\x010c\n"),
            Err(LuaError::Nul)
        );
        assert_eq!(parse_request(b"USER\t1\ta\x010\n"), Err(LuaError::Nul));
    }

    #[test]
    fn field_counts_and_ids_are_checked() {
        for line in [
            &b"PASS\t1\tsmtp\t\talice\n"[..],
            b"PASS\t1\tsmtp\t\talice\tpw\textra\n",
            b"LOOKUP\t1\timap\n",
            b"USER\t1\n",
            b"USER\t1\ta\tb\n",
            b"LIST\n",
            b"LIST\t1\tx\n",
            b"USER\t\talice\n",
        ] {
            assert!(
                matches!(parse_request(line), Err(LuaError::Malformed { .. })),
                "{}",
                line.escape_ascii()
            );
        }
        assert_eq!(parse_request(b"\n"), Err(LuaError::EmptyLine));
        assert_eq!(parse_request(b"\r\n"), Err(LuaError::EmptyLine));
    }

    #[test]
    fn other_requests() {
        assert_eq!(
            parse_request(b"LOOKUP\tx1\timap\tbob@example.org\n"),
            Ok(Request::Lookup {
                id: b"x1".to_vec(),
                service: b"imap".to_vec(),
                login: b"bob@example.org".to_vec()
            })
        );
        assert_eq!(
            parse_request(b"USER\t2\tb\x01tob\n"),
            Ok(Request::User {
                id: b"2".to_vec(),
                login: b"b\tob".to_vec()
            })
        );
        assert_eq!(
            parse_request(b"LIST\t3\n"),
            Ok(Request::List { id: b"3".to_vec() })
        );
        assert_eq!(
            parse_request(b"pass\t1\n"),
            Ok(Request::Unsupported("pass".into()))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.0\r\n"),
            Ok(Request::Unsupported("GET / HTTP/1.0".into()))
        );
    }

    #[test]
    fn line_bound() {
        assert_eq!(find_line(b"LIST\t1"), Ok(None));
        assert_eq!(find_line(b"LIST\t1\nUSER"), Ok(Some(7)));
        let mut long = vec![b'x'; MAX_LINE - 1];
        assert_eq!(find_line(&long), Ok(None));
        long.push(b'\n');
        assert_eq!(find_line(&long), Ok(Some(MAX_LINE)));
        long.pop();
        long.push(b'x');
        assert_eq!(
            find_line(&long),
            Err(LuaError::LineTooLong { max: MAX_LINE })
        );
        let too_long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(
            parse_request(&too_long),
            Err(LuaError::LineTooLong { max: MAX_LINE })
        );
    }

    #[test]
    fn replies_are_escaped_lines() {
        let mut out = Vec::new();
        encode_reply(
            &Reply::Ok {
                id: b"9".to_vec(),
                user: b"alice@example.org".to_vec(),
                fields: vec![
                    ("userdb_uid".into(), "5000".into()),
                    ("userdb_home".into(), "/h/a\tb".into()),
                ],
            },
            &mut out,
        );
        assert_eq!(
            out,
            b"OK\t9\talice@example.org\tuserdb_uid=5000\tuserdb_home=/h/a\x01tb\n"
        );
        out.clear();
        encode_reply(
            &Reply::Temp {
                id: b"1".to_vec(),
                reason: "db\tdown\n".into(),
            },
            &mut out,
        );
        assert_eq!(out, b"TEMP\t1\tdb?down?\n");
        for (r, want) in [
            (Reply::Fail { id: b"a".to_vec() }, &b"FAIL\ta\n"[..]),
            (Reply::Disabled { id: b"a".to_vec() }, b"DISABLED\ta\n"),
            (Reply::NotFound { id: b"a".to_vec() }, b"NOTFOUND\ta\n"),
            (Reply::End { id: b"a".to_vec() }, b"END\ta\n"),
            (
                Reply::Row {
                    id: b"a".to_vec(),
                    user: b"b@c".to_vec(),
                },
                b"ROW\ta\tb@c\n",
            ),
        ] {
            out.clear();
            encode_reply(&r, &mut out);
            assert_eq!(out, want);
            assert_eq!(parse_reply(&out), Ok(r));
        }
    }

    fn arb_field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..40)
    }

    proptest! {
        #[test]
        fn requests_round_trip(id in arb_field().prop_filter("id", |v| !v.is_empty()),
                               service in arb_field(), login in arb_field(), pw in arb_field(),
                               ip in proptest::option::of(any::<[u8; 4]>())) {
            let req = Request::Pass {
                id,
                service,
                rip: ip.map(IpAddr::from),
                login,
                password: Secret::new(pw),
            };
            let mut out = Vec::new();
            encode_request(&req, &mut out);
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(parse_request(&out), Ok(req));
        }
    }
}
