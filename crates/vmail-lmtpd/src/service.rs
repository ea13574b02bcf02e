//! The running state the connections share: the directory (one pool for the daemon, as
//! lookupd keeps it), the configuration deliveries follow, and counters.
//!
//! Why the directory in-process rather than lookupd's socket, as vmail-lda asks: vmail-lda
//! asks lookupd because it is a process per message and cannot keep a database pool;
//! vmail-lmtpd is long-lived and keeps one itself, which saves a socket round trip and a
//! second daemon on every RCPT, and leaves one fewer thing to be down (lookupd's cache
//! would answer Postfix's own maps, not deliveries, anyway).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use vmail_config::Config;
use vmail_directory::{Directory, RecipientRecord};

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

    /// The recipient's record, under the directory's own deadline. Any error is temporary
    /// for the client: a database outage, or a configuration the admin must mend, must
    /// defer mail, never bounce it.
    pub async fn lookup(&self, address: &str) -> Lookup {
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
