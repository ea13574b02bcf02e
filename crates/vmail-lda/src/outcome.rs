//! What a delivery attempt ends as, for Postfix's pipe(8): a sysexits status and one line of
//! text starting with an RFC 3463 enhanced status code. pipe(8) lets that code take
//! precedence over the exit status, so the two are kept consistent here, in one place.

/// sysexits.h values Postfix's pipe(8) acts on.
pub mod sysexits {
    pub const EX_OK: i32 = 0;
    pub const EX_DATAERR: i32 = 65;
    pub const EX_NOUSER: i32 = 67;
    pub const EX_UNAVAILABLE: i32 = 69;
    pub const EX_NOPERM: i32 = 77;
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
    /// The file system is full (ENOSPC): retry later.
    DiskFull(String),
    /// Permissions, I/O: retry later.
    LocalTrouble(String),
    /// Our own configuration or invocation is wrong: defer so a postmaster can fix it
    /// without mail having bounced.
    Misconfigured(String),
    /// Dovecot's LDA took the message (a recipient with a Sieve script) and exited with this
    /// status, one pipe(8) knows; it has said why itself.
    HandedOff(i32),
    /// Dovecot's LDA refused the message with this reason (with `-e`, for
    /// [`crate::Args::reject_reason`]: a Sieve `reject`, or its own quota): the caller
    /// answers with it, as Dovecot's LMTP would.
    Rejected(String),
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
            | Outcome::DiskFull(_)
            | Outcome::LocalTrouble(_)
            | Outcome::Misconfigured(_) => EX_TEMPFAIL,
            Outcome::HandedOff(code) => *code,
            Outcome::Rejected(_) => EX_NOPERM,
        }
    }

    /// The line Postfix logs and puts in the DSN; empty on success.
    pub fn message(&self) -> String {
        match self {
            Outcome::Delivered | Outcome::HandedOff(_) => String::new(),
            Outcome::UnknownUser(r) => format!("5.1.1 <{r}>: user unknown"),
            Outcome::Disabled(r) => format!("5.2.1 <{r}>: mailbox disabled"),
            Outcome::MailboxFull(r) => format!("5.2.2 <{r}>: mailbox full (quota exceeded)"),
            Outcome::MailboxFullDefer(r) => format!("4.2.2 <{r}>: mailbox full (quota exceeded)"),
            Outcome::TooBig(r) => format!("5.3.4 message too big for <{r}>"),
            Outcome::Loop(r) => format!("5.4.6 mail forwarding loop for <{r}>"),
            Outcome::EmptyMessage => "5.6.0 empty message refused".into(),
            Outcome::DirectoryDown(e) => format!("4.4.3 directory lookup failed, will retry: {e}"),
            Outcome::DiskFull(e) => format!("4.3.1 mail system full, will retry: {e}"),
            Outcome::LocalTrouble(e) => format!("4.3.0 cannot deliver now, will retry: {e}"),
            Outcome::Misconfigured(e) => format!("4.3.5 vmail-lda configuration error: {e}"),
            // What Dovecot's LDA refuses with -e: its own quota (`quota_full_tempfail = no`)
            // is a full mailbox, 5.2.2; anything else a refusal by policy, 5.7.1 (RFC 5429
            // 2.1.1's code for a Sieve reject at the protocol level).
            Outcome::Rejected(reason) if is_quota_refusal(reason) => format!("5.2.2 {reason}"),
            Outcome::Rejected(reason) => format!("5.7.1 {reason}"),
        }
    }

    /// The outcome of a failed Maildir delivery to `recipient`; `over_quota` is
    /// `[lda] over_quota`.
    pub fn of_delivery_error(e: vmail_maildir::Error, recipient: &str, over_quota: &str) -> Self {
        use vmail_maildir::Error as E;
        match e {
            E::OverQuota(_) if over_quota == "defer" => Outcome::MailboxFullDefer(recipient.into()),
            E::OverQuota(_) => Outcome::MailboxFull(recipient.into()),
            E::TooBig { .. } => Outcome::TooBig(recipient.into()),
            E::Empty => Outcome::EmptyMessage,
            E::Loop { .. } => Outcome::Loop(recipient.into()),
            // The error type knows the errno: 4.3.1 ("mail system full", RFC 3463) is ENOSPC.
            // (EDQUOT is a quota, `OverQuota(Filesystem)`, above.)
            other if other.enhanced_status() == "4.3.1" => Outcome::DiskFull(other.to_string()),
            other => Outcome::LocalTrouble(other.to_string()),
        }
    }
}

/// Dovecot's own over-quota refusals (its `quota_exceeded_message` default and the
/// file system's), as it words them at the start of the reason; a Sieve script's reason
/// that merely mentions a quota stays a policy refusal.
fn is_quota_refusal(reason: &str) -> bool {
    let r = reason.trim_start().to_ascii_lowercase();
    r.starts_with("quota exceeded") || r.starts_with("not enough disk quota")
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
            Outcome::DiskFull("x".into()),
            Outcome::LocalTrouble("x".into()),
            Outcome::Misconfigured("x".into()),
            Outcome::Rejected("no thanks".into()),
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

    /// Issue 19: Dovecot's LDA has said why itself; its status is the one pipe(8) sees.
    #[test]
    fn a_hand_off_passes_the_status_through_silently() {
        for code in [0, 67, 75, 77] {
            let o = Outcome::HandedOff(code);
            assert_eq!(o.exit_code(), code);
            assert!(o.message().is_empty());
        }
    }

    /// Issue 15 item 10a: a full disk was answered 4.3.0; RFC 3463 has 4.3.1 for it.
    #[test]
    fn a_full_disk_is_mail_system_full() {
        let io = |errno| vmail_maildir::Error::Io {
            op: "write",
            path: "/m/tmp/x".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let o = Outcome::of_delivery_error(io(nix::libc::ENOSPC), "a@b", "bounce");
        assert_eq!(o.exit_code(), EX_TEMPFAIL);
        assert!(o.message().starts_with("4.3.1 "), "{}", o.message());
        assert!(
            o.message().contains("No space left on device"),
            "{}",
            o.message()
        );
        // Other I/O trouble stays 4.3.0; a file system quota is a full mailbox.
        let o = Outcome::of_delivery_error(io(nix::libc::EIO), "a@b", "bounce");
        assert!(o.message().starts_with("4.3.0 "), "{}", o.message());
        let quota = vmail_maildir::Error::OverQuota(vmail_maildir::OverQuota::Filesystem);
        let o = Outcome::of_delivery_error(quota, "a@b", "defer");
        assert!(o.message().starts_with("4.2.2 "), "{}", o.message());
    }
}
