//! The running state the connections share: the directory (one pool for the daemon, as
//! lookupd keeps it), the configuration deliveries follow, and counters.
//!
//! Recipients are looked up as vmail-lda looks them up: through vmail-lookupd's `recipient`
//! map when `[lda] lookupd` is set (contrib and the package set it), else, or while nothing
//! listens there, in the directory in-process. Through lookupd both delivery paths share its
//! cache, its in-memory set of stored addresses (unknown recipients cost the database
//! nothing), its `serve_stale_s` during an outage, and `vmailctl flush`; the delivery bench
//! measured the uncached statement per RCPT as the part of lmtpd's CPU that Dovecot's LMTP
//! (behind authd's cache) and the pipe (behind lookupd's) did not pay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use vmail_config::Config;
use vmail_directory::{Directory, RecipientRecord};

use vmail_lda::resolve::Resolved;

use crate::verdict::Lookup;

/// Recipients and messages, as the statistics and metrics count them.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub delivered: AtomicU64,
    /// 5xx after DATA.
    pub bounced: AtomicU64,
    /// 4xx after DATA.
    pub deferred: AtomicU64,
    /// RCPT refused (unknown, disabled, temporary).
    pub rcpt_refused: AtomicU64,
    /// Connections closed at a deadline.
    pub timeouts: AtomicU64,
}

impl Stats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// (name, help, value) of each counter.
    fn all(&self) -> [(&'static str, &'static str, u64); 6] {
        [
            ("messages", "Messages received", Self::get(&self.messages)),
            (
                "delivered",
                "Recipients delivered",
                Self::get(&self.delivered),
            ),
            (
                "bounced",
                "Recipients refused after the message (5xx)",
                Self::get(&self.bounced),
            ),
            (
                "deferred",
                "Recipients deferred after the message (4xx)",
                Self::get(&self.deferred),
            ),
            (
                "rcpt_refused",
                "RCPT commands refused",
                Self::get(&self.rcpt_refused),
            ),
            (
                "timeouts",
                "Connections closed at a deadline",
                Self::get(&self.timeouts),
            ),
        ]
    }
}

pub struct Service {
    dir: RwLock<Arc<Directory>>,
    config: RwLock<Arc<Config>>,
    pub stats: Stats,
}

impl Service {
    pub fn new(dir: Directory, config: Config) -> Service {
        Service {
            dir: RwLock::new(Arc::new(dir)),
            config: RwLock::new(Arc::new(config)),
            stats: Stats::default(),
        }
    }

    fn directory(&self) -> Arc<Directory> {
        self.dir.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The configuration deliveries follow (replaced on SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The recipient's record: lookupd's answer (within `[lda] lookupd_timeout_ms`), else
    /// the directory's under its own deadline. Any error is temporary for the client: a
    /// database outage, or a configuration the admin must mend, must defer mail, never
    /// bounce it.
    pub async fn lookup(&self, address: &str) -> Lookup {
        let lda = &self.config().lda;
        if !lda.lookupd.is_empty() {
            let (endpoint, recipient) = (lda.lookupd.clone(), address.to_string());
            let timeout = std::time::Duration::from_millis(lda.lookupd_timeout_ms);
            // vmail-lda's blocking client: one connection per question, as each LDA run.
            let asked = tokio::task::spawn_blocking(move || {
                vmail_lda::resolve::via_lookupd(&endpoint, &recipient, timeout)
            })
            .await;
            match asked {
                Ok(Resolved::Found(record)) => return Lookup::Found(record),
                Ok(Resolved::Unknown) => return Lookup::Unknown,
                // lookupd itself hung, overloaded, or without a directory: our own pool may
                // still answer (the third review), and decides whether the directory is down.
                Ok(Resolved::Temp(e)) if directory_wide(&e) => {
                    tracing::warn!(recipient = address, error = %e, "lookupd could not answer; asking the directory")
                }
                Ok(Resolved::Temp(e)) => {
                    tracing::warn!(recipient = address, error = %e, "lookupd could not answer");
                    return Lookup::Temporary(e);
                }
                // Nothing listens there: ask the directory ourselves, as vmail-lda does.
                Ok(Resolved::Unreachable(e)) => {
                    tracing::debug!(error = %e, "lookupd not running; asking the directory")
                }
                Err(e) => return Lookup::Temporary(format!("the lookup task failed: {e}")),
            }
        }
        match self.directory().recipient(address).await {
            Ok(Some((user, ext))) => Lookup::Found(RecipientRecord::new(&user, ext)),
            Ok(None) => Lookup::Unknown,
            Err(e) => {
                tracing::warn!(recipient = address, error = %e, "directory lookup failed");
                // Only these say nothing about the address: the next lookup would fail the
                // same way. A row refused or a limit hit is this address's own trouble.
                match e {
                    vmail_directory::Error::Unavailable(_) | vmail_directory::Error::Timeout(_) => {
                        Lookup::DirectoryDown(e.to_string())
                    }
                    _ => Lookup::Temporary(e.to_string()),
                }
            }
        }
    }

    /// SIGHUP: a new directory and delivery configuration (listeners stay).
    pub fn replace(&self, dir: Directory, config: Config) {
        *self.dir.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(dir);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, v) in self.stats.all() {
            out.push_str(&format!(
                "# HELP vmail_lmtpd_{name}_total {help}.\n# TYPE vmail_lmtpd_{name}_total counter\nvmail_lmtpd_{name}_total {v}\n"
            ));
        }
        out
    }

    pub fn log(&self) {
        let s = &self.stats;
        tracing::info!(
            messages = Stats::get(&s.messages),
            delivered = Stats::get(&s.delivered),
            bounced = Stats::get(&s.bounced),
            deferred = Stats::get(&s.deferred),
            rcpt_refused = Stats::get(&s.rcpt_refused),
            timeouts = Stats::get(&s.timeouts),
            "statistics"
        );
    }
}

/// Whether lookupd's temporary failure may be lookupd's or the whole directory's (down, or
/// past a deadline) rather than this address's (a stored row refused, a search limit): then
/// lmtpd asks the directory itself, whose own error decides. lookupd's socketmap reply
/// carries only the text, which comes from `vmail_directory::Error`'s messages (the test
/// below keeps the markers in step with them) and from lookupd's own
/// (`socketmap::temp_text`, shared with it). lookupd itself unreachable or hung ("lookupd
/// at ...", vmail-lda's client) counts too.
fn directory_wide(text: &str) -> bool {
    use vmail_proto::socketmap::temp_text;
    let markers = [
        "directory backend unavailable",
        temp_text::DIRECTORY_UNAVAILABLE,
        "directory operation timed out",
        temp_text::TOOK_LONGER,
        "lookupd at ",
    ];
    markers.iter().any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::directory_wide;
    use std::time::Duration;
    use vmail_directory::Error;

    #[test]
    fn lookupd_failures_are_told_apart_by_their_text() {
        let down = [
            Error::Unavailable("connection refused".into()).to_string(),
            Error::Timeout(Duration::from_secs(5)).to_string(),
            // lookupd's own: no directory open, its request deadline.
            vmail_proto::socketmap::temp_text::DIRECTORY_UNAVAILABLE.into(),
            format!("{} 5s", vmail_proto::socketmap::temp_text::TOOK_LONGER),
            "lookupd at unix:/run/vmail/lookupd: timed out".into(),
        ];
        for t in down {
            assert!(directory_wide(&format!("lookupd: {t}")), "{t}");
        }
        let this_address = [
            Error::UnsafeMailbox {
                row: "a:b@example.org".into(),
                reason: "refused".into(),
            }
            .to_string(),
            Error::Limit("too many alias domains".into()).to_string(),
            Error::Query("Unknown column".into()).to_string(),
        ];
        for t in this_address {
            assert!(!directory_wide(&format!("lookupd: {t}")), "{t}");
        }
    }
}
