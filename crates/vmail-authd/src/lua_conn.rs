//! One connection of Dovecot's Lua passdb/userdb script (`contrib/dovecot/vmail-auth.lua`,
//! protocol in [`vmail_proto::lua`]): an auth worker process keeps it open and sends one
//! request at a time, answered in order. Unlike the dict channel authd checks the
//! password itself (Dovecot 2.4 has no dict passdb), through the same [`Authenticator`]
//! as SMTP AUTH, but without sleeping: see [`Pacing::Caller`].
//!
//! Only peers whose uid is in `[authd] lua_peers` are served ([`Peers`]): Dovecot's mail
//! processes and vmail-lda run as authd's own user, so the socket's mode cannot keep them
//! out, and this channel answers password checks without a delay.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::Instrument;
use vmail_directory::User;
use vmail_proto::lua::{self, Reply, Request};

use crate::authenticator::{AuthStats, Authenticator, Pacing, Verdict};
use crate::deadline::{self, Inbox};
use crate::handler::Handler;
use crate::records;
use crate::stats::{LuaKind, LuaResult};

/// How often a refused peer may be logged: a local user looping on connect must not
/// flood the log (the counter, `vmail_authd_lua_refused_peers_total`, has every one).
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The uids allowed on the Lua sockets (`[authd] lua_peers`, resolved when binding).
pub struct Peers {
    uids: Vec<u32>,
    /// When a refusal was last logged, and how many went unlogged since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl Peers {
    /// Resolves names (or numbers) to uids. A name that does not exist is a warning, not
    /// an error: `dovecot` may be installed after vmail.
    pub fn resolve(names: &[String]) -> Peers {
        let mut uids = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match vmail_daemon::user_id(name) {
                Ok(Some(uid)) => uids.push(uid),
                Ok(None) => {
                    tracing::warn!(user = name, "authd.lua_peers: no such user; ignored")
                }
                Err(e) => tracing::warn!(error = %e, "authd.lua_peers: ignored"),
            }
        }
        if uids.is_empty() && !names.is_empty() {
            tracing::warn!(
                "authd.lua_peers names no existing user: every lua connection will be refused"
            );
        }
        Peers {
            uids,
            warned: Mutex::new((None, 0)),
        }
    }

    /// Whether the peer of `stream` may use the channel; a refusal is counted and logged
    /// at most once a [`REFUSAL_WARNING_EVERY`].
    pub fn admit(&self, stream: &tokio::net::UnixStream, stats: &AuthStats) -> bool {
        let cred = stream.peer_cred();
        if let Ok(c) = &cred {
            if self.uids.contains(&c.uid()) {
                return true;
            }
        }
        AuthStats::bump(&stats.lua.refused_peers);
        let Ok(mut w) = self.warned.lock() else {
            return false;
        };
        let now = Instant::now();
        if w.0
            .is_some_and(|t| now.duration_since(t) < REFUSAL_WARNING_EVERY)
        {
            w.1 += 1;
            return false;
        }
        let suppressed = std::mem::take(&mut w.1);
        *w = (Some(now), 0);
        match cred {
            Ok(c) => tracing::warn!(
                uid = c.uid(),
                pid = c.pid(),
                suppressed,
                "lua channel: peer's uid not in authd.lua_peers; closed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, suppressed, "lua channel: cannot read the peer's credentials; closed")
            }
        }
        false
    }
}

impl Handler {
    /// Serves a Lua-channel connection (its peer admitted) until it ends. Errors are
    /// logged, never propagated.
    pub(crate) async fn serve_lua<S>(&self, mut stream: S, mut shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (auth, settings): (&Authenticator, _) = (&self.auth, &self.limits);
        AuthStats::bump(&auth.stats.lua.connections);
        let mut inbox = Inbox::new();
        let mut out: Vec<u8> = Vec::with_capacity(512);
        let mut hello = false;
        loop {
            while let Some(n) = match lua::find_line(&inbox.buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "closing lua connection");
                    return;
                }
            } {
                let req = lua::parse_request(&inbox.buf[..n]);
                inbox.take(n);
                let req = match req {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing lua connection after a broken line");
                        return;
                    }
                };
                match req {
                    Request::Version { major } if !hello => {
                        if major != lua::MAJOR_VERSION {
                            tracing::warn!(major, "lua client speaks another protocol version");
                            return;
                        }
                        hello = true;
                        continue;
                    }
                    _ if !hello => {
                        tracing::warn!("lua request before VERSION; closing");
                        return;
                    }
                    Request::Version { .. } => {
                        tracing::warn!("second lua VERSION; closing");
                        return;
                    }
                    Request::Unsupported(c) => {
                        // Answering would leave the client waiting for a reply it cannot tell
                        // apart; closing makes it fail the request at once.
                        tracing::warn!(command = %c, "unsupported lua command; closing");
                        return;
                    }
                    req => {
                        out.clear();
                        let id = String::from_utf8_lossy(req.id().unwrap_or_default());
                        let span =
                            tracing::debug_span!("lua", kind = req.kind(), id = %id.escape_debug());
                        answer(auth, req, &mut out).instrument(span).await;
                    }
                }
                if deadline::write(&mut stream, &out, settings).await.is_err() {
                    return;
                }
            }
            // Requests are answered before the next is read, so the wait is never our own.
            if !inbox
                .fill(&mut stream, hello, settings, &mut shutdown, "lua")
                .await
            {
                return;
            }
        }
    }
}

/// Answers one request (not `VERSION`, not unsupported) into `out`.
async fn answer(auth: &Authenticator, req: Request, out: &mut Vec<u8>) {
    let (kind, result) = match req {
        Request::Pass {
            id,
            service,
            rip,
            login,
            password,
        } => {
            let service = String::from_utf8_lossy(&service).to_ascii_lowercase();
            let r = pass(auth, id, &service, rip, &login, password.expose()).await;
            (LuaKind::Pass, emit(&r, out))
        }
        Request::Lookup { id, service, login } => {
            let service = String::from_utf8_lossy(&service).to_ascii_lowercase();
            let service = (!service.is_empty()).then_some(service.as_str());
            let r = match row(auth, &login).await {
                Row::Found(u) if u.password.as_deref().is_none_or(str::is_empty) => {
                    // Nobody can log in without a password: as the dict route.
                    Reply::NotFound { id }
                }
                Row::Found(u) => match records::refusal(&u, service) {
                    Some(reason) => {
                        tracing::debug!(user = %u.email, reason, "lua lookup: login refused");
                        Reply::Disabled { id }
                    }
                    None => prefetch(id, &u),
                },
                Row::NotFound => Reply::NotFound { id },
                Row::Temp(reason) => Reply::Temp { id, reason },
            };
            (LuaKind::Lookup, emit(&r, out))
        }
        Request::User { id, login } => {
            let r = match row(auth, &login).await {
                // A disabled account (or domain) has no userdb record, as on the dict
                // route: LMTP rejects, `doveadm user` says unknown.
                Row::Found(u) if u.active => Reply::Ok {
                    id,
                    user: u.email.clone().into_bytes(),
                    fields: fields(&u, ""),
                },
                Row::Found(_) | Row::NotFound => Reply::NotFound { id },
                Row::Temp(reason) => Reply::Temp { id, reason },
            };
            (LuaKind::User, emit(&r, out))
        }
        Request::List { id } => (LuaKind::List, list(auth, id, out).await),
        Request::Version { .. } | Request::Unsupported(_) => return,
    };
    auth.stats.lua.answered(kind, result);
}

/// Encodes `r` into `out`; the result it counts as.
fn emit(r: &Reply, out: &mut Vec<u8>) -> LuaResult {
    lua::encode_reply(r, out);
    match r {
        Reply::Ok { .. } | Reply::Row { .. } | Reply::End { .. } => LuaResult::Ok,
        Reply::Fail { .. } => LuaResult::Fail,
        Reply::Disabled { .. } => LuaResult::Disabled,
        Reply::NotFound { .. } => LuaResult::NotFound,
        Reply::Temp { .. } => LuaResult::Temp,
    }
}

/// PASS: the password check; the `userdb_*` fields come from the row the check read.
async fn pass(
    auth: &Authenticator,
    id: Vec<u8>,
    service: &str,
    rip: Option<IpAddr>,
    login: &[u8],
    password: &[u8],
) -> Reply {
    let verdict = auth
        .authenticate_paced(login, password, service, rip, Pacing::Caller)
        .await;
    match verdict {
        // The verdict carries the row the check read (within cache_recheck_s, the one the
        // cache remembered), so a PASS costs one user read, not two. Disabled accounts and
        // services were refused by the check (`admit`, the rule of `records::refusal`).
        Verdict::Ok { user } => prefetch(id, &user),
        // The reason is in the log (the lines SMTP AUTH writes, which fail2ban reads);
        // the client sees one answer for all of them.
        Verdict::Fail | Verdict::Disabled { .. } => Reply::Fail { id },
        Verdict::Temp(reason) => Reply::Temp { id, reason },
    }
}

/// `OK` with the userdb record as `userdb_*` fields, so Dovecot's `userdb prefetch`
/// needs no second request.
fn prefetch(id: Vec<u8>, u: &User) -> Reply {
    Reply::Ok {
        id,
        user: u.email.clone().into_bytes(),
        fields: fields(u, "userdb_"),
    }
}

fn fields(u: &User, prefix: &str) -> Vec<(String, String)> {
    records::userdb_fields(u)
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
}

/// A user's row as a lookup found it.
enum Row {
    Found(User),
    NotFound,
    Temp(String),
}

/// The row of `login` under the request deadline, from the cache when read within
/// cache_recheck_s. A login the directory refuses as malformed is simply unknown.
async fn row(auth: &Authenticator, login: &[u8]) -> Row {
    let Some(login) = vmail_proto::lookup_key(login) else {
        return Row::NotFound;
    };
    let t = auth.request_timeout();
    match tokio::time::timeout(t, auth.dict_user(login)).await {
        Ok(Ok(Some(u))) => Row::Found(u),
        Ok(Ok(None)) => Row::NotFound,
        Ok(Err(e)) if e.is_temporary() => {
            tracing::error!(error = %e, "lua lookup failed");
            Row::Temp(format!("vmail directory: {e}"))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "login not usable as an address");
            Row::NotFound
        }
        Err(_) => {
            tracing::error!("lua lookup timed out");
            Row::Temp(format!(
                "vmail directory: lookup slower than {} ms",
                t.as_millis()
            ))
        }
    }
}

/// LIST: every active user, then `END`; or `TEMP` (the client discards rows before it).
async fn list(auth: &Authenticator, id: Vec<u8>, out: &mut Vec<u8>) -> LuaResult {
    let users = match auth.directory() {
        Some(dir) => records::active_users(&dir, auth).await,
        None => Err("directory unavailable".into()),
    };
    match users {
        Ok(users) => {
            for email in users {
                lua::encode_reply(
                    &Reply::Row {
                        id: id.clone(),
                        user: email.into_bytes(),
                    },
                    out,
                );
            }
            emit(&Reply::End { id }, out)
        }
        Err(e) => {
            tracing::error!(error = %e, "lua list failed");
            let reason = format!("vmail directory: {e}");
            emit(&Reply::Temp { id, reason }, out)
        }
    }
}
