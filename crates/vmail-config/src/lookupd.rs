//! `[lookupd]` (with its `[lookupd.tcp_table]` listeners) and `[cache]`, the answer cache
//! only lookupd uses.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[cache]`: lookupd's answer cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// lookupd's answer cache; with it, lookups also share the rows they read for up to 2 s
    /// (vmail_lookupd::cache::memo). Off: every lookup reads the database.
    pub enabled: bool,
    /// Bound on cached answers; the oldest are dropped first when full.
    pub max_entries: usize,
    /// How long a found answer is reused.
    pub positive_ttl_s: u64,
    /// How long a "not found" is reused (short: a new user should not wait long).
    pub negative_ttl_s: u64,
    /// Keep every stored address (`users.email`, `forwardings.source`) in memory, re-read
    /// every few seconds while lookups come in, and answer an address outside it "not
    /// found" without a database statement: unknown recipients (typos, dictionary attacks)
    /// then cost the database nothing. Held only with the built-in queries and only while
    /// the tables have at most this many rows (55-60 bytes each: 200 000 take ~11 MB and
    /// ~0.2 s to read on MariaDB, measured); 0 = off. An address added with plain SQL is
    /// usually accepted within a few seconds, at worst after 2 × `negative_ttl_s` + 2 s
    /// (without the set: `negative_ttl_s` + 2 s); `vmailctl` changes apply at once.
    pub address_set_max: usize,
    /// While the database is down, keep answering with *found* answers up to this old
    /// (0 = off, answer TEMP). Never applied to "not found", which could bounce mail for an
    /// address created during the outage.
    pub serve_stale_s: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_entries: 100_000,
            positive_ttl_s: 60,
            negative_ttl_s: 10,
            address_set_max: 200_000,
            serve_stale_s: 0,
        }
    }
}

/// `[lookupd]`: the Postfix lookup table server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupdConfig {
    /// socketmap listeners, `unix:/path` or `inet:HOST:PORT`. Postfix names the map in each
    /// request (`socketmap:unix:/path:aliases`), so one listener serves every map. The default
    /// sits inside Postfix's chroot so chrooted smtpd processes reach it as
    /// `socketmap:unix:private/vmail-lookupd:NAME`.
    pub socketmap: Vec<String>,
    /// tcp_table listeners: tcp_table requests carry no map name, so one listener per map.
    pub tcp_table: TcpTableListeners,
    /// Octal permission bits of UNIX sockets.
    pub socket_mode: String,
    /// Group owning UNIX sockets (Postfix's processes run as `postfix`); empty keeps ours.
    pub socket_group: String,
    /// socketmap listeners for vmail-lda (`[lda] lookupd`), which runs as the mail user,
    /// outside Postfix's chroot; e.g. `unix:/run/vmail/lookupd`. Empty: none.
    pub lda: Vec<String>,
    pub lda_socket_mode: String,
    /// pipe(8) runs vmail-lda as `user=vmail:vmail`.
    pub lda_socket_group: String,
    /// Drop to this user after binding; empty keeps the starting user.
    pub user: String,
    /// Connections open at once on each listener: every socketmap, tcp_table and lda
    /// listener has a budget of its own, so clients of one (any local user can reach a
    /// loopback tcp_table port) never hold the slots of another. Earlier releases had one
    /// budget shared by all listeners; a value written for that still works, per listener
    /// now. Past it, new clients wait in the socket's backlog (as at a Postfix service's
    /// process limit) and a warning is logged at most once a minute. The daemon raises its
    /// open-files limit to the sum of all budgets (see LimitNOFILE in systemd.exec(5)).
    pub max_connections: usize,
    /// Close connections idle this long. Postfix closes its own after ~10 s idle. Counts
    /// only between requests: a request being received is under request_read_timeout_ms.
    pub idle_timeout_ms: u64,
    /// From the first byte of a request to its last: a client that sends a request more
    /// slowly (a byte now and then, to hold a connection) is closed. Postfix writes each
    /// request at once. A reply must be taken within the same time: a client that sends
    /// requests but does not read the answers is closed too.
    pub request_read_timeout_ms: u64,
    /// Answer TIMEOUT if a lookup takes longer (Postfix waits ~100 s; defer long before).
    pub request_timeout_ms: u64,
    /// Empty: `<state dir>/lookupd.pid`. `vmailctl flush` signals the pid found here, only while
    /// vmail-lookupd holds the file locked (a stale file's pid is left alone).
    pub pid_file: PathBuf,
    /// Log per-map counters this often (0 = only at shutdown).
    pub stats_interval_s: u64,
    /// Prometheus metrics endpoint, e.g. `inet:127.0.0.1:9161` (`GET /metrics`); empty: off.
    pub metrics: String,
    /// Scrapes served at once (a budget apart from the lookup listeners'); more wait.
    pub metrics_max_connections: usize,
    /// Threads answering lookups. 1: one event loop, like Postfix's own daemons: a lookup
    /// is a hash probe or a database round trip, and one thread spends less CPU per lookup
    /// than several handing connections to each other (measured: about 0.1 ms less per RCPT
    /// on a busy 2-core host, where Postfix needs that CPU). One thread answers tens of
    /// thousands of lookups a second; 0 = one per CPU.
    pub threads: usize,
}

/// `[lookupd.tcp_table]`: one listener per map.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpTableListeners {
    pub domains: Option<String>,
    pub mailboxes: Option<String>,
    pub aliases: Option<String>,
    pub senders: Option<String>,
    pub transport: Option<String>,
    /// `check_recipient_access tcp:...`: refuses a disabled mailbox with 5.2.1, as the
    /// socketmap `recipient_access` map does.
    pub recipient_access: Option<String>,
}

impl TcpTableListeners {
    /// (map name, endpoint) for every configured listener.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("domains", &self.domains),
            ("mailboxes", &self.mailboxes),
            ("aliases", &self.aliases),
            ("senders", &self.senders),
            ("transport", &self.transport),
            ("recipient_access", &self.recipient_access),
        ]
        .into_iter()
        .filter_map(|(n, e)| e.as_deref().map(|e| (n, e)))
    }
}

impl Default for LookupdConfig {
    fn default() -> Self {
        LookupdConfig {
            socketmap: vec!["unix:/var/spool/postfix/private/vmail-lookupd".into()],
            tcp_table: TcpTableListeners::default(),
            socket_mode: "0660".into(),
            socket_group: "postfix".into(),
            lda: Vec::new(),
            lda_socket_mode: "0660".into(),
            lda_socket_group: "vmail".into(),
            user: "vmail".into(),
            max_connections: 1024,
            threads: 1,
            idle_timeout_ms: 60_000,
            request_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            pid_file: PathBuf::new(),
            stats_interval_s: 3600,
            metrics: String::new(),
            metrics_max_connections: 8,
        }
    }
}

impl LookupdConfig {
    /// `socket_mode` as permission bits (validated at load).
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(&self.socket_mode, 8).unwrap_or(0o660)
    }

    /// `lda_socket_mode` as permission bits (validated at load).
    pub fn lda_mode(&self) -> u32 {
        u32::from_str_radix(&self.lda_socket_mode, 8).unwrap_or(0o660)
    }
}
