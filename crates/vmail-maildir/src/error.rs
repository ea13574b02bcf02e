//! Delivery errors, each knowing whether Postfix should retry and which sysexits code and
//! RFC 3463 status the LDA reports.
//!
//! pipe(8) defers on exit 75 (EX_TEMPFAIL) and bounces on the other sysexits codes except
//! EX_OSERR; when the command's output begins with an enhanced status code (`5.2.3 ...`),
//! that code takes precedence over the exit status (pipe(8) DIAGNOSTICS, Postfix 2.3+). So
//! the LDA prints `"{enhanced_status} {error}"` and exits with [`Error::exit_code`].

use std::io;
use std::path::PathBuf;

/// sysexits.h codes used here.
pub mod sysexits {
    /// Data format error: Postfix bounces with 5.6.0.
    pub const EX_DATAERR: i32 = 65;
    /// Can't create (user) output file: Postfix bounces with 5.2.0 (a mailbox status).
    pub const EX_CANTCREAT: i32 = 73;
    /// Temporary failure: Postfix defers and retries.
    pub const EX_TEMPFAIL: i32 = 75;
}

/// Which quota refused the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverQuota {
    /// Maildir++ storage limit: `used + message > limit` (bytes).
    ///
    /// `message` is the stored size, or — when the limit was crossed while streaming and the
    /// rest of the input was not read — the bytes written up to that point.
    Storage { used: u64, message: u64, limit: u64 },
    /// Maildir++ message count limit: `used + 1 > limit`.
    Messages { used: u64, limit: u64 },
    /// The file system said EDQUOT (a file system quota, not `maildirsize`). Dovecot maps
    /// EDQUOT to the same "quota exceeded" error as its own quota (`ENOQUOTA()`).
    Filesystem,
}

impl std::fmt::Display for OverQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverQuota::Storage {
                used,
                message,
                limit,
            } => write!(
                f,
                "storage quota exceeded ({used} used + {message} > {limit} bytes)"
            ),
            OverQuota::Messages { used, limit } => {
                write!(f, "message quota exceeded ({used} of {limit} messages)")
            }
            OverQuota::Filesystem => f.write_str("file system quota exceeded"),
        }
    }
}

/// Why a delivery failed. No variant leaves a file in `new/`; the `tmp/` file is removed
/// whenever the process lives long enough to do so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input had no bytes at all. Postfix never sends that, so the LDA was misused.
    #[error("empty message")]
    Empty,
    /// The stored message (prepended headers included) would exceed `max_size`. The rest of
    /// the input was not read.
    #[error("message too big (limit {limit} bytes)")]
    TooBig { limit: u64 },
    /// The header section already has `Delivered-To: <address>`.
    #[error("mail forwarding loop for {address}")]
    Loop { address: String },
    /// Over quota; see [`Error::is_temporary`] for the default and why the LDA may override
    /// it.
    #[error("mailbox full: {0}")]
    OverQuota(OverQuota),
    /// A header to prepend has a bad name or a line break in its value (a caller bug).
    #[error("invalid header to prepend: {0}")]
    InvalidHeader(String),
    /// Reading the message from the caller's input failed.
    #[error("reading the message: {0}")]
    Input(#[source] io::Error),
    /// A file system operation failed: permissions, disk full, I/O error, read-only file
    /// system, a file where a directory should be...
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether Postfix should retry (exit 75).
    ///
    /// Everything that is not about the message itself is temporary: file system errors
    /// (disk full, permissions, EIO, EROFS), input errors and caller bugs — "defer, never
    /// lose mail". `OverQuota` is temporary too: that is the safe default (the message
    /// waits in the queue until the user makes room or `maximal_queue_lifetime` bounces
    /// it); an LDA configured to bounce at once over quota (Dovecot's
    /// `quota_full_tempfail = no`) prints `5.2.2` and exits with
    /// [`sysexits::EX_CANTCREAT`] instead.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Empty | Error::TooBig { .. } | Error::Loop { .. } => false,
            Error::OverQuota(_) | Error::InvalidHeader(_) | Error::Input(_) | Error::Io { .. } => {
                true
            }
        }
    }

    /// The sysexits code for pipe(8): 75 when temporary; 65 (EX_DATAERR) for an empty
    /// message and a loop; 73 (EX_CANTCREAT, "5.2.0", a mailbox status like 5.2.3) for a
    /// message too big.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Empty | Error::Loop { .. } => sysexits::EX_DATAERR,
            Error::TooBig { .. } => sysexits::EX_CANTCREAT,
            _ => sysexits::EX_TEMPFAIL,
        }
    }

    /// The RFC 3463 status to print before the message, consistent with `exit_code()`.
    pub fn enhanced_status(&self) -> &'static str {
        match self {
            Error::Empty => "5.6.0",
            Error::TooBig { .. } => "5.2.3",
            Error::Loop { .. } => "5.4.6",
            Error::OverQuota(_) => "4.2.2",
            Error::InvalidHeader(_) => "4.3.0",
            Error::Input(_) => "4.3.0",
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) => "4.3.1",
                _ => "4.2.0",
            },
        }
    }

    /// Builds the error for a failed file system operation; EDQUOT becomes
    /// `OverQuota(Filesystem)`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        if source.raw_os_error() == Some(libc::EDQUOT) {
            Error::OverQuota(OverQuota::Filesystem)
        } else {
            Error::Io {
                op,
                path: path.into(),
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_err(errno: i32) -> Error {
        Error::io("write", "/x", io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn exit_codes_and_temporariness_agree() {
        let all = [
            Error::Empty,
            Error::TooBig { limit: 1 },
            Error::Loop {
                address: "a@b".into(),
            },
            Error::OverQuota(OverQuota::Messages { used: 1, limit: 1 }),
            Error::InvalidHeader("x".into()),
            Error::Input(io::Error::other("x")),
            io_err(libc::ENOSPC),
            io_err(libc::EACCES),
            io_err(libc::EROFS),
            io_err(libc::EIO),
        ];
        for e in &all {
            assert_eq!(e.is_temporary(), e.exit_code() == 75, "{e:?}");
            assert_eq!(
                e.is_temporary(),
                e.enhanced_status().starts_with('4'),
                "{e:?}"
            );
        }
        assert_eq!(Error::Empty.exit_code(), 65);
        assert_eq!(Error::TooBig { limit: 1 }.exit_code(), 73);
        assert_eq!(io_err(libc::ENOSPC).exit_code(), 75);
        assert_eq!(io_err(libc::EACCES).exit_code(), 75);
    }

    #[test]
    fn edquot_is_over_quota() {
        assert!(matches!(
            io_err(libc::EDQUOT),
            Error::OverQuota(OverQuota::Filesystem)
        ));
    }

    #[test]
    fn messages_are_short_and_useful() {
        assert_eq!(
            io_err(libc::ENOSPC).to_string(),
            "write /x: No space left on device (os error 28)"
        );
        assert_eq!(
            Error::OverQuota(OverQuota::Storage {
                used: 10,
                message: 5,
                limit: 12
            })
            .to_string(),
            "mailbox full: storage quota exceeded (10 used + 5 > 12 bytes)"
        );
    }
}
