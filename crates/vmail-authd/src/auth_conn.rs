//! One Dovecot auth-protocol client connection (Postfix's smtpd keeps one per process):
//! handshake, then any number of requests, several in flight at once (replies carry the
//! request id, so they may come back in any order). Protocol violations close the
//! connection, as Dovecot's auth server does; a slow check never blocks other requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;
use vmail_proto::auth::{
    self, AuthRequest, ClientCommand, FailCode, Handshake, Mechanism, Reply, SaslError, Secret,
    LOGIN_PROMPTS,
};

use crate::authenticator::{Authenticator, Verdict};
use crate::deadline::{self, Clock, Wait};

/// Requests one connection may have in flight; Postfix has one, a client with hundreds is
/// misbehaving.
const MAX_IN_FLIGHT: usize = 128;

pub use crate::deadline::ConnSettings;

/// Where a request stands between our replies.
enum Pending {
    /// PLAIN without an initial response: we sent an empty CONT.
    PlainAnswer(Context),
    /// LOGIN: we asked for the username.
    LoginUser(Context),
    /// LOGIN: we asked for the password.
    LoginPassword(Context, Secret),
    /// Being checked.
    Checking(AbortHandle),
}

#[derive(Clone)]
struct Context {
    service: String,
    rip: Option<IpAddr>,
}

/// Serves a connection until it ends. Errors are logged, never propagated.
pub async fn serve<S>(
    stream: S,
    auth: Arc<Authenticator>,
    settings: Arc<ConnSettings>,
    connection_id: u32,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut clock = Clock::start(tokio::time::Instant::now());
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut cookie = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut cookie);
    let mut out = Vec::with_capacity(256);
    auth::encode_handshake(
        &Handshake {
            mechanisms: &[Mechanism::Plain, Mechanism::Login],
            server_pid: std::process::id(),
            connection_id,
            cookie,
        },
        &mut out,
    );
    if deadline::write(&mut wr, &out, &settings).await.is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut checks: JoinSet<(u32, Option<Reply>)> = JoinSet::new();
    let mut client_minor: Option<u32> = None;
    let mut handshake_done = false;
    let mut reading = true;
    loop {
        // Handle every complete line already buffered.
        if reading {
            loop {
                let n = match auth::find_line(&buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing auth connection");
                        return;
                    }
                };
                let cmd = auth::parse_command(&buf[..n]);
                buf.drain(..n);
                clock.line_done();
                let cmd = match cmd {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing auth connection after a broken line");
                        return;
                    }
                };
                out.clear();
                let step = handle(
                    cmd,
                    &auth,
                    &mut pending,
                    &mut checks,
                    &mut client_minor,
                    &mut handshake_done,
                    &mut out,
                );
                if !out.is_empty() && deadline::write(&mut wr, &out, &settings).await.is_err() {
                    return;
                }
                if let Err(why) = step {
                    tracing::warn!(reason = why, "closing auth connection");
                    return;
                }
            }
        }
        if !reading && checks.is_empty() {
            return;
        }
        let wait = if !handshake_done {
            Wait::Handshake
        } else if !buf.is_empty() {
            Wait::Line
        } else if !checks.is_empty() || !reading {
            Wait::Busy
        } else {
            Wait::Idle
        };
        let deadline = clock.deadline(wait, tokio::time::Instant::now(), &settings);
        tokio::select! {
            // Bytes that came are read before an expired deadline is looked at.
            biased;
            r = rd.read(&mut chunk), if reading => match r {
                Ok(0) => {
                    // The client left: requests still being checked have nobody to answer.
                    checks.abort_all();
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "auth client read failed");
                    return;
                }
            },
            Some(done) = checks.join_next(), if !checks.is_empty() => {
                let Ok((id, reply)) = done else { continue };
                pending.remove(&id);
                let Some(reply) = reply else {
                    // A temporary failure: Postfix's client turns every FAIL into 535
                    // ("wrong password") whatever its code, and only a lost connection into
                    // 454 ("try again"). So we hang up instead of answering; the client
                    // reconnects for its next attempt.
                    tracing::info!(id, "closing the connection to signal a temporary failure");
                    return;
                };
                out.clear();
                auth::encode_reply(&reply, &mut out);
                if deadline::write(&mut wr, &out, &settings).await.is_err() {
                    return;
                }
            },
            () = deadline::until(deadline) => {
                if wait == Wait::Idle {
                    tracing::debug!("closing idle auth connection");
                } else {
                    tracing::debug!(?wait, "closing auth connection: line not complete within request_read_timeout_ms");
                }
                checks.abort_all();
                return;
            },
            _ = shutdown.changed(), if reading => {
                // Finish what is being checked, take nothing new.
                reading = false;
            },
        }
    }
}

/// Acts on one client line. `Err` closes the connection (after `out` is written).
#[allow(clippy::too_many_arguments)]
fn handle(
    cmd: ClientCommand,
    auth: &Arc<Authenticator>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Option<Reply>)>,
    client_minor: &mut Option<u32>,
    handshake_done: &mut bool,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    match cmd {
        ClientCommand::Version { major, minor } => {
            if client_minor.is_some() {
                return Err("VERSION sent twice");
            }
            if major != auth::MAJOR_VERSION {
                return Err("client speaks another major protocol version");
            }
            *client_minor = Some(minor);
            Ok(())
        }
        ClientCommand::Cpid(_) => {
            if client_minor.is_none() || *handshake_done {
                return Err("CPID out of order");
            }
            *handshake_done = true;
            Ok(())
        }
        _ if !*handshake_done => Err("request before the client's VERSION and CPID"),
        ClientCommand::Auth(req) => {
            if pending.contains_key(&req.id) {
                return Err("AUTH reuses the id of a request in flight");
            }
            if pending.len() >= MAX_IN_FLIGHT {
                return Err("too many requests in flight");
            }
            let Some(mech) = req.mechanism() else {
                return Err("AUTH with a mechanism we did not offer");
            };
            begin(
                req,
                mech,
                auth,
                pending,
                checks,
                client_minor.unwrap_or(0),
                out,
            );
            Ok(())
        }
        ClientCommand::Cont { id, data } => {
            let Some(state) = pending.remove(&id) else {
                // Dovecot: "CONT for unknown request" — the client is confused.
                return Err("CONT for a request that is not waiting for one");
            };
            match state {
                Pending::Checking(h) => {
                    pending.insert(id, Pending::Checking(h));
                    Err("CONT while the request is being checked")
                }
                Pending::PlainAnswer(ctx) => {
                    match auth::decode_plain(data.expose()) {
                        Ok(creds) => start_check(
                            id,
                            creds.authzid,
                            creds.authcid,
                            creds.password,
                            ctx,
                            auth,
                            pending,
                            checks,
                        ),
                        Err(e) => sasl_failure(id, e, auth, pending, checks, out),
                    }
                    Ok(())
                }
                Pending::LoginUser(ctx) => {
                    match auth::decode_login_step(data.expose()) {
                        Ok(user) if !user.is_empty() => {
                            pending.insert(id, Pending::LoginPassword(ctx, user));
                            cont(id, LOGIN_PROMPTS[1], out);
                        }
                        Ok(_) => {
                            sasl_failure(id, SaslError::EmptyUsername, auth, pending, checks, out)
                        }
                        Err(e) => sasl_failure(id, e, auth, pending, checks, out),
                    }
                    Ok(())
                }
                Pending::LoginPassword(ctx, user) => {
                    match auth::decode_login_step(data.expose()) {
                        Ok(pw) => start_check(
                            id,
                            None,
                            user.expose().to_vec(),
                            pw,
                            ctx,
                            auth,
                            pending,
                            checks,
                        ),
                        Err(e) => sasl_failure(id, e, auth, pending, checks, out),
                    }
                    Ok(())
                }
            }
        }
        ClientCommand::Cancel(id) => {
            if let Some(Pending::Checking(h)) = pending.remove(&id) {
                h.abort();
            }
            Ok(())
        }
        ClientCommand::Unknown(name) => {
            tracing::warn!(command = %name, "unknown auth command");
            Err("unknown command")
        }
    }
}

fn cont(id: u32, prompt: &str, out: &mut Vec<u8>) {
    auth::encode_reply(
        &Reply::Cont {
            id,
            challenge: prompt.as_bytes().to_vec(),
        },
        out,
    );
}

fn begin(
    req: AuthRequest,
    mech: Mechanism,
    auth: &Arc<Authenticator>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Option<Reply>)>,
    client_minor: u32,
    out: &mut Vec<u8>,
) {
    let ctx = Context {
        service: String::from_utf8_lossy(&req.service).to_ascii_lowercase(),
        rip: req.remote_ip,
    };
    let initial = match req.initial_response(client_minor) {
        Ok(r) => r,
        Err(e) => return sasl_failure(req.id, e, auth, pending, checks, out),
    };
    match (mech, initial) {
        (Mechanism::Plain, None) => {
            pending.insert(req.id, Pending::PlainAnswer(ctx));
            cont(req.id, "", out);
        }
        (Mechanism::Plain, Some(raw)) => match auth::parse_plain(raw.expose()) {
            Ok(c) => start_check(
                req.id, c.authzid, c.authcid, c.password, ctx, auth, pending, checks,
            ),
            Err(e) => sasl_failure(req.id, e, auth, pending, checks, out),
        },
        (Mechanism::Login, None) => {
            pending.insert(req.id, Pending::LoginUser(ctx));
            cont(req.id, LOGIN_PROMPTS[0], out);
        }
        // LOGIN's initial response is the username (mech-login.c).
        (Mechanism::Login, Some(user)) if !user.is_empty() && !user.expose().contains(&0) => {
            pending.insert(req.id, Pending::LoginPassword(ctx, user));
            cont(req.id, LOGIN_PROMPTS[1], out);
        }
        (Mechanism::Login, Some(_)) => {
            sasl_failure(req.id, SaslError::EmptyUsername, auth, pending, checks, out)
        }
    }
}

/// Malformed SASL data: invalid base64 is answered at once (as Dovecot does); anything
/// else is a failure like a wrong password, with its delay.
fn sasl_failure(
    id: u32,
    e: SaslError,
    auth: &Arc<Authenticator>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Option<Reply>)>,
    out: &mut Vec<u8>,
) {
    tracing::info!(id, error = %e, "unusable SASL data");
    if e == SaslError::InvalidBase64 {
        auth::encode_reply(
            &Reply::Fail {
                id,
                user: None,
                code: Some(FailCode::InvalidBase64),
                reason: Some("Invalid base64 data in continued response".into()),
            },
            out,
        );
        return;
    }
    let delay = auth.failure_delay();
    let h = checks.spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        (id, Some(fail(id, None)))
    });
    pending.insert(id, Pending::Checking(h));
}

fn fail(id: u32, user: Option<Vec<u8>>) -> Reply {
    Reply::Fail {
        id,
        user,
        code: None,
        reason: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn start_check(
    id: u32,
    authzid: Option<Vec<u8>>,
    login: Vec<u8>,
    password: Secret,
    ctx: Context,
    auth: &Arc<Authenticator>,
    pending: &mut HashMap<u32, Pending>,
    checks: &mut JoinSet<(u32, Option<Reply>)>,
) {
    let auth = auth.clone();
    let span = tracing::info_span!("auth", id, service = %ctx.service);
    let h = checks.spawn(
        async move {
            if authzid.is_some() {
                // Acting as someone else needs master users, which we do not have.
                tracing::warn!(id, "PLAIN with a different authorization identity refused");
                if !auth.failure_delay().is_zero() {
                    tokio::time::sleep(auth.failure_delay()).await;
                }
                return (id, Some(fail(id, Some(login))));
            }
            let verdict = auth
                .authenticate(&login, password.expose(), &ctx.service, ctx.rip)
                .await;
            let reply = match verdict {
                Verdict::Ok { user } => Some(Reply::Ok {
                    id,
                    user: user.email.into_bytes(),
                    extra: Vec::new(),
                }),
                // A refused account gets exactly a wrong password's reply: Postfix puts a
                // FAIL's reason into its 535 text (xsasl_dovecot_server.c), so a reason or
                // code would tell a guesser the password was right. The log has it.
                Verdict::Fail | Verdict::Disabled { .. } => Some(fail(id, Some(login))),
                // See the connection loop: no reply, the connection is closed.
                Verdict::Temp(_) => None,
            };
            (id, reply)
        }
        .instrument(span),
    );
    pending.insert(id, Pending::Checking(h));
}
