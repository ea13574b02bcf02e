//! Message data after DATA's 354: dot-unstuffing and the end of data, decoded as a
//! stream (RFC 5321 4.1.1.4 and 4.5.2). The decoder holds a state of a few bytes, never
//! the message, so a 30 MiB message costs no more memory than a 1 KiB one.

/// How the decoded message's line ends are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnds {
    /// As received: CRLF.
    Crlf,
    /// Each CRLF becomes LF, the form Maildir files (and the messages vmail-lda gets
    /// from pipe(8)) use. Bare CR and LF bytes pass through unchanged.
    Lf,
}

/// Where the decoder is in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (the start of the data, or after CRLF).
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR not yet known to end a line.
    Cr,
    /// After a '.' at the start of a line: dropped, unless it is the terminator's.
    Dot,
    /// After ".\r" at the start of a line: LF ends the data.
    DotCr,
    /// After the terminator.
    Done,
}

/// What a [`DataDecoder::feed`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// The whole input was data; the end has not come yet.
    More,
    /// The terminator ends at `consumed`: the bytes after it (a pipelined command) are
    /// not message data.
    End { consumed: usize },
}

/// Streaming decoder of one message's data.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    line_ends: LineEnds,
    limit: u64,
    size: u64,
}

impl DataDecoder {
    /// A decoder for one message; output stops once the size passes `limit` bytes.
    pub fn new(line_ends: LineEnds, limit: u64) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            line_ends,
            limit,
            size: 0,
        }
    }

    /// Decodes `input`, appending message bytes to `out` (the caller writes them away
    /// and clears `out`; a call appends at most `input.len() + 1` bytes). After the end,
    /// further calls return `End { consumed: 0 }` and append nothing.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return DataProgress::End { consumed: 0 },
                State::Text => {
                    let rest = &input[i..];
                    match rest.iter().position(|&b| b == b'\r') {
                        Some(cr) => {
                            self.emit(&rest[..cr], out);
                            self.state = State::Cr;
                            i += cr + 1;
                        }
                        None => {
                            self.emit(rest, out);
                            i = input.len();
                        }
                    }
                }
                State::LineStart if input[i] == b'.' => {
                    self.state = State::Dot;
                    i += 1;
                }
                State::LineStart => self.state = State::Text,
                State::Cr if input[i] == b'\n' => {
                    self.line_end(out);
                    self.state = State::LineStart;
                    i += 1;
                }
                // A CR not followed by LF is content; the byte after it is looked at
                // again as text (it may be another CR).
                State::Cr => {
                    self.emit(b"\r", out);
                    self.state = State::Text;
                }
                State::Dot if input[i] == b'\r' => {
                    self.state = State::DotCr;
                    i += 1;
                }
                // RFC 5321 4.5.2: a line starting with '.' and more has the '.' removed.
                State::Dot => self.state = State::Text,
                State::DotCr if input[i] == b'\n' => {
                    self.state = State::Done;
                    return DataProgress::End { consumed: i + 1 };
                }
                // ".\r" and more: the '.' is removed and the CR is pending as usual.
                State::DotCr => self.state = State::Cr,
            }
        }
        match self.state {
            State::Done => DataProgress::End { consumed: 0 },
            _ => DataProgress::More,
        }
    }

    /// The message size so far: unstuffed, with CRLF line ends (as SIZE= counts).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the size has passed the limit (output has stopped).
    pub fn over_limit(&self) -> bool {
        self.size > self.limit
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Appends content bytes, as far as they fit under the limit: the output is always
    /// the same prefix of the message whatever the chunking. Past the limit the message
    /// is only counted, and read to its end to stay in step with the client.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let room = self.limit.saturating_sub(self.size);
        let fit = usize::try_from(room).map_or(bytes.len(), |r| r.min(bytes.len()));
        out.extend_from_slice(&bytes[..fit]);
        self.size += bytes.len() as u64;
    }

    /// Appends a line end (2 bytes of size, however it is written) if all of it fits.
    fn line_end(&mut self, out: &mut Vec<u8>) {
        self.size += 2;
        if self.size <= self.limit {
            match self.line_ends {
                LineEnds::Crlf => out.extend_from_slice(b"\r\n"),
                LineEnds::Lf => out.push(b'\n'),
            }
        }
    }
}
