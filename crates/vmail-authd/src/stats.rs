//! authd's counters: logged with the daemon's statistics and served as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters logged with the daemon's statistics.
#[derive(Default)]
pub struct AuthStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub disabled: AtomicU64,
    pub temp: AtomicU64,
    pub blocked: AtomicU64,
    /// Password hashes computed for attempts: real checks and unknown users' dummy checks.
    pub checks: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Dict lookups answered with a row read within `cache_recheck_s`.
    pub dict_cache_hits: AtomicU64,
    /// Time from request to verdict (failure delay excluded).
    pub latency: vmail_daemon::metrics::Histogram,
    pub dict_found: AtomicU64,
    pub dict_not_found: AtomicU64,
    pub dict_failed: AtomicU64,
    /// Dict connections accepted: Dovecot reconnecting for every lookup (its dict client's
    /// default) shows up as this growing with every login.
    pub dict_connections: AtomicU64,
    pub lua: LuaStats,
}

/// A Lua channel request's kind (`PASS`, `LOOKUP`, `USER`, `LIST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuaKind {
    Pass,
    Lookup,
    User,
    List,
}

/// What a Lua channel request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuaResult {
    Ok,
    Fail,
    Disabled,
    NotFound,
    Temp,
}

/// The replies each kind can get: the labels served, zero or not.
const LUA_SERIES: [(LuaKind, &[LuaResult]); 4] = {
    use LuaResult::*;
    [
        (LuaKind::Pass, &[Ok, Fail, Temp]),
        (LuaKind::Lookup, &[Ok, Disabled, NotFound, Temp]),
        (LuaKind::User, &[Ok, NotFound, Temp]),
        (LuaKind::List, &[Ok, Temp]),
    ]
};

/// The Lua channel's counters.
#[derive(Default)]
pub struct LuaStats {
    pub connections: AtomicU64,
    /// Connections closed at once because the peer's uid is not in `lua_peers`.
    pub refused_peers: AtomicU64,
    /// By kind and result: `kind as usize * 5 + result as usize`.
    requests: [AtomicU64; 20],
}

impl LuaStats {
    pub fn answered(&self, kind: LuaKind, result: LuaResult) {
        AuthStats::bump(&self.requests[kind as usize * 5 + result as usize]);
    }

    pub fn requests(&self, kind: LuaKind, result: LuaResult) -> u64 {
        self.requests[kind as usize * 5 + result as usize].load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        use vmail_daemon::metrics::{header, sample};
        let n = "vmail_authd_lua_requests_total";
        header(
            out,
            n,
            "counter",
            "Lua channel requests, by kind and result.",
        );
        for (kind, results) in LUA_SERIES {
            for &r in results {
                let labels = format!(
                    "kind=\"{}\",result=\"{}\"",
                    format!("{kind:?}").to_lowercase(),
                    format!("{r:?}").to_lowercase()
                );
                sample(out, n, &labels, self.requests(kind, r));
            }
        }
        for (n, help, c) in [
            (
                "vmail_authd_lua_connections_total",
                "Lua channel connections accepted from allowed peers.",
                &self.connections,
            ),
            (
                "vmail_authd_lua_refused_peers_total",
                "Lua channel connections closed at once: the peer's uid is not in lua_peers.",
                &self.refused_peers,
            ),
        ] {
            header(out, n, "counter", help);
            sample(out, n, "", c.load(Ordering::Relaxed));
        }
    }
}

impl AuthStats {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use vmail_daemon::metrics::{header, sample};
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let n = "vmail_authd_authentications_total";
        header(&mut out, n, "counter", "Authentication attempts over the auth protocol and the Lua channel, by result (blocked attempts are also failed).");
        for (r, c) in [
            ("ok", &self.ok),
            ("failed", &self.failed),
            ("disabled", &self.disabled),
            ("temp", &self.temp),
        ] {
            sample(&mut out, n, &format!("result=\"{r}\""), g(c));
        }
        for (n, help, c) in [
            (
                "vmail_authd_penalty_blocked_total",
                "Attempts failed unchecked because the remote address is past the block threshold.",
                &self.blocked,
            ),
            (
                "vmail_authd_password_checks_total",
                "Password hashes computed for attempts (unknown users' dummy checks included).",
                &self.checks,
            ),
            (
                "vmail_authd_cache_hits_total",
                "Successful checks answered from the verified-credentials cache.",
                &self.cache_hits,
            ),
            (
                "vmail_authd_dict_cache_hits_total",
                "Dict lookups answered with a row read within cache_recheck_s.",
                &self.dict_cache_hits,
            ),
            (
                "vmail_authd_backend_errors_total",
                "Attempts that failed temporarily because the directory failed.",
                &self.temp,
            ),
        ] {
            header(&mut out, n, "counter", help);
            sample(&mut out, n, "", g(c));
        }
        let n = "vmail_authd_authentication_duration_seconds";
        header(
            &mut out,
            n,
            "histogram",
            "Time to decide an authentication (failure delay excluded).",
        );
        self.latency.render(n, "", &mut out);
        let n = "vmail_authd_dict_requests_total";
        header(
            &mut out,
            n,
            "counter",
            "Dict lookups from Dovecot, by outcome.",
        );
        for (o, c) in [
            ("found", &self.dict_found),
            ("notfound", &self.dict_not_found),
            ("failed", &self.dict_failed),
        ] {
            sample(&mut out, n, &format!("outcome=\"{o}\""), g(c));
        }
        let n = "vmail_authd_dict_connections_total";
        header(
            &mut out,
            n,
            "counter",
            "Dict connections accepted (Dovecot's dict client keeps one open with idle_msecs).",
        );
        sample(&mut out, n, "", g(&self.dict_connections));
        self.lua.render(&mut out);
        out
    }

    pub fn log(&self) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::info!(
            ok = g(&self.ok),
            failed = g(&self.failed),
            disabled = g(&self.disabled),
            temp = g(&self.temp),
            blocked = g(&self.blocked),
            checks = g(&self.checks),
            cache_hits = g(&self.cache_hits),
            dict_cache_hits = g(&self.dict_cache_hits),
            lua_connections = g(&self.lua.connections),
            lua_refused_peers = g(&self.lua.refused_peers),
            "auth statistics"
        );
    }
}
