//! LMTP (RFC 2033), server side: the codec a `vmail-lmtpd` drives for Postfix's
//! `lmtp:unix:` transport. Pure like the rest of the crate: command lines and message
//! data in, typed commands, replies and decoded message bytes out; the [`Session`] state
//! machine asks its caller for verdicts through the [`Action`]s it returns and does no
//! I/O of its own.
//!
//! The conversation (C = Postfix's `lmtp` client, S = us), one transaction per message:
//! ```text
//! S: 220 host LMTP ready
//! C: LHLO postfix-host                  S: 250-host / 250-PIPELINING / ... / 250 SMTPUTF8
//! C: MAIL FROM:<s@x> SIZE=n BODY=8BITMIME
//! C: RCPT TO:<a@y>  RCPT TO:<b@y>  DATA  (pipelined: one write)
//! S: 250 2.1.0 / 250 2.1.5 / 550 5.1.1 / 354
//! C: message lines, dot-stuffed, then "."
//! S: one reply per accepted recipient, in RCPT order (RFC 2033 4.2)
//! ```
//!
//! Decisions (sources: RFC 2033, RFC 5321 where LMTP defers to it, RFC 1870 SIZE, RFC
//! 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2920 PIPELINING, RFC 2034/3463 enhanced codes,
//! and `man 8 lmtp` for what Postfix sends):
//! - **Command lines** end in LF; one CR before it is dropped. Postfix always sends CRLF;
//!   a bare LF is accepted because nothing can be smuggled through a command line (it is
//!   one line whichever way it ends) and Dovecot's LMTP accepts it too. A CR elsewhere, a
//!   NUL or another control byte (TAB aside) makes the line a 500 5.5.2 syntax error.
//! - **Line limit** [`MAX_LINE`] = 1024 bytes with the line end. RFC 5321 4.5.3.1.4 gives
//!   512 and lets extensions add to it: SIZE=<20 digits> (RFC 1870: 26), BODY=8BITMIME
//!   (14) and SMTPUTF8 (9) add about 50, and UTF-8 paths (RFC 6531) are counted in octets,
//!   so 4-byte characters can make a 256-character path up to 1 KiB. Past the limit the
//!   line is discarded as it arrives (never buffered) and answered 500 5.5.2 once its end
//!   is seen, so the session stays in step.
//! - **Paths**: `<>` (MAIL only), `<local@domain>` with dot-atom or quoted local parts
//!   (unquoted in [`Mailbox::local`], as Postfix's own internal form and vmail-lda's
//!   recipient argument are), source routes `<@a,@b:u@d>` parsed and dropped (RFC 5321
//!   4.1.2 / C.). Limits of RFC 5321 4.5.3.1: local part 64 octets, domain 255, the path
//!   256 with its brackets (501 "path too long"). A domain-less `<postmaster>` is refused:
//!   Postfix always qualifies addresses before delivery. Non-ASCII addresses need
//!   `SMTPUTF8` on MAIL (553 5.6.7, RFC 6531 3.7.4.1).
//! - **MAIL parameters**: `SIZE=n` (over the maximum: 552 5.3.4 at once, RFC 1870),
//!   `BODY=7BIT|8BITMIME`, `SMTPUTF8`; anything else, or a repeated one, is 555 5.5.4.
//!   **RCPT parameters**: none, because DSN is not advertised: we deliver finally and send
//!   no notifications, Postfix keeps NOTIFY/ORCPT in its queue and sends the DSNs itself
//!   ("delivered" with `lmtp_assume_final = yes`).
//! - **Capabilities** ([`Session`]'s LHLO reply): PIPELINING (RFC 2033 requires it),
//!   ENHANCEDSTATUSCODES (RFC 2033 recommends it; the verdicts map to 5.1.1, 5.2.2 ...
//!   which Postfix logs and puts in bounces), 8BITMIME (we store bytes as they come;
//!   without it Postfix would rewrite 8-bit bodies to quoted-printable and break DKIM),
//!   `SIZE <max>` (Postfix then sends SIZE= and an oversized message is refused before
//!   it is transferred), SMTPUTF8 (without it Postfix bounces mail that needs it). Not:
//!   DSN (above), CHUNKING/BINARYMIME (Postfix's client never sends BDAT), STARTTLS and
//!   AUTH (a local socket), XFORWARD/XCLIENT (nothing here would use them).
//! - **Refused commands**: HELO/EHLO 500 5.5.1 (LMTP has only LHLO, RFC 2033 4.1), BDAT,
//!   STARTTLS, AUTH, EXPN, HELP, ETRN, TURN 502 5.5.1 (known, not implemented), anything
//!   else 500 5.5.1. VRFY gets 252 2.5.0 (RFC 5321 3.5.3: no verification, still try).
//! - **Message data** ([`DataDecoder`]): only CRLF ends a line, so only CRLF "." CRLF ends
//!   the data and only a "." after CRLF is unstuffed; a bare LF or CR is message content.
//!   That is what the SMTP smuggling fixes settled on (Postfix 3.9
//!   `smtpd_forbid_bare_newline`); Postfix's client sends every line with CRLF, so its
//!   messages are unaffected. The decoder keeps no copy of the message: a few bytes of
//!   state, whatever the chunking.
//! - **Size**: counted as the message's size on the wire after unstuffing (CRLF is 2
//!   bytes, as SIZE= counts it), whatever line ends the caller asks for. Past the maximum
//!   the decoder stops producing output but reads on to the terminator, and every
//!   recipient gets 552 5.3.4.
//!
//! Split by job: `reply` formats replies, `path` and `command` parse command lines,
//! `data` decodes message data, `session` is the state machine. Everything public is
//! re-exported here, so callers name it `vmail_proto::lmtp::…`.

mod command;
mod data;
mod path;
mod reply;
mod session;

pub use command::{find_line, parse_command, Body, Command, LineTooLong, MailFrom};
pub use data::{DataDecoder, DataProgress, LineEnds};
pub use path::Mailbox;
pub use reply::{Reply, Status};
pub use session::{Action, Config, Session, Transaction};

/// Longest command line accepted, line end included (see the module documentation).
pub const MAX_LINE: usize = 1024;

/// Longest local part, in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;

/// Longest domain, in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;

/// Longest path with its angle brackets, in octets (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;

#[cfg(test)]
mod tests;
