//! Writing a reply with a deadline. A connection's read deadlines bound how long a client
//! may take to send; without one on writes, a client that sends requests and never reads
//! the answers holds its connection (and its listener's slot) for ever once the socket's
//! buffer is full.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes all of `buf`, or fails with `TimedOut` when the peer has not taken it within
/// `limit`. A socket with room takes the reply at once, and then no timer is armed (a timer
/// per reply is measurable on lookupd's one event loop): only a write that would block
/// goes under the deadline.
pub async fn write_all_within<W>(w: &mut W, mut buf: &[u8], limit: Duration) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    while !buf.is_empty() {
        // One attempt without waiting: `None` when the socket is full.
        let r = poll_fn(|cx| match Pin::new(&mut *w).poll_write(cx, buf) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
        })
        .await;
        match r {
            None => break,
            Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => buf = &buf[n..],
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(e),
        }
    }
    if buf.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(limit, w.write_all(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client did not take a reply within {limit:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_reader_gets_everything_and_a_non_reader_times_out() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let data = vec![7u8; 1000];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        write_all_within(&mut a, &data, Duration::from_secs(5))
            .await
            .unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), data);

        let (mut a, _b) = tokio::io::duplex(64);
        let t = tokio::time::Instant::now();
        let e = write_all_within(&mut a, &data, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}
