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
//!
//! The code is split by direction: `command` parses what clients send, `reply`
//! writes what the server answers, `sasl` decodes the PLAIN and LOGIN payloads and
//! holds [`Secret`], and `escape` is the tab-escaping and line framing that the
//! dict and Lua protocols share. Everything public is re-exported here, so callers
//! name it `vmail_proto::auth::…`.

use thiserror::Error;

mod command;
mod escape;
mod reply;
mod sasl;

pub use command::{encode_command, find_line, parse_command, AuthRequest, ClientCommand, Secured};
pub(crate) use escape::{line_end, parse_decimal, strip_line_end};
pub use escape::{tab_escape, tab_unescape};
pub use reply::{encode_handshake, encode_reply, parse_reply, FailCode, Handshake, Reply};
pub use sasl::{
    decode_base64, decode_login_step, decode_plain, parse_plain, Mechanism, PlainCreds, SaslError,
    Secret, LOGIN_PROMPTS,
};

/// Longest line accepted from a client, LF included: `AUTH_CLIENT_MAX_LINE_LENGTH` in
/// Dovecot's `auth-client-interface.h` ("GSSAPI can use quite large packets").
pub const MAX_LINE: usize = 16384;

/// Protocol major version we speak; a client announcing another one must be dropped.
pub const MAJOR_VERSION: u32 = 1;

/// Protocol minor version we announce (Dovecot 2.3 announces 3; 2 is what the
/// `resp=` rules here implement, and clients ignore the minor version).
pub const MINOR_VERSION: u32 = 2;

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

#[cfg(test)]
mod tests;
