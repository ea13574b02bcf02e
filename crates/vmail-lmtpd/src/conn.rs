//! One LMTP connection: read into a bounded buffer, drive the codec's [`Session`], write
//! its replies, spool the message once and deliver it to each accepted recipient.
//!
//! Pipelining: every complete command already buffered is answered before the next read,
//! and replies are written only when the input runs dry (or the client must wait for
//! them: DATA's 354, the replies after the message), so a pipelined MAIL/RCPT/DATA group
//! is answered in one write (RFC 2920, RFC 2033 4.2).
//!
//! Deadlines: between commands `idle_timeout`; a command line from its first byte to its
//! last within `read_timeout` (a client dribbling bytes cannot hold its slot); during
//! message data every read within `read_timeout` (Postfix's own `lmtp_data_xfer_timeout`
//! bounds each write the same way, not the whole message, which may be 30 MiB); every
//! write of replies within `read_timeout`. A client closed mid-data takes its spool file
//! with it and nothing reaches a Maildir.
//!
//! The spool file is written from the event loop, a read's worth (at most 64 KiB) at a time:
//! a write into the page cache takes microseconds, and a hop to the blocking pool per chunk
//! would cost more than it saves. Under heavy writeback the kernel may throttle such a write
//! for milliseconds, stalling the other connections of a one-thread runtime for as long;
//! `[lmtpd] threads` > 1 is the remedy if that is ever measured. Deliveries (fsyncs) always
//! run on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use vmail_daemon::Stream;
use vmail_directory::RecipientRecord;
use vmail_proto::lmtp::{Action, Config as SessionConfig, Reply, Session, Transaction};

use crate::inbuf::InBuf;
use crate::service::{Service, Stats};
use crate::spool::Spool;
use crate::verdict;

/// Bytes read at once; with a command line's [`vmail_proto::lmtp::MAX_LINE`] the most a
/// connection ever buffers, whatever the message size.
const READ_CHUNK: usize = 64 * 1024;

pub struct Settings {
    pub session: SessionConfig,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub spool_dir: std::path::PathBuf,
    /// `[lmtpd] spool_memory`: messages up to this size are not written to the spool.
    pub spool_memory: u64,
}

/// What the connections of one listener share.
pub struct Handler {
    pub svc: Arc<Service>,
    pub settings: Settings,
}

/// The message being received, once DATA has been answered.
enum Spooling {
    /// Not in a message.
    Idle,
    Writing(Spool),
    /// The spool could not be created or written: the data is read to its end and every
    /// recipient deferred.
    Failed(String),
}

/// How a connection ends.
enum End {
    /// The client left, or we closed after QUIT or too many errors.
    Closed,
    /// A deadline passed.
    Timeout,
    Io(std::io::Error),
}

impl Handler {
    /// One accepted connection, served until it ends.
    pub async fn connection(self: Arc<Self>, stream: Stream, shutdown: watch::Receiver<bool>) {
        let end = match stream {
            Stream::Unix(s) => self.serve(s, shutdown).await,
            Stream::Tcp(s) => self.serve(s, shutdown).await,
        };
        match end {
            End::Closed => {}
            End::Timeout => {
                Stats::count(&self.svc.stats.timeouts);
                tracing::debug!("closing connection at a deadline");
            }
            End::Io(e) => tracing::debug!(error = %e, "connection ended"),
        }
    }

    async fn serve<S>(&self, mut stream: S, mut shutdown: watch::Receiver<bool>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let s = &self.settings;
        let mut session = Session::new(s.session.clone());
        let mut out = Vec::with_capacity(512);
        session.greeting().encode(&mut out);
        let mut buf = InBuf::with_capacity(READ_CHUNK + vmail_proto::lmtp::MAX_LINE);
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut body = Vec::with_capacity(READ_CHUNK + 1);
        let mut records: Vec<RecipientRecord> = Vec::new();
        let mut spooling = Spooling::Idle;
        // A directory lookup of this transaction failed: the rest of its RCPTs are deferred
        // without one (see `recipient`).
        let mut directory_failed = false;
        // When the command line now in `buf` began (its whole deadline runs from there).
        let mut line_start: Option<Instant> = None;
        loop {
            // Answer everything complete in the buffer.
            let mut completed = false;
            loop {
                let (used, action) = session.advance(buf.pending(), &mut body);
                buf.consume(used);
                completed |= !matches!(action, Action::NeedInput);
                if !body.is_empty() {
                    if let Spooling::Writing(spool) = &mut spooling {
                        if let Err(e) = spool.write(&body) {
                            spooling = Spooling::Failed(format!("writing the spool file: {e}"));
                        }
                    }
                    body.clear();
                }
                match action {
                    Action::NeedInput => break,
                    Action::Reply(r) => r.encode(&mut out),
                    Action::Close(r) => {
                        r.encode(&mut out);
                        let _ = self.flush(&mut stream, &mut out).await;
                        let _ = stream.shutdown().await;
                        return End::Closed;
                    }
                    Action::Recipient(mailbox) => {
                        let (reply, record) = self
                            .recipient(&mailbox.address(), &mut directory_failed)
                            .await;
                        session.rcpt_verdict(reply).encode(&mut out);
                        records.extend(record);
                    }
                    Action::StartData(r) => {
                        spooling = match Spool::create(&s.spool_dir, s.spool_memory) {
                            Ok(spool) => Spooling::Writing(spool),
                            Err(e) => Spooling::Failed(format!(
                                "cannot create a spool file in {}: {e}",
                                s.spool_dir.display()
                            )),
                        };
                        r.encode(&mut out);
                        if let Err(e) = self.flush(&mut stream, &mut out).await {
                            return e;
                        }
                    }
                    Action::Message { .. } => {
                        Stats::count(&self.svc.stats.messages);
                        let taken = std::mem::replace(&mut spooling, Spooling::Idle);
                        let verdicts = match session.transaction() {
                            Some(t) => self.deliver(t, std::mem::take(&mut records), taken).await,
                            None => Vec::new(),
                        };
                        for r in session.data_verdicts(verdicts) {
                            r.encode(&mut out);
                        }
                        if let Err(e) = self.flush(&mut stream, &mut out).await {
                            return e;
                        }
                    }
                    Action::Replies(replies) => {
                        // Too big: what was spooled goes (dropping the spool removes it).
                        spooling = Spooling::Idle;
                        for r in replies {
                            r.encode(&mut out);
                        }
                        if let Err(e) = self.flush(&mut stream, &mut out).await {
                            return e;
                        }
                    }
                }
                // RSET, LHLO, a refused DATA or the end of a message: the transaction's
                // records go with it.
                if session.transaction().is_none() {
                    records.clear();
                    directory_failed = false;
                }
            }
            // The input ran dry: the pipelined group's replies go out together.
            if let Err(e) = self.flush(&mut stream, &mut out).await {
                return e;
            }
            let in_data = !matches!(spooling, Spooling::Idle);
            if !in_data && buf.is_empty() && *shutdown.borrow() {
                return End::Closed;
            }
            let now = Instant::now();
            // Bytes left after a completed command begin a new line: its deadline runs from
            // now, not from the first line of a pipelined stream (a client sending line
            // after line, each well within the deadline, was cut off at the first line's).
            // Discarded bytes of an over-long line complete nothing: that line's deadline
            // keeps running (the second review: a client dribbling an endless line reset it
            // with every read, and kept its connection for ever).
            if completed {
                line_start = None;
            }
            let deadline = if in_data {
                line_start = None;
                now + s.read_timeout
            } else if buf.is_empty() && !session.mid_line() {
                line_start = None;
                now + s.idle_timeout
            } else {
                *line_start.get_or_insert(now) + s.read_timeout
            };
            let between_commands = !in_data && buf.is_empty();
            tokio::select! {
                biased;
                r = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => match r {
                    Ok(Ok(0)) => return End::Closed,
                    Ok(Ok(n)) => buf.extend(&chunk[..n]),
                    Ok(Err(e)) => return End::Io(e),
                    Err(_) => return End::Timeout,
                },
                // Between commands a shutdown closes the connection; a message being
                // received is finished first.
                _ = shutdown.changed(), if between_commands => return End::Closed,
            }
        }
    }

    /// The verdict on one RCPT, and its record if accepted. Once a lookup of the
    /// transaction has found the directory down or past its deadline (`directory_failed`),
    /// the others are deferred at once without one: Postfix pipelines all of a message's
    /// RCPTs in one write and reads no reply before the last is answered, so a hung database
    /// would otherwise cost each of them the directory's whole deadline in turn (N
    /// recipients, N deadlines) before any reply. Postfix retries the deferred recipients
    /// later, when the next transaction tries the directory again.
    async fn recipient(
        &self,
        address: &str,
        directory_failed: &mut bool,
    ) -> (Reply, Option<RecipientRecord>) {
        let lookup = if *directory_failed {
            verdict::Lookup::DirectoryDown(
                "not looked up: the directory failed earlier in this transaction".into(),
            )
        } else {
            self.svc.lookup(address).await
        };
        // Only a directory that is down or past its deadline: one address's bad row must not
        // defer the recipients after it (Postfix keeps their order on every retry, so they
        // would wait behind it until the queue lifetime ends, then bounce).
        *directory_failed |= matches!(lookup, verdict::Lookup::DirectoryDown(_));
        let (reply, record) = verdict::rcpt(address, lookup);
        if record.is_none() {
            Stats::count(&self.svc.stats.rcpt_refused);
        }
        (reply, record)
    }

    /// Writes the pending replies within the deadline.
    async fn flush<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        out: &mut Vec<u8>,
    ) -> Result<(), End> {
        if out.is_empty() {
            return Ok(());
        }
        let r = vmail_daemon::write_all_within(stream, out, self.settings.read_timeout).await;
        out.clear();
        r.map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => End::Timeout,
            _ => End::Io(e),
        })
    }

    /// Delivers the spooled message to each recipient (one verdict each, in RCPT order),
    /// on the blocking pool: Maildir writes and fsyncs block. The spool file is removed
    /// after the last recipient, also if this connection is gone by then.
    async fn deliver(
        &self,
        t: &Transaction,
        records: Vec<RecipientRecord>,
        spooling: Spooling,
    ) -> Vec<Reply> {
        let spool = match spooling {
            Spooling::Writing(spool) => spool,
            Spooling::Failed(why) => {
                tracing::error!(error = %why, "message not spooled; deferring its recipients");
                return vec![Reply::temporary_failure(&why); records.len()];
            }
            Spooling::Idle => return Vec::new(),
        };
        let config = self.svc.config();
        let sender = t
            .mail
            .sender
            .as_ref()
            .map(|m| m.address())
            .unwrap_or_default();
        let jobs: Vec<(String, RecipientRecord)> = t
            .recipients
            .iter()
            .map(|m| m.address())
            .zip(records)
            .collect();
        let n = jobs.len();
        let run = move || {
            let mut outcomes = Vec::with_capacity(jobs.len());
            for (recipient, record) in jobs {
                let args = lda_args(&recipient, &sender);
                // A panic in one recipient's delivery is that recipient's temporary failure
                // only: answering 451 for all would make Postfix deliver again to those
                // already written and fsynced.
                let delivered =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match spool.reader() {
                            Ok(mut file) => vmail_lda::deliver_record(
                                &config, &args, &recipient, record, &mut file,
                            ),
                            Err(e) => vmail_lda::Outcome::LocalTrouble(format!(
                                "reading the spool file: {e}"
                            )),
                        }
                    }));
                let outcome = delivered.unwrap_or_else(|_| {
                    vmail_lda::Outcome::LocalTrouble("internal error (a panic); will retry".into())
                });
                tracing::info!(recipient, outcome = ?outcome, size = spool.size(), "delivery");
                outcomes.push(outcome);
            }
            outcomes
        };
        let outcomes = match tokio::task::spawn_blocking(run).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "delivery task failed; deferring its recipients");
                return vec![Reply::temporary_failure("internal error, will retry"); n];
            }
        };
        outcomes
            .iter()
            .map(|o| {
                let r = verdict::delivery(o);
                let counter = match r.code() / 100 {
                    2 => &self.svc.stats.delivered,
                    4 => &self.svc.stats.deferred,
                    _ => &self.svc.stats.bounced,
                };
                Stats::count(counter);
                r
            })
            .collect()
    }
}

/// vmail-lda's arguments for one recipient, as pipe(8)'s `-f ${sender} -d ${recipient}`
/// would give them (the null sender is empty, as pipe(8) passes it). No `-a`: Postfix's
/// lmtp client sends no ORCPT (DSN is not advertised), so the original recipient is not
/// known here and Dovecot's LDA gets the recipient as `-a`, as vmail-lda passes it when
/// pipe(8) gives none. A Sieve user's refusal comes back with its reason
/// (`reject_reason`: dovecot-lda `-e`), for that recipient's 5xx, as Dovecot's own LMTP
/// answers it, instead of Dovecot mailing a rejection itself.
fn lda_args(recipient: &str, sender: &str) -> vmail_lda::Args {
    vmail_lda::Args {
        recipient: Some(recipient.to_string()),
        sender: Some(sender.to_string()),
        reject_reason: true,
        ..Default::default()
    }
}
