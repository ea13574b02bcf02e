//! Resolving the recipient through a running vmail-lookupd (`[lda] lookupd`): one socketmap
//! request for the `recipient` map on a UNIX socket instead of a database connection, schema
//! check and query per message. Postfix starts one LDA process per message, so this is most
//! of what a delivery costs besides the write itself.
//!
//! Plain blocking I/O: one request, one answer, and no runtime to build for it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmail_proto::socketmap::{self, Reply, Request};
use vmail_record::RecipientRecord;

/// What lookupd said about a recipient.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    Found(RecipientRecord),
    /// No such mailbox (lookupd's NOTFOUND).
    Unknown,
    /// lookupd answered, or began to, and something went wrong: defer.
    Temp(String),
    /// Nothing accepts connections there (lookupd stopped or not configured for the LDA):
    /// the caller asks the database itself.
    Unreachable(String),
}

/// A connection error that means "lookupd is not running" (ask the database instead), as
/// opposed to one that needs the postmaster (a socket the mail user may not use): that one
/// defers, so it shows up in the mail log at the first delivery.
fn not_running(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// A blocking connect to a UNIX socket waits forever while the listener's backlog is full
/// (lookupd wedged or at max_connections, or systemd holding the socket of a failed
/// lookupd): bounded here by SO_SNDTIMEO, which Linux applies to UNIX-socket connects.
fn connect_unix(path: &str, timeout: Duration) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let tv = nix::sys::time::TimeVal::new(
        timeout.as_secs().try_into().unwrap_or(i64::MAX),
        timeout.subsec_micros().into(),
    );
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    let addr = UnixAddr::new(path)?;
    use std::os::fd::AsRawFd;
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(UnixStream::from(fd)),
        // The backlog stayed full for the whole timeout: lookupd is there but not
        // accepting. Not "not running": defer rather than fall back.
        Err(nix::errno::Errno::EAGAIN) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "lookupd accepted no connection in time",
        )),
        Err(e) => Err(e.into()),
    }
}

fn connect_failed(endpoint: &str, e: std::io::Error) -> Resolved {
    let why = format!("cannot connect to lookupd at {endpoint}: {e}");
    if not_running(&e) {
        Resolved::Unreachable(why)
    } else {
        Resolved::Temp(why)
    }
}

/// Asks lookupd at `endpoint` (`unix:/path` or `inet:HOST:PORT`) for `recipient`: `timeout`
/// bounds the connect and send, and again the wait for the answer.
pub fn via_lookupd(endpoint: &str, recipient: &str, timeout: Duration) -> Resolved {
    match ask(endpoint, recipient, timeout) {
        Ok(pending) => pending.answer(),
        Err(r) => r,
    }
}

/// A question sent to lookupd whose answer has not been read yet: the LDA writes the
/// message meanwhile.
pub struct Pending {
    stream: Box<dyn Timed>,
    timeout: Duration,
    endpoint: String,
}

/// Connects to lookupd and sends the question. `Err` is the resolution already known:
/// [`Resolved::Unreachable`] comes only from here, before anything else happened, so a
/// caller that falls back to the database has read no input yet.
pub fn ask(endpoint: &str, recipient: &str, timeout: Duration) -> Result<Pending, Resolved> {
    let deadline = Instant::now() + timeout;
    let mut request = Vec::with_capacity(recipient.len() + 24);
    socketmap::encode_request(
        &Request {
            map: "recipient",
            key: recipient.as_bytes(),
        },
        &mut request,
    );
    let mut stream: Box<dyn Timed> = if let Some(path) = endpoint.strip_prefix("unix:") {
        match connect_unix(path, timeout) {
            Ok(s) => Box::new(s),
            Err(e) => return Err(connect_failed(endpoint, e)),
        }
    } else if let Some(hostport) = endpoint.strip_prefix("inet:") {
        // Name resolution has no deadline of its own: configure an address, not a name
        // (config validation cannot tell them apart cheaply, so this is documented).
        let addr = match hostport.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                return Err(Resolved::Unreachable(format!("{endpoint}: cannot resolve")))
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Resolved::Temp(format!(
                "lookupd at {endpoint}: no answer in time"
            )));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                // One small request and its answer: do not wait for more to coalesce.
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Err(e) => return Err(connect_failed(endpoint, e)),
        }
    } else {
        return Err(Resolved::Temp(format!(
            "{endpoint:?} is not unix:PATH or inet:HOST:PORT"
        )));
    };
    let sent = remaining(deadline)
        .and_then(|left| stream.set_timeouts(left))
        .and_then(|()| stream.write_all(&request));
    match sent {
        Ok(()) => Ok(Pending {
            stream,
            timeout,
            endpoint: endpoint.to_string(),
        }),
        Err(e) => Err(Resolved::Temp(format!("lookupd at {endpoint}: {e}"))),
    }
}

impl Pending {
    /// Reads lookupd's answer, waiting at most the timeout from now: the time the caller
    /// spent since [`ask`] (writing a big message on a slow disk) is not lookupd's, and must
    /// not turn an answer that arrived long ago into a deferral.
    pub fn answer(mut self) -> Resolved {
        match read_reply(&mut *self.stream, Instant::now() + self.timeout) {
            Ok(reply) => interpret(reply),
            Err(e) => Resolved::Temp(format!("lookupd at {}: {e}", self.endpoint)),
        }
    }
}

/// The stream types the exchange works on.
trait Timed: Read + Write {
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()>;
}

/// std gives both stream types the same timeout methods, but no trait for them.
macro_rules! timed {
    ($($t:ty),*) => {$(
        impl Timed for $t {
            fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
                self.set_read_timeout(Some(t))?;
                self.set_write_timeout(Some(t))
            }
        }
    )*};
}
timed!(UnixStream, TcpStream);

fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer in time",
        ));
    }
    Ok(left)
}

fn read_reply(s: &mut dyn Timed, deadline: Instant) -> std::io::Result<Reply> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        match socketmap::parse_reply_frame(&buf) {
            Ok(Some((reply, _))) => return Ok(reply),
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            }
        }
        s.set_timeouts(remaining(deadline)?)?;
        let n = match s.read(&mut chunk) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer was complete",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer in time",
                ))
            }
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// lookupd's answer as a resolution. Only NOTFOUND makes a recipient unknown; everything
/// unexpected defers.
pub fn interpret(reply: Reply) -> Resolved {
    match reply {
        Reply::Ok(v) => match RecipientRecord::decode(&v) {
            Ok(r) => Resolved::Found(r),
            Err(e) => Resolved::Temp(format!("lookupd: {e}")),
        },
        Reply::NotFound => Resolved::Unknown,
        Reply::Temp(r) | Reply::Timeout(r) => Resolved::Temp(format!("lookupd: {r}")),
        // PERM: lookupd does not know the map (an older lookupd) or refused the key; a
        // configuration problem the postmaster fixes while the mail waits.
        Reply::Perm(r) => Resolved::Temp(format!("lookupd refused the request: {r}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn record() -> RecipientRecord {
        RecipientRecord {
            email: "alice@example.org".into(),
            active: true,
            home: "/home/vmail/example.org/alice".into(),
            mail: "maildir:~/Maildir".into(),
            quota_bytes: Some(1000),
            ext: Some("+news".into()),
        }
    }

    #[test]
    fn replies_map_to_resolutions() {
        let r = record();
        assert_eq!(interpret(Reply::Ok(r.encode())), Resolved::Found(r));
        assert_eq!(interpret(Reply::NotFound), Resolved::Unknown);
        for reply in [
            Reply::Temp("db down".into()),
            Reply::Timeout("slow".into()),
            Reply::Perm("no map named \"recipient\"".into()),
            Reply::Ok("domain/alice/".into()),
            Reply::Ok(String::new()),
            Reply::Ok("{\"email\":\"a@b\"}".into()),
        ] {
            assert!(
                matches!(interpret(reply.clone()), Resolved::Temp(_)),
                "{reply:?}"
            );
        }
    }

    /// A one-shot server answering with `answer` bytes (or hanging / closing), recording
    /// the request it got.
    fn server(answer: &'static [u8], hang: bool) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 256];
            let n = c.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"27:recipient alice@example.org,");
            if hang {
                std::thread::sleep(Duration::from_secs(5));
            }
            let _ = c.write_all(answer);
        });
        (dir, format!("unix:{}", path.display()))
    }

    #[test]
    fn talks_socketmap_over_a_unix_socket() {
        let r = record();
        let mut framed = Vec::new();
        socketmap::encode_reply(&Reply::Ok(r.encode()), &mut framed);
        let framed: &'static [u8] = Box::leak(framed.into_boxed_slice());
        let (_d, ep) = server(framed, false);
        assert_eq!(
            via_lookupd(&ep, "alice@example.org", Duration::from_secs(5)),
            Resolved::Found(r)
        );
        let (_d, ep) = server(b"9:NOTFOUND ,", false);
        assert_eq!(
            via_lookupd(&ep, "alice@example.org", Duration::from_secs(5)),
            Resolved::Unknown
        );
    }

    #[test]
    fn hostile_or_broken_answers_defer() {
        for answer in [
            &b""[..],             // closed at once
            b"9:NOTFOUND",        // truncated
            b"99999999999:OK x,", // oversized length prefix
            b"4:OK\0x,",          // NUL, wrong frame
            b"5:OK \xff\xfe,",    // invalid UTF-8
            b"x:OK,",             // not a netstring
            b"12:WHATEVER xx,",   // unknown status
            b"14:OK not json!,",  // not a record
        ] {
            let (_d, ep) = server(answer, false);
            let got = via_lookupd(&ep, "alice@example.org", Duration::from_secs(5));
            assert!(matches!(got, Resolved::Temp(_)), "{answer:?}: {got:?}");
        }
        let (_d, ep) = server(b"9:NOTFOUND ,", true);
        let t = Instant::now();
        let got = via_lookupd(&ep, "alice@example.org", Duration::from_millis(300));
        assert!(matches!(got, Resolved::Temp(_)), "{got:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn only_a_missing_lookupd_falls_back() {
        use std::io::{Error, ErrorKind};
        for kind in [ErrorKind::NotFound, ErrorKind::ConnectionRefused] {
            assert!(matches!(
                connect_failed("unix:/x", Error::from(kind)),
                Resolved::Unreachable(_)
            ));
        }
        for kind in [
            ErrorKind::PermissionDenied,
            ErrorKind::TimedOut,
            ErrorKind::Other,
        ] {
            assert!(matches!(
                connect_failed("unix:/x", Error::from(kind)),
                Resolved::Temp(_)
            ));
        }
    }

    #[test]
    fn a_listener_that_never_accepts_defers_in_time() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full");
        let l = UnixListener::bind(&path).unwrap();
        // Backlog 0 and nobody accepting: after a connection or two the queue is full and a
        // plain blocking connect would hang for good.
        // SAFETY: listen() on a valid socket we own.
        assert_eq!(unsafe { nix::libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = connect_unix(path.to_str().unwrap(), Duration::from_millis(100)) {
                held.push(s);
            }
        }
        let ep = format!("unix:{}", path.display());
        let t = Instant::now();
        let got = via_lookupd(&ep, "alice@example.org", Duration::from_millis(300));
        assert!(
            matches!(&got, Resolved::Temp(m) if m.contains("accepted no connection")),
            "{got:?} (held {})",
            held.len()
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(l);
    }

    #[test]
    fn nothing_listening_is_unreachable_not_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let ep = format!("unix:{}", dir.path().join("none").display());
        assert!(matches!(
            via_lookupd(&ep, "alice@example.org", Duration::from_secs(1)),
            Resolved::Unreachable(_)
        ));
        let port = vmail_test_support::free_port();
        assert!(matches!(
            via_lookupd(
                &format!("inet:127.0.0.1:{port}"),
                "alice@example.org",
                Duration::from_secs(1)
            ),
            Resolved::Unreachable(_)
        ));
    }
}
