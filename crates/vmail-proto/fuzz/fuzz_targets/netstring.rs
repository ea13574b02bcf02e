//! Netstring parser on arbitrary bytes: never panics, respects the limit and the buffer,
//! and what it accepts re-encodes to a frame that parses back to the same payload and
//! whose every proper prefix is "incomplete".
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::netstring;

fuzz_target!(|data: &[u8]| {
    // Vary the limit with the first byte so small limits are exercised too.
    let (max, buf) = match data.split_first() {
        Some((&b, rest)) if b < 0x80 => (usize::from(b), rest),
        _ => (100_000, data),
    };
    if let Ok(Some((payload, consumed))) = netstring::parse(buf, max) {
        assert!(payload.len() <= max);
        assert!(consumed <= buf.len());
        assert_eq!(buf[consumed - 1], b',');
        let mut again = Vec::new();
        netstring::encode(payload, &mut again);
        assert_eq!(
            netstring::parse(&again, max),
            Ok(Some((payload, again.len())))
        );
        for cut in 0..again.len() {
            assert_eq!(netstring::parse(&again[..cut], max), Ok(None));
        }
    }
});
