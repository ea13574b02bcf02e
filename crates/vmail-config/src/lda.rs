//! `[lda]`: vmail-lda, the delivery agent.

use serde::{Deserialize, Serialize};

/// `[lda]`: the delivery agent Postfix's pipe(8) runs per recipient.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdaConfig {
    /// Add `Return-Path:` when the message does not start with one (pipe flag `R` adds it).
    pub add_return_path: bool,
    /// Add `Delivered-To:` when the message does not start with one (pipe flag `D`).
    pub add_delivered_to: bool,
    /// Deliver `user+folder@domain` into the Maildir++ folder `.folder` when it exists.
    pub folder_from_extension: bool,
    /// `bounce` (Dovecot's default: "Quota exceeded") or `defer` (exit 75, retried until the
    /// queue lifetime ends).
    pub over_quota: String,
    /// Largest message accepted, in bytes; 0 for no limit (Postfix's message_size_limit
    /// normally stops big ones first).
    pub max_message_size: u64,
    /// Host name in Maildir file names; empty: the system's.
    pub hostname: String,
    /// Ask vmail-lookupd (one of its `[lookupd] lda` listeners, `unix:/path` or
    /// `inet:ADDRESS:PORT` — an IP address: a host name would be resolved without a
    /// deadline) instead of opening a database connection per message. When nothing
    /// listens there (no socket, connection refused), the LDA asks the database itself; any
    /// other trouble (permission denied, TEMP, no answer in time) defers.
    pub lookupd: String,
    /// How long to wait for lookupd's answer; longer than lookupd's own request_timeout_ms,
    /// so that its TIMEOUT (a deferral with a reason) normally arrives first.
    pub lookupd_timeout_ms: u64,
}

impl Default for LdaConfig {
    fn default() -> Self {
        LdaConfig {
            add_return_path: true,
            add_delivered_to: true,
            folder_from_extension: false,
            over_quota: "bounce".into(),
            max_message_size: 0,
            hostname: String::new(),
            lookupd: String::new(),
            lookupd_timeout_ms: 15_000,
        }
    }
}
