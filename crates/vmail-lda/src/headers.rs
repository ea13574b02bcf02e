//! The start of the message: which trace headers Postfix already prepended (pipe flags `R`
//! and `D` put `Return-Path:` and `Delivered-To:` first), and loop detection.

use vmail_record::{Address, AddressPolicy};

/// What the header section says, as far as the LDA cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The message starts with a `Return-Path:` line (Postfix's `R` flag).
    pub has_return_path: bool,
    /// A `Delivered-To:` for this recipient is among the lines Postfix prepended.
    pub prepended_delivered_to: bool,
    /// Every other `Delivered-To:` value in the header section, in order: where the message
    /// has been delivered before. It has been here before if one of them is an address of
    /// this mailbox ([`HeaderFacts::delivered_before`]); which addresses those are is only
    /// known once the directory has answered.
    pub delivered_to: Vec<String>,
}

impl HeaderFacts {
    /// Whether a `Delivered-To:` beyond Postfix's own line names one of `mailbox`, compared
    /// as the directory compares addresses (case folding per `[address]`).
    pub fn delivered_before(&self, policy: &AddressPolicy, mailbox: &[Address]) -> bool {
        self.delivered_to
            .iter()
            .filter_map(|v| policy.parse(v))
            .any(|a| mailbox.contains(&a))
    }
}

/// Examines `head`, the first bytes of the message (at least the whole header section when
/// it is shorter than the buffer). Header field names are case-insensitive; folded lines
/// (starting with white space) belong to the field before.
pub fn examine(head: &[u8], recipient: &str) -> HeaderFacts {
    let mut f = HeaderFacts::default();
    // Postfix prepends its lines before the message's own headers, so the leading run of
    // Return-Path/Delivered-To lines is Postfix's (or an earlier hop's, in which case the
    // recipient differs or a second copy follows). pipe(8)'s `D` flag writes the envelope
    // recipient (extension included, lower-cased: `mail_copy()`), which is `-d`.
    let mut leading = true;
    let mut seen_ours = false;
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
            if leading && !seen_ours && value.eq_ignore_ascii_case(recipient) {
                seen_ours = true;
                f.prepended_delivered_to = true;
            } else {
                f.delivered_to.push(value.to_string());
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

    /// Whether `m` loops for a delivery to `rcpt` whose mailbox has the addresses `mailbox`.
    fn loops(m: &[u8], rcpt: &str, mailbox: &[&str]) -> bool {
        let policy = AddressPolicy::default();
        let mailbox: Vec<Address> = mailbox.iter().filter_map(|a| policy.parse(a)).collect();
        examine(m, rcpt).delivered_before(&policy, &mailbox)
    }

    #[test]
    fn postfix_prepended_lines_are_recognised() {
        let m =
            b"Return-Path: <s@x>\nDelivered-To: a@b.test\nReceived: by x\nSubject: hi\n\nbody\n";
        let f = examine(m, "a@b.test");
        assert!(f.has_return_path && f.prepended_delivered_to && f.delivered_to.is_empty());
        let f = examine(b"Subject: hi\r\n\r\n", "a@b.test");
        assert_eq!(f, HeaderFacts::default());
    }

    #[test]
    fn a_second_delivered_to_is_a_loop_but_not_in_the_body() {
        let a = &["a@b.test"];
        let m = b"Delivered-To: a@b.test\nReceived: x\nDELIVERED-TO:  <A@B.test>\nSubject: s\n\nDelivered-To: a@b.test\n";
        assert!(loops(m, "a@b.test", a));
        let body_only = b"Delivered-To: a@b.test\nSubject: s\n\nDelivered-To: a@b.test\n";
        assert!(!loops(body_only, "a@b.test", a));
        // Without D flag: one Delivered-To deep in the header is a loop.
        let m = b"Received: x\nDelivered-To: a@b.test\n\n";
        assert!(loops(m, "a@b.test", a));
        // Other recipients' Delivered-To lines are history, not loops.
        let m = b"Delivered-To: a@b.test\nDelivered-To: other@b.test\n\n";
        assert!(!loops(m, "a@b.test", a));
    }

    /// Issue 15 item 8: the LDA writes the stored address, pipe(8)'s `D` flag the recipient
    /// with its extension; either one, in any case, means this mailbox had the message.
    #[test]
    fn every_address_of_the_mailbox_counts() {
        let mailbox = &["alice+lists@example.org", "alice@example.org"];
        for m in [
            &b"Received: x\nDelivered-To: alice@example.org\n\n"[..],
            b"Delivered-To: <ALICE@Example.ORG.>\n\n",
            b"Delivered-To: alice+lists@example.org\nDelivered-To: Alice@example.org\n\n",
            b"Delivered-To: alice+Lists@example.org\nX: y\nDelivered-To: alice+lists@example.org\n\n",
        ] {
            let text = String::from_utf8_lossy(m);
            assert!(loops(m, "alice+lists@example.org", mailbox), "{text}");
        }
        // Only the first leading line for -d is Postfix's own.
        let m = b"Delivered-To: alice+lists@example.org\nSubject: s\n\n";
        assert!(!loops(m, "alice+lists@example.org", mailbox));
        // Someone else's mailbox, even one that only differs by the extension.
        let m = b"Delivered-To: alice+other@example.org\nDelivered-To: bob@example.org\n\n";
        assert!(!loops(m, "alice+lists@example.org", mailbox));
        assert!(!loops(m, "alice@example.org", &["alice@example.org"]));
    }

    #[test]
    fn folded_lines_and_garbage_do_not_confuse() {
        let m = b"Subject: a\n folded: Delivered-To: a@b.test\nX\n\n";
        assert!(!loops(m, "a@b.test", &["a@b.test"]));
        assert_eq!(examine(b"", "a@b.test"), HeaderFacts::default());
        assert_eq!(
            examine(b"\xff\xfe:\x00\n", "a@b.test"),
            HeaderFacts::default()
        );
        assert!(!loops(
            b"Delivered-To: <>\nDelivered-To: @\n\n",
            "a@b.test",
            &["a@b.test"]
        ));
    }
}
