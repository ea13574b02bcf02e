//! Streaming CRLF → LF conversion with O(1) state, for writing messages the Maildir way.
//!
//! Maildir files use bare LF line endings; Dovecot converts on save the same way
//! (`i_stream_create_lf()` in `maildir-save.c` unless `mail_save_crlf = yes`). Only the pair
//! CR LF becomes LF: a lone CR is kept, and nothing is added or removed anywhere else (a
//! message without a final newline stays without one).

/// Converts CRLF to LF across arbitrarily split input chunks.
#[derive(Debug, Default)]
pub(crate) struct LfNormalizer {
    /// The previous chunk ended in CR: it may be the first half of a CRLF.
    pending_cr: bool,
}

impl LfNormalizer {
    /// Appends the converted form of `input` to `out`. A CR at the very end of `input` is
    /// held back until the next call or [`finish`](Self::finish).
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        if self.pending_cr {
            let Some(&first) = rest.first() else { return };
            self.pending_cr = false;
            if first == b'\n' {
                out.push(b'\n');
                rest = &rest[1..];
            } else {
                out.push(b'\r');
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\r') {
            out.extend_from_slice(&rest[..i]);
            match rest.get(i + 1) {
                Some(b'\n') => {
                    out.push(b'\n');
                    rest = &rest[i + 2..];
                }
                Some(_) => {
                    out.push(b'\r');
                    rest = &rest[i + 1..];
                }
                None => {
                    self.pending_cr = true;
                    return;
                }
            }
        }
        out.extend_from_slice(rest);
    }

    /// Flushes a held-back CR at the end of input.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// The whole-buffer equivalent, for tests and small inputs.
#[cfg(test)]
pub(crate) fn normalize(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut n = LfNormalizer::default();
    n.push(input, &mut out);
    n.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converts_only_crlf() {
        assert_eq!(normalize(b"a\r\nb\r\n"), b"a\nb\n");
        assert_eq!(normalize(b"a\nb\n"), b"a\nb\n");
        assert_eq!(normalize(b"a\rb"), b"a\rb");
        assert_eq!(normalize(b"a\r"), b"a\r");
        assert_eq!(normalize(b"\r\r\n"), b"\r\n");
        assert_eq!(normalize(b"\n\r"), b"\n\r");
        assert_eq!(normalize(b"no newline"), b"no newline");
        assert_eq!(normalize(b""), b"");
    }

    #[test]
    fn cr_at_a_chunk_boundary() {
        let mut n = LfNormalizer::default();
        let mut out = Vec::new();
        n.push(b"a\r", &mut out);
        assert_eq!(out, b"a");
        n.push(b"", &mut out);
        assert_eq!(out, b"a");
        n.push(b"\nb\r", &mut out);
        n.push(b"c", &mut out);
        n.finish(&mut out);
        assert_eq!(out, b"a\nb\rc");
    }

    proptest! {
        #[test]
        fn chunking_does_not_matter(data in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..20)) {
            let whole = normalize(&data);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut n = LfNormalizer::default();
            let mut out = Vec::new();
            let mut start = 0;
            for c in cuts {
                n.push(&data[start..c], &mut out);
                start = c;
            }
            n.push(&data[start..], &mut out);
            n.finish(&mut out);
            prop_assert_eq!(&out, &whole);
            // No CRLF pair survives unless it came from CR CR LF.
            let crlf_in = data.windows(2).filter(|w| w == b"\r\n").count();
            prop_assert_eq!(whole.len(), data.len() - crlf_in);
        }
    }
}
