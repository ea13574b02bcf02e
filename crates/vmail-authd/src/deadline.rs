//! How long an auth, dict or Lua connection may take over what it is waiting for (issue 15):
//! the client's handshake and each line must arrive whole within request_read_timeout_ms
//! (from connecting, from the line's first byte), a connection with nothing in progress
//! may stay idle_timeout_ms, and one waiting for our own checks has no deadline. Each reply
//! must be taken within request_read_timeout_ms too (`vmail_daemon::write_all_within`).

use std::time::Duration;

use tokio::time::Instant;

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The client's handshake (auth `VERSION` and `CPID`, dict hello), from connecting.
    Handshake,
    /// The rest of a line whose first bytes came.
    Line,
    /// Nothing in progress (an auth request waiting for the client's next SASL step counts:
    /// Postfix bounds that by its smtpd_timeout).
    Idle,
    /// Our own answers (checks running): no deadline.
    Busy,
}

/// A connection's time limits (`[authd]` idle_timeout_ms, request_read_timeout_ms).
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub idle_timeout: Duration,
    pub request_read_timeout: Duration,
}

/// The clock of one connection.
pub struct Clock {
    connected: Instant,
    /// The current wait and when it began.
    current: Option<(Wait, Instant)>,
}

impl Clock {
    pub fn start(now: Instant) -> Clock {
        Clock {
            connected: now,
            current: None,
        }
    }

    /// A line was taken from the buffer: what follows (idle time, the next line) starts a
    /// clock of its own.
    pub fn line_done(&mut self) {
        self.current = None;
    }

    /// When the connection, waiting for `wait` at `now`, has waited too long; `None`: no
    /// deadline. Bytes of a line never move its deadline, so a client sending a byte now
    /// and then is closed.
    pub fn deadline(&mut self, wait: Wait, now: Instant, limits: &ConnSettings) -> Option<Instant> {
        let since = match (wait, self.current) {
            (Wait::Busy, _) => return None,
            (Wait::Handshake, _) => self.connected,
            (w, Some((c, t))) if w == c => t,
            (w, _) => {
                self.current = Some((w, now));
                now
            }
        };
        Some(
            since
                + match wait {
                    Wait::Idle => limits.idle_timeout,
                    _ => limits.request_read_timeout,
                },
        )
    }
}

/// Writes a reply under the request deadline: a client that stops reading its replies
/// would otherwise hold its connection (and its listener's slot) for ever.
pub async fn write<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    out: &[u8],
    limits: &ConnSettings,
) -> std::io::Result<()> {
    vmail_daemon::write_all_within(w, out, limits.request_read_timeout).await
}

/// The incoming side of a connection whose requests are answered, one by one, before the
/// next is read (dict, Lua): received bytes, and the clock their deadlines run on.
pub struct Inbox {
    /// Bytes received and not yet taken as a line.
    pub buf: Vec<u8>,
    chunk: Vec<u8>,
    clock: Clock,
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox {
            buf: Vec::with_capacity(512),
            chunk: vec![0u8; 4096],
            clock: Clock::start(Instant::now()),
        }
    }

    /// Takes the first `n` bytes (a whole line) out of the buffer.
    pub fn take(&mut self, n: usize) {
        self.buf.drain(..n);
        self.clock.line_done();
    }

    /// Reads what the client sends next, under the deadline of what the connection waits
    /// for (the handshake until `handshake_done`, then the rest of a line or idle time; our
    /// own answers are never waited for here). `false`: the connection is over (closed,
    /// failed, too slow, idle too long, or shutting down); `what` names it in the log.
    pub async fn fill<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        handshake_done: bool,
        limits: &ConnSettings,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
        what: &str,
    ) -> bool {
        use tokio::io::AsyncReadExt;
        let wait = if !handshake_done {
            Wait::Handshake
        } else if !self.buf.is_empty() {
            Wait::Line
        } else {
            Wait::Idle
        };
        let deadline = self.clock.deadline(wait, Instant::now(), limits);
        tokio::select! {
            // Bytes that came are read before an expired deadline is looked at.
            biased;
            r = stream.read(&mut self.chunk) => match r {
                Ok(0) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "{what} client read failed");
                    false
                }
            },
            () = until(deadline) => {
                if wait != Wait::Idle {
                    tracing::debug!(?wait, "closing {what} connection: line not complete within request_read_timeout_ms");
                }
                false
            }
            _ = shutdown.changed() => false,
        }
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps until `deadline`, for ever without one.
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnSettings = ConnSettings {
        idle_timeout: Duration::from_secs(60),
        request_read_timeout: Duration::from_secs(5),
    };

    #[test]
    fn a_line_keeps_its_deadline_and_idle_time_starts_after_it() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = Clock::start(t0);
        // The handshake counts from connecting, however late it is asked.
        assert_eq!(c.deadline(Wait::Handshake, at(2), &LIMITS), Some(at(5)));
        c.line_done();
        assert_eq!(c.deadline(Wait::Idle, at(2), &LIMITS), Some(at(62)));
        assert_eq!(c.deadline(Wait::Idle, at(40), &LIMITS), Some(at(62)));
        // A line begins: five seconds from its first byte, whatever comes after.
        assert_eq!(c.deadline(Wait::Line, at(50), &LIMITS), Some(at(55)));
        assert_eq!(c.deadline(Wait::Line, at(53), &LIMITS), Some(at(55)));
        // Waiting for our own checks has no deadline.
        c.line_done();
        assert_eq!(c.deadline(Wait::Busy, at(54), &LIMITS), None);
        // Idle time starts when the client next has nothing in progress.
        assert_eq!(c.deadline(Wait::Idle, at(60), &LIMITS), Some(at(120)));
        assert_eq!(c.deadline(Wait::Line, at(70), &LIMITS), Some(at(75)));
    }
}
