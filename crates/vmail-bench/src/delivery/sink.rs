//! The ceiling of `vmail-bench delivery`: an LMTP server (RFC 2033) that accepts every
//! recipient and discards every message, on a UNIX socket Postfix's `lmtp` client delivers
//! to. It does what any LMTP server must (a reply per command, pipelining, one reply per
//! recipient after the data) and nothing else: no lookup, no file, no fsync.
//!
//! It is the bench's own code, not a test of anything: lines are read with a bounded
//! `read_until`, and a client that breaks the protocol is simply disconnected.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The running sink: its runtime thread stops when the process ends.
pub struct Sink {
    /// Recipients whose message was read to its end and answered 250.
    pub delivered: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl Sink {
    /// Listens on `socket` (mode 0666: Postfix's lmtp client runs as `postfix`) on a
    /// one-thread runtime of its own.
    pub fn start(socket: &Path) -> Result<Sink> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lmtp-sink")
            .enable_all()
            .build()?;
        let listener = {
            let _g = rt.enter();
            UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?
        };
        vmail_test_support::set_mode(socket, 0o666);
        let delivered = Arc::new(AtomicUsize::new(0));
        let count = delivered.clone();
        rt.spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let _ = session(s, &count).await;
                });
            }
        });
        Ok(Sink { delivered, _rt: rt })
    }

    pub fn count(&self) -> usize {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// Longest line we read (RFC 5321 allows 1000 bytes; Postfix never sends more in DATA).
const MAX_LINE: u64 = 64 * 1024;

async fn session(s: UnixStream, count: &AtomicUsize) -> Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line = Vec::with_capacity(1024);
    let mut rcpts = 0usize;
    let mut out = Vec::with_capacity(1024);
    w.write_all(b"220 sink LMTP ready\r\n").await?;
    loop {
        line.clear();
        let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let verb: String = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(|b| b.to_ascii_uppercase() as char)
            .collect();
        match verb.as_str() {
            "LHLO" => out.extend_from_slice(
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE\r\n",
            ),
            "MAIL" => {
                rcpts = 0;
                out.extend_from_slice(b"250 2.1.0 Ok\r\n");
            }
            "RCPT" => {
                rcpts += 1;
                out.extend_from_slice(b"250 2.1.5 Ok\r\n");
            }
            "DATA" => {
                out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                w.write_all(&out).await?;
                out.clear();
                loop {
                    line.clear();
                    let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                for _ in 0..rcpts {
                    out.extend_from_slice(b"250 2.0.0 Ok discarded\r\n");
                }
                count.fetch_add(rcpts, Ordering::Relaxed);
                rcpts = 0;
            }
            "RSET" => {
                rcpts = 0;
                out.extend_from_slice(b"250 2.0.0 Ok\r\n");
            }
            "NOOP" => out.extend_from_slice(b"250 2.0.0 Ok\r\n"),
            "QUIT" => {
                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                w.write_all(&out).await?;
                return Ok(());
            }
            _ => out.extend_from_slice(b"502 5.5.2 Not implemented\r\n"),
        }
        // Pipelining: answer once the client has nothing more buffered for us.
        if r.buffer().is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};

    #[test]
    fn answers_a_pipelined_transaction_with_a_reply_per_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sink.sock");
        let sink = Sink::start(&sock).unwrap();
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.starts_with("220 "), "{l}");
        s.write_all(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n")
            .unwrap();
        let mut replies = Vec::new();
        while replies
            .last()
            .is_none_or(|l: &String| !l.starts_with("354"))
        {
            l.clear();
            r.read_line(&mut l).unwrap();
            replies.push(l.clone());
        }
        assert_eq!(replies.len(), 9, "{replies:?}");
        s.write_all(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
            .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut r, &mut rest).unwrap();
        assert_eq!(
            rest,
            "250 2.0.0 Ok discarded\r\n250 2.0.0 Ok discarded\r\n221 2.0.0 Bye\r\n"
        );
        assert_eq!(sink.count(), 2);
    }
}
