//! The Dovecot auth client protocol, server side: what Postfix (`smtpd_sasl_type =
//! dovecot`), Exim and Dovecot's own login processes speak to an auth server, and the
//! PLAIN and LOGIN SASL payloads carried in it. Also Dovecot's `\001` tab-escaping, which
//! the dict proxy protocol ([`crate::dict`]) shares.
//!
//! Sources: `Design.AuthProtocol.txt` (Dovecot wiki, protocol 1.1), Dovecot 2.3's
//! `src/auth/auth-client-connection.c` (handshake, line dispatch), `auth-request-handler.c`
//! (`AUTH`, `CONT`, replies), `auth-request-fields.c` (AUTH parameters), `mech.c` (MECH
//! lines), `mech-plain.c` and `test-mech.c` (PLAIN), `src/lib/strescape.c` (escaping),
//! `src/lib/istream.c` (line splitting), `auth-client-interface.h` (limits, fail codes),
//! and Postfix 3.7's client `src/xsasl/xsasl_dovecot_server.c`.
//!
//! The conversation (C = client such as Postfix, S = us):
//! ```text
//! S: VERSION 1 2 / MECH PLAIN plaintext / MECH LOGIN plaintext / SPID n / CUID n / COOKIE hex / DONE
//! C: VERSION 1 2 / CPID pid
//! C: AUTH 1 PLAIN service=smtp nologin lip=.. rip=.. [secured] [resp=base64]
//! S: OK 1 user=a@b  |  FAIL 1 user=a@b [code=..] [reason=..]  |  CONT 1 base64
//! C: CONT 1 base64                                   (after a CONT from us)
//! ```
//! (fields are TAB-separated, lines end in LF). The server sends its handshake at once,
//! without waiting for the client's.
//!
//! Decisions, with the behaviour of Dovecot 2.3 they follow:
//! - Lines: at most [`MAX_LINE`] bytes including the LF (`AUTH_CLIENT_MAX_LINE_LENGTH`,
//!   the input buffer size; Dovecot closes the connection when it fills without a LF).
//!   One CR before the LF is dropped, as `i_stream_next_line()` does. A raw NUL byte is
//!   an error: Dovecot's C strings would silently cut the line there, and no client
//!   sends one (an escaped NUL, `\001` `0`, is fine).
//! - Every field of an AUTH line is tab-unescaped before use (`t_strsplit_tabescaped()`
//!   in `auth_request_handler_auth_begin()`); parameters split at the first '='.
//!   VERSION, CPID, CONT and CANCEL are read raw, as Dovecot reads them.
//! - Numbers are what Dovecot's `str_to_uint()` accepts: ASCII digits only (leading
//!   zeros allowed, no sign, no spaces), at most 4294967295. Anything else, and an AUTH
//!   id or CPID of 0, is an [`AuthError`]: Dovecot logs "BUG: ... broken AUTH request"
//!   and closes the connection, and so should the server.
//! - AUTH without `service=` is an error (Dovecot: "didn't specify service", close).
//!   `resp=` must be the last parameter; anything after it (even an empty field) is an
//!   error, as in Dovecot's source (the wiki says "ignored"; the code closes).
//!   Unknown parameters are kept in [`AuthRequest::other`]; empty fields are skipped.
//!   Repeated parameters: the last one wins, as in Dovecot.
//! - `lip`/`rip` that do not parse as an IP address and ports that are not 1-65535 are
//!   dropped (`None`), as Dovecot's `net_addr2ip()`/`net_str2port()` failures are.
//!   Requests without a usable `rip` therefore share one penalty bucket.
//! - Mechanism names compare case-insensitively (`mech_register_find()` uses
//!   `strcasecmp()`); an unknown one is the server's cue to close the connection.
//! - The initial response follows `auth_request_handler_auth_begin()`: absent means "no
//!   initial response" (PLAIN then gets an empty `CONT` first); `resp=` or `resp==` mean
//!   an empty one, except that clients announcing minor version < 2 (Exim sends
//!   `VERSION 1 0`) get an empty `resp=` treated as absent. See
//!   [`AuthRequest::initial_response`].
//! - Base64 is the standard alphabet; padding may be present or absent and unused
//!   trailing bits are ignored (Dovecot's decoder is no stricter). Whitespace, '-', '_'
//!   and every other byte are rejected. Postfix checks the alphabet itself before
//!   sending, so only other clients can send such data; they get
//!   `FAIL id code=invalid_base64 reason=...` at once, without the failure delay, as
//!   Dovecot answers.
//! - PLAIN is `authzid NUL authcid NUL password` with exactly two NULs: fewer or more
//!   fail (Dovecot 2.3's `test-mech.c` "Too much nuls" case). An empty authcid fails
//!   ("Empty username" in `auth_request_fix_username()`). An authzid equal to the
//!   authcid counts as absent (`mech-plain.c`); a different one asks for a master-user
//!   login, which a server without master users must refuse like a wrong password. An
//!   empty password is returned as such: Dovecot's mechanism accepts it and the passdb
//!   check fails it, so the server must fail it the same way as any wrong password.
//! - LOGIN answers may not contain NUL (Dovecot reads them as C strings, so anything
//!   after a NUL would be silently dropped; its `test-mech.c` fails such input).
//! - Passwords, the `resp=` and `CONT` data they travel in, and decoded SASL answers are
//!   [`Secret`]s: their `Debug` output is redacted and [`SaslError`] carries no input, so
//!   nothing secret reaches a log by accident.
//! - Everything we write is tab-escaped, so a username containing TAB or LF cannot
//!   forge fields or lines. Postfix does not unescape (it prints `\001` as '?'); that
//!   only affects such usernames, which no real account has. Reasons are cut to 200
//!   bytes of printable ASCII (Postfix shows them to the SMTP client).
//! - A temporary failure is written `code=temp_fail` (Dovecot 2.3) followed by `temp`
//!   (the pre-2.3 spelling, from the wiki); each client ignores the one it does not know.

use std::fmt;
use std::net::IpAddr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use thiserror::Error;

use crate::{sanitize_reason, snippet};

/// Longest line accepted from a client, LF included: `AUTH_CLIENT_MAX_LINE_LENGTH` in
/// Dovecot's `auth-client-interface.h` ("GSSAPI can use quite large packets").
pub const MAX_LINE: usize = 16384;

/// Protocol major version we speak; a client announcing another one must be dropped.
pub const MAJOR_VERSION: u32 = 1;

/// Protocol minor version we announce (Dovecot 2.3 announces 3; 2 is what the
/// `resp=` rules here implement, and clients ignore the minor version).
pub const MINOR_VERSION: u32 = 2;

/// Longest human-readable `reason=` we send (Postfix shows it to the SMTP client).
const REASON_MAX: usize = 200;

/// Dovecot's escape byte for its internal protocols.
const ESC: u8 = 0x01;

// ---------------------------------------------------------------------------------------
// Tab escaping (shared with the dict protocol)
// ---------------------------------------------------------------------------------------

/// Appends `raw` with Dovecot's tab-escaping (`str_append_tabescaped_n()` in
/// `strescape.c`): NUL, `\001`, TAB, CR and LF become `\001` followed by `0`, `1`, `t`,
/// `r`, `n`. Every other byte, including non-UTF-8, passes through.
pub fn tab_escape(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    for &b in raw {
        let code = match b {
            0 => b'0',
            ESC => b'1',
            b'\t' => b't',
            b'\r' => b'r',
            b'\n' => b'n',
            _ => {
                out.push(b);
                continue;
            }
        };
        out.extend_from_slice(&[ESC, code]);
    }
}

/// Undoes [`tab_escape`] exactly as Dovecot's `str_tabunescape()` does, which never
/// fails: `\001` followed by a byte other than `0 1 t r n` yields that byte, and a
/// `\001` at the very end is dropped.
pub fn tab_unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        if b != ESC {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'0') => out.push(0),
            Some(b'1') => out.push(ESC),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Finds the end of the first line within `max` bytes: `Ok(Some(n))` with `n` counting
/// the LF, `Ok(None)` while no LF has arrived, `Err(())` once `max` bytes have arrived
/// without one. Shared by both protocols.
pub(crate) fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, ()> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => Ok(Some(lf + 1)),
        None if buf.len() >= max => Err(()),
        None => Ok(None),
    }
}

/// Drops the LF and one CR before it, as Dovecot's `i_stream_next_line()` does.
pub(crate) fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// ASCII digits only, as Dovecot's `str_to_uintmax()`: no sign, no spaces, not empty.
pub(crate) fn parse_decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// Bytes that may contain a password: SASL answers and the base64 carrying them.
/// `Debug` prints `Secret(<redacted>)`; [`Secret::expose`] is the only way to the bytes.
/// The buffer is overwritten with zeros when dropped (best effort: copies the caller
/// makes are its own business).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether there are no bytes (an empty password, an empty `resp=`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the optimiser from treating the zeroing as a dead store.
        std::hint::black_box(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Client commands
// ---------------------------------------------------------------------------------------

/// The SASL mechanisms we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: one answer, `authzid NUL authcid NUL password`.
    Plain,
    /// The de-facto LOGIN mechanism: prompts `Username:` then `Password:`.
    Login,
}

impl Mechanism {
    /// The name as announced in `MECH` lines.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The `MECH` flags Dovecot announces for it (`mech-plain.c`, `mech-login.c`:
    /// `MECH_SEC_PLAINTEXT`). Postfix filters mechanisms on these
    /// (`smtpd_sasl_security_options = noplaintext`).
    pub fn flags(self) -> &'static [&'static str] {
        &["plaintext"]
    }

    /// Looks a mechanism name up case-insensitively, as Dovecot's `mech_register_find()`.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login]
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }
}

/// How the client says its connection to the user is protected (`secured` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secured {
    /// No `secured` parameter.
    #[default]
    No,
    /// `secured` (Postfix sends it on TLS sessions) or `secured=<anything but tls>`.
    Yes,
    /// `secured=tls`.
    Tls,
}

/// One `AUTH` request. Values are tab-unescaped bytes (they may be invalid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// Request id, chosen by the client, never 0. Replies carry it.
    pub id: u32,
    /// The mechanism name as sent; see [`AuthRequest::mechanism`].
    pub mech: Vec<u8>,
    /// `service=` (Postfix sends `smtp`). Required; may be empty.
    pub service: Vec<u8>,
    /// `lip=`: the address the user connected to.
    pub local_ip: Option<IpAddr>,
    /// `rip=`: the user's address, the key of the failure penalty.
    pub remote_ip: Option<IpAddr>,
    /// `lport=`.
    pub local_port: Option<u16>,
    /// `rport=`.
    pub remote_port: Option<u16>,
    /// `secured` / `secured=tls`.
    pub secured: Secured,
    /// `valid-client-cert`.
    pub valid_client_cert: bool,
    /// `nologin` (Postfix always sends it: authenticate only, no login to follow).
    pub no_login: bool,
    /// `no-penalty`: do not count this request towards the failure penalty.
    pub no_penalty: bool,
    /// `session=`: the client's session id, for logging.
    pub session: Option<Vec<u8>>,
    /// `local_name=`: the TLS SNI name.
    pub local_name: Option<Vec<u8>>,
    /// `resp=`: the initial response as sent (base64 text, possibly empty or `=`). A
    /// field named `resp` without '=' counts as `resp=`, as in Dovecot.
    pub resp: Option<Secret>,
    /// Other parameters in order: name and, if the field had a '=', the value.
    pub other: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl AuthRequest {
    /// A request with only the required parts (for tests and test clients).
    pub fn new(id: u32, mech: &str, service: &str) -> Self {
        AuthRequest {
            id,
            mech: mech.as_bytes().to_vec(),
            service: service.as_bytes().to_vec(),
            local_ip: None,
            remote_ip: None,
            local_port: None,
            remote_port: None,
            secured: Secured::No,
            valid_client_cert: false,
            no_login: false,
            no_penalty: false,
            session: None,
            local_name: None,
            resp: None,
            other: Vec::new(),
        }
    }

    /// The requested mechanism if it is one we offer (case-insensitive).
    pub fn mechanism(&self) -> Option<Mechanism> {
        Mechanism::from_name(&self.mech)
    }

    /// The decoded initial response, following Dovecot 2.3's rules: `Ok(None)` if there
    /// is none (the mechanism then starts with an empty `CONT`), `Ok(Some(empty))` for
    /// `resp=` or `resp==`, except that for clients that announced a minor version below
    /// 2 an empty `resp=` means "none" (Exim sends it that way). Invalid base64 is
    /// [`SaslError::InvalidBase64`], answered with `FAIL code=invalid_base64` at once.
    pub fn initial_response(&self, client_minor: u32) -> Result<Option<Secret>, SaslError> {
        let Some(resp) = &self.resp else {
            return Ok(None);
        };
        let resp = resp.expose();
        if resp.is_empty() && client_minor < 2 {
            Ok(None)
        } else if resp.is_empty() || resp == b"=" {
            Ok(Some(Secret::default()))
        } else {
            decode_base64(resp).map(Some)
        }
    }
}

/// A line from an auth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `VERSION major minor`: first line of the client's handshake.
    Version { major: u32, minor: u32 },
    /// `CPID pid`: ends the client's handshake. Never 0.
    Cpid(u32),
    /// `AUTH id mech params...`.
    Auth(AuthRequest),
    /// `CONT id data`: the answer to our `CONT`. The data is the rest of the line, raw
    /// (base64 text), as Dovecot takes it.
    Cont { id: u32, data: Secret },
    /// `CANCEL id`: forget a pending request (Dovecot's login processes send it).
    Cancel(u32),
    /// Anything else: the command name (everything before the first TAB), as an escaped
    /// snippet for the log. Dovecot closes the connection.
    Unknown(String),
}

/// Why an auth client line is unacceptable. Dovecot closes the connection on every one
/// of these; so should the server.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No LF within [`MAX_LINE`] bytes.
    #[error("auth line too long: no newline within {max} bytes")]
    LineTooLong { max: usize },
    /// A raw NUL byte in the line.
    #[error("auth line contains a NUL byte")]
    Nul,
    /// A known command with missing or extra fields.
    #[error("malformed {command} line: {what}")]
    Malformed {
        command: &'static str,
        what: &'static str,
    },
    /// A number field that is not a decimal in range.
    #[error(
        "{command} {field} must be a decimal number from {min} to 4294967295, got \"{input}\""
    )]
    BadNumber {
        command: &'static str,
        field: &'static str,
        min: u32,
        input: String,
    },
    /// An AUTH line without `service=`.
    #[error("AUTH request {id} has no service= parameter")]
    MissingService { id: u32 },
    /// An AUTH line with fields after `resp=`.
    #[error("AUTH request {id} has parameters after resp=")]
    ParamAfterResp { id: u32 },
    /// A reply line a Dovecot auth client could not use (from [`parse_reply`]).
    #[error("malformed auth reply \"{0}\"")]
    MalformedReply(String),
}

/// Finds the end of the first line in `buf`. Returns the bytes the line takes, LF
/// included (pass `&buf[..n]` to [`parse_command`], then drop `n` bytes); `Ok(None)` if
/// there is no LF yet; [`AuthError::LineTooLong`] once [`MAX_LINE`] bytes have arrived
/// without one (close the connection).
pub fn find_line(buf: &[u8]) -> Result<Option<usize>, AuthError> {
    line_end(buf, MAX_LINE).map_err(|()| AuthError::LineTooLong { max: MAX_LINE })
}

/// Parses one client line (with or without its LF; at most [`MAX_LINE`] bytes).
pub fn parse_command(line: &[u8]) -> Result<ClientCommand, AuthError> {
    if line.len() > MAX_LINE {
        return Err(AuthError::LineTooLong { max: MAX_LINE });
    }
    let line = strip_line_end(line);
    if line.contains(&0) {
        return Err(AuthError::Nul);
    }
    let (name, args) = match line.iter().position(|&b| b == b'\t') {
        Some(tab) => (&line[..tab], Some(&line[tab + 1..])),
        None => (line, None),
    };
    let command = match name {
        b"VERSION" => "VERSION",
        b"CPID" => "CPID",
        b"AUTH" => "AUTH",
        b"CONT" => "CONT",
        b"CANCEL" => "CANCEL",
        _ => return Ok(ClientCommand::Unknown(snippet(name))),
    };
    let Some(args) = args else {
        return Err(AuthError::Malformed {
            command,
            what: "no arguments",
        });
    };
    match command {
        "VERSION" => {
            let mut fields = args.split(|&b| b == b'\t');
            let (Some(major), Some(minor), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(AuthError::Malformed {
                    command,
                    what: "expected major and minor version",
                });
            };
            Ok(ClientCommand::Version {
                major: number(command, "major version", 0, major)?,
                minor: number(command, "minor version", 0, minor)?,
            })
        }
        "CPID" => Ok(ClientCommand::Cpid(number(command, "pid", 1, args)?)),
        "AUTH" => parse_auth(args).map(ClientCommand::Auth),
        "CONT" => {
            let Some(tab) = args.iter().position(|&b| b == b'\t') else {
                return Err(AuthError::Malformed {
                    command,
                    what: "missing data",
                });
            };
            Ok(ClientCommand::Cont {
                id: number(command, "id", 0, &args[..tab])?,
                data: Secret::new(args[tab + 1..].to_vec()),
            })
        }
        _ => Ok(ClientCommand::Cancel(number(command, "id", 0, args)?)),
    }
}

fn number(
    command: &'static str,
    field: &'static str,
    min: u32,
    input: &[u8],
) -> Result<u32, AuthError> {
    parse_decimal(input)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n >= min)
        .ok_or_else(|| AuthError::BadNumber {
            command,
            field,
            min,
            input: snippet(input),
        })
}

fn parse_auth(args: &[u8]) -> Result<AuthRequest, AuthError> {
    let mut fields = args.split(|&b| b == b'\t');
    let id_field = tab_unescape(fields.next().unwrap_or_default());
    let Some(mech) = fields.next() else {
        return Err(AuthError::Malformed {
            command: "AUTH",
            what: "missing mechanism",
        });
    };
    let id = number("AUTH", "id", 1, &id_field)?;
    let mut req = AuthRequest::new(id, "", "");
    req.mech = tab_unescape(mech);
    let mut service = None;
    for field in fields {
        if req.resp.is_some() {
            return Err(AuthError::ParamAfterResp { id });
        }
        let field = tab_unescape(field);
        if field.is_empty() {
            continue;
        }
        let (name, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], Some(&field[eq + 1..])),
            None => (&field[..], None),
        };
        let text = value.unwrap_or_default();
        match name {
            b"service" => service = Some(text.to_vec()),
            b"lip" => req.local_ip = parse_ip(text),
            b"rip" => req.remote_ip = parse_ip(text),
            b"lport" => req.local_port = parse_port(text),
            b"rport" => req.remote_port = parse_port(text),
            b"secured" => {
                req.secured = if text == b"tls" {
                    Secured::Tls
                } else {
                    Secured::Yes
                }
            }
            b"valid-client-cert" => req.valid_client_cert = true,
            b"nologin" => req.no_login = true,
            b"no-penalty" => req.no_penalty = true,
            b"session" => req.session = Some(text.to_vec()),
            b"local_name" => req.local_name = Some(text.to_vec()),
            b"resp" => req.resp = Some(Secret::new(text.to_vec())),
            _ => req.other.push((name.to_vec(), value.map(<[u8]>::to_vec))),
        }
    }
    req.service = service.ok_or(AuthError::MissingService { id })?;
    Ok(req)
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

fn parse_port(text: &[u8]) -> Option<u16> {
    parse_decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&p| p != 0)
}

/// Appends `cmd` as a client line, the way Postfix writes it (for tests and test
/// clients). An `Unknown` name is written escaped, with no arguments.
pub fn encode_command(cmd: &ClientCommand, out: &mut Vec<u8>) {
    match cmd {
        ClientCommand::Version { major, minor } => {
            out.extend_from_slice(format!("VERSION\t{major}\t{minor}").as_bytes())
        }
        ClientCommand::Cpid(pid) => out.extend_from_slice(format!("CPID\t{pid}").as_bytes()),
        ClientCommand::Auth(req) => encode_auth(req, out),
        ClientCommand::Cont { id, data } => {
            out.extend_from_slice(format!("CONT\t{id}\t").as_bytes());
            out.extend_from_slice(data.expose());
        }
        ClientCommand::Cancel(id) => out.extend_from_slice(format!("CANCEL\t{id}").as_bytes()),
        ClientCommand::Unknown(name) => tab_escape(name.as_bytes(), out),
    }
    out.push(b'\n');
}

fn encode_auth(req: &AuthRequest, out: &mut Vec<u8>) {
    fn param(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>) {
        out.push(b'\t');
        tab_escape(name, out);
        if let Some(value) = value {
            out.push(b'=');
            tab_escape(value, out);
        }
    }
    out.extend_from_slice(format!("AUTH\t{}\t", req.id).as_bytes());
    tab_escape(&req.mech, out);
    param(out, b"service", Some(&req.service));
    if let Some(ip) = req.local_ip {
        param(out, b"lip", Some(ip.to_string().as_bytes()));
    }
    if let Some(ip) = req.remote_ip {
        param(out, b"rip", Some(ip.to_string().as_bytes()));
    }
    if let Some(port) = req.local_port {
        param(out, b"lport", Some(port.to_string().as_bytes()));
    }
    if let Some(port) = req.remote_port {
        param(out, b"rport", Some(port.to_string().as_bytes()));
    }
    match req.secured {
        Secured::No => {}
        Secured::Yes => param(out, b"secured", None),
        Secured::Tls => param(out, b"secured", Some(b"tls")),
    }
    for (flag, name) in [
        (req.valid_client_cert, &b"valid-client-cert"[..]),
        (req.no_login, b"nologin"),
        (req.no_penalty, b"no-penalty"),
    ] {
        if flag {
            param(out, name, None);
        }
    }
    if let Some(session) = &req.session {
        param(out, b"session", Some(session));
    }
    if let Some(name) = &req.local_name {
        param(out, b"local_name", Some(name));
    }
    for (name, value) in &req.other {
        param(out, name, value.as_deref());
    }
    if let Some(resp) = &req.resp {
        param(out, b"resp", Some(resp.expose()));
    }
}

// ---------------------------------------------------------------------------------------
// Server output
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// SASL payloads
// ---------------------------------------------------------------------------------------

/// Why a SASL answer is unacceptable. Carries no input: the input may be a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SaslError {
    /// The base64 does not decode. Answer `FAIL id code=invalid_base64 reason=...` at
    /// once (no failure delay), as Dovecot does.
    #[error("invalid base64 data")]
    InvalidBase64,
    /// A PLAIN answer without exactly two NULs.
    #[error("PLAIN answer is not authzid NUL authcid NUL password")]
    PlainSyntax,
    /// An empty authentication identity.
    #[error("empty username")]
    EmptyUsername,
    /// A LOGIN answer containing a NUL byte.
    #[error("LOGIN answer contains a NUL byte")]
    Nul,
}

/// The three parts of a PLAIN answer. `Debug` shows the names escaped and hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCreds {
    /// The identity to act as, if the client asked for one different from `authcid`.
    /// We have no master users: a `Some` here must fail like a wrong password.
    pub authzid: Option<Vec<u8>>,
    /// The username whose password is given. Never empty.
    pub authcid: Vec<u8>,
    /// The password (may be empty; it then fails verification like any wrong one).
    pub password: Secret,
}

impl fmt::Debug for PlainCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCreds")
            .field(
                "authzid",
                &self
                    .authzid
                    .as_deref()
                    .map(|z| z.escape_ascii().to_string()),
            )
            .field("authcid", &self.authcid.escape_ascii().to_string())
            .field("password", &self.password)
            .finish()
    }
}

/// Base64 as Dovecot accepts it: standard alphabet, padding optional, unused trailing
/// bits ignored, no whitespace.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes SASL base64 (see [`LENIENT`]'s rules in the module documentation).
pub fn decode_base64(b64: &[u8]) -> Result<Secret, SaslError> {
    LENIENT
        .decode(b64)
        .map(Secret::new)
        .map_err(|_| SaslError::InvalidBase64)
}

/// Decodes a base64 PLAIN answer (`resp=` or `CONT` data) and splits it; see
/// [`parse_plain`].
pub fn decode_plain(b64: &[u8]) -> Result<PlainCreds, SaslError> {
    parse_plain(decode_base64(b64)?.expose())
}

/// Splits a decoded PLAIN answer `authzid NUL authcid NUL password`: exactly two NULs,
/// non-empty authcid, authzid equal to authcid dropped (see the module documentation).
pub fn parse_plain(raw: &[u8]) -> Result<PlainCreds, SaslError> {
    let mut parts = raw.splitn(4, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::PlainSyntax);
    };
    if authcid.is_empty() {
        return Err(SaslError::EmptyUsername);
    }
    Ok(PlainCreds {
        authzid: (!authzid.is_empty() && authzid != authcid).then(|| authzid.to_vec()),
        authcid: authcid.to_vec(),
        password: Secret::new(password.to_vec()),
    })
}

/// Decodes one base64 LOGIN answer (the username after `Username:`, the password after
/// `Password:`). The result may be empty; an empty username must fail. NUL is refused.
pub fn decode_login_step(b64: &[u8]) -> Result<Secret, SaslError> {
    let answer = decode_base64(b64)?;
    if answer.expose().contains(&0) {
        return Err(SaslError::Nul);
    }
    Ok(answer)
}

/// The LOGIN prompts Dovecot sends, in order (`mech-login.c`), for [`Reply::Cont`].
pub const LOGIN_PROMPTS: [&str; 2] = ["Username:", "Password:"];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn esc(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        tab_escape(raw, &mut out);
        out
    }

    fn reply_bytes(reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(reply, &mut out);
        out
    }

    fn auth(line: &[u8]) -> Result<AuthRequest, AuthError> {
        match parse_command(line)? {
            ClientCommand::Auth(req) => Ok(req),
            other => panic!("not AUTH: {other:?}"),
        }
    }

    fn b64(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    // --- escaping ---

    #[test]
    fn escape_matches_dovecot() {
        assert_eq!(
            esc(b"a\tb\nc\rd\x01e\0f"),
            b"a\x01tb\x01nc\x01rd\x011e\x010f"
        );
        assert_eq!(esc(b"plain@example.org"), b"plain@example.org");
        assert_eq!(esc(b"\xc3\xbc\x7f\xff"), b"\xc3\xbc\x7f\xff");
        // The escape byte itself round-trips, also next to escape codes.
        assert_eq!(tab_unescape(&esc(b"\x011\x01t")), b"\x011\x01t");
    }

    #[test]
    fn unescape_is_as_lenient_as_dovecot() {
        assert_eq!(tab_unescape(b"\x01t\x01r\x01n\x011\x010"), b"\t\r\n\x01\0");
        // Unknown code: the byte itself. Trailing escape byte: dropped.
        assert_eq!(tab_unescape(b"a\x01xb"), b"axb");
        assert_eq!(tab_unescape(b"a\x01"), b"a");
        assert_eq!(tab_unescape(b"\x01\x01"), b"\x01");
        assert_eq!(tab_unescape(b""), b"");
    }

    #[test]
    fn all_bytes_escape_to_no_framing_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let e = esc(&all);
        assert!(!e.iter().any(|&b| matches!(b, 0 | b'\t' | b'\r' | b'\n')));
        assert_eq!(tab_unescape(&e), all);
    }

    // --- framing ---

    #[test]
    fn find_line_edges() {
        assert_eq!(find_line(b""), Ok(None));
        assert_eq!(find_line(b"CPID\t1"), Ok(None));
        assert_eq!(find_line(b"CPID\t1\nAUTH"), Ok(Some(7)));
        let mut line = vec![b'x'; MAX_LINE - 1];
        line.push(b'\n');
        assert_eq!(find_line(&line), Ok(Some(MAX_LINE)));
        let long = vec![b'x'; MAX_LINE];
        assert_eq!(
            find_line(&long),
            Err(AuthError::LineTooLong { max: MAX_LINE })
        );
        assert_eq!(
            find_line(&long[..MAX_LINE - 1]),
            Ok(None),
            "still waiting below the limit"
        );
        assert!(AuthError::LineTooLong { max: MAX_LINE }
            .to_string()
            .contains("line too long"));
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let line = b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGEAYg==\n";
        for cut in 0..line.len() {
            assert_eq!(find_line(&line[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(find_line(line), Ok(Some(line.len())));
    }

    #[test]
    fn overlong_line_is_refused_by_the_parser_too() {
        let mut line = b"AUTH\t1\tPLAIN\tservice=smtp\tx=".to_vec();
        line.resize(MAX_LINE + 1, b'a');
        assert_eq!(
            parse_command(&line),
            Err(AuthError::LineTooLong { max: MAX_LINE })
        );
    }

    // --- handshake commands ---

    #[test]
    fn parses_postfix_handshake() {
        assert_eq!(
            parse_command(b"VERSION\t1\t2\n"),
            Ok(ClientCommand::Version { major: 1, minor: 2 })
        );
        assert_eq!(
            parse_command(b"VERSION\t1\t0"),
            Ok(ClientCommand::Version { major: 1, minor: 0 })
        );
        assert_eq!(
            parse_command(b"CPID\t4242\r\n"),
            Ok(ClientCommand::Cpid(4242))
        );
    }

    #[test]
    fn bad_handshakes() {
        for line in [&b"VERSION\t1"[..], b"VERSION\t1\t2\t3", b"VERSION", b"CPID"] {
            assert!(
                matches!(parse_command(line), Err(AuthError::Malformed { .. })),
                "{line:?}"
            );
        }
        for line in [
            &b"VERSION\tx\t2"[..],
            b"VERSION\t1\t-2",
            b"VERSION\t1\t",
            b"CPID\t0",
            b"CPID\t",
            b"CPID\t12 ",
            b"CPID\t4294967296",
        ] {
            assert!(
                matches!(parse_command(line), Err(AuthError::BadNumber { .. })),
                "{line:?}"
            );
        }
        assert_eq!(
            parse_command(b"CPID\t4294967295"),
            Ok(ClientCommand::Cpid(u32::MAX))
        );
    }

    #[test]
    fn unknown_commands_are_reported_by_name() {
        assert_eq!(
            parse_command(b"REQUEST\t1\t2\n"),
            Ok(ClientCommand::Unknown("REQUEST".into()))
        );
        // Command names are case-sensitive, as Dovecot's strncmp().
        assert_eq!(
            parse_command(b"auth\t1\tPLAIN\tservice=smtp"),
            Ok(ClientCommand::Unknown("auth".into()))
        );
        assert_eq!(
            parse_command(b"\n"),
            Ok(ClientCommand::Unknown(String::new()))
        );
        let ClientCommand::Unknown(name) = parse_command(&[b'\x1b'; 5000]).unwrap() else {
            panic!()
        };
        assert!(name.len() < 300, "{}", name.len());
        assert!(name.starts_with("\\x1b"));
    }

    #[test]
    fn raw_nul_is_refused() {
        assert_eq!(
            parse_command(b"AUTH\t1\tPLAIN\0\tservice=smtp"),
            Err(AuthError::Nul)
        );
        assert_eq!(parse_command(b"\0"), Err(AuthError::Nul));
    }

    // --- AUTH ---

    #[test]
    fn parses_postfix_auth() {
        let req = auth(
            b"AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.1\trip=2001:db8::5\
              \tsecured\tresp=AGFAYgBzZWNyZXQ=\n",
        )
        .unwrap();
        assert_eq!(req.id, 7);
        assert_eq!(req.mechanism(), Some(Mechanism::Plain));
        assert_eq!(req.service, b"smtp");
        assert!(req.no_login);
        assert_eq!(req.local_ip, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(
            req.remote_ip,
            Some(IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap()))
        );
        assert_eq!(req.secured, Secured::Yes);
        let creds = decode_plain(req.resp.as_ref().unwrap().expose()).unwrap();
        assert_eq!(creds.authcid, b"a@b");
        assert_eq!(creds.password.expose(), b"secret");
        assert!(req.other.is_empty());
    }

    #[test]
    fn auth_parameters() {
        let req = auth(
            b"AUTH\t1\tlogin\tservice=imap\tlip=[::1]\trip=not-an-ip\tlport=143\trport=0\
              \tsecured=tls\tvalid-client-cert\tno-penalty\tsession=abc\tlocal_name=mx.example\
              \tdebug\tclient_id=x=y\t\tservice=smtp",
        )
        .unwrap();
        assert_eq!(req.mechanism(), Some(Mechanism::Login));
        assert_eq!(req.service, b"smtp", "last one wins");
        assert_eq!(req.local_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(req.remote_ip, None);
        assert_eq!(req.local_port, Some(143));
        assert_eq!(req.remote_port, None, "port 0 is no port");
        assert_eq!(req.secured, Secured::Tls);
        assert!(req.valid_client_cert && req.no_penalty && !req.no_login);
        assert_eq!(req.session.as_deref(), Some(&b"abc"[..]));
        assert_eq!(req.local_name.as_deref(), Some(&b"mx.example"[..]));
        assert_eq!(
            req.other,
            vec![
                (b"debug".to_vec(), None),
                (b"client_id".to_vec(), Some(b"x=y".to_vec()))
            ]
        );
        assert_eq!(req.resp, None);
    }

    #[test]
    fn auth_values_are_unescaped() {
        let req = auth(b"AUTH\t1\tPLAIN\tservice=sm\x01ttp\tsession=a\x011b\x010c").unwrap();
        assert_eq!(req.service, b"sm\ttp");
        assert_eq!(req.session.as_deref(), Some(&b"a\x01b\0c"[..]));
        // Escaped digits in the id are unescaped first, as Dovecot does.
        assert_eq!(auth(b"AUTH\t1\x017\tPLAIN\tservice=smtp").unwrap().id, 17);
    }

    #[test]
    fn auth_ids() {
        assert_eq!(auth(b"AUTH\t007\tPLAIN\tservice=smtp").unwrap().id, 7);
        assert_eq!(
            auth(b"AUTH\t4294967295\tPLAIN\tservice=smtp").unwrap().id,
            u32::MAX
        );
        for line in [
            &b"AUTH\t0\tPLAIN\tservice=smtp"[..],
            b"AUTH\tx\tPLAIN\tservice=smtp",
            b"AUTH\t-1\tPLAIN\tservice=smtp",
            b"AUTH\t+1\tPLAIN\tservice=smtp",
            b"AUTH\t 1\tPLAIN\tservice=smtp",
            b"AUTH\t4294967296\tPLAIN\tservice=smtp",
            b"AUTH\t99999999999999999999999999\tPLAIN\tservice=smtp",
            b"AUTH\t\tPLAIN\tservice=smtp",
        ] {
            assert!(
                matches!(
                    parse_command(line),
                    Err(AuthError::BadNumber {
                        command: "AUTH",
                        ..
                    })
                ),
                "{line:?}"
            );
        }
        let msg = parse_command(&[&b"AUTH\t"[..], &[b'9'; 10_000], b"\tPLAIN"].concat())
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn auth_structure_errors() {
        assert!(matches!(
            parse_command(b"AUTH\t1"),
            Err(AuthError::Malformed { .. })
        ));
        assert!(matches!(
            parse_command(b"AUTH"),
            Err(AuthError::Malformed { .. })
        ));
        assert_eq!(
            parse_command(b"AUTH\t1\tPLAIN"),
            Err(AuthError::MissingService { id: 1 })
        );
        assert_eq!(
            parse_command(b"AUTH\t1\tPLAIN\tservices=smtp\tresp=AA=="),
            Err(AuthError::MissingService { id: 1 })
        );
        // An empty service is still a service.
        assert_eq!(auth(b"AUTH\t1\tPLAIN\tservice=").unwrap().service, b"");
        assert_eq!(
            parse_command(b"AUTH\t3\tPLAIN\tresp=AA==\tservice=smtp"),
            Err(AuthError::ParamAfterResp { id: 3 })
        );
        assert_eq!(
            parse_command(b"AUTH\t3\tPLAIN\tservice=smtp\tresp=AA==\t"),
            Err(AuthError::ParamAfterResp { id: 3 })
        );
        // Unknown mechanisms parse; the server closes the connection.
        let req = auth(b"AUTH\t1\tCRAM-MD5\tservice=smtp").unwrap();
        assert_eq!(req.mechanism(), None);
        assert_eq!(auth(b"AUTH\t1\t\tservice=smtp").unwrap().mechanism(), None);
    }

    #[test]
    fn crlf_and_invalid_utf8() {
        let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tsession=\xff\xfe\r\n").unwrap();
        assert_eq!(req.session.as_deref(), Some(&b"\xff\xfe"[..]));
        // Only one CR is dropped.
        let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\r\r\n").unwrap();
        assert_eq!(req.service, b"smtp\r");
    }

    #[test]
    fn initial_response_rules() {
        let mut req = AuthRequest::new(1, "PLAIN", "smtp");
        assert_eq!(req.initial_response(2), Ok(None));
        req.resp = Some(Secret::new(Vec::new()));
        assert_eq!(req.initial_response(2), Ok(Some(Secret::default())));
        assert_eq!(req.initial_response(0), Ok(None), "Exim's empty resp=");
        req.resp = Some(Secret::new(b"=".to_vec()));
        assert_eq!(req.initial_response(2), Ok(Some(Secret::default())));
        assert_eq!(req.initial_response(0), Ok(Some(Secret::default())));
        req.resp = Some(Secret::new(b"AGEAYg==".to_vec()));
        assert_eq!(
            req.initial_response(2).unwrap().unwrap().expose(),
            b"\0a\0b"
        );
        req.resp = Some(Secret::new(b"!!!!".to_vec()));
        assert_eq!(req.initial_response(2), Err(SaslError::InvalidBase64));
        // "resp" without '=' is an empty resp=.
        let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tresp").unwrap();
        assert_eq!(req.resp, Some(Secret::default()));
    }

    #[test]
    fn cont_and_cancel() {
        let ClientCommand::Cont { id, data } = parse_command(b"CONT\t5\tdXNlcg==\n").unwrap()
        else {
            panic!()
        };
        assert_eq!((id, data.expose()), (5, &b"dXNlcg=="[..]));
        // The rest of the line is the data, raw, even with more tabs in it.
        let ClientCommand::Cont { data, .. } = parse_command(b"CONT\t5\ta\tb").unwrap() else {
            panic!()
        };
        assert_eq!(data.expose(), b"a\tb");
        assert_eq!(
            decode_login_step(data.expose()),
            Err(SaslError::InvalidBase64)
        );
        let ClientCommand::Cont { data, .. } = parse_command(b"CONT\t5\t").unwrap() else {
            panic!()
        };
        assert!(data.is_empty());
        assert!(matches!(
            parse_command(b"CONT\t5"),
            Err(AuthError::Malformed { .. })
        ));
        assert!(matches!(
            parse_command(b"CONT\tx\tAA=="),
            Err(AuthError::BadNumber { .. })
        ));
        assert_eq!(parse_command(b"CANCEL\t9"), Ok(ClientCommand::Cancel(9)));
        assert!(parse_command(b"CANCEL\t9\t1").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFAYgBodW50ZXIy").unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("AGFAYgBodW50ZXIy"), "{dbg}");
        assert!(dbg.contains("redacted"));
        let cont = parse_command(b"CONT\t1\taHVudGVyMg==").unwrap();
        assert!(!format!("{cont:?}").contains("aHVudGVyMg"));
        let creds = decode_plain(b"AGFAYgBodW50ZXIy").unwrap();
        let dbg = format!("{creds:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("a@b"));
        assert!(!format!("{:?}", decode_login_step(b"aHVudGVyMg==")).contains("hunter2"));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::from_name(b"plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name(b"LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name(b"PLAIN "), None);
        assert_eq!(Mechanism::from_name(b""), None);
    }

    // --- server output ---

    #[test]
    fn handshake_in_dovecot_order() {
        let mut out = Vec::new();
        let mut cookie = [0u8; 16];
        cookie[0] = 0xab;
        cookie[15] = 0x01;
        encode_handshake(
            &Handshake {
                mechanisms: &[Mechanism::Plain, Mechanism::Login],
                server_pid: 123,
                connection_id: 4,
                cookie,
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t123\n\
             CUID\t4\nCOOKIE\tab000000000000000000000000000001\nDONE\n"
        );
    }

    #[test]
    fn encodes_replies() {
        assert_eq!(
            reply_bytes(&Reply::Ok {
                id: 1,
                user: b"a@b".to_vec(),
                extra: vec![]
            }),
            b"OK\t1\tuser=a@b\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Ok {
                id: 2,
                user: b"a@b".to_vec(),
                extra: vec![
                    ("nologin".into(), None),
                    ("x".into(), Some(b"1\t2".to_vec()))
                ]
            }),
            b"OK\t2\tuser=a@b\tnologin\tx=1\x01t2\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Cont {
                id: 3,
                challenge: b"Username:".to_vec()
            }),
            b"CONT\t3\tVXNlcm5hbWU6\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Cont {
                id: 3,
                challenge: vec![]
            }),
            b"CONT\t3\t\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Fail {
                id: 4,
                user: Some(b"nobody@b".to_vec()),
                code: None,
                reason: None
            }),
            b"FAIL\t4\tuser=nobody@b\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Fail {
                id: 5,
                user: None,
                code: Some(FailCode::InvalidBase64),
                reason: Some("Invalid base64 data in initial response".into())
            }),
            b"FAIL\t5\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
        );
        assert_eq!(
            reply_bytes(&Reply::Fail {
                id: 6,
                user: Some(b"a@b".to_vec()),
                code: Some(FailCode::TempFail),
                reason: Some("db\tdown\n".into())
            }),
            b"FAIL\t6\tuser=a@b\tcode=temp_fail\ttemp\treason=db?down?\n"
        );
    }

    #[test]
    fn hostile_usernames_cannot_break_lines() {
        let user = b"evil\tuser=root\nOK\t9\tuser=root\r\0\x01".to_vec();
        for reply in [
            Reply::Ok {
                id: 1,
                user: user.clone(),
                extra: vec![],
            },
            Reply::Fail {
                id: 1,
                user: Some(user.clone()),
                code: None,
                reason: None,
            },
        ] {
            let bytes = reply_bytes(&reply);
            assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(bytes.iter().filter(|&&b| b == b'\t').count(), 2);
            assert_eq!(parse_reply(&bytes), Ok(reply));
        }
        let long_reason = Reply::Fail {
            id: 1,
            user: None,
            code: None,
            reason: Some("é".repeat(10_000)),
        };
        let bytes = reply_bytes(&long_reason);
        assert!(bytes.len() < 300);
        assert!(bytes.is_ascii());
    }

    #[test]
    fn parses_dovecot_replies_leniently() {
        assert_eq!(
            parse_reply(b"OK\t1\tuser=a@b\t\n"),
            Ok(Reply::Ok {
                id: 1,
                user: b"a@b".to_vec(),
                extra: vec![]
            })
        );
        assert_eq!(
            parse_reply(b"FAIL\t2\tuser=x\ttemp\tunknown"),
            Ok(Reply::Fail {
                id: 2,
                user: Some(b"x".to_vec()),
                code: Some(FailCode::TempFail),
                reason: None
            })
        );
        for line in [
            &b"OK\t1"[..],
            b"OK\tx\tuser=a",
            b"DONE",
            b"CONT\t1\t!!",
            b"",
        ] {
            assert!(parse_reply(line).is_err(), "{line:?}");
        }
    }

    // --- SASL ---

    #[test]
    fn plain_variants() {
        let c = decode_plain(&b64(b"\0user@example.org\0pw")).unwrap();
        assert_eq!(
            (c.authzid, c.authcid, c.password.expose()),
            (None, b"user@example.org".to_vec(), &b"pw"[..])
        );
        let c = decode_plain(&b64(b"u\0u\0pw")).unwrap();
        assert_eq!(c.authzid, None, "authzid equal to authcid is no authzid");
        let c = decode_plain(&b64(b"admin\0u\0pw")).unwrap();
        assert_eq!(c.authzid, Some(b"admin".to_vec()));
        let c = decode_plain(&b64(b"\0u\0")).unwrap();
        assert!(c.password.is_empty());
        let c = decode_plain(&b64(b"\0\xff\xfe@b\0p\xc3")).unwrap();
        assert_eq!(c.authcid, b"\xff\xfe@b");
        assert_eq!(c.password.expose(), b"p\xc3");
    }

    #[test]
    fn plain_rejects() {
        for raw in [
            &b""[..],
            b"user",
            b"user\0",
            b"\0user",
            b"\0user\0pw\0",
            b"\0fa\0il\0ing\0withthis",
            b"failing\0withthis",
        ] {
            assert_eq!(
                decode_plain(&b64(raw)),
                Err(SaslError::PlainSyntax),
                "{raw:?}"
            );
        }
        assert_eq!(decode_plain(&b64(b"\0\0pw")), Err(SaslError::EmptyUsername));
        assert_eq!(
            decode_plain(&b64(b"admin\0\0pw")),
            Err(SaslError::EmptyUsername)
        );
    }

    #[test]
    fn base64_rules() {
        // Padding optional; trailing bits ignored like Dovecot's decoder.
        assert_eq!(decode_base64(b"YQ==").unwrap().expose(), b"a");
        assert_eq!(decode_base64(b"YQ").unwrap().expose(), b"a");
        assert_eq!(decode_base64(b"YR==").unwrap().expose(), b"a");
        // Partial padding is tolerated too.
        assert_eq!(decode_base64(b"YQ=").unwrap().expose(), b"a");
        assert_eq!(decode_base64(b"").unwrap().expose(), b"");
        for bad in [
            &b"Y"[..],
            b"=",
            b"YQ== ",
            b" YQ==",
            b"Y Q==",
            b"YQ==\r",
            b"YQ\t==",
            b"YQ==YQ==",
            b"Y-_=",
            b"YQ==\0",
            b"\xff\xff\xff\xff",
        ] {
            assert_eq!(decode_base64(bad), Err(SaslError::InvalidBase64), "{bad:?}");
            assert_eq!(decode_plain(bad), Err(SaslError::InvalidBase64), "{bad:?}");
        }
        assert!(!SaslError::InvalidBase64.to_string().is_empty());
    }

    #[test]
    fn login_steps() {
        assert_eq!(
            decode_login_step(b"dXNlckBleGFtcGxlLm9yZw==")
                .unwrap()
                .expose(),
            b"user@example.org"
        );
        assert!(decode_login_step(b"").unwrap().is_empty());
        assert_eq!(decode_login_step(&b64(b"a\0b")), Err(SaslError::Nul));
        assert_eq!(
            decode_login_step(b"not base64!"),
            Err(SaslError::InvalidBase64)
        );
        assert_eq!(
            reply_bytes(&Reply::Cont {
                id: 1,
                challenge: LOGIN_PROMPTS[1].as_bytes().to_vec()
            }),
            b"CONT\t1\tUGFzc3dvcmQ6\n"
        );
    }

    // --- properties ---

    fn arb_ip() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            any::<[u8; 4]>().prop_map(|o| Some(IpAddr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Some(IpAddr::from(o))),
        ]
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    const KNOWN: [&[u8]; 12] = [
        b"service",
        b"lip",
        b"rip",
        b"lport",
        b"rport",
        b"secured",
        b"valid-client-cert",
        b"nologin",
        b"no-penalty",
        b"session",
        b"local_name",
        b"resp",
    ];

    fn arb_other() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
        let name =
            proptest::collection::vec(any::<u8>().prop_filter("no =", |&b| b != b'='), 1..12)
                .prop_filter("not a known name", |n| !KNOWN.contains(&n.as_slice()));
        proptest::collection::vec((name, proptest::option::of(arb_bytes(24))), 0..4)
    }

    prop_compose! {
        fn arb_request()(
            id in 1..=u32::MAX,
            mech in arb_bytes(16),
            service in arb_bytes(16),
            local_ip in arb_ip(),
            remote_ip in arb_ip(),
            local_port in proptest::option::of(1..=u16::MAX),
            remote_port in proptest::option::of(1..=u16::MAX),
            secured in prop_oneof![Just(Secured::No), Just(Secured::Yes), Just(Secured::Tls)],
            flags in any::<[bool; 3]>(),
            session in proptest::option::of(arb_bytes(16)),
            local_name in proptest::option::of(arb_bytes(16)),
            resp in proptest::option::of(arb_bytes(64)),
            other in arb_other(),
        ) -> AuthRequest {
            AuthRequest {
                id, mech, service, local_ip, remote_ip, local_port, remote_port, secured,
                valid_client_cert: flags[0], no_login: flags[1], no_penalty: flags[2],
                session, local_name, resp: resp.map(Secret::new), other,
            }
        }
    }

    proptest! {
        #[test]
        fn escape_round_trip(raw in arb_bytes(512)) {
            let e = esc(&raw);
            prop_assert!(!e.iter().any(|&b| matches!(b, 0 | b'\t' | b'\r' | b'\n')));
            prop_assert_eq!(tab_unescape(&e), raw);
        }

        #[test]
        fn auth_line_round_trip(req in arb_request()) {
            let cmd = ClientCommand::Auth(req);
            let mut line = Vec::new();
            encode_command(&cmd, &mut line);
            prop_assert_eq!(find_line(&line), Ok(Some(line.len())));
            prop_assert_eq!(parse_command(&line), Ok(cmd));
        }

        #[test]
        fn replies_round_trip(id in any::<u32>(), user in arb_bytes(64),
                              challenge in arb_bytes(64), temp in any::<bool>()) {
            for reply in [
                Reply::Ok { id, user: user.clone(), extra: vec![("k".into(), Some(user.clone()))] },
                Reply::Cont { id, challenge: challenge.clone() },
                Reply::Fail { id, user: Some(user.clone()),
                              code: temp.then_some(FailCode::TempFail), reason: None },
            ] {
                let bytes = reply_bytes(&reply);
                prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
                prop_assert_eq!(parse_reply(&bytes), Ok(reply));
            }
        }

        #[test]
        fn plain_round_trip(authcid in arb_bytes(32).prop_filter("", |v| !v.is_empty() && !v.contains(&0)),
                            password in arb_bytes(32).prop_filter("", |v| !v.contains(&0))) {
            let raw = [&b"\0"[..], &authcid, b"\0", &password].concat();
            let creds = decode_plain(&b64(&raw)).unwrap();
            prop_assert_eq!(creds.authcid, authcid);
            prop_assert_eq!(creds.password.expose(), &password[..]);
        }

        #[test]
        fn parsers_never_panic(line in arb_bytes(600)) {
            let _ = parse_command(&line);
            let _ = parse_reply(&line);
            let _ = decode_plain(&line);
            let _ = parse_plain(&line);
            let _ = decode_login_step(&line);
            if let Ok(Some(n)) = find_line(&line) {
                prop_assert!(n <= line.len() && line[n - 1] == b'\n');
            }
        }
    }
}
