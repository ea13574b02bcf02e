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
    /// The recipient's active Sieve script, relative to the home (Dovecot's default
    /// `~/.dovecot.sieve`, a file or a symlink to one: ManageSieve keeps it as a link into
    /// `~/sieve/`). A recipient who has one gets the message through `dovecot_lda`, so that
    /// Pigeonhole runs the filters, vacation and fileinto as `dovecot deliver` did; the others
    /// get it written by vmail-lda. Empty: never hand off. No `..`, not absolute (a leading
    /// `~/`, Dovecot's spelling, is the home).
    pub sieve_script: String,
    /// Dovecot's LDA (absolute path), run for recipients with a Sieve script as `-d ADDRESS
    /// -a ORIGINAL -r RECIPIENT -f SENDER` (`-m` the folder vmail-lda would deliver into;
    /// `-c`, `-o` when vmail-lda was given them); its exit status passes through when it is a
    /// verdict on the message, else 75 (retry).
    pub dovecot_lda: String,
    /// How long Dovecot's LDA may take (milliseconds) before vmail-lda kills it (its whole
    /// process group) and defers the message: well under pipe(8)'s `command_time_limit`
    /// (1000 s), at which Postfix would kill vmail-lda and bounce the message.
    pub dovecot_lda_timeout_ms: u64,
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
            sieve_script: ".dovecot.sieve".into(),
            dovecot_lda: "/usr/lib/dovecot/dovecot-lda".into(),
            dovecot_lda_timeout_ms: 300_000,
        }
    }
}
