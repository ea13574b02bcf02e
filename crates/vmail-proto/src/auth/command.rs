//! Client to server: the lines an auth client sends (`VERSION`, `CPID`, `AUTH`, `CONT`,
//! `CANCEL`), parsed as Dovecot 2.3 reads them, and encoded the way Postfix writes them
//! (for tests and test clients).

use std::net::IpAddr;

use super::escape::{line_end, parse_decimal, strip_line_end, tab_escape, tab_unescape};
use super::sasl::{decode_base64, Mechanism, SaslError, Secret};
use super::{AuthError, MAX_LINE};
use crate::snippet;

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
            // Dovecot 2.4's clients (its libauth-client, e.g. `doveadm auth test`) name the
            // field `protocol=` (auth protocol 1.3); 2.4's auth server takes either.
            b"service" | b"protocol" => service = Some(text.to_vec()),
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
