use super::*;
use proptest::prelude::*;

/// Decodes `input` fed in the given pieces: the output and where the data ended.
fn decode_chunks(chunks: &[&[u8]], ends: LineEnds, limit: u64) -> (Vec<u8>, Option<usize>, u64) {
    let mut d = DataDecoder::new(ends, limit);
    let mut out = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let before = out.len();
        match d.feed(chunk, &mut out) {
            DataProgress::More => {
                assert!(out.len() - before <= chunk.len() + 1);
                offset += chunk.len();
            }
            DataProgress::End { consumed } => {
                assert!(consumed <= chunk.len());
                return (out, Some(offset + consumed), d.size());
            }
        }
    }
    (out, None, d.size())
}

fn decode(input: &[u8]) -> (Vec<u8>, Option<usize>) {
    let (out, end, _) = decode_chunks(&[input], LineEnds::Crlf, u64::MAX);
    (out, end)
}

#[test]
fn terminator_ends_the_data_and_the_rest_is_left() {
    let input = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let (out, end) = decode(input);
    assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
    assert_eq!(&input[end.unwrap()..], b"QUIT\r\n");
}

#[test]
fn empty_message_and_leading_dot_lines() {
    assert_eq!(decode(b".\r\n"), (Vec::new(), Some(3)));
    assert_eq!(decode(b"..\r\n.\r\n"), (b".\r\n".to_vec(), Some(7)));
    assert_eq!(decode(b".x\r\n.\r\n"), (b"x\r\n".to_vec(), Some(7)));
    assert_eq!(decode(b"a\r\n...\r\n.\r\n").0, b"a\r\n..\r\n");
    // ".\r" and more is no terminator: the dot is unstuffed and the CR kept.
    assert_eq!(decode(b".\rx\r\n.\r\n").0, b"\rx\r\n");
    // A dot inside a line is content.
    assert_eq!(decode(b"a.b\r\n.\r\n").0, b"a.b\r\n");
}

#[test]
fn only_crlf_ends_lines_bare_lf_and_cr_are_content() {
    // The SMTP smuggling shapes: none of them ends the data.
    for fake in [
        &b"a\n.\nb"[..],
        b"a\n.\r\nb",
        b"a\r\n.\nb",
        b"a\r.\r\nb",
        b"a\r\n.\rb",
    ] {
        let (out, end) = decode(fake);
        assert_eq!(end, None, "{:?}", fake.escape_ascii().to_string());
        assert!(!out.is_empty());
    }
    let (out, _) = decode(b"a\n.b\r\n.\r\n");
    assert_eq!(out, b"a\n.b\r\n", "no unstuffing after a bare LF");
    assert_eq!(decode(b"a\r\r\nb\r\n.\r\n").0, b"a\r\r\nb\r\n");
}

#[test]
fn lf_mode_converts_crlf_only_and_counts_wire_size() {
    let input = b"a\r\nb\nc\rd\r\n..e\r\n.\r\n";
    let (out, end, size) = decode_chunks(&[input], LineEnds::Lf, u64::MAX);
    assert_eq!(out, b"a\nb\nc\rd\n.e\n");
    assert_eq!(end, Some(input.len()));
    assert_eq!(size, 14, "CRLF counted as 2, the stuffed dot not at all");
    let (crlf, _, crlf_size) = decode_chunks(&[input], LineEnds::Crlf, u64::MAX);
    assert_eq!((crlf.len() as u64, crlf_size), (14, 14));
}

#[test]
fn over_the_limit_output_stops_but_the_data_is_read_to_its_end() {
    let input = b"0123456789\r\n0123456789\r\n.\r\nQUIT\r\n";
    let mut d = DataDecoder::new(LineEnds::Crlf, 15);
    let mut out = Vec::new();
    assert_eq!(
        d.feed(input, &mut out),
        DataProgress::End {
            consumed: input.len() - 6
        }
    );
    assert!(d.over_limit() && d.is_done());
    assert_eq!(d.size(), 24);
    assert_eq!(out, b"0123456789\r\n012", "the first 15 bytes");
    let mut exact = DataDecoder::new(LineEnds::Crlf, 24);
    exact.feed(input, &mut out);
    assert!(!exact.over_limit());
}

#[test]
fn after_the_end_nothing_more_is_taken() {
    let mut d = DataDecoder::new(LineEnds::Crlf, 100);
    let mut out = Vec::new();
    assert_eq!(
        d.feed(b".\r\n", &mut out),
        DataProgress::End { consumed: 3 }
    );
    assert_eq!(
        d.feed(b"more\r\n.\r\n", &mut out),
        DataProgress::End { consumed: 0 }
    );
    assert_eq!(d.feed(b"", &mut out), DataProgress::End { consumed: 0 });
    assert!(out.is_empty());
}

#[test]
fn every_two_way_split_decodes_like_the_whole() {
    let input = b"..a\r\n.\rb\r\r\n\n.\r\nx\r\n..\r\n.\r\nNOOP\r\n";
    let whole = decode_chunks(&[input], LineEnds::Lf, u64::MAX);
    assert!(whole.1.is_some());
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(
            decode_chunks(&[a, b], LineEnds::Lf, u64::MAX),
            whole,
            "cut {cut}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_chunks(&bytes, LineEnds::Lf, u64::MAX), whole);
}

#[test]
fn ten_mib_in_4_kib_chunks_keeps_memory_flat() {
    let line = b"..The quick brown fox jumps over the lazy dog, 0123456789 0123456789.\r\n";
    let mut message = Vec::new();
    while message.len() < 10 << 20 {
        message.extend_from_slice(line);
    }
    message.extend_from_slice(b".\r\n");
    let mut d = DataDecoder::new(LineEnds::Lf, u64::MAX);
    let mut out = Vec::with_capacity(4097);
    let mut total = 0u64;
    let mut ended = None;
    for (i, chunk) in message.chunks(4096).enumerate() {
        match d.feed(chunk, &mut out) {
            DataProgress::More => {}
            DataProgress::End { consumed } => ended = Some(i * 4096 + consumed),
        }
        total += out.len() as u64;
        out.clear();
        // The caller's buffer never needs more than one chunk and a pending CR.
        assert!(out.capacity() <= 8192, "grew to {}", out.capacity());
    }
    assert_eq!(ended, Some(message.len()));
    let lines = ((message.len() - 3) / line.len()) as u64;
    assert_eq!(d.size(), lines * (line.len() as u64 - 1));
    assert_eq!(total, lines * (line.len() as u64 - 2));
    // The decoder itself holds no buffer at all.
    assert!(std::mem::size_of::<DataDecoder>() <= 32);
}

proptest! {
    #[test]
    fn any_chunking_decodes_like_one_chunk(
        data in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
        cuts in proptest::collection::vec(0usize..200, 0..8),
        limit in prop_oneof![Just(u64::MAX), 0u64..100],
        lf in any::<bool>(),
    ) {
        let ends = if lf { LineEnds::Lf } else { LineEnds::Crlf };
        let whole = decode_chunks(&[&data], ends, limit);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([data.len()]) {
            chunks.push(&data[start..c]);
            start = c;
        }
        prop_assert_eq!(decode_chunks(&chunks, ends, limit), whole);
    }

    #[test]
    fn stuffed_messages_come_back_intact(
        lines in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'x'), Just(b' ')], 0..10), 0..20),
    ) {
        // What Postfix does: every line that starts with '.' gets another one.
        let mut wire = Vec::new();
        let mut expect = Vec::new();
        for line in &lines {
            if line.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
            wire.extend_from_slice(b"\r\n");
            expect.extend_from_slice(line);
            expect.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        prop_assert_eq!(decode(&wire), (expect, Some(wire.len())));
    }
}
