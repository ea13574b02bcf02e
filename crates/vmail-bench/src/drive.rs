//! The lookupd figure's clients and ceilings: socketmap clients one request at a time as
//! Postfix sends them, the classic query straight to MariaDB, and an echo server that does
//! no work.

use super::*;

/// Lets the clients run for `dur`, stops them and merges their latencies.
pub(super) async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    stop: &AtomicBool,
    dur: Duration,
) -> Result<Figure> {
    let start = Instant::now();
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok(summarize(all, start.elapsed()))
}

/// `conns` clients, each sending one socketmap request at a time (as Postfix does) for
/// `dur`; keys from `key(client, i)`.
pub(super) async fn drive_socketmap(
    path: &Path,
    conns: usize,
    dur: Duration,
    key: Arc<dyn Fn(usize, usize) -> String + Send + Sync>,
) -> Result<Figure> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut s = UnixStream::connect(path).await.context("connect")?;
        let stop = stop.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut out = Vec::new();
            let mut buf = Vec::with_capacity(256);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                out.clear();
                netstring::encode(key(c, i).as_bytes(), &mut out);
                i += 1;
                let t = Instant::now();
                if s.write_all(&out).await.is_err() {
                    break;
                }
                buf.clear();
                loop {
                    if let Ok(Some((_, used))) = netstring::parse(&buf, 1 << 20) {
                        buf.drain(..used);
                        break;
                    }
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return lat,
                        Ok(_) => {}
                    }
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// The classic query straight to MariaDB, `conns` connections, one query at a time each.
/// The classic `virtual_mailbox_maps` query, as the direct-SELECT references send it.
pub(super) const CLASSIC_MAILBOX_SQL: &str = "SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email = ?";

/// A plain mysql_async connection to the directory's first server, over TCP as lookupd's.
pub(super) fn direct_opts(cfg: &Config) -> Result<mysql_async::OptsBuilder> {
    let db = &cfg.database;
    let (host, port) = db.hosts[0].rsplit_once(':').context("host:port")?;
    Ok(mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port.parse()?)
        .user(Some(db.user.clone()))
        .pass(db.password.as_ref().map(|p| p.expose().to_string()))
        .db_name(Some(db.dbname.clone()))
        .prefer_socket(false))
}

pub(super) async fn drive_mysql(
    cfg: &Config,
    conns: usize,
    dur: Duration,
    users: usize,
) -> Result<Figure> {
    use mysql_async::prelude::Queryable;
    let opts = direct_opts(cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut conn = mysql_async::Conn::new(opts.clone()).await?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = c * 7919;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("user{}@example.org", i % users);
                i += 1;
                let t = Instant::now();
                let r: Result<Option<String>, _> =
                    conn.exec_first(CLASSIC_MAILBOX_SQL, (key,)).await;
                if r.is_err() {
                    break;
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// The ceiling: reads a netstring request, answers a fixed OK, same runtime and socket type
/// as lookupd.
pub(super) async fn echo_server(path: PathBuf) -> Result<()> {
    let l = UnixListener::bind(&path)?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(512);
            let mut out = Vec::new();
            loop {
                while let Ok(Some((_, used))) = netstring::parse(&buf, 100_000) {
                    buf.drain(..used);
                    out.clear();
                    netstring::encode(b"OK example.org/user/", &mut out);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}
