//! One client connection: read requests, answer them in order, until the client leaves, goes
//! idle, breaks the framing, or the server shuts down. Postfix sends one request at a time per
//! connection and reuses connections, so a connection is a simple loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;
use vmail_daemon::Stream;
use vmail_proto::{netstring, socketmap, tcp_table};

use crate::service::{Outcome, Service};

/// Which protocol a listener speaks.
#[derive(Debug, Clone)]
pub enum Protocol {
    Socketmap,
    /// tcp_table requests name no map: each listener serves one.
    TcpTable(&'static str),
}

pub struct ConnSettings {
    /// Between requests.
    pub idle_timeout: Duration,
    /// From the first byte of a request to its last; also how long a reply may take to be
    /// written (a client that does not read its replies is closed).
    pub request_read_timeout: Duration,
}

/// What the connections of one listener are served with: the shared service, the time
/// limits and the listener's protocol. One per listener, shared by its connections.
pub struct Handler {
    pub svc: Arc<Service>,
    pub settings: ConnSettings,
    pub proto: Protocol,
}

impl Handler {
    /// One accepted connection, served until it ends (see [`Handler::serve`]).
    pub fn connection(
        self: Arc<Self>,
        stream: Stream,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let span = tracing::debug_span!("conn", proto = ?self.proto);
        async move {
            match stream {
                Stream::Unix(s) => self.serve(s, shutdown).await,
                Stream::Tcp(s) => self.serve(s, shutdown).await,
            }
        }
        .instrument(span)
    }

    /// Serves a connection until it ends. Errors are logged, never propagated: one broken
    /// client must not affect anybody else.
    pub async fn serve<S>(&self, mut stream: S, mut shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (svc, settings) = (&*self.svc, &self.settings);
        let mut buf: Vec<u8> = Vec::with_capacity(512);
        let mut out: Vec<u8> = Vec::with_capacity(512);
        // One timer per connection, moved only when it fires (or, for a request that arrives
        // in pieces, brought forward to its deadline): arming a fresh timer for every read made
        // tokio wake its own event loop through an eventfd write each time
        // (tokio-rs/tokio#5207), a system call and an extra loop turn per request.
        let idle = tokio::time::sleep(settings.idle_timeout);
        tokio::pin!(idle);
        // The current wait: `false` between requests (idle time), `true` while a request is
        // being received; and when it began. Bytes of a request never restart its clock, so a
        // client dribbling a byte at a time is closed after request_read_timeout (issue 15).
        let mut waiting: Option<(bool, Instant)> = None;
        loop {
            // Answer every complete request already buffered.
            loop {
                out.clear();
                let step = match &self.proto {
                    Protocol::Socketmap => socketmap_step(&buf, svc, &mut out).await,
                    Protocol::TcpTable(map) => tcp_table_step(&buf, map, svc, &mut out).await,
                };
                match step {
                    Step::Answered(used) => {
                        buf.drain(..used);
                        // What follows is idle time or a new request: either starts its clock.
                        waiting = None;
                        // Under the request deadline too: a client that never reads its replies
                        // would otherwise hold its slot for ever once the socket is full.
                        let limit = settings.request_read_timeout;
                        if let Err(e) =
                            vmail_daemon::write_all_within(&mut stream, &out, limit).await
                        {
                            tracing::debug!(error = %e, "client went away while we answered");
                            return;
                        }
                    }
                    Step::NeedMore => break,
                    Step::Close(reason) => {
                        svc.stats.bad_request();
                        tracing::warn!(reason, "closing connection after malformed input");
                        if !out.is_empty() {
                            let limit = settings.request_read_timeout;
                            let _ = vmail_daemon::write_all_within(&mut stream, &out, limit).await;
                        }
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
            if *shutdown.borrow() && buf.is_empty() {
                return;
            }
            let in_request = !buf.is_empty();
            let since = match waiting {
                Some((r, t)) if r == in_request => t,
                _ => {
                    let t = Instant::now();
                    waiting = Some((in_request, t));
                    if in_request {
                        // Only here, on a request split over reads (not the hot path), can the
                        // deadline be earlier than the timer.
                        let deadline = t + settings.request_read_timeout;
                        if deadline < idle.deadline() {
                            idle.as_mut().reset(deadline);
                        }
                    }
                    t
                }
            };
            tokio::select! {
                // Bytes already waiting are read even when the loop comes late to an expired
                // timer: a request that arrived is answered.
                biased;
                r = stream.read_buf(&mut buf) => match r {
                    Ok(0) => return,
                    // The idle time ends with the first byte; a request's clock runs on.
                    Ok(_) => if !in_request { waiting = None },
                    Err(e) => {
                        tracing::debug!(error = %e, "read error");
                        return;
                    }
                },
                () = &mut idle => {
                    let deadline = since + if in_request {
                        settings.request_read_timeout
                    } else {
                        settings.idle_timeout
                    };
                    if Instant::now() >= deadline {
                        if in_request {
                            svc.stats.slow_request();
                            tracing::debug!(
                                bytes = buf.len(),
                                "closing connection: request not complete within request_read_timeout_ms"
                            );
                        } else {
                            tracing::debug!("closing idle connection");
                        }
                        return;
                    }
                    idle.as_mut().reset(deadline);
                }
                // Between requests a shutdown closes the connection; a request being read is
                // still answered (the loop comes back here only once it is complete or idle).
                _ = shutdown.changed(), if buf.is_empty() => return,
            }
        }
    }
}

enum Step {
    /// Bytes consumed; `out` holds the reply.
    Answered(usize),
    NeedMore,
    /// The stream cannot be resynchronised; `out` may hold a last reply.
    Close(String),
}

async fn socketmap_step(buf: &[u8], svc: &Service, out: &mut Vec<u8>) -> Step {
    let (payload, used) = match netstring::parse(buf, socketmap::MAX_REQUEST) {
        Ok(Some(x)) => x,
        Ok(None) => return Step::NeedMore,
        Err(e) => {
            socketmap::encode_reply(&socketmap::Reply::Perm(e.to_string()), out);
            return Step::Close(e.to_string());
        }
    };
    let reply = match socketmap::parse_request(payload) {
        Ok(req) => match svc.answer(req.map, req.lookup_key()).await {
            Outcome::Found(v) => socketmap::Reply::Ok(v),
            Outcome::NotFound => socketmap::Reply::NotFound,
            Outcome::Temp(r) => socketmap::Reply::Temp(r),
            Outcome::Timeout(r) => socketmap::Reply::Timeout(r),
            Outcome::UnknownMap(r) => socketmap::Reply::Perm(r),
        },
        // A well-framed but malformed request: answer it, keep the connection.
        Err(e) => {
            svc.stats.bad_request();
            socketmap::Reply::Perm(e.to_string())
        }
    };
    socketmap::encode_reply(&reply, out);
    Step::Answered(used)
}

async fn tcp_table_step(buf: &[u8], map: &str, svc: &Service, out: &mut Vec<u8>) -> Step {
    let n = match tcp_table::find_line(buf, tcp_table::MAX_REQUEST_LINE) {
        Ok(Some(n)) => n,
        Ok(None) => return Step::NeedMore,
        Err(e) => {
            tcp_table::encode_reply(&tcp_table::TcpReply::Temp(e.to_string()), out);
            return Step::Close(e.to_string());
        }
    };
    let reply = match tcp_table::parse_request(&buf[..n]) {
        Ok(tcp_table::TcpRequest::Get(key)) => {
            match svc.answer(map, vmail_proto::lookup_key(&key)).await {
                Outcome::Found(v) => tcp_table::TcpReply::Ok(v),
                Outcome::NotFound => tcp_table::TcpReply::NotFound("not found".into()),
                Outcome::Temp(r) | Outcome::Timeout(r) | Outcome::UnknownMap(r) => {
                    tcp_table::TcpReply::Temp(r)
                }
            }
        }
        Ok(tcp_table::TcpRequest::Put { .. }) => {
            tcp_table::TcpReply::NotFound("put is not supported".into())
        }
        // 400, not 500: Postfix reads 500 as "no such entry".
        Err(e) => {
            svc.stats.bad_request();
            tcp_table::TcpReply::Temp(e.to_string())
        }
    };
    tcp_table::encode_reply(&reply, out);
    Step::Answered(n)
}
