//! Property test: any bytes with any mix of LF, CRLF and lone CR, read in any chunking,
//! are stored as the LF-normalised input, and `S=` is the stored size.

use std::fs;

use proptest::prelude::*;
use vmail_maildir::{deliver, Delivery, Error};
use vmail_test_support::maildir::*;

/// Pieces a message is made of: arbitrary bytes and line endings of every kind.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\r\n".to_vec()),
        Just(b"Header: value\r\n".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stored_bytes_are_the_lf_normalised_input(
        pieces in proptest::collection::vec(piece(), 0..60),
        sizes in proptest::collection::vec(1usize..70_000, 1..6),
        prepend in proptest::bool::ANY,
    ) {
        let input: Vec<u8> = pieces.concat();
        let dir = tempfile::tempdir().unwrap();
        let mut d = Delivery::new(dir.path(), "h");
        if prepend {
            d.prepend.push(("Delivered-To".into(), "a@b".into()));
        }
        let mut r = ChunkReader { data: &input, sizes, i: 0 };
        match deliver(&d, &mut r) {
            Ok(got) => {
                prop_assert!(!input.is_empty());
                let stored = fs::read(&got.path).unwrap();
                let mut expected = if prepend { b"Delivered-To: a@b\n".to_vec() } else { Vec::new() };
                expected.extend_from_slice(&lf_reference(&input));
                prop_assert_eq!(&stored, &expected);
                prop_assert_eq!(got.size, stored.len() as u64);
                prop_assert_eq!(s_size(&got.path), stored.len() as u64);
                prop_assert!(names(&dir.path().join("tmp")).is_empty());
            }
            Err(Error::Empty) => prop_assert!(input.is_empty()),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
