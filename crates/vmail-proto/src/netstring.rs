//! Netstring framing (`<len>:<bytes>,`), as used by the Postfix socketmap protocol.
//!
//! Sources: <http://cr.yp.to/proto/netstrings.txt>, `man 5 socketmap_table`, and
//! Postfix's reader `netstring_get_length()` / `netstring_get()` in `src/util/netstring.c`.
//!
//! Choices, relative to that reader:
//! - Leading zeros in the length (`05:hello,`) are accepted, because Postfix's reader
//!   accepts them (it folds every digit into the length without looking at position).
//!   djb's text forbids them, but no peer of ours sends them (Postfix writes `%ld:`), so
//!   rejecting them would only make us stricter than the reference implementation.
//! - An empty length (`:,`) is rejected. Postfix reads it as length 0; that is an
//!   accident of its loop, not a format anyone produces, and a missing length is more
//!   likely a desynchronised stream than an empty string.
//! - The length may have at most as many digits as `max_len` has. Postfix guards only
//!   against `ssize_t` overflow; we also refuse a long run of digits (even zeros) as
//!   soon as it is seen, so a peer cannot make the connection buffer grow without bound
//!   before the `len > max_len` check can fire.

use thiserror::Error;

/// Why a byte sequence is not an acceptable netstring. Every variant means the stream
/// is out of sync: the connection cannot continue after it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetstringError {
    /// The frame starts with ':' (no length digits at all).
    #[error("netstring has an empty length prefix")]
    EmptyLength,
    /// A byte other than a digit or the ':' terminator inside the length prefix. This
    /// covers both "non-digit in the length" and "missing ':'", which cannot be told
    /// apart on the wire.
    #[error("netstring length prefix: expected a digit or ':' at offset {offset}, found byte {byte:#04x}")]
    BadLengthByte { byte: u8, offset: usize },
    /// The length prefix has more digits than `max_len` needs.
    #[error("netstring length prefix is longer than {max_digits} digits")]
    LengthPrefixTooLong { max_digits: usize },
    /// The announced payload is longer than the caller's limit.
    #[error("netstring payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    /// The byte after the payload is not ','; usually a wrong length prefix.
    #[error("netstring payload of {len} bytes is followed by byte {found:#04x}, not ','")]
    MissingComma { len: usize, found: u8 },
}

/// Parses one netstring at the start of `buf`.
///
/// Returns `Ok(None)` while `buf` holds a valid but incomplete prefix of a frame,
/// `Ok(Some((payload, consumed)))` once the whole frame is present (`consumed` counts the
/// prefix, payload and ',', so bytes of a following pipelined frame are left alone),
/// and an error as soon as the bytes seen so far cannot start an acceptable frame. The
/// size limit is checked as soon as the ':' arrives, before any payload is awaited.
///
/// A prefix that announces more bytes than the peer sends is indistinguishable from a
/// slow peer: it stays `Ok(None)` until more bytes arrive (then usually
/// [`NetstringError::MissingComma`]) or the connection layer times out or sees EOF.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<(&[u8], usize)>, NetstringError> {
    let max_digits = decimal_digits(max_len);
    let mut len: usize = 0;
    let mut colon = None;
    for (offset, &byte) in buf.iter().enumerate() {
        match byte {
            b':' if offset == 0 => return Err(NetstringError::EmptyLength),
            b':' => {
                colon = Some(offset);
                break;
            }
            b'0'..=b'9' => {
                if offset >= max_digits {
                    return Err(NetstringError::LengthPrefixTooLong { max_digits });
                }
                // Cannot overflow for max_len < usize::MAX / 10, but max_len is the
                // caller's choice, so stay checked and treat overflow as "too long".
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(byte - b'0')))
                    .ok_or(NetstringError::TooLong {
                        len: usize::MAX,
                        max: max_len,
                    })?;
            }
            _ => return Err(NetstringError::BadLengthByte { byte, offset }),
        }
    }
    let Some(colon) = colon else {
        return Ok(None);
    };
    if len > max_len {
        return Err(NetstringError::TooLong { len, max: max_len });
    }
    let start = colon + 1;
    // start + len + 1 cannot overflow: start <= max_digits + 1 and len <= max_len, but a
    // caller passing max_len near usize::MAX would make it possible.
    let Some(end) = start.checked_add(len) else {
        return Err(NetstringError::TooLong { len, max: max_len });
    };
    match buf.get(end) {
        None => Ok(None),
        Some(b',') => Ok(Some((&buf[start..end], end + 1))),
        Some(&found) => Err(NetstringError::MissingComma { len, found }),
    }
}

/// Appends `payload` to `out` as one netstring (shortest length prefix, as Postfix's
/// `netstring_put()` writes it).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + decimal_digits(payload.len()) + 2);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// Number of decimal digits needed to write `n` (1 for 0).
fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 100_000;

    fn enc(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(payload, &mut out);
        out
    }

    #[test]
    fn decimal_digits_counts() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(100_000), 6);
        assert_eq!(decimal_digits(usize::MAX), usize::MAX.to_string().len());
    }

    #[test]
    fn encodes_like_postfix() {
        assert_eq!(enc(b"hello"), b"5:hello,");
        assert_eq!(enc(b""), b"0:,");
        assert_eq!(enc(&[b'x'; 12]), b"12:xxxxxxxxxxxx,");
    }

    #[test]
    fn parses_simple_frames() {
        assert_eq!(parse(b"5:hello,", MAX), Ok(Some((&b"hello"[..], 8))));
        assert_eq!(parse(b"0:,", MAX), Ok(Some((&b""[..], 3))));
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        assert_eq!(parse(b"", MAX), Ok(None));
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_incomplete() {
        for frame in [&b"5:hello,"[..], b"0:,", b"13:virtual alias,", b"3:\0\0\0,"] {
            for cut in 0..frame.len() {
                assert_eq!(
                    parse(&frame[..cut], MAX),
                    Ok(None),
                    "cut {cut} of {frame:?}"
                );
            }
            assert!(parse(frame, MAX).unwrap().is_some());
        }
    }

    #[test]
    fn length_prefix_too_short_is_missing_comma() {
        assert_eq!(
            parse(b"3:hello,", MAX),
            Err(NetstringError::MissingComma {
                len: 3,
                found: b'l'
            })
        );
    }

    #[test]
    fn length_prefix_too_long_waits_then_fails() {
        // Alone, the frame looks like a slow peer.
        assert_eq!(parse(b"7:hello,", MAX), Ok(None));
        // Once more bytes arrive, the ',' is not where it should be.
        assert_eq!(
            parse(b"7:hello,5:hello,", MAX),
            Err(NetstringError::MissingComma {
                len: 7,
                found: b':'
            })
        );
    }

    #[test]
    fn missing_trailing_comma() {
        assert_eq!(
            parse(b"5:hello;", MAX),
            Err(NetstringError::MissingComma {
                len: 5,
                found: b';'
            })
        );
    }

    #[test]
    fn oversized_is_rejected_before_the_payload_arrives() {
        assert_eq!(
            parse(b"100001:", MAX),
            Err(NetstringError::TooLong {
                len: 100_001,
                max: MAX
            })
        );
        assert_eq!(
            parse(b"6:", 5),
            Err(NetstringError::TooLong { len: 6, max: 5 })
        );
        // Exactly at the limit is fine.
        let frame = enc(&[b'a'; 5]);
        assert!(parse(&frame, 5).unwrap().is_some());
    }

    #[test]
    fn huge_digit_string_is_rejected_early() {
        // 7 digits for a 6-digit limit: rejected at the 7th digit, no ':' needed.
        assert_eq!(
            parse(b"1234567", MAX),
            Err(NetstringError::LengthPrefixTooLong { max_digits: 6 })
        );
        let digits = vec![b'9'; 1_000_000];
        assert_eq!(
            parse(&digits, MAX),
            Err(NetstringError::LengthPrefixTooLong { max_digits: 6 })
        );
        // Leading zeros count as digits, so an endless run of zeros cannot stall us.
        let zeros = vec![b'0'; 1000];
        assert!(matches!(
            parse(&zeros, MAX),
            Err(NetstringError::LengthPrefixTooLong { .. })
        ));
    }

    #[test]
    fn no_overflow_with_unbounded_limit() {
        let digits = vec![b'9'; 40];
        assert!(matches!(
            parse(&digits, usize::MAX),
            Err(NetstringError::TooLong { .. } | NetstringError::LengthPrefixTooLong { .. })
        ));
        let mut frame = usize::MAX.to_string().into_bytes();
        frame.push(b':');
        assert!(matches!(
            parse(&frame, usize::MAX),
            Err(NetstringError::TooLong { .. })
        ));
    }

    #[test]
    fn leading_zeros_are_accepted_like_postfix() {
        assert_eq!(parse(b"05:hello,", MAX), Ok(Some((&b"hello"[..], 9))));
        assert_eq!(parse(b"000:,", MAX), Ok(Some((&b""[..], 5))));
    }

    #[test]
    fn empty_length_is_rejected() {
        assert_eq!(parse(b":,", MAX), Err(NetstringError::EmptyLength));
        assert_eq!(parse(b":", MAX), Err(NetstringError::EmptyLength));
    }

    #[test]
    fn non_digit_in_length() {
        assert_eq!(
            parse(b"1a:x,", MAX),
            Err(NetstringError::BadLengthByte {
                byte: b'a',
                offset: 1
            })
        );
        assert_eq!(
            parse(b"-1:", MAX),
            Err(NetstringError::BadLengthByte {
                byte: b'-',
                offset: 0
            })
        );
        assert_eq!(
            parse(b" 5:hello,", MAX),
            Err(NetstringError::BadLengthByte {
                byte: b' ',
                offset: 0
            })
        );
        // Detected before the frame is complete.
        assert!(parse(b"5x", MAX).is_err());
    }

    #[test]
    fn missing_colon() {
        assert_eq!(
            parse(b"5hello,", MAX),
            Err(NetstringError::BadLengthByte {
                byte: b'h',
                offset: 1
            })
        );
    }

    #[test]
    fn nul_and_separators_inside_payload_are_data() {
        let payload = b"a\0b:c,d\n";
        let frame = enc(payload);
        assert_eq!(parse(&frame, MAX), Ok(Some((&payload[..], frame.len()))));
    }

    #[test]
    fn pipelined_frames_are_consumed_one_at_a_time() {
        let mut buf = enc(b"virtual a@example.org");
        buf.extend_from_slice(&enc(b""));
        buf.extend_from_slice(b"3:ab"); // third frame still incomplete

        let (p1, n1) = parse(&buf, MAX).unwrap().unwrap();
        assert_eq!(p1, b"virtual a@example.org");
        assert_eq!(n1, 25);
        let (p2, n2) = parse(&buf[n1..], MAX).unwrap().unwrap();
        assert_eq!(p2, b"");
        assert_eq!(n2, 3);
        assert_eq!(parse(&buf[n1 + n2..], MAX), Ok(None));
    }

    #[test]
    fn errors_do_not_echo_input() {
        let err = parse(b"100001:", MAX).unwrap_err().to_string();
        assert!(err.len() < 100, "{err}");
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2048),
                      trailing in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = enc(&payload);
            let framed = buf.len();
            buf.extend_from_slice(&trailing);
            prop_assert_eq!(parse(&buf, MAX), Ok(Some((&payload[..], framed))));
        }

        #[test]
        fn prefixes_of_valid_frames_are_incomplete(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            cut in any::<proptest::sample::Index>(),
        ) {
            let frame = enc(&payload);
            let cut = cut.index(frame.len());
            prop_assert_eq!(parse(&frame[..cut], MAX), Ok(None));
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512),
                        max in 0usize..1000) {
            if let Ok(Some((payload, consumed))) = parse(&buf, max) {
                prop_assert!(payload.len() <= max);
                prop_assert!(consumed <= buf.len());
            }
        }

        #[test]
        fn never_panics_on_digit_heavy_input(
            buf in "[0-9]{0,30}:?[0-9a-z,]{0,30}",
            max in any::<usize>(),
        ) {
            let _ = parse(buf.as_bytes(), max);
        }
    }
}
