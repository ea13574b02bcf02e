//! Verdicts as LMTP replies: the directory's answer at RCPT, and vmail-lda's delivery
//! outcome after DATA, mapped to the SMTP codes Postfix's lmtp client acts on (4xx: defer
//! this recipient, 5xx: bounce it). Pure, so the mapping is tested without a socket.

use vmail_directory::RecipientRecord;
use vmail_lda::Outcome;
use vmail_proto::lmtp::{Reply, Status};

/// The directory's answer for one RCPT.
#[derive(Debug)]
pub enum Lookup {
    Found(RecipientRecord),
    Unknown,
    /// This address could not be answered (a stored row refused, a search limit, a query
    /// error): never a bounce.
    Temporary(String),
    /// The directory as a whole is unreachable or past its deadline: never a bounce, and
    /// the transaction's other RCPTs are not looked up (see `conn.rs`).
    DirectoryDown(String),
}

/// The reply to RCPT, and the record to deliver with when it is accepted.
pub fn rcpt(address: &str, lookup: Lookup) -> (Reply, Option<RecipientRecord>) {
    match lookup {
        Lookup::Found(rec) if !rec.active => (
            Reply::new(
                550,
                Some(Status::new(5, 2, 1)),
                &format!("<{address}>: mailbox disabled"),
            ),
            None,
        ),
        Lookup::Found(rec) => (Reply::new(250, Some(Status::new(2, 1, 5)), "Ok"), Some(rec)),
        Lookup::Unknown => (
            Reply::unknown_user(&format!("<{address}>: user unknown")),
            None,
        ),
        // Not the error's text: the reply reaches Postfix's log and, once the queue lifetime
        // ends, DSNs to outside senders; the database's host, port or message are for the
        // daemon's own log (where `Service::lookup` writes them).
        Lookup::Temporary(_) | Lookup::DirectoryDown(_) => (
            Reply::temporary_failure("directory lookup failed, will retry"),
            None,
        ),
    }
}

/// The reply for one recipient after the message: vmail-lda's outcome, with the code its
/// enhanced status calls for. The LDA's line starts with that status ("5.2.2 <a@b>:
/// mailbox full"), so the text is the same in Postfix's log whichever path delivered.
pub fn delivery(outcome: &Outcome) -> Reply {
    match outcome {
        Outcome::Delivered => Reply::delivered("Ok"),
        Outcome::HandedOff(code) => handed_off(*code),
        other => {
            let line = other.message();
            let (status, text) = match line.split_once(' ') {
                Some((s, t)) => (parse_status(s), t),
                None => (parse_status(&line), ""),
            };
            let status = status.unwrap_or(if other.exit_code() == 75 {
                Status::new(4, 3, 0)
            } else {
                Status::new(5, 3, 0)
            });
            Reply::new(code_for(status), Some(status), text)
        }
    }
}

/// The reply code for an enhanced status: 550 for an address or mailbox refused, or a
/// message refused by policy (5.7.1: a Sieve `reject`, as RFC 5429 2.1.1 asks), 552 for
/// storage and size, 554 for the rest of 5.x.x; 452 for storage, 451 for the rest of 4.x.x.
fn code_for(s: Status) -> u16 {
    match (s.class, s.subject, s.detail) {
        (5, 1, _) | (5, 2, 1) | (5, 7, 1) => 550,
        (5, 2, _) | (5, 3, 4) => 552,
        (5, ..) => 554,
        (4, 2, _) => 452,
        _ => 451,
    }
}

fn parse_status(s: &str) -> Option<Status> {
    let mut it = s.split('.');
    let class: u8 = it.next()?.parse().ok()?;
    let subject: u16 = it.next()?.parse().ok()?;
    let detail: u16 = it.next()?.parse().ok()?;
    (it.next().is_none() && matches!(class, 4 | 5)).then_some(Status::new(class, subject, detail))
}

/// Dovecot's LDA took the message (Sieve) and exited with `code`, one of the statuses
/// vmail-lda passes through as a verdict on the message (`sieve.rs`): 65 (data), 69
/// (unavailable), 77 (refused: over quota or a Sieve `reject`) bounce under pipe(8); 71 and
/// 75 defer. It has logged why itself.
fn handed_off(code: i32) -> Reply {
    match code {
        0 => Reply::delivered("Ok (Sieve)"),
        65 | 69 | 77 => Reply::new(
            554,
            Some(Status::new(5, 3, 0)),
            &format!("Dovecot LDA refused the message (status {code})"),
        ),
        _ => Reply::temporary_failure(&format!("Dovecot LDA failed (status {code}), will retry")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    /// Issue 19: the LDA's verdicts as LMTP codes.
    #[test]
    fn outcomes_map_to_the_codes_the_issue_names() {
        let a = "a@example.org".to_string();
        for (o, start) in [
            (Outcome::Delivered, "250 2.0.0 "),
            (Outcome::UnknownUser(a.clone()), "550 5.1.1 <a@example.org>"),
            (Outcome::Disabled(a.clone()), "550 5.2.1 "),
            (Outcome::MailboxFull(a.clone()), "552 5.2.2 <a@example.org>"),
            (Outcome::MailboxFullDefer(a.clone()), "452 4.2.2 "),
            (Outcome::TooBig(a.clone()), "552 5.3.4 "),
            (Outcome::Loop(a.clone()), "554 5.4.6 "),
            (Outcome::EmptyMessage, "554 5.6.0 "),
            (Outcome::DirectoryDown("x".into()), "451 4.4.3 "),
            (Outcome::DiskFull("x".into()), "451 4.3.1 "),
            (Outcome::LocalTrouble("x".into()), "451 4.3.0 "),
            (Outcome::Misconfigured("x".into()), "451 4.3.5 "),
            (Outcome::HandedOff(0), "250 2.0.0 "),
            (Outcome::HandedOff(75), "451 4.3.0 "),
            (Outcome::HandedOff(71), "451 4.3.0 "),
            (Outcome::HandedOff(77), "554 5.3.0 "),
            (
                Outcome::Rejected("I do not want it".into()),
                "550 5.7.1 I do not want it",
            ),
            // The second review of issue 19: Dovecot's quota refusal through -e is a full
            // mailbox, not a policy refusal.
            (
                Outcome::Rejected("Quota exceeded (mailbox for user is full)".into()),
                "552 5.2.2 Quota exceeded",
            ),
            // A script's reason that only mentions a quota is a policy refusal (the third
            // review).
            (
                Outcome::Rejected("over my quota of spam".into()),
                "550 5.7.1 over my quota",
            ),
        ] {
            let w = wire(&delivery(&o));
            assert!(w.starts_with(start), "{o:?}: {w}");
            assert!(w.ends_with("\r\n") && w.matches("\r\n").count() == 1, "{w}");
        }
    }

    /// Never a 5xx for an outage; a disabled mailbox is refused at RCPT.
    #[test]
    fn rcpt_verdicts() {
        let (r, rec) = rcpt(
            "a@b",
            Lookup::Temporary("127.0.0.1:3306: connection refused".into()),
        );
        assert!(wire(&r).starts_with("451 4.3.0 "), "{}", wire(&r));
        assert!(
            !wire(&r).contains("3306"),
            "internals in the reply: {}",
            wire(&r)
        );
        assert!(rec.is_none());
        let (r, _) = rcpt("a@b", Lookup::Unknown);
        assert!(wire(&r).starts_with("550 5.1.1 <a@b>"), "{}", wire(&r));
    }
}
