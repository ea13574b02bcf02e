//! The Postfix socketmap protocol: one netstring request `name SP key`, one netstring
//! reply `OK data` / `NOTFOUND ` / `TEMP reason` / `TIMEOUT reason` / `PERM reason`.
//!
//! Sources: `man 5 socketmap_table` (Postfix 3.7) and the client in Postfix's
//! `src/util/dict_sockmap.c`, which builds the request with `"%s %s"` (no escaping, so
//! the key runs to the end of the payload and may itself contain spaces), reads the
//! reply with `netstring_get(..., 100000)` and splits it at the first space.
//!
//! A server loop, with framing errors fatal and request errors answered:
//!
//! ```
//! use vmail_proto::{netstring, socketmap};
//! use socketmap::{Reply, MAX_REQUEST};
//!
//! let mut buf = b"21:virtual a@example.org,".to_vec(); // bytes read so far
//! let mut out = Vec::new();
//! loop {
//!     // An Err here means the stream is out of sync: log it and close the connection.
//!     let Some((payload, consumed)) = netstring::parse(&buf, MAX_REQUEST).unwrap() else {
//!         break; // incomplete: read more bytes
//!     };
//!     let reply = match socketmap::parse_request(payload) {
//!         Ok(req) => match req.lookup_key() {
//!             Some(_key) => Reply::Ok("b@example.org".into()), // ask the directory
//!             None => Reply::NotFound,
//!         },
//!         Err(e) => Reply::Perm(e.to_string()),
//!     };
//!     socketmap::encode_reply(&reply, &mut out);
//!     buf.drain(..consumed);
//! }
//! assert_eq!(out, b"16:OK b@example.org,");
//! ```
//!
//! Decisions (the man page leaves them open):
//! - Keys are bytes. [`Request::lookup_key`] returns `None` for a key that is empty, not
//!   UTF-8 or contains NUL, and the server answers `NOTFOUND` without asking the
//!   backend: such a key cannot name anything we store. This is what Postfix does
//!   itself: its UTF-8 wrapper (`dict_utf8.c`, `dict_utf8_lookup()`) skips a lookup with
//!   a non-UTF-8 key and reports "not found" with no error ("the item cannot exist").
//!   Postfix never sends an empty key or a NUL (its keys are C strings).
//! - A complete frame whose content is malformed (no space, bad map name) is answered
//!   with `PERM`: framing is intact, so the connection can go on. Postfix maps `PERM`
//!   to `DICT_ERR_CONFIG`, logs the reason and does not treat it as "not found".
//! - An `OK` reply that cannot be delivered intact becomes `TEMP`, never a truncated
//!   `OK`: a cut alias list would silently drop recipients. That covers data longer than
//!   [`MAX_REPLY`] (Postfix would drop the connection with "input exceeds size limit")
//!   and data containing NUL (Postfix reads the value as a C string and would keep only
//!   the part before the NUL). `TEMP` rather than `PERM` because it is the one answer
//!   every socketmap client (Postfix `DICT_ERR_RETRY`, Sendmail `EX_TEMPFAIL`) turns
//!   into "defer and retry": the mail waits in the queue while the admin reads the
//!   reason in the log and fixes the data.

use thiserror::Error;

use crate::netstring::{self, NetstringError};
use crate::{sanitize_reason, snippet};

/// Largest request payload we accept. Postfix sends `name SP key` with keys that are
/// addresses or domain names (well under 10 kB); the limit is generous and matches the
/// reply limit, so a legitimate request is never refused.
pub const MAX_REQUEST: usize = 100_000;

/// Largest reply payload (without the netstring framing) Postfix accepts:
/// `DICT_SOCKMAP_DEF_MAX_REPLY` in `dict_sockmap.c`, "100000 characters" in
/// `man 5 socketmap_table`.
pub const MAX_REPLY: usize = 100_000;

/// Postfix logs at most 200 bytes of a reason (`%.200s` in `dict_sockmap.c`).
const REASON_MAX: usize = 200;

/// One lookup request, borrowing from the received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The socketmap name from `socketmap:unix:/path:NAME`: printable ASCII, no space.
    pub map: &'a str,
    /// The lookup key exactly as received (may be empty or invalid UTF-8; see
    /// [`Request::lookup_key`]).
    pub key: &'a [u8],
}

impl<'a> Request<'a> {
    /// The key as text, or `None` when it cannot match anything (empty, not UTF-8, or
    /// containing NUL), in which case the answer is [`Reply::NotFound`].
    pub fn lookup_key(&self) -> Option<&'a str> {
        crate::lookup_key(self.key)
    }
}

/// The texts vmail-lookupd starts a TEMP or TIMEOUT reply with when the directory as a
/// whole cannot answer (none open; past lookupd's deadline), shared with vmail-lmtpd, which
/// tells such failures from one address's own by them.
pub mod temp_text {
    /// No directory is open (the database was down at start or at the last reload).
    pub const DIRECTORY_UNAVAILABLE: &str = "directory unavailable";
    /// The lookup ran past lookupd's deadline (followed by the duration).
    pub const TOOK_LONGER: &str = "lookup took longer than";
}

/// A socketmap reply. Reasons are descriptive text for Postfix's log; the encoder makes
/// them protocol-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Found; the data is the table value (for example a comma-separated alias list).
    Ok(String),
    /// Not found: Postfix proceeds as if the table had no entry.
    NotFound,
    /// Temporary failure: Postfix defers (`DICT_ERR_RETRY`).
    Temp(String),
    /// Timeout: Postfix defers (`DICT_ERR_RETRY`).
    Timeout(String),
    /// Permanent failure: Postfix reports a configuration error (`DICT_ERR_CONFIG`).
    Perm(String),
}

/// Why a socketmap request or reply is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SocketmapError {
    /// The netstring around the payload is malformed (only from [`parse_reply_frame`];
    /// for requests the caller runs [`netstring::parse`] itself).
    #[error(transparent)]
    Netstring(#[from] NetstringError),
    /// The payload has no space separating the map name from the key.
    #[error("socketmap request \"{0}\" has no space between map name and key")]
    MissingSeparator(String),
    /// The payload starts with a space.
    #[error("socketmap request has an empty map name")]
    EmptyMapName,
    /// The map name has a byte that is not printable ASCII (NUL, control, non-ASCII).
    #[error("socketmap map name \"{0}\" contains a byte that is not printable ASCII")]
    InvalidMapName(String),
    /// A reply that is not `STATUS SP text` with a known status and UTF-8 text.
    #[error("malformed socketmap reply \"{0}\"")]
    MalformedReply(String),
}

/// Splits a request payload (the netstring content) into map name and key.
///
/// The key is everything after the first space, untouched: spaces, quotes and SQL
/// metacharacters are data, and the backend must bind it as a parameter.
pub fn parse_request(payload: &[u8]) -> Result<Request<'_>, SocketmapError> {
    let Some(space) = payload.iter().position(|&b| b == b' ') else {
        return Err(SocketmapError::MissingSeparator(snippet(payload)));
    };
    let (name, key) = (&payload[..space], &payload[space + 1..]);
    if name.is_empty() {
        return Err(SocketmapError::EmptyMapName);
    }
    if !name.iter().all(u8::is_ascii_graphic) {
        return Err(SocketmapError::InvalidMapName(snippet(name)));
    }
    let map = std::str::from_utf8(name).expect("printable ASCII is UTF-8");
    Ok(Request { map, key })
}

/// Appends `req` as a netstring request, as Postfix's client sends it. For tests and
/// test clients; the map name is expected to be valid (see [`Request::map`]).
pub fn encode_request(req: &Request<'_>, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(req.map.len() + 1 + req.key.len());
    payload.extend_from_slice(req.map.as_bytes());
    payload.push(b' ');
    payload.extend_from_slice(req.key);
    netstring::encode(&payload, out);
}

/// Appends `reply` to `out` as one netstring. Never produces something Postfix would
/// misread: an `OK` that does not fit or contains NUL turns into `TEMP` (see the module
/// documentation), and reasons are cut to 200 bytes of printable ASCII.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    let payload = match reply {
        Reply::Ok(data) => match ok_payload(data) {
            Ok(payload) => payload,
            Err(reason) => status_payload("TEMP", &reason),
        },
        Reply::NotFound => b"NOTFOUND ".to_vec(),
        Reply::Temp(reason) => status_payload("TEMP", reason),
        Reply::Timeout(reason) => status_payload("TIMEOUT", reason),
        Reply::Perm(reason) => status_payload("PERM", reason),
    };
    netstring::encode(&payload, out);
}

fn ok_payload(data: &str) -> Result<Vec<u8>, String> {
    let len = 3 + data.len();
    if len > MAX_REPLY {
        return Err(format!(
            "lookup result of {} bytes exceeds the socketmap reply limit of {MAX_REPLY} bytes",
            data.len()
        ));
    }
    if data.contains('\0') {
        return Err("lookup result contains a NUL byte".to_owned());
    }
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(b"OK ");
    payload.extend_from_slice(data.as_bytes());
    Ok(payload)
}

fn status_payload(status: &str, reason: &str) -> Vec<u8> {
    format!("{status} {}", sanitize_reason(reason, REASON_MAX)).into_bytes()
}

/// Parses a reply payload the way Postfix's client reads it (status word up to the first
/// space). For tests and test clients.
pub fn parse_reply(payload: &[u8]) -> Result<Reply, SocketmapError> {
    let malformed = || SocketmapError::MalformedReply(snippet(payload));
    let space = payload
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(malformed)?;
    let text = std::str::from_utf8(&payload[space + 1..]).map_err(|_| malformed())?;
    match &payload[..space] {
        b"OK" => Ok(Reply::Ok(text.to_owned())),
        b"NOTFOUND" => Ok(Reply::NotFound),
        b"TEMP" => Ok(Reply::Temp(text.to_owned())),
        b"TIMEOUT" => Ok(Reply::Timeout(text.to_owned())),
        b"PERM" => Ok(Reply::Perm(text.to_owned())),
        _ => Err(malformed()),
    }
}

/// Parses one netstring-framed reply at the start of `buf`, enforcing [`MAX_REPLY`] as
/// Postfix does. `Ok(None)` means incomplete. For tests and test clients.
pub fn parse_reply_frame(buf: &[u8]) -> Result<Option<(Reply, usize)>, SocketmapError> {
    match netstring::parse(buf, MAX_REPLY)? {
        None => Ok(None),
        Some((payload, consumed)) => Ok(Some((parse_reply(payload)?, consumed))),
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

    fn round_trip(reply: &Reply) -> Reply {
        let bytes = reply_bytes(reply);
        let (parsed, consumed) = parse_reply_frame(&bytes).unwrap().unwrap();
        assert_eq!(consumed, bytes.len());
        parsed
    }

    #[test]
    fn parses_a_postfix_request() {
        let req = parse_request(b"virtual_alias user@example.org").unwrap();
        assert_eq!(req.map, "virtual_alias");
        assert_eq!(req.key, b"user@example.org");
        assert_eq!(req.lookup_key(), Some("user@example.org"));
    }

    #[test]
    fn key_keeps_spaces_after_the_first() {
        let req = parse_request(b"m a b  c ").unwrap();
        assert_eq!(req.map, "m");
        assert_eq!(req.key, b"a b  c ");
    }

    #[test]
    fn sql_metacharacters_pass_through_untouched() {
        let key: &[u8] = b"x'; DROP TABLE users; -- \"%_\\@example.org";
        let mut payload = b"mailbox ".to_vec();
        payload.extend_from_slice(key);
        let req = parse_request(&payload).unwrap();
        assert_eq!(req.key, key);
        assert_eq!(req.lookup_key().unwrap().as_bytes(), key);
    }

    #[test]
    fn empty_key_parses_but_is_not_looked_up() {
        let req = parse_request(b"virtual ").unwrap();
        assert_eq!(req.key, b"");
        assert_eq!(req.lookup_key(), None);
    }

    #[test]
    fn invalid_utf8_key_parses_but_is_not_looked_up() {
        let req = parse_request(b"virtual \xff\xfe@example.org").unwrap();
        assert_eq!(req.key, b"\xff\xfe@example.org");
        assert_eq!(req.lookup_key(), None);
    }

    #[test]
    fn utf8_key_is_looked_up() {
        let req = parse_request("virtual jürgen@exämple.org".as_bytes()).unwrap();
        assert_eq!(req.lookup_key(), Some("jürgen@exämple.org"));
    }

    #[test]
    fn nul_in_key_is_not_looked_up() {
        let req = parse_request(b"virtual a\0b").unwrap();
        assert_eq!(req.lookup_key(), None);
    }

    #[test]
    fn empty_payload_is_missing_separator() {
        assert!(matches!(
            parse_request(b""),
            Err(SocketmapError::MissingSeparator(_))
        ));
        assert!(matches!(
            parse_request(b"virtual"),
            Err(SocketmapError::MissingSeparator(_))
        ));
    }

    #[test]
    fn empty_map_name() {
        assert_eq!(parse_request(b" key"), Err(SocketmapError::EmptyMapName));
        assert_eq!(parse_request(b" "), Err(SocketmapError::EmptyMapName));
    }

    #[test]
    fn invalid_map_names() {
        for name in [
            &b"vir\0tual"[..],
            b"tab\there",
            b"caf\xc3\xa9",
            b"del\x7f",
            b"\xff",
        ] {
            let mut payload = name.to_vec();
            payload.extend_from_slice(b" key");
            assert!(
                matches!(
                    parse_request(&payload),
                    Err(SocketmapError::InvalidMapName(_))
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn error_messages_are_truncated() {
        let payload = vec![b'x'; 50_000];
        let msg = parse_request(&payload).unwrap_err().to_string();
        assert!(msg.len() < 200, "{} bytes", msg.len());
        let mut payload = vec![0u8; 50_000];
        payload.push(b' ');
        let msg = parse_request(&payload).unwrap_err().to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
    }

    #[test]
    fn encodes_the_five_replies() {
        assert_eq!(reply_bytes(&Reply::Ok("a@b.c".into())), b"8:OK a@b.c,");
        assert_eq!(reply_bytes(&Reply::Ok(String::new())), b"3:OK ,");
        assert_eq!(reply_bytes(&Reply::NotFound), b"9:NOTFOUND ,");
        assert_eq!(
            reply_bytes(&Reply::Temp("db down".into())),
            b"12:TEMP db down,"
        );
        assert_eq!(
            reply_bytes(&Reply::Timeout("slow".into())),
            b"12:TIMEOUT slow,"
        );
        assert_eq!(reply_bytes(&Reply::Perm(String::new())), b"5:PERM ,");
    }

    #[test]
    fn reasons_are_made_protocol_safe() {
        let bytes = reply_bytes(&Reply::Temp("line1\r\nline2\0end".into()));
        assert_eq!(bytes, b"21:TEMP line1??line2?end,");
        let long = "x".repeat(10_000);
        let Reply::Perm(reason) = round_trip(&Reply::Perm(long)) else {
            panic!("expected PERM");
        };
        assert_eq!(reason.len(), REASON_MAX);
    }

    #[test]
    fn ok_at_the_limit_is_sent_whole() {
        let data = "a".repeat(MAX_REPLY - 3);
        let bytes = reply_bytes(&Reply::Ok(data.clone()));
        assert_eq!(bytes.len(), MAX_REPLY + "100000:,".len());
        assert_eq!(round_trip(&Reply::Ok(data.clone())), Reply::Ok(data));
    }

    #[test]
    fn oversized_ok_becomes_temp_not_truncated() {
        let data = "a".repeat(MAX_REPLY - 2);
        match round_trip(&Reply::Ok(data)) {
            Reply::Temp(reason) => assert!(reason.contains("exceeds"), "{reason}"),
            other => panic!("expected TEMP, got {other:?}"),
        }
    }

    #[test]
    fn ok_with_nul_becomes_temp() {
        assert!(matches!(
            round_trip(&Reply::Ok("a@b.c\0evil@d.e".into())),
            Reply::Temp(_)
        ));
    }

    #[test]
    fn ok_data_is_not_sanitized() {
        let data = "a@b.c,\td@e.f\nx y ü";
        assert_eq!(round_trip(&Reply::Ok(data.into())), Reply::Ok(data.into()));
    }

    #[test]
    fn reply_parser_rejects_garbage() {
        for payload in [&b""[..], b"OK", b"YES data", b"ok data", b"OK \xff"] {
            assert!(parse_reply(payload).is_err(), "{payload:?}");
        }
        assert!(matches!(
            parse_reply_frame(b"100001:"),
            Err(SocketmapError::Netstring(NetstringError::TooLong { .. }))
        ));
    }

    #[test]
    fn pipelined_requests() {
        let mut buf = Vec::new();
        encode_request(
            &Request {
                map: "a",
                key: b"k1",
            },
            &mut buf,
        );
        encode_request(&Request { map: "b", key: b"" }, &mut buf);
        let (p1, n1) = netstring::parse(&buf, MAX_REQUEST).unwrap().unwrap();
        assert_eq!(
            parse_request(p1).unwrap(),
            Request {
                map: "a",
                key: b"k1"
            }
        );
        let (p2, n2) = netstring::parse(&buf[n1..], MAX_REQUEST).unwrap().unwrap();
        assert_eq!(parse_request(p2).unwrap(), Request { map: "b", key: b"" });
        assert_eq!(n1 + n2, buf.len());
    }

    fn map_name() -> impl Strategy<Value = String> {
        "[!-~]{1,40}"
    }

    proptest! {
        #[test]
        fn request_round_trip(map in map_name(),
                              key in proptest::collection::vec(any::<u8>(), 0..512)) {
            let req = Request { map: &map, key: &key };
            let mut buf = Vec::new();
            encode_request(&req, &mut buf);
            let (payload, consumed) = netstring::parse(&buf, MAX_REQUEST).unwrap().unwrap();
            prop_assert_eq!(consumed, buf.len());
            prop_assert_eq!(parse_request(payload), Ok(req));
        }

        #[test]
        fn parse_request_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(req) = parse_request(&payload) {
                prop_assert!(!req.map.is_empty());
                prop_assert!(req.map.len() + 1 + req.key.len() == payload.len());
            }
        }

        #[test]
        fn ok_reply_round_trips_or_defers(data in "(?s).{0,300}") {
            match round_trip(&Reply::Ok(data.clone())) {
                Reply::Ok(got) => prop_assert_eq!(got, data),
                Reply::Temp(_) => prop_assert!(data.contains('\0')),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn reasons_always_parse_back(reason in "(?s).{0,300}", which in 0u8..3) {
            let reply = match which {
                0 => Reply::Temp(reason),
                1 => Reply::Timeout(reason),
                _ => Reply::Perm(reason),
            };
            let (Reply::Temp(r) | Reply::Timeout(r) | Reply::Perm(r)) = round_trip(&reply) else {
                return Err(TestCaseError::fail("status changed"));
            };
            prop_assert!(r.len() <= REASON_MAX);
            prop_assert!(r.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        }

        #[test]
        fn parse_reply_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_reply(&payload);
            let _ = parse_reply_frame(&payload);
        }
    }
}
