//! What a delivery attempt ends as, for Postfix's pipe(8): a sysexits status and one line of
//! text starting with an RFC 3463 enhanced status code. pipe(8) lets that code take
//! precedence over the exit status, so the two are kept consistent here, in one place.

/// sysexits.h values Postfix's pipe(8) acts on.
pub mod sysexits {
    pub const EX_OK: i32 = 0;
    pub const EX_DATAERR: i32 = 65;
    pub const EX_NOUSER: i32 = 67;
    pub const EX_UNAVAILABLE: i32 = 69;
    pub const EX_TEMPFAIL: i32 = 75;
}

use sysexits::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    UnknownUser(String),
    Disabled(String),
    /// Over quota, bounced (`lda.over_quota = "bounce"`).
    MailboxFull(String),
    /// Over quota, deferred (`lda.over_quota = "defer"`).
    MailboxFullDefer(String),
    TooBig(String),
    Loop(String),
    EmptyMessage,
    /// Directory unreachable or slow.
    DirectoryDown(String),
    /// Disk full, permissions, I/O: retry later.
    LocalTrouble(String),
    /// Our own configuration or invocation is wrong: defer so a postmaster can fix it
    /// without mail having bounced.
    Misconfigured(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Delivered => EX_OK,
            Outcome::UnknownUser(_) | Outcome::Disabled(_) => EX_NOUSER,
            Outcome::MailboxFull(_) | Outcome::Loop(_) => EX_UNAVAILABLE,
            Outcome::TooBig(_) | Outcome::EmptyMessage => EX_DATAERR,
            Outcome::MailboxFullDefer(_)
            | Outcome::DirectoryDown(_)
            | Outcome::LocalTrouble(_)
            | Outcome::Misconfigured(_) => EX_TEMPFAIL,
        }
    }

    /// The line Postfix logs and puts in the DSN; empty on success.
    pub fn message(&self) -> String {
        match self {
            Outcome::Delivered => String::new(),
            Outcome::UnknownUser(r) => format!("5.1.1 <{r}>: user unknown"),
            Outcome::Disabled(r) => format!("5.2.1 <{r}>: mailbox disabled"),
            Outcome::MailboxFull(r) => format!("5.2.2 <{r}>: mailbox full (quota exceeded)"),
            Outcome::MailboxFullDefer(r) => format!("4.2.2 <{r}>: mailbox full (quota exceeded)"),
            Outcome::TooBig(r) => format!("5.3.4 message too big for <{r}>"),
            Outcome::Loop(r) => format!("5.4.6 mail forwarding loop for <{r}>"),
            Outcome::EmptyMessage => "5.6.0 empty message refused".into(),
            Outcome::DirectoryDown(e) => format!("4.4.3 directory lookup failed, will retry: {e}"),
            Outcome::LocalTrouble(e) => format!("4.3.0 cannot deliver now, will retry: {e}"),
            Outcome::Misconfigured(e) => format!("4.3.5 vmail-lda configuration error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_class_matches_exit_status() {
        let all = [
            Outcome::Delivered,
            Outcome::UnknownUser("a@b".into()),
            Outcome::Disabled("a@b".into()),
            Outcome::MailboxFull("a@b".into()),
            Outcome::MailboxFullDefer("a@b".into()),
            Outcome::TooBig("a@b".into()),
            Outcome::Loop("a@b".into()),
            Outcome::EmptyMessage,
            Outcome::DirectoryDown("x".into()),
            Outcome::LocalTrouble("x".into()),
            Outcome::Misconfigured("x".into()),
        ];
        for o in all {
            let m = o.message();
            match o.exit_code() {
                0 => assert!(m.is_empty()),
                75 => assert!(m.starts_with("4."), "{o:?}: {m}"),
                _ => assert!(m.starts_with("5."), "{o:?}: {m}"),
            }
        }
    }
}
