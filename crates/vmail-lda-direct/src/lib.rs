//! `vmail-lda-direct`: vmail-lda that also reads the directory itself. `vmail-lda` links no
//! database code (Postfix starts it once per message, and start-up cost grows with the
//! binary) and execs this program, from its own directory, when lookupd cannot answer. Its
//! own crate, so that `vmail-lda` does not depend on `vmail-directory` at all.

use vmail_config::Config;
use vmail_directory::{Directory, RecipientRecord};
use vmail_lda::outcome::Outcome;
use vmail_lda::timing;
#[cfg(doc)]
use vmail_lda::Fallback;

/// The [`Fallback`] of `vmail-lda-direct`: the directory itself, in this process (a database
/// connection per message, or the SQLite file).
pub fn from_directory(config: &Config, recipient: &str) -> Result<RecipientRecord, Outcome> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(Outcome::LocalTrouble(format!("runtime: {e}"))),
    };
    timing::mark("runtime");
    let found = rt.block_on(async {
        let dir = Directory::open(config).await?;
        timing::mark("open");
        let found = dir.recipient(recipient).await;
        timing::mark("lookup");
        dir.close().await;
        found
    });
    timing::mark("close");
    match found {
        Ok(Some((user, ext))) => Ok(RecipientRecord::new(&user, ext)),
        Ok(None) => Err(Outcome::UnknownUser(recipient.to_string())),
        Err(e) if e.is_temporary() => Err(Outcome::DirectoryDown(e.to_string())),
        Err(e) => Err(Outcome::Misconfigured(e.to_string())),
    }
}
