//! Server to client: the handshake sent on connect and the `OK`/`CONT`/`FAIL` replies,
//! plus a lenient reply parser for tests and test clients.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::escape::{parse_decimal, strip_line_end, tab_escape, tab_unescape};
use super::sasl::Mechanism;
use super::{AuthError, MAJOR_VERSION, MINOR_VERSION};
use crate::{sanitize_reason, snippet};

/// Longest human-readable `reason=` we send (Postfix shows it to the SMTP client).
const REASON_MAX: usize = 200;

/// What the server announces on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// Mechanisms in the order to announce them. Postfix's smtpd exits fatally if there
    /// is none, so pass at least one.
    pub mechanisms: &'a [Mechanism],
    /// `SPID`: our process id.
    pub server_pid: u32,
    /// `CUID`: a number unique to this connection within the process.
    pub connection_id: u32,
    /// `COOKIE`: 16 random bytes, sent as 32 lower-case hex digits.
    pub cookie: [u8; 16],
}

/// Appends the server handshake in Dovecot's order (`auth_client_connection_create()`):
/// `VERSION`, the `MECH` lines, `SPID`, `CUID`, `COOKIE`, `DONE`.
pub fn encode_handshake(handshake: &Handshake<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\n").as_bytes());
    for mech in handshake.mechanisms {
        out.extend_from_slice(b"MECH\t");
        out.extend_from_slice(mech.name().as_bytes());
        for flag in mech.flags() {
            out.push(b'\t');
            out.extend_from_slice(flag.as_bytes());
        }
        out.push(b'\n');
    }
    out.extend_from_slice(
        format!(
            "SPID\t{}\nCUID\t{}\nCOOKIE\t",
            handshake.server_pid, handshake.connection_id
        )
        .as_bytes(),
    );
    for b in handshake.cookie {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.extend_from_slice(b"\nDONE\n");
}

/// `code=` values of a `FAIL` (`AUTH_CLIENT_FAIL_CODE_*` in `auth-client-interface.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCode {
    /// `temp_fail` (also written as the old `temp` flag): internal trouble such as a
    /// database outage. Postfix answers 454 and the client may retry.
    TempFail,
    /// `authz_fail`: authenticated, but may not act as the requested authzid.
    AuthzFail,
    /// `user_disabled`.
    UserDisabled,
    /// `pass_expired`.
    PassExpired,
    /// `invalid_base64`: the client's base64 did not decode (sent without delay).
    InvalidBase64,
}

impl FailCode {
    /// The `code=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::TempFail => "temp_fail",
            FailCode::AuthzFail => "authz_fail",
            FailCode::UserDisabled => "user_disabled",
            FailCode::PassExpired => "pass_expired",
            FailCode::InvalidBase64 => "invalid_base64",
        }
    }

    fn from_code(code: &[u8]) -> Option<FailCode> {
        [
            FailCode::TempFail,
            FailCode::AuthzFail,
            FailCode::UserDisabled,
            FailCode::PassExpired,
            FailCode::InvalidBase64,
        ]
        .into_iter()
        .find(|c| c.as_str().as_bytes() == code)
    }
}

/// A reply to an `AUTH` or `CONT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK id user=<user> [extra...]`: authenticated as `user` (the canonical name).
    /// Extra fields are `name` or `name=value`; names must not contain '='.
    Ok {
        id: u32,
        user: Vec<u8>,
        extra: Vec<(String, Option<Vec<u8>>)>,
    },
    /// `CONT id <base64 of challenge>`: the mechanism needs another answer.
    Cont { id: u32, challenge: Vec<u8> },
    /// `FAIL id [user=..] [code=..] [reason=..]`. Wrong password and unknown user must
    /// look the same: `user` as given by the client, no code, no reason.
    Fail {
        id: u32,
        user: Option<Vec<u8>>,
        code: Option<FailCode>,
        reason: Option<String>,
    },
}

/// Appends `reply` as one line. Values are tab-escaped; reasons are cut to 200 bytes of
/// printable ASCII.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Ok { id, user, extra } => {
            out.extend_from_slice(format!("OK\t{id}\tuser=").as_bytes());
            tab_escape(user, out);
            for (name, value) in extra {
                out.push(b'\t');
                tab_escape(name.as_bytes(), out);
                if let Some(value) = value {
                    out.push(b'=');
                    tab_escape(value, out);
                }
            }
        }
        Reply::Cont { id, challenge } => {
            out.extend_from_slice(format!("CONT\t{id}\t").as_bytes());
            out.extend_from_slice(STANDARD.encode(challenge).as_bytes());
        }
        Reply::Fail {
            id,
            user,
            code,
            reason,
        } => {
            out.extend_from_slice(format!("FAIL\t{id}").as_bytes());
            if let Some(user) = user {
                out.extend_from_slice(b"\tuser=");
                tab_escape(user, out);
            }
            if let Some(code) = code {
                out.extend_from_slice(b"\tcode=");
                out.extend_from_slice(code.as_str().as_bytes());
                if *code == FailCode::TempFail {
                    out.extend_from_slice(b"\ttemp");
                }
            }
            if let Some(reason) = reason {
                out.extend_from_slice(b"\treason=");
                tab_escape(sanitize_reason(reason, REASON_MAX).as_bytes(), out);
            }
        }
    }
    out.push(b'\n');
}

/// Parses a server reply line (`OK`, `CONT`, `FAIL`) leniently, as a client reads
/// Dovecot's: empty fields are skipped, unknown fields of `OK` are kept, unknown fields
/// of `FAIL` are ignored, `temp` counts as `code=temp_fail`. For tests and test clients.
pub fn parse_reply(line: &[u8]) -> Result<Reply, AuthError> {
    let line = strip_line_end(line);
    let malformed = || AuthError::MalformedReply(snippet(line));
    let mut fields = line.split(|&b| b == b'\t');
    let command = fields.next().unwrap_or_default();
    let id = fields
        .next()
        .and_then(parse_decimal)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(malformed)?;
    match command {
        b"CONT" => {
            let data = fields.next().unwrap_or_default();
            if fields.next().is_some() {
                return Err(malformed());
            }
            let challenge = STANDARD.decode(data).map_err(|_| malformed())?;
            Ok(Reply::Cont { id, challenge })
        }
        b"OK" => {
            let mut user = None;
            let mut extra = Vec::new();
            for field in fields.filter(|f| !f.is_empty()) {
                let field = tab_unescape(field);
                match field.strip_prefix(b"user=") {
                    Some(u) if user.is_none() => user = Some(u.to_vec()),
                    _ => {
                        let (name, value) = match field.iter().position(|&b| b == b'=') {
                            Some(eq) => (&field[..eq], Some(field[eq + 1..].to_vec())),
                            None => (&field[..], None),
                        };
                        let name = String::from_utf8(name.to_vec()).map_err(|_| malformed())?;
                        extra.push((name, value));
                    }
                }
            }
            Ok(Reply::Ok {
                id,
                user: user.ok_or_else(malformed)?,
                extra,
            })
        }
        b"FAIL" => {
            let (mut user, mut code, mut reason) = (None, None, None);
            for field in fields.filter(|f| !f.is_empty()) {
                let field = tab_unescape(field);
                if let Some(u) = field.strip_prefix(b"user=") {
                    user = Some(u.to_vec());
                } else if let Some(c) = field.strip_prefix(b"code=") {
                    code = FailCode::from_code(c).or(code);
                } else if field == b"temp" {
                    code = Some(FailCode::TempFail);
                } else if let Some(r) = field.strip_prefix(b"reason=") {
                    reason = Some(String::from_utf8_lossy(r).into_owned());
                }
            }
            Ok(Reply::Fail {
                id,
                user,
                code,
                reason,
            })
        }
        _ => Err(malformed()),
    }
}
