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
use crate::handler::Handler;

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

impl Handler {
    /// Serves a Dovecot auth-protocol connection until it ends. Errors are logged, never
    /// propagated.
    pub(crate) async fn serve_auth<S>(
        &self,
        stream: S,
        connection_id: u32,
        mut shutdown: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (auth, settings) = (&self.auth, &self.limits);
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
        if deadline::write(&mut wr, &out, settings).await.is_err() {
            return;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let mut chunk = vec![0u8; 4096];
        let mut session = Session {
            auth: auth.clone(),
            pending: HashMap::new(),
            checks: JoinSet::new(),
            client_minor: None,
            handshake_done: false,
        };
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
                    let step = session.handle(cmd, &mut out);
                    if !out.is_empty() && deadline::write(&mut wr, &out, settings).await.is_err() {
                        return;
                    }
                    if let Err(why) = step {
                        tracing::warn!(reason = why, "closing auth connection");
                        return;
                    }
                }
            }
            if !reading && session.checks.is_empty() {
                return;
            }
            let wait = if !session.handshake_done {
                Wait::Handshake
            } else if !buf.is_empty() {
                Wait::Line
            } else if !session.checks.is_empty() || !reading {
                Wait::Busy
            } else {
                Wait::Idle
            };
            let deadline = clock.deadline(wait, tokio::time::Instant::now(), settings);
            tokio::select! {
                // Bytes that came are read before an expired deadline is looked at.
                biased;
                r = rd.read(&mut chunk), if reading => match r {
                    Ok(0) => {
                        // The client left: requests still being checked have nobody to answer.
                        session.checks.abort_all();
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        tracing::debug!(error = %e, "auth client read failed");
                        return;
                    }
                },
                Some(done) = session.checks.join_next(), if !session.checks.is_empty() => {
                    let Ok((id, reply)) = done else { continue };
                    session.pending.remove(&id);
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
                    if deadline::write(&mut wr, &out, settings).await.is_err() {
                        return;
                    }
                },
                () = deadline::until(deadline) => {
                    if wait == Wait::Idle {
                        tracing::debug!("closing idle auth connection");
                    } else {
                        tracing::debug!(?wait, "closing auth connection: line not complete within request_read_timeout_ms");
                    }
                    session.checks.abort_all();
                    return;
                },
                _ = shutdown.changed(), if reading => {
                    // Finish what is being checked, take nothing new.
                    reading = false;
                },
            }
        }
    }
}

/// One connection's state between its lines: the handshake so far and the requests in
/// flight, with the authenticator their checks run on.
struct Session {
    auth: Arc<Authenticator>,
    pending: HashMap<u32, Pending>,
    checks: JoinSet<(u32, Option<Reply>)>,
    /// The minor version of the client's VERSION, once sent.
    client_minor: Option<u32>,
    /// CPID came after VERSION: requests may follow.
    handshake_done: bool,
}

impl Session {
    /// Acts on one client line. `Err` closes the connection (after `out` is written).
    fn handle(&mut self, cmd: ClientCommand, out: &mut Vec<u8>) -> Result<(), &'static str> {
        match cmd {
            ClientCommand::Version { major, minor } => {
                if self.client_minor.is_some() {
                    return Err("VERSION sent twice");
                }
                if major != auth::MAJOR_VERSION {
                    return Err("client speaks another major protocol version");
                }
                self.client_minor = Some(minor);
                Ok(())
            }
            ClientCommand::Cpid(_) => {
                if self.client_minor.is_none() || self.handshake_done {
                    return Err("CPID out of order");
                }
                self.handshake_done = true;
                Ok(())
            }
            _ if !self.handshake_done => Err("request before the client's VERSION and CPID"),
            ClientCommand::Auth(req) => {
                if self.pending.contains_key(&req.id) {
                    return Err("AUTH reuses the id of a request in flight");
                }
                if self.pending.len() >= MAX_IN_FLIGHT {
                    return Err("too many requests in flight");
                }
                let Some(mech) = req.mechanism() else {
                    return Err("AUTH with a mechanism we did not offer");
                };
                self.begin(req, mech, out);
                Ok(())
            }
            ClientCommand::Cont { id, data } => {
                let Some(state) = self.pending.remove(&id) else {
                    // Dovecot: "CONT for unknown request" — the client is confused.
                    return Err("CONT for a request that is not waiting for one");
                };
                match state {
                    Pending::Checking(h) => {
                        self.pending.insert(id, Pending::Checking(h));
                        Err("CONT while the request is being checked")
                    }
                    Pending::PlainAnswer(ctx) => {
                        match auth::decode_plain(data.expose()) {
                            Ok(creds) => self.start_check(
                                id,
                                creds.authzid,
                                creds.authcid,
                                creds.password,
                                ctx,
                            ),
                            Err(e) => self.sasl_failure(id, e, out),
                        }
                        Ok(())
                    }
                    Pending::LoginUser(ctx) => {
                        match auth::decode_login_step(data.expose()) {
                            Ok(user) if !user.is_empty() => {
                                self.pending.insert(id, Pending::LoginPassword(ctx, user));
                                cont(id, LOGIN_PROMPTS[1], out);
                            }
                            Ok(_) => self.sasl_failure(id, SaslError::EmptyUsername, out),
                            Err(e) => self.sasl_failure(id, e, out),
                        }
                        Ok(())
                    }
                    Pending::LoginPassword(ctx, user) => {
                        match auth::decode_login_step(data.expose()) {
                            Ok(pw) => self.start_check(id, None, user.expose().to_vec(), pw, ctx),
                            Err(e) => self.sasl_failure(id, e, out),
                        }
                        Ok(())
                    }
                }
            }
            ClientCommand::Cancel(id) => {
                if let Some(Pending::Checking(h)) = self.pending.remove(&id) {
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

    fn begin(&mut self, req: AuthRequest, mech: Mechanism, out: &mut Vec<u8>) {
        let ctx = Context {
            service: String::from_utf8_lossy(&req.service).to_ascii_lowercase(),
            rip: req.remote_ip,
        };
        let initial = match req.initial_response(self.client_minor.unwrap_or(0)) {
            Ok(r) => r,
            Err(e) => return self.sasl_failure(req.id, e, out),
        };
        match (mech, initial) {
            (Mechanism::Plain, None) => {
                self.pending.insert(req.id, Pending::PlainAnswer(ctx));
                cont(req.id, "", out);
            }
            (Mechanism::Plain, Some(raw)) => match auth::parse_plain(raw.expose()) {
                Ok(c) => self.start_check(req.id, c.authzid, c.authcid, c.password, ctx),
                Err(e) => self.sasl_failure(req.id, e, out),
            },
            (Mechanism::Login, None) => {
                self.pending.insert(req.id, Pending::LoginUser(ctx));
                cont(req.id, LOGIN_PROMPTS[0], out);
            }
            // LOGIN's initial response is the username (mech-login.c).
            (Mechanism::Login, Some(user)) if !user.is_empty() && !user.expose().contains(&0) => {
                self.pending
                    .insert(req.id, Pending::LoginPassword(ctx, user));
                cont(req.id, LOGIN_PROMPTS[1], out);
            }
            (Mechanism::Login, Some(_)) => self.sasl_failure(req.id, SaslError::EmptyUsername, out),
        }
    }

    /// Malformed SASL data: invalid base64 is answered at once (as Dovecot does); anything
    /// else is a failure like a wrong password, with its delay.
    fn sasl_failure(&mut self, id: u32, e: SaslError, out: &mut Vec<u8>) {
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
        let delay = self.auth.failure_delay();
        let h = self.checks.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (id, Some(fail(id, None)))
        });
        self.pending.insert(id, Pending::Checking(h));
    }

    /// Checks the credentials of request `id` in a task of its own, so that other requests
    /// go on meanwhile.
    fn start_check(
        &mut self,
        id: u32,
        authzid: Option<Vec<u8>>,
        login: Vec<u8>,
        password: Secret,
        ctx: Context,
    ) {
        let auth = self.auth.clone();
        let span = tracing::info_span!("auth", id, service = %ctx.service);
        let h = self.checks.spawn(
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
        self.pending.insert(id, Pending::Checking(h));
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

fn fail(id: u32, user: Option<Vec<u8>>) -> Reply {
    Reply::Fail {
        id,
        user,
        code: None,
        reason: None,
    }
}
