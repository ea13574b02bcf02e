//! What authd serves each connection with, whatever its protocol: the authenticator, the
//! time limits, who may use the Lua channel, and the connection ids. One [`Handler`] is
//! shared by every listener; each protocol has its method, in its own module:
//! `serve_auth` (auth_conn.rs), `serve_dict` (dict_conn.rs), `serve_lua` (lua_conn.rs).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::Instrument;
use vmail_daemon::Stream;

use crate::authenticator::Authenticator;
use crate::deadline::ConnSettings;
use crate::lua_conn::Peers;
use crate::Protocol;

pub struct Handler {
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) limits: ConnSettings,
    /// Who may use the Lua sockets.
    lua_peers: Peers,
    /// CUID: unique per connection within the process, as Dovecot's.
    next_cuid: AtomicU32,
}

impl Handler {
    pub fn new(auth: Arc<Authenticator>, limits: ConnSettings, lua_peers: Peers) -> Handler {
        Handler {
            auth,
            limits,
            lua_peers,
            next_cuid: AtomicU32::new(1),
        }
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// One accepted connection of a `proto` listener, served until it ends.
    pub fn connection(
        self: Arc<Self>,
        stream: Stream,
        proto: Protocol,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let cuid = self.next_cuid.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", proto = ?proto, cuid);
        async move {
            match (stream, proto) {
                (Stream::Unix(s), Protocol::Auth) => self.serve_auth(s, cuid, shutdown).await,
                (Stream::Tcp(s), Protocol::Auth) => self.serve_auth(s, cuid, shutdown).await,
                (Stream::Unix(s), Protocol::Dict) => self.serve_dict(s, shutdown).await,
                (Stream::Tcp(s), Protocol::Dict) => self.serve_dict(s, shutdown).await,
                // The peer is checked before a byte is read: a refused client gets no
                // answer at all.
                (Stream::Unix(s), Protocol::Lua) => {
                    if self.lua_peers.admit(&s, &self.auth.stats) {
                        self.serve_lua(s, shutdown).await
                    }
                }
                // The configuration refuses inet: for lua; nothing to check here.
                (Stream::Tcp(_), Protocol::Lua) => {}
            }
        }
        .instrument(span)
    }
}
