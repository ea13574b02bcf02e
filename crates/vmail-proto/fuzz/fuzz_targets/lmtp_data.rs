//! LMTP message data on arbitrary bytes, cut into arbitrary chunks: the chunked decoding
//! equals the decoding in one piece (output, end offset, size), each call appends at
//! most its input and one pending CR, and the terminator offset lies within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::lmtp::{DataDecoder, DataProgress, LineEnds};

fn decode(chunks: &[&[u8]], ends: LineEnds, limit: u64) -> (Vec<u8>, Option<usize>, u64) {
    let mut d = DataDecoder::new(ends, limit);
    let mut out = Vec::new();
    let mut offset = 0;
    for chunk in chunks {
        let before = out.len();
        let progress = d.feed(chunk, &mut out);
        assert!(out.len() - before <= chunk.len() + 1);
        match progress {
            DataProgress::More => offset += chunk.len(),
            DataProgress::End { consumed } => {
                assert!(consumed <= chunk.len());
                return (out, Some(offset + consumed), d.size());
            }
        }
    }
    (out, None, d.size())
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the line ends and the limit, the next four the cut points.
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let ends = if mode & 1 == 0 {
        LineEnds::Crlf
    } else {
        LineEnds::Lf
    };
    let limit = if mode & 2 == 0 {
        u64::MAX
    } else {
        u64::from(mode >> 2)
    };
    let (cuts, data) = rest.split_at(rest.len().min(4));
    let whole = decode(&[data], ends, limit);
    if let (out, Some(end), size) = &whole {
        assert!(*end <= data.len());
        let taken = &data[..*end];
        assert!(taken.ends_with(b"\r\n.\r\n") || taken == b".\r\n");
        assert!(out.len() as u64 <= (*size).min(limit));
    }
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * data.len() / 255)
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([data.len()]) {
        chunks.push(&data[start..p]);
        start = p;
    }
    assert_eq!(decode(&chunks, ends, limit), whole);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(decode(&bytes, ends, limit), whole);
});
