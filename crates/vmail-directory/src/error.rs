//! What can go wrong in a directory operation, and whether it is temporary.

use std::time::Duration;

/// Errors say what failed and whether retrying later can help. Every daemon maps
/// [`Error::is_temporary`] to its protocol's "try again" answer in one place (socketmap
/// `TEMP`, auth `FAIL ... temp`, LDA exit 75): a database outage must defer mail, never
/// bounce it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached, or failed while answering.
    #[error("directory backend unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within the configured deadline.
    #[error("directory operation timed out after {0:?}")]
    Timeout(Duration),
    /// The database answered with an error (bad custom query, missing table, ...). Postfix's
    /// own `mysql:` client treats these as temporary too: an operator can fix them without
    /// mail having bounced meanwhile.
    #[error("directory query failed: {0}")]
    Query(String),
    /// The database refused a value a write gave it (MySQL/MariaDB strict mode: too long for
    /// its column, wrong type, NULL, out of range, a foreign or CHECK constraint; SQLite: NOT
    /// NULL, CHECK, foreign key). Temporary like [`Error::Query`] for the daemons, which must
    /// never bounce mail on a database error; only `vmailctl` tells it apart
    /// ([`Error::is_refused_data`]): the same write will be refused again, so a script that
    /// retries on "temporary" would retry forever.
    #[error("the database refused the value: {0}")]
    Refused(String),
    /// The connection was lost after COMMIT (or a write that commits by itself) was sent:
    /// the write may or may not have taken effect, so it is not retried (a second run could
    /// store it twice, or report "exists" for what the first run stored). Temporary.
    #[error(
        "outcome unknown: the connection to the database was lost after the write was sent \
         ({0}); check with `vmailctl export` before trying again"
    )]
    OutcomeUnknown(String),
    /// A stored row whose mailbox paths would leave the configured base or be another
    /// account's (see the `mailbox` module). Temporary: mail waits in Postfix's queue while a
    /// postmaster fixes the row, and no account is ever handed someone else's Maildir.
    #[error("stored mailbox {row:?} refused: {reason}")]
    UnsafeMailbox { row: String, reason: String },
    /// A lookup whose answer would pass a search limit (alias domains visited, catch-all
    /// destinations). Temporary, as Postfix's cleanup defers a message whose virtual alias
    /// expansion is "unreasonable": a cut answer would silently drop recipients, and "not
    /// found" would bounce mail for a user who may exist past the limit. Logged (rate
    /// limited) where the limit is hit, not per lookup.
    #[error("{0}")]
    Limit(String),
    /// Configuration that cannot work (unparseable custom query, unknown column).
    #[error("directory configuration: {0}")]
    Config(String),
    /// The caller's input is not acceptable (administrative operations only).
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    Missing(String),
    /// The database lacks a column the operation needs (`vmailctl migrate` adds it): a
    /// configuration problem of the database, not of the caller's input.
    #[error("this database has no {0} column; run `vmailctl migrate`")]
    NeedsMigrate(&'static str),
    /// A value would not fit its column; we refuse rather than let MySQL truncate it.
    #[error(
        "{what} is {len} characters but column {column} holds at most {width}; \
         run `vmailctl migrate` to widen it"
    )]
    TooLong {
        what: &'static str,
        len: usize,
        column: &'static str,
        width: u32,
    },
}

impl Error {
    /// True when the same request may succeed later: answer TEMP / `FAIL temp` / exit 75.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_)
                | Error::Timeout(_)
                | Error::Query(_)
                | Error::Refused(_)
                | Error::OutcomeUnknown(_)
                | Error::Config(_)
                | Error::UnsafeMailbox { .. }
                | Error::Limit(_)
        )
    }

    /// True when the database refused the data itself rather than failing: a permanent
    /// error for an administrative write (EX_DATAERR in vmailctl). The daemons do not ask:
    /// for them it is temporary like every database error ([`Error::is_temporary`]).
    pub fn is_refused_data(&self) -> bool {
        matches!(self, Error::Refused(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
