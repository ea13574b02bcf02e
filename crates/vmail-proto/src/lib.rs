//! Pure codecs for the protocols vmail's daemons speak. Bytes in, typed values or errors
//! out; no I/O, no async, so the connection code can feed any partial buffer.
//!
//! - Postfix's lookup protocols, which vmail-lookupd serves (and vmail-lda speaks as a
//!   client): [`netstring`] framing, [`socketmap`] and [`tcp_table`].
//! - The protocols vmail-authd serves to Dovecot and Postfix: Dovecot's auth client
//!   protocol with its PLAIN and LOGIN payloads ([`auth`], Postfix SASL), Dovecot's dict
//!   proxy protocol ([`dict`]), and our own line protocol for Dovecot's Lua
//!   passdb/userdb script ([`lua`]).
//! - LMTP (RFC 2033), which a delivery server for Postfix's `lmtp` client speaks
//!   ([`lmtp`]): command parsing, the session state machine, streaming message data
//!   decoding and reply formatting. No server uses it yet.
//!
//! Every parser takes the bytes received so far and answers `Ok(None)` ("incomplete")
//! until a whole frame or line is present, and then reports how many bytes it consumed,
//! so a server can call it in a loop over a growing buffer and handle pipelined
//! requests. Limits are checked before the payload is awaited or copied.

pub mod auth;
pub mod dict;
pub mod lmtp;
pub mod lua;
pub mod netstring;
pub mod socketmap;
pub mod tcp_table;

/// A received lookup key as text, or `None` when it cannot name anything we store:
/// empty, not UTF-8, or containing NUL. Servers answer "not found" for `None` without
/// asking the backend, as Postfix itself does for non-UTF-8 keys (`dict_utf8_lookup()`
/// in `dict_utf8.c` skips the lookup and reports no error: "the item cannot exist").
/// Postfix never sends an empty key or a NUL; its keys are C strings.
pub fn lookup_key(key: &[u8]) -> Option<&str> {
    if key.is_empty() || key.contains(&0) {
        return None;
    }
    std::str::from_utf8(key).ok()
}

/// Longest piece of peer input quoted in an error message. Errors end up in logs; a
/// hostile or broken client must not be able to make us log megabytes.
const SNIPPET_MAX: usize = 64;

/// Renders untrusted bytes for an error message: escaped, so control bytes cannot forge
/// log lines, and cut to [`SNIPPET_MAX`] input bytes.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    let cut = bytes.len().min(SNIPPET_MAX);
    let mut s = bytes[..cut].escape_ascii().to_string();
    if bytes.len() > cut {
        s.push_str("...");
    }
    s
}

/// Makes a human-readable reason safe to put on the wire and into Postfix's log:
/// anything that is not printable ASCII becomes '?', and the text is cut to `max` bytes.
/// Postfix itself logs at most 200 bytes of a socketmap reason (`%.200s` in
/// `dict_sockmap.c`), so nothing useful is lost.
pub(crate) fn sanitize_reason(reason: &str, max: usize) -> String {
    reason
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_key_filters_impossible_keys() {
        assert_eq!(lookup_key(b"a@example.org"), Some("a@example.org"));
        assert_eq!(
            lookup_key("ü@example.org".as_bytes()),
            Some("ü@example.org")
        );
        assert_eq!(lookup_key(b""), None);
        assert_eq!(lookup_key(b"a\0b"), None);
        assert_eq!(lookup_key(b"\xc3"), None);
    }

    #[test]
    fn snippet_escapes_and_truncates() {
        assert_eq!(snippet(b"a\nb\0"), "a\\nb\\x00");
        let long = vec![b'x'; 10_000];
        let s = snippet(&long);
        assert_eq!(s.len(), SNIPPET_MAX + 3);
        assert!(s.ends_with("..."));
    }

    #[test]
    fn sanitize_reason_replaces_unsafe_chars() {
        assert_eq!(sanitize_reason("db down\r\n\0é", 100), "db down????");
        assert_eq!(sanitize_reason("abcdef", 3), "abc");
    }
}
