//! The load generator's side of the Dovecot auth protocol: a client connection as Postfix's
//! smtpd holds it, the timed drive over many of them, the cache fill and the failure
//! timings.

use super::*;

/// One Dovecot auth-protocol client connection after the handshake, as Postfix's smtpd
/// holds it.
pub(super) struct Client {
    pub(super) rd: BufReader<OwnedReadHalf>,
    pub(super) wr: OwnedWriteHalf,
    pub(super) next_id: u32,
    pub(super) line: Vec<u8>,
    pub(super) out: Vec<u8>,
}

impl Client {
    pub(super) async fn connect(path: &Path) -> Result<Client> {
        // Distinct CPIDs: Dovecot refuses a second connection claiming a live one's pid.
        static NEXT_CPID: AtomicU32 = AtomicU32::new(100_000);
        let s = UnixStream::connect(path)
            .await
            .with_context(|| format!("connect {}", path.display()))?;
        let (r, mut wr) = s.into_split();
        let mut rd = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            if rd.read_until(b'\n', &mut line).await? == 0 {
                bail!("{}: closed during the handshake", path.display());
            }
            if line == b"DONE\n" {
                break;
            }
        }
        let cpid = NEXT_CPID.fetch_add(1, Ordering::Relaxed);
        wr.write_all(format!("VERSION\t1\t2\nCPID\t{cpid}\n").as_bytes())
            .await?;
        Ok(Client {
            rd,
            wr,
            next_id: 0,
            line,
            out: Vec::with_capacity(256),
        })
    }

    /// `AUTH PLAIN` with an initial response; the reply.
    pub(super) async fn plain(&mut self, user: &str, pass: &str, rip: &str) -> Result<Reply> {
        self.next_id += 1;
        let resp = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.out.clear();
        self.out.extend_from_slice(
            format!(
                "AUTH\t{}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={resp}\n",
                self.next_id
            )
            .as_bytes(),
        );
        self.wr.write_all(&self.out).await?;
        self.line.clear();
        if self.rd.read_until(b'\n', &mut self.line).await? == 0 {
            bail!("the auth server closed the connection");
        }
        let r = auth::parse_reply(&self.line)?;
        let id = match &r {
            Reply::Ok { id, .. } | Reply::Fail { id, .. } | Reply::Cont { id, .. } => *id,
        };
        anyhow::ensure!(
            id == self.next_id,
            "reply for id {id}, expected {}",
            self.next_id
        );
        Ok(r)
    }
}

pub(super) fn describe(r: &Reply) -> String {
    let mut out = Vec::new();
    auth::encode_reply(r, &mut out);
    String::from_utf8_lossy(&out).trim_end().to_string()
}

/// `conns` clients, each authenticating one user at a time (right passwords) for `dur`;
/// user numbers from `pick(client, i)`.
pub(super) async fn drive(
    path: &Path,
    conns: usize,
    dur: Duration,
    pick: impl Fn(usize, usize) -> usize + Send + Sync + Copy + 'static,
) -> Result<Figure> {
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut cl = Client::connect(path).await?;
        let (stop, bad) = (stop.clone(), bad.clone());
        let rip = format!("192.0.2.{}", c % 250 + 1);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = pick(c, i);
                i += 1;
                let t = Instant::now();
                match cl.plain(&login(n), &password(n), &rip).await {
                    Ok(Reply::Ok { .. }) => {}
                    Ok(other) => {
                        *bad.lock().unwrap() = Some(format!("{}: {}", login(n), describe(&other)));
                        break;
                    }
                    Err(e) => {
                        *bad.lock().unwrap() = Some(format!("{}: {e:#}", login(n)));
                        break;
                    }
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    let f = collect(tasks, &stop, dur).await?;
    if let Some(why) = bad.lock().unwrap().take() {
        bail!(
            "{}: an authentication with the right password failed: {why}",
            path.display()
        );
    }
    Ok(f)
}

/// Authenticates every user once (two connections), so a cache holds them all.
pub(super) async fn fill(path: &Path, users: usize) -> Result<()> {
    let mut tasks = Vec::new();
    for c in 0..2 {
        let mut cl = Client::connect(path).await?;
        tasks.push(tokio::spawn(async move {
            for n in (c..users).step_by(2) {
                match cl.plain(&login(n), &password(n), "192.0.2.254").await? {
                    Reply::Ok { .. } => {}
                    r => bail!("filling the cache: {}: {}", login(n), describe(&r)),
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Unknown,
    Wrong,
    Right,
}

/// Sends each request on its own (pre-connected) connection, one started every `spacing`,
/// and returns the latencies in ms by kind: [unknown, wrong, right].
pub(super) async fn failure_timings(
    path: &Path,
    reqs: Vec<(Kind, String, String, String)>,
    spacing: Duration,
) -> Result<[Vec<f64>; 3]> {
    let mut clients = Vec::with_capacity(reqs.len());
    for _ in 0..reqs.len() {
        clients.push(Client::connect(path).await?);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (k, ((kind, user, pass, rip), mut cl)) in reqs.into_iter().zip(clients).enumerate() {
        let at = start + spacing * k as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let t = Instant::now();
            let r = cl.plain(&user, &pass, &rip).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let expected = matches!(
                (&r, kind),
                (Reply::Ok { .. }, Kind::Right)
                    | (Reply::Fail { code: None, .. }, Kind::Unknown | Kind::Wrong)
            );
            anyhow::ensure!(expected, "{user}: unexpected reply {}", describe(&r));
            anyhow::Ok((kind, ms))
        }));
    }
    let mut out: [Vec<f64>; 3] = Default::default();
    for t in tasks {
        let (kind, ms) = t.await??;
        out[kind as usize].push(ms);
    }
    Ok(out)
}
