//! Streaming scan of a message's header section for `Delivered-To: <recipient>`, the loop
//! test Postfix's pipe(8) `D` flag and local(8) do, without buffering the message.
//!
//! The header section is every line up to the first empty line, or up to the first line that
//! is neither a header field (`name:`, name bytes printable ASCII) nor a continuation
//! (starting with space or tab) — the same point where Postfix's `is_header()` and RFC 5322
//! parsers see the body begin. A `Delivered-To` line in the body therefore never counts.
//! Folded fields are unfolded; the field name and the address compare ASCII
//! case-insensitively, surrounding whitespace and one pair of `<>` ignored. Scanning stops
//! after [`MAX_HEADER_SCAN`] bytes: a loop hidden behind a megabyte of headers is not seen
//! (the message is then delivered normally — never a false bounce).

/// How many bytes of header section are scanned at most.
pub const MAX_HEADER_SCAN: usize = 1024 * 1024;

/// A Delivered-To value longer than this cannot be an address (RFC 5321 caps a path at
/// 256 octets); it is not collected further and never matches.
const MAX_VALUE: usize = 4096;

const FIELD: &[u8] = b"delivered-to";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a line.
    LineStart,
    /// Inside a field name.
    Name,
    /// After a field name, before the colon (obsolete `Name :` syntax).
    NameWsp,
    /// Inside a field's value (first line or continuation).
    Value,
    /// Skipping the rest of a line we do not care about.
    Skip,
    /// Header section over (or match found, or cap reached).
    Done,
}

/// Finds `Delivered-To: <address>` in the header section of a message fed in chunks.
///
/// ```
/// use vmail_maildir::LoopDetector;
/// let mut d = LoopDetector::new("alice@example.org");
/// assert!(!d.feed(b"Subject: hi\nDelivered-To:\n  ALICE@example.org\n"));
/// assert!(d.feed(b"\nbody\n"));
/// ```
#[derive(Debug)]
pub struct LoopDetector {
    address: Vec<u8>,
    state: State,
    name: Vec<u8>,
    value: Vec<u8>,
    /// The current field is a Delivered-To whose value is being collected.
    collecting: bool,
    /// A field has started, so a continuation line belongs to it.
    in_field: bool,
    scanned: usize,
    found: bool,
}

impl LoopDetector {
    /// Looks for `address` (compared case-insensitively, `<>` optional).
    pub fn new(address: &str) -> Self {
        LoopDetector {
            address: canonical(address.as_bytes()).to_ascii_lowercase(),
            state: State::LineStart,
            name: Vec::with_capacity(FIELD.len() + 1),
            value: Vec::new(),
            collecting: false,
            in_field: false,
            scanned: 0,
            found: false,
        }
    }

    /// Feeds the next chunk of the message (LF or CRLF line endings). Returns true once a
    /// matching Delivered-To field has been seen.
    ///
    /// A field is judged when it ends (at the next line that is not a continuation), so
    /// the answer can come one chunk later than the field itself.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if self.state == State::Done {
                break;
            }
            self.scanned += 1;
            if self.scanned > MAX_HEADER_SCAN {
                self.state = State::Done;
                break;
            }
            self.step(b);
        }
        self.found
    }

    /// Ends the input (a message that is all header and no final newline). Returns the
    /// final answer.
    pub fn finish(&mut self) -> bool {
        if self.state != State::Done {
            self.end_field();
            self.state = State::Done;
        }
        self.found
    }

    /// The header section has been fully scanned (or given up on); feeding more is useless.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) {
        match self.state {
            State::LineStart => match b {
                b' ' | b'\t' if self.in_field => {
                    if self.collecting {
                        self.push_value(b);
                    }
                    self.state = State::Value;
                }
                // Empty line (LF or CRLF), a leading continuation with no field before
                // it, or a byte that cannot start a field name: the body starts here.
                _ if !is_name_byte(b) => {
                    self.end_field();
                    self.state = State::Done;
                }
                _ => {
                    self.end_field();
                    self.in_field = true;
                    self.name.clear();
                    self.name.push(b.to_ascii_lowercase());
                    self.state = State::Name;
                }
            },
            State::Name => match b {
                b':' => self.start_value(),
                b' ' | b'\t' => self.state = State::NameWsp,
                _ if is_name_byte(b) => {
                    // Only names as long as "delivered-to" are worth keeping.
                    if self.name.len() <= FIELD.len() {
                        self.name.push(b.to_ascii_lowercase());
                    }
                }
                _ => self.not_a_header(),
            },
            State::NameWsp => match b {
                b':' => self.start_value(),
                b' ' | b'\t' => {}
                _ => self.not_a_header(),
            },
            State::Value => {
                if b == b'\n' {
                    self.state = State::LineStart;
                } else if self.collecting {
                    self.push_value(b);
                }
            }
            State::Skip => {
                if b == b'\n' {
                    self.state = State::LineStart;
                }
            }
            State::Done => {}
        }
    }

    fn start_value(&mut self) {
        self.collecting = self.name == FIELD;
        self.value.clear();
        self.state = if self.collecting {
            State::Value
        } else {
            State::Skip
        };
    }

    /// A line that is not a header field: the header section ended at its start.
    fn not_a_header(&mut self) {
        self.in_field = false;
        self.collecting = false;
        self.state = State::Done;
    }

    fn push_value(&mut self, b: u8) {
        if self.value.len() < MAX_VALUE {
            self.value.push(b);
        } else {
            self.collecting = false;
        }
    }

    fn end_field(&mut self) {
        if self.collecting {
            let value = canonical(&self.value);
            if !value.is_empty() && value.eq_ignore_ascii_case(&self.address) {
                self.found = true;
                self.state = State::Done;
            }
        }
        self.collecting = false;
        self.in_field = false;
    }
}

/// Printable ASCII except `:` (RFC 5322 `ftext`).
fn is_name_byte(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

/// Trims whitespace (including a CR left by CRLF input) and one pair of angle brackets.
fn canonical(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    match v {
        [b'<', inner @ .., b'>'] => inner.trim_ascii(),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(addr: &str, msg: &[u8]) -> bool {
        let mut d = LoopDetector::new(addr);
        d.feed(msg);
        d.finish()
    }

    fn scan_bytewise(addr: &str, msg: &[u8]) -> bool {
        let mut d = LoopDetector::new(addr);
        for b in msg {
            d.feed(std::slice::from_ref(b));
        }
        d.finish()
    }

    #[test]
    fn finds_plain_and_case_insensitive() {
        let m = b"Received: x\nDelivered-To: alice@example.org\nSubject: s\n\nbody\n";
        assert!(scan("alice@example.org", m));
        assert!(scan("ALICE@Example.ORG", m));
        assert!(scan(
            "alice@example.org",
            b"DELIVERED-TO:Alice@EXAMPLE.org\n\nb\n"
        ));
        assert!(scan(
            "alice@example.org",
            b"delivered-to : <alice@example.org>\n\n"
        ));
        assert!(!scan("bob@example.org", m));
        assert!(!scan("alice@example.or", m));
    }

    #[test]
    fn crlf_input() {
        let m = b"Subject: s\r\nDelivered-To: alice@example.org\r\n\r\nbody\r\n";
        assert!(scan("alice@example.org", m));
        let body = b"Subject: s\r\n\r\nDelivered-To: alice@example.org\r\n";
        assert!(!scan("alice@example.org", body));
    }

    #[test]
    fn folded_value() {
        let m = b"Delivered-To:\n alice@example.org\nX: y\n\n";
        assert!(scan("alice@example.org", m));
        assert!(scan_bytewise("alice@example.org", m));
        let m2 = b"Delivered-To:\n\t<alice@example.org\n  >\n\n";
        assert!(scan("alice@example.org", m2));
        // A fold inside the address is not the same address.
        assert!(!scan(
            "alice@example.org",
            b"Delivered-To: alice@\n example.org\n\n"
        ));
    }

    #[test]
    fn body_does_not_count() {
        let m = b"Subject: s\n\nDelivered-To: alice@example.org\n";
        assert!(!scan("alice@example.org", m));
        assert!(!scan_bytewise("alice@example.org", m));
    }

    #[test]
    fn non_header_line_ends_the_header_section() {
        let m = b"Subject: s\nthis is body text\nDelivered-To: alice@example.org\n";
        assert!(!scan("alice@example.org", m));
        let m2 = b"Subject: s\nno colon here\n";
        assert!(!scan("alice@example.org", m2));
        let from_line = b"From alice@example.org Mon Jan 1\nDelivered-To: alice@example.org\n\n";
        assert!(!scan("alice@example.org", from_line));
    }

    #[test]
    fn other_fields_and_prefixes_do_not_match() {
        assert!(!scan("a@b", b"X-Delivered-To: a@b\n\n"));
        assert!(!scan("a@b", b"Delivered-To-Foo: a@b\n\n"));
        assert!(!scan("a@b", b"Subject: Delivered-To: a@b\n\n"));
        assert!(!scan("a@b", b"Subject: x\n Delivered-To: a@b\n\n"));
    }

    #[test]
    fn field_at_end_without_newline() {
        assert!(scan("a@b", b"Delivered-To: a@b"));
        assert!(scan("a@b", b"Subject: x\nDelivered-To: a@b\n"));
    }

    #[test]
    fn cap_stops_the_scan() {
        let mut m = Vec::new();
        while m.len() < MAX_HEADER_SCAN {
            m.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\n");
        }
        m.extend_from_slice(b"Delivered-To: a@b\n\n");
        let mut d = LoopDetector::new("a@b");
        assert!(!d.feed(&m));
        assert!(d.is_done());
        assert!(!d.finish());
    }

    #[test]
    fn huge_value_never_matches() {
        let mut m = b"Delivered-To: ".to_vec();
        m.extend(std::iter::repeat_n(b' ', MAX_VALUE + 10));
        m.extend_from_slice(b"a@b\n\n");
        assert!(!scan("a@b", &m));
    }

    #[test]
    fn empty_address_never_matches() {
        assert!(!scan("", b"Delivered-To:\n\n"));
        assert!(!scan("<>", b"Delivered-To: <>\n\n"));
    }
}
