//! The start of the message: which trace headers Postfix already prepended (pipe flags `R`
//! and `D` put `Return-Path:` and `Delivered-To:` first), and loop detection.

/// What the header section says, as far as the LDA cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The message starts with a `Return-Path:` line (Postfix's `R` flag).
    pub has_return_path: bool,
    /// A `Delivered-To:` for this recipient is among the lines Postfix prepended.
    pub prepended_delivered_to: bool,
    /// A `Delivered-To:` for this recipient appears in the header beyond those: the message
    /// has been here before.
    pub looped: bool,
}

/// Examines `head`, the first bytes of the message (at least the whole header section when
/// it is shorter than the buffer). Header field names are case-insensitive; folded lines
/// (starting with white space) belong to the field before.
pub fn examine(head: &[u8], recipient: &str) -> HeaderFacts {
    let mut f = HeaderFacts::default();
    // Postfix prepends its lines before the message's own headers, so the leading run of
    // Return-Path/Delivered-To lines is Postfix's (or an earlier hop's, in which case the
    // recipient differs or a second copy follows).
    let mut leading = true;
    let mut seen_ours = 0;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of header section
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            leading = false;
            continue;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim().trim_start_matches('<').trim_end_matches('>');
        if name.eq_ignore_ascii_case(b"return-path") {
            if leading {
                f.has_return_path = true;
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"delivered-to") {
            if value.eq_ignore_ascii_case(recipient) {
                seen_ours += 1;
                if leading && seen_ours == 1 {
                    f.prepended_delivered_to = true;
                } else {
                    f.looped = true;
                }
            }
            continue;
        }
        leading = false;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_prepended_lines_are_recognised() {
        let m =
            b"Return-Path: <s@x>\nDelivered-To: a@b.test\nReceived: by x\nSubject: hi\n\nbody\n";
        let f = examine(m, "a@b.test");
        assert!(f.has_return_path && f.prepended_delivered_to && !f.looped);
        let f = examine(b"Subject: hi\r\n\r\n", "a@b.test");
        assert_eq!(f, HeaderFacts::default());
    }

    #[test]
    fn a_second_delivered_to_is_a_loop_but_not_in_the_body() {
        let m = b"Delivered-To: a@b.test\nReceived: x\nDELIVERED-TO:  <A@B.test>\nSubject: s\n\nDelivered-To: a@b.test\n";
        assert!(examine(m, "a@b.test").looped);
        let body_only = b"Delivered-To: a@b.test\nSubject: s\n\nDelivered-To: a@b.test\n";
        assert!(!examine(body_only, "a@b.test").looped);
        // Without D flag: one Delivered-To deep in the header is a loop.
        let m = b"Received: x\nDelivered-To: a@b.test\n\n";
        assert!(examine(m, "a@b.test").looped);
        // Other recipients' Delivered-To lines are history, not loops.
        let m = b"Delivered-To: a@b.test\nDelivered-To: other@b.test\n\n";
        assert!(!examine(m, "a@b.test").looped);
    }

    #[test]
    fn folded_lines_and_garbage_do_not_confuse() {
        let m = b"Subject: a\n folded: Delivered-To: a@b.test\nX\n\n";
        assert!(!examine(m, "a@b.test").looped);
        assert_eq!(examine(b"", "a@b.test"), HeaderFacts::default());
        assert_eq!(
            examine(b"\xff\xfe:\x00\n", "a@b.test"),
            HeaderFacts::default()
        );
    }
}
