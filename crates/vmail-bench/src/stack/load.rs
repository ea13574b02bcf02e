//! The load `vmail-bench stack` puts on each system: smtp-source for delivery, and clients of
//! its own (tokio) for RCPT verification, SMTP AUTH and IMAP LOGIN; plus the always-OK
//! Dovecot-auth-protocol server behind the SMTP AUTH ceiling.

use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use vmail_proto::auth::{self, ClientCommand, Handshake, Mechanism, Reply};

use super::{alias, login, password, DOMAIN};
use crate::{summarize, Figure};

/// Longest server line the clients accept (Postfix and Dovecot lines are far shorter).
const MAX_LINE: usize = 64 * 1024;

fn first_error(slot: &Mutex<Option<String>>, e: String) {
    if let Ok(mut s) = slot.lock() {
        s.get_or_insert(e);
    }
}

/// The measuring window both load generators share: let the clients warm up, count the
/// latencies they record during `dur`, stop them, and report the first error if any.
async fn window(
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    measuring: &AtomicBool,
    stop: &AtomicBool,
    err: &Mutex<Option<String>>,
    warmup: Duration,
    dur: Duration,
) -> Result<Figure> {
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    if let Some(e) = err.lock().ok().and_then(|mut e| e.take()) {
        bail!("{e}");
    }
    Ok(summarize(all, elapsed))
}

/// `conc` clients each running `op(user)` back to back: a warm-up, then `dur` measured.
/// Only operations completed inside the measured window count. The first error stops all
/// clients and is returned.
pub async fn timed<F, Fut>(
    conc: usize,
    warmup: Duration,
    dur: Duration,
    users: usize,
    op: F,
) -> Result<Figure>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let err = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (op, measuring, stop, err) = (op.clone(), measuring.clone(), stop.clone(), err.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(50_000);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Clients start far apart in the user list and walk it in steps.
                let n = (c * 7919 + i) % users.max(1);
                let t = Instant::now();
                if let Err(e) = op(c, n).await {
                    first_error(&err, format!("{e:#}"));
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                i += 1;
            }
            lat
        }));
    }
    window(tasks, &measuring, &stop, &err, warmup, dur).await
}

/// Runs `op(user)` once for every user, `conc` at a time (fills the credential caches).
pub async fn each_user_once<F, Fut>(conc: usize, users: usize, op: F) -> Result<Duration>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= users {
                    return anyhow::Ok(());
                }
                op(c, n).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed())
}

// ---------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------

/// A plain SMTP client connection on loopback.
struct Smtp {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    line: Vec<u8>,
    out: Vec<u8>,
    /// The text of the last reply's last line (for error messages; never a password).
    last: String,
}

impl Smtp {
    /// Connects and reads the greeting (smtpd rejects commands sent before it).
    async fn connect(port: u16) -> Result<Smtp> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect 127.0.0.1:{port}"))?;
        s.set_nodelay(true)?;
        let (r, wr) = s.into_split();
        let mut me = Smtp {
            rd: BufReader::new(r),
            wr,
            line: Vec::with_capacity(512),
            out: Vec::with_capacity(512),
            last: String::new(),
        };
        let code = me.reply().await?;
        if code != 220 {
            bail!("greeting {code} {}", me.last);
        }
        Ok(me)
    }

    /// Reads one (possibly multi-line) reply; returns its code.
    async fn reply(&mut self) -> Result<u16> {
        loop {
            self.line.clear();
            let n = (&mut self.rd)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut self.line)
                .await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end();
            let code: u16 = text
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("not an SMTP reply: {text:?}"))?;
            if text.as_bytes().get(3) != Some(&b'-') {
                self.last = text.to_string();
                return Ok(code);
            }
        }
    }

    async fn cmd(&mut self, c: &str) -> Result<u16> {
        // One write per command, as mail clients send it: a command split over two
        // segments costs smtpd an extra read, and on loopback can meet delayed ACKs.
        self.out.clear();
        self.out.extend_from_slice(c.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.wr.write_all(&self.out).await?;
        self.reply().await
    }

    async fn expect(&mut self, c: &str, want: u16) -> Result<()> {
        let code = self.cmd(c).await?;
        if code != want {
            // Only the command name: an AUTH line carries a password.
            let name = c.split_whitespace().next().unwrap_or("");
            bail!("{name}: expected {want}, got {}", self.last);
        }
        Ok(())
    }
}

/// One SMTP AUTH as a mail client makes it: a new connection (smtpd allows one AUTH per
/// session), EHLO, `AUTH PLAIN` with an initial response, QUIT.
pub async fn smtp_auth(port: u16, n: usize) -> Result<()> {
    let mut s = Smtp::connect(port).await?;
    s.expect("EHLO client.bench.test", 250).await?;
    let resp = base64::engine::general_purpose::STANDARD.encode(format!(
        "\0{}\0{}",
        login(n),
        password(n)
    ));
    let code = s.cmd(&format!("AUTH PLAIN {resp}")).await?;
    if code != 235 {
        bail!("AUTH PLAIN as {}: {}", login(n), s.last);
    }
    s.expect("QUIT", 221).await
}

/// Recipients of the RCPT figure: of every 10, 7 mailboxes, 1 alias, 2 unknown users of the
/// domain. Returns the address and the reply code Postfix must give.
fn rcpt_mix(k: usize, users: usize, aliases: usize) -> (String, u16) {
    match k % 10 {
        0 | 1 => (format!("nobody{}@{DOMAIN}", (k / 10) % 100_000), 550),
        2 if aliases > 0 => (alias((k / 10) % aliases), 250),
        _ => (login(k % users.max(1)), 250),
    }
}

/// RCPT replies/s: `conc` SMTP sessions, each EHLO, MAIL FROM, then RCPT TO after RCPT TO
/// (one in flight, no pipelining), with RSET and a new MAIL FROM every 50 recipients
/// (smtpd_recipient_limit is 1000). Every reply must be the expected 250 or 550.
pub async fn rcpt(
    port: u16,
    conc: usize,
    warmup: Duration,
    dur: Duration,
    users: usize,
    aliases: usize,
) -> Result<Figure> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let err = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (measuring, stop, err) = (measuring.clone(), stop.clone(), err.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(200_000);
            let run = async {
                let mut s = Smtp::connect(port).await?;
                s.expect("EHLO client.bench.test", 250).await?;
                s.expect("MAIL FROM:<sender@remote.test>", 250).await?;
                let mut i = 0usize;
                let mut in_transaction = 0;
                while !stop.load(Ordering::Relaxed) {
                    if in_transaction == 50 {
                        s.expect("RSET", 250).await?;
                        s.expect("MAIL FROM:<sender@remote.test>", 250).await?;
                        in_transaction = 0;
                    }
                    in_transaction += 1;
                    let (addr, want) = rcpt_mix(c * 7919 + i, users, aliases);
                    let t = Instant::now();
                    let code = s.cmd(&format!("RCPT TO:<{addr}>")).await?;
                    if code != want {
                        bail!("RCPT TO:<{addr}>: expected {want}, got {}", s.last);
                    }
                    if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    i += 1;
                }
                let _ = s.cmd("QUIT").await;
                anyhow::Ok(())
            };
            if let Err(e) = run.await {
                first_error(&err, format!("{e:#}"));
                stop.store(true, Ordering::Relaxed);
            }
            lat
        }));
    }
    window(tasks, &measuring, &stop, &err, warmup, dur).await
}

// ---------------------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------------------

/// Reads lines until the tagged one; returns it.
async fn imap_tagged(
    rd: &mut BufReader<OwnedReadHalf>,
    tag: &str,
    line: &mut Vec<u8>,
) -> Result<String> {
    loop {
        line.clear();
        let n = (&mut *rd)
            .take(MAX_LINE as u64)
            .read_until(b'\n', line)
            .await?;
        if n == 0 {
            bail!("the IMAP server closed the connection");
        }
        let text = String::from_utf8_lossy(line);
        if let Some(rest) = text.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return Ok(rest.trim_end().to_string());
        }
    }
}

/// One IMAP login as a mail client makes it: connect, greeting, LOGIN, LOGOUT.
pub async fn imap_login(port: u16, n: usize) -> Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connect 127.0.0.1:{port}"))?;
    s.set_nodelay(true)?;
    let (r, mut wr) = s.into_split();
    let mut rd = BufReader::new(r);
    let mut line = Vec::with_capacity(512);
    let n_read = (&mut rd)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n_read == 0 || !line.starts_with(b"* OK") {
        bail!("IMAP greeting: {:?}", String::from_utf8_lossy(&line));
    }
    // Test logins and passwords are plain ASCII without quotes or backslashes.
    wr.write_all(format!("a LOGIN \"{}\" \"{}\"\r\n", login(n), password(n)).as_bytes())
        .await?;
    let st = imap_tagged(&mut rd, "a", &mut line).await?;
    if !st.starts_with("OK") {
        bail!("LOGIN {}: {st}", login(n));
    }
    wr.write_all(b"b LOGOUT\r\n").await?;
    let st = imap_tagged(&mut rd, "b", &mut line).await?;
    if !st.starts_with("OK") {
        bail!("LOGOUT {}: {st}", login(n));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The always-OK auth server (SMTP AUTH ceiling)
// ---------------------------------------------------------------------------------------

/// Serves the Dovecot auth protocol (`/work/shared/docs/protocols.md`) and answers `OK`
/// to every PLAIN request, with the login it names: the fastest any auth server behind
/// Postfix's `smtpd_sasl_type = dovecot` can be.
pub async fn serve_always_ok(listener: UnixListener) {
    let mut cuid = 0u32;
    loop {
        let Ok((s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        cuid = cuid.wrapping_add(1);
        tokio::spawn(always_ok_conn(s, cuid));
    }
}

async fn always_ok_conn(mut s: UnixStream, cuid: u32) -> Result<()> {
    let mut out = Vec::with_capacity(256);
    auth::encode_handshake(
        &Handshake {
            mechanisms: &[Mechanism::Plain, Mechanism::Login],
            server_pid: std::process::id(),
            connection_id: cuid,
            // Only a login process would ever use the cookie; Postfix does not.
            cookie: [0x5a; 16],
        },
        &mut out,
    );
    s.write_all(&out).await?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        while let Some(n) = auth::find_line(&buf)? {
            let cmd = auth::parse_command(&buf[..n]);
            buf.drain(..n);
            out.clear();
            match cmd? {
                ClientCommand::Auth(req) => {
                    let user = req
                        .resp
                        .as_ref()
                        .and_then(|r| auth::decode_plain(r.expose()).ok())
                        .map(|c| c.authcid)
                        .unwrap_or_else(|| b"nobody".to_vec());
                    auth::encode_reply(
                        &Reply::Ok {
                            id: req.id,
                            user,
                            extra: Vec::new(),
                        },
                        &mut out,
                    );
                }
                ClientCommand::Cont { id, .. } => auth::encode_reply(
                    &Reply::Fail {
                        id,
                        user: None,
                        code: None,
                        reason: None,
                    },
                    &mut out,
                ),
                ClientCommand::Unknown(_) => return Ok(()),
                _ => {}
            }
            s.write_all(&out).await?;
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Delivery with smtp-source
// ---------------------------------------------------------------------------------------

/// The smtp-source load of the delivery figures (`vmail-bench stack` and `delivery`), and
/// the database behind it.
#[derive(clap::Args)]
pub struct SmtpLoad {
    /// Messages per delivery figure (in `delivery`: per system and round).
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Parallel SMTP sessions (smtp-source lanes, one message per connection).
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Mailboxes the messages are spread over.
    #[arg(long, default_value_t = 100)]
    pub mailboxes: usize,
    /// Message size in bytes (smtp-source -l).
    #[arg(long, default_value_t = 1500)]
    pub size: usize,
    /// Users in the database.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
}

pub struct Delivery {
    /// From the first smtp-source start until the last message is delivered.
    pub total: Duration,
    /// Until the last smtp-source exited (all messages queued).
    pub queued: Duration,
    pub messages: usize,
}

impl Delivery {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.total.as_secs_f64()
    }
}

/// Sends `messages` messages of `size` bytes with smtp-source, `sessions` at a time, one
/// message per connection (smtp-source without `-d`), spread evenly over the first
/// `mailboxes` users. smtp-source sends every message of a run to its one `-t` address, so
/// there are `sessions` lanes, each running `smtp-source -s 1` for its share of the
/// mailboxes in turn: always `sessions` SMTP sessions in parallel, as `-s` would.
/// `delivered()` says how many messages have arrived so far (counted against its value at
/// the start); it may fail fast when Postfix reports a deferral or a bounce.
pub fn deliver(
    port: u16,
    sessions: usize,
    messages: usize,
    mailboxes: usize,
    size: usize,
    timeout: Duration,
    delivered: &mut dyn FnMut() -> Result<usize>,
) -> Result<Delivery> {
    let sessions = sessions.clamp(1, mailboxes.max(1));
    let per = |r: usize| messages / mailboxes + usize::from(r < messages % mailboxes);
    let base = delivered()?;
    let start = Instant::now();
    let mut lanes = Vec::new();
    for l in 0..sessions {
        let work: Vec<(String, usize)> = (l..mailboxes)
            .step_by(sessions)
            .map(|r| (login(r), per(r)))
            .filter(|(_, m)| *m > 0)
            .collect();
        lanes.push(std::thread::spawn(move || -> Result<()> {
            for (rcpt, m) in work {
                let out = Command::new("smtp-source")
                    .args(["-s", "1", "-m", &m.to_string(), "-l", &size.to_string()])
                    .args(["-M", "client.bench.test", "-f", "sender@remote.test", "-t"])
                    .arg(&rcpt)
                    .arg(format!("127.0.0.1:{port}"))
                    .stdin(Stdio::null())
                    .output()
                    .context("run smtp-source (package postfix)")?;
                if !out.status.success() {
                    bail!(
                        "smtp-source -t {rcpt}: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            Ok(())
        }));
    }
    let mut queued = None;
    loop {
        let got = delivered()?.saturating_sub(base);
        if queued.is_none() && lanes.iter().all(|h| h.is_finished()) {
            queued = Some(start.elapsed());
            for h in lanes.drain(..) {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an smtp-source lane panicked"))??;
            }
        }
        if got >= messages {
            break;
        }
        if start.elapsed() > timeout {
            bail!(
                "only {got} of {messages} messages delivered after {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = start.elapsed();
    for h in lanes {
        h.join()
            .map_err(|_| anyhow::anyhow!("an smtp-source lane panicked"))??;
    }
    Ok(Delivery {
        total,
        queued: queued.unwrap_or(total),
        messages,
    })
}

/// Whether `path` is an executable file.
pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
