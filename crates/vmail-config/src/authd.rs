//! `[authd]`: vmail-authd's listeners (auth, dict, Lua), limits, penalties and cache.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[authd]`: the Dovecot auth-protocol server (Postfix SMTP AUTH) and dict server
/// (Dovecot passdb/userdb).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthdConfig {
    /// Dovecot auth-protocol listeners. The default sits in Postfix's chroot:
    /// `smtpd_sasl_type = dovecot`, `smtpd_sasl_path = private/vmail-auth`.
    pub auth: Vec<String>,
    pub auth_socket_mode: String,
    /// Postfix's smtpd runs as `postfix`.
    pub auth_socket_group: String,
    /// Dovecot dict-proxy listeners (`uri = proxy:/run/vmail/auth-dict:auth`).
    pub dict: Vec<String>,
    pub dict_socket_mode: String,
    /// Dovecot's auth process runs as `dovecot` (`default_internal_user`).
    pub dict_socket_group: String,
    /// Lua channel listeners, for `contrib/dovecot/vmail-auth.lua` (Dovecot 2.4 has no
    /// dict passdb). `unix:` only: every connection's peer uid is checked against
    /// `lua_peers`, which a TCP socket cannot tell. Empty: off.
    pub lua: Vec<String>,
    pub lua_socket_mode: String,
    /// Dovecot's auth worker processes run as `dovecot` (or root).
    pub lua_socket_group: String,
    /// Users (names, resolved when binding, or numeric uids) whose processes may use the
    /// Lua sockets; anyone else is closed at once. File modes alone cannot keep out
    /// Dovecot's mail processes and vmail-lda, which run as authd's own user. Default
    /// `root` only: Dovecot's auth workers run as root on 2.3 and 2.4 (`service
    /// auth-worker` has no `user`), while many other Dovecot processes run as `dovecot`
    /// (imap-urlauth, indexer, stats...). Add `dovecot` only with `service auth-worker {
    /// user = dovecot }`.
    pub lua_peers: Vec<String>,
    /// Drop to this user after binding; empty keeps the starting user.
    pub user: String,
    /// Connections open at once on each auth and dict listener: each has a budget of its
    /// own, so Dovecot's dict clients (or whoever reaches an `inet:` listener) never hold
    /// the slots Postfix's smtpd processes need. Earlier releases had one budget shared
    /// by all listeners; a value written for that still works, per listener now. Past it,
    /// new clients wait in the socket's backlog and a warning is logged at most once a
    /// minute.
    pub max_connections: usize,
    /// Close idle connections after this long. Postfix keeps one auth connection per smtpd
    /// process and reconnects when it was closed. Keep it well above Dovecot's dict
    /// `idle_msecs` (contrib: 30 s): a request Dovecot sends just as authd closes the
    /// connection fails that login (temporarily) instead of being retried. Counts while no
    /// line is being received and no check runs (an auth request waiting for the client's
    /// next SASL step is idle: Postfix's smtpd_timeout, 300 s, bounds that wait).
    pub idle_timeout_ms: u64,
    /// From the first byte of a line (the auth handshake, an auth or dict request) to its
    /// end, and from connecting to the end of the client's handshake (auth `CPID`, dict
    /// hello): slower clients are closed. Dovecot and Postfix write each line at once.
    /// Each reply must be taken within the same time, or the connection is closed.
    pub request_read_timeout_ms: u64,
    /// A directory lookup slower than this is a temporary failure (Postfix: 454). Keep it
    /// below the Dovecot Lua script's timeout_ms (contrib: 6 s), so that Dovecot gets authd's
    /// temporary failure rather than its own timeout.
    pub request_timeout_ms: u64,
    /// Every failed authentication is answered after this delay (Dovecot's
    /// auth_failure_delay), so guessing is slow and failures all look alike.
    pub failure_delay_ms: u64,
    /// Ceiling of failure delay plus penalty. Postfix gives up on the auth server after
    /// about 10 s, so this must stay below that.
    pub max_delay_ms: u64,
    /// How long a failure counts towards the penalty of its remote address and user.
    pub penalty_window_s: u64,
    /// From this many failures of one remote address (within the window), its attempts
    /// fail without a password check until the window passes.
    pub penalty_block_after: u32,
    /// IPv6 remote addresses share a penalty per prefix of this length.
    pub ipv6_prefix: u8,
    /// Remote networks never penalised (CIDR), e.g. the webmail host.
    pub trusted_networks: Vec<String>,
    /// Password checks running at once (CPU bound); 0 = two per CPU.
    pub verify_concurrency: usize,
    /// Cache successful verifications (keyed by the stored hash, so a password change
    /// takes effect at once).
    pub cache_enabled: bool,
    pub cache_ttl_s: u64,
    /// With the cache on: for this long after a check that read the user's row, the same
    /// login and password are answered from memory with the row as read then, and a dict
    /// lookup of a user found within it gets that row. `vmailctl` flushes the cache with
    /// every change; a change made in SQL directly applies after at most this long. 0: read
    /// the row at every attempt.
    pub cache_recheck_s: u64,
    pub cache_max_entries: usize,
    /// After a successful login with a legacy hash (DES crypt, MD5, unsalted), store a
    /// new hash in `passwords.hash_scheme`. Off by default: anything else reading
    /// `users.password` must understand the new scheme.
    pub rehash_legacy: bool,
    /// Empty: `<state dir>/authd.pid`. `vmailctl flush` signals the pid found here, only while
    /// vmail-authd holds the file locked (a stale file's pid is left alone).
    pub pid_file: PathBuf,
    /// Prometheus metrics endpoint, e.g. `inet:127.0.0.1:9162` (`GET /metrics`); empty: off.
    pub metrics: String,
    /// Scrapes served at once (a budget apart from the auth and dict listeners'); more wait.
    pub metrics_max_connections: usize,
}

impl Default for AuthdConfig {
    fn default() -> Self {
        AuthdConfig {
            auth: vec!["unix:/var/spool/postfix/private/vmail-auth".into()],
            auth_socket_mode: "0660".into(),
            auth_socket_group: "postfix".into(),
            dict: vec!["unix:/run/vmail/auth-dict".into()],
            dict_socket_mode: "0660".into(),
            dict_socket_group: "dovecot".into(),
            lua: vec!["unix:/run/vmail/auth-lua".into()],
            lua_socket_mode: "0660".into(),
            lua_socket_group: "dovecot".into(),
            lua_peers: vec!["root".into()],
            user: "vmail".into(),
            max_connections: 1024,
            idle_timeout_ms: 3_600_000,
            request_read_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
            failure_delay_ms: 2_000,
            max_delay_ms: 8_000,
            penalty_window_s: 900,
            penalty_block_after: 100,
            ipv6_prefix: 64,
            trusted_networks: Vec::new(),
            verify_concurrency: 0,
            cache_enabled: true,
            cache_ttl_s: 300,
            cache_recheck_s: 30,
            cache_max_entries: 100_000,
            rehash_legacy: false,
            pid_file: PathBuf::new(),
            metrics: String::new(),
            metrics_max_connections: 8,
        }
    }
}

impl AuthdConfig {
    /// Permission bits of the auth sockets (validated at load).
    pub fn auth_mode(&self) -> u32 {
        u32::from_str_radix(&self.auth_socket_mode, 8).unwrap_or(0o660)
    }
    /// Permission bits of the dict sockets (validated at load).
    pub fn dict_mode(&self) -> u32 {
        u32::from_str_radix(&self.dict_socket_mode, 8).unwrap_or(0o660)
    }
    /// Permission bits of the Lua channel sockets (validated at load).
    pub fn lua_mode(&self) -> u32 {
        u32::from_str_radix(&self.lua_socket_mode, 8).unwrap_or(0o660)
    }
}
