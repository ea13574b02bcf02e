//! `[lmtpd]`: vmail-lmtpd, the LMTP server (RFC 2033) for Postfix's `lmtp:unix:`
//! transport, and its checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[lmtpd]`: the LMTP delivery server. Delivery itself follows `[lda]` (over_quota,
/// add_return_path, add_delivered_to, sieve_script, hostname), so that both delivery paths
/// give the same verdicts and write the same files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmtpdConfig {
    /// Listeners, `unix:/path` or `inet:HOST:PORT`. The default sits inside Postfix's chroot
    /// so that `virtual_transport = lmtp:unix:private/vmail-lmtp` reaches it.
    pub listen: Vec<String>,
    /// Octal permission bits of UNIX sockets.
    pub socket_mode: String,
    /// Group owning UNIX sockets (Postfix's lmtp client runs as `postfix`); empty keeps ours.
    pub socket_group: String,
    /// Drop to this user after binding: the owner of the Maildirs.
    pub user: String,
    /// Connections open at once on each listener. Postfix opens at most
    /// `lmtp_destination_concurrency_limit` (default 20) to one destination; past the limit
    /// new clients wait in the socket's backlog.
    pub max_connections: usize,
    /// Close a connection idle this long between commands. Postfix keeps an idle cached
    /// connection for `lmtp_connection_cache_time_limit` (2 s) only, so this never closes
    /// one it still means to use.
    pub idle_timeout_ms: u64,
    /// How long a command line, once begun, and each stretch of message data may go
    /// without a byte, and how long a reply may take to be written. Postfix's own limit for
    /// sending message data is `lmtp_data_xfer_timeout` (180 s); a client stalled longer
    /// is closed and its partial message dropped (nothing reaches `new/`).
    pub request_read_timeout_ms: u64,
    /// Largest message accepted, in bytes, advertised as `SIZE`; 0: no limit of our own
    /// (Postfix's `message_size_limit` applies before).
    pub max_message_size: u64,
    /// Recipients per transaction; more get 452 4.5.3 and Postfix sends them in another.
    /// Postfix's `lmtp_destination_recipient_limit` is 50 by default; RFC 5321 asks for at
    /// least 100.
    pub max_recipients: usize,
    /// Where each message is spooled once (a file per transaction, removed after its last
    /// recipient; see `spool_memory`) before it is written into each recipient's Maildir. Empty:
    /// `<state dir>/lmtp`. On the same file system as the Maildirs is not required.
    pub spool: PathBuf,
    /// Messages up to this many bytes are kept in memory and never written to the spool
    /// (Dovecot's LMTP does the same up to 128 KiB): a spool file costs a create and an
    /// unlink per message. A bigger message moves to its spool file as soon as it outgrows
    /// this. At most `max_connections` (per listener) × this much memory; at most 16 MiB;
    /// 0: every message to a file.
    pub spool_memory: u64,
    /// Empty: `<state dir>/lmtpd.pid`.
    pub pid_file: PathBuf,
    /// Threads serving connections (0: one per CPU). Deliveries run on the blocking pool
    /// whatever this is.
    pub threads: usize,
}

impl Default for LmtpdConfig {
    fn default() -> Self {
        LmtpdConfig {
            listen: vec!["unix:/var/spool/postfix/private/vmail-lmtp".into()],
            socket_mode: "0660".into(),
            socket_group: "postfix".into(),
            user: "vmail".into(),
            max_connections: 100,
            idle_timeout_ms: 60_000,
            request_read_timeout_ms: 180_000,
            max_message_size: 0,
            max_recipients: 1000,
            spool: PathBuf::new(),
            spool_memory: 128 * 1024,
            pid_file: PathBuf::new(),
            threads: 1,
        }
    }
}

impl LmtpdConfig {
    /// `socket_mode` as permission bits (validated at load).
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }

    /// The size limit the LMTP session enforces: `max_message_size`, or no limit for 0.
    pub fn size_limit(&self) -> u64 {
        match self.max_message_size {
            0 => u64::MAX,
            n => n,
        }
    }

    /// Checks the values serde cannot, and fills in the paths under `state_dir`. `Err`
    /// names the key.
    pub(crate) fn finish(
        &mut self,
        state_dir: &std::path::Path,
    ) -> Result<(), (&'static str, String)> {
        if self.listen.is_empty() {
            return Err(("lmtpd.listen", "needs at least one listener".into()));
        }
        for l in &self.listen {
            let ok = l.strip_prefix("unix:").is_some_and(|p| p.starts_with('/'))
                || crate::validate::is_inet_endpoint(l);
            if !ok {
                return Err((
                    "lmtpd.listen",
                    format!("{l:?}: expected unix:/absolute/path or inet:HOST:PORT"),
                ));
            }
        }
        if self.max_connections == 0
            || self.idle_timeout_ms == 0
            || self.request_read_timeout_ms == 0
        {
            return Err((
                "lmtpd.max_connections",
                "max_connections, idle_timeout_ms and request_read_timeout_ms must be greater than zero".into(),
            ));
        }
        if self.spool_memory > 16 * 1024 * 1024 {
            return Err((
                "lmtpd.spool_memory",
                "at most 16777216 (16 MiB): each of max_connections may hold this much".into(),
            ));
        }
        if self.max_recipients == 0 {
            return Err(("lmtpd.max_recipients", "must be at least 1".into()));
        }
        if self.spool.as_os_str().is_empty() {
            self.spool = state_dir.join("lmtp");
        } else if !self.spool.is_absolute() {
            return Err((
                "lmtpd.spool",
                format!("{:?}: must be an absolute path", self.spool),
            ));
        }
        if self.pid_file.as_os_str().is_empty() {
            self.pid_file = state_dir.join("lmtpd.pid");
        }
        Ok(())
    }
}
