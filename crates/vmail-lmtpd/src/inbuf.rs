//! A connection's input: the bytes read and not yet consumed by the session. Consuming
//! moves an offset; the unconsumed tail is moved to the front once per read, not once per
//! command, so a read full of pipelined commands (64 KiB of them) costs one move of the
//! buffer rather than one per command (quadratic).

#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    /// Where the unconsumed bytes begin.
    start: usize,
    /// How often the unconsumed bytes were moved to the front.
    compactions: u64,
}

impl InBuf {
    pub fn with_capacity(n: usize) -> InBuf {
        InBuf {
            buf: Vec::with_capacity(n),
            ..InBuf::default()
        }
    }

    /// The bytes not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Marks the first `n` pending bytes consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Appends what was read, after moving the pending bytes to the front (at most a
    /// partial command line: everything complete was consumed before the read).
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
            self.compactions += 1;
        }
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The review of issue 19: the buffer was drained once per command.
    #[test]
    fn consuming_many_commands_moves_the_buffer_once() {
        let mut b = InBuf::with_capacity(64 * 1024);
        b.extend(&b"NOOP\r\n".repeat(10_000));
        b.extend(b"NO");
        let mut seen = 0;
        while let Some(lf) = b.pending().iter().position(|&c| c == b'\n') {
            assert_eq!(&b.pending()[..=lf], b"NOOP\r\n");
            b.consume(lf + 1);
            seen += 1;
        }
        assert_eq!((seen, b.pending()), (10_000, &b"NO"[..]));
        b.extend(b"OP\r\n");
        assert_eq!(b.pending(), b"NOOP\r\n");
        assert_eq!(b.compactions, 1);
        b.consume(6);
        assert!(b.is_empty());
    }
}
