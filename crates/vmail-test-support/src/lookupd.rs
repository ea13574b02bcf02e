//! lookupd's tests' harness: a lookupd running in-process on temp sockets, directories with
//! the classic rows, and raw socketmap clients.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{InProcess, LookupdHandle};
use crate::{have, skip, TestDb};
use vmail_config::{Config, Loaded, Source};
use vmail_directory::Directory;
use vmail_lookupd::Service;

/// The classic rows (the how-to's shape) used by the lookupd tests.
pub const ROWS: &str = "
INSERT INTO domains (domain) VALUES ('example.com'), ('example.org'), ('alias.test');
INSERT INTO users (email, password) VALUES ('sales@example.com', 'abNANd1rDfiNc'), ('alice@example.org', 'abNANd1rDfiNc'), ('Bob@Example.org', 'abNANd1rDfiNc');
INSERT INTO forwardings (source, destination) VALUES ('info@example.com', 'sales@example.com'),
  ('team@example.org', 'alice@example.org, bob@example.org,carol@remote.test'),
  ('@example.com', 'sales@example.com'), ('@alias.test', '@example.org');
INSERT INTO transport (domain, transport) VALUES ('example.com', 'vmail:');
";

/// One lookup as a new Postfix process makes it: connect, ask, read the answer. Returns how
/// long it took, or `timeout` when no answer (or a wrong one) came within it.
pub fn probe(socket: &Path, payload: &[u8], want: &str, timeout: Duration) -> Duration {
    let t = std::time::Instant::now();
    let Ok(stream) = UnixStream::connect(socket) else {
        return timeout;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut c = Raw {
        stream,
        pending: Vec::new(),
    };
    let mut out = Vec::new();
    vmail_proto::netstring::encode(payload, &mut out);
    if c.stream.write_all(&out).is_err() {
        return timeout;
    }
    match c.reply() {
        Some(r) if r == want => t.elapsed(),
        _ => timeout,
    }
}

/// Whether `postmap` can be run; a loud skip (a failure under CI) when not.
pub fn have_postmap(test: &str) -> bool {
    if have("postmap") {
        return true;
    }
    skip(
        test,
        "postmap (Postfix) is not installed; run scripts/test-deps",
    );
    false
}

/// A throwaway MariaDB database with the classic tables (and vmail's optional columns
/// unless `classic_only`), and a configuration pointing at it.
pub fn mysql_tables(test: &str, classic_only: bool) -> Option<(TestDb, Config)> {
    let db = TestDb::create(test)?;
    let cfg = db.config();
    init_tables(&cfg, classic_only);
    Some((db, cfg))
}

/// `vmailctl init` on the database `cfg` names.
pub fn init_tables(cfg: &Config, classic_only: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Directory::open(cfg)
            .await
            .unwrap()
            .init(classic_only)
            .await
            .unwrap();
    });
}

pub struct Daemon {
    pub socket: PathBuf,
    /// map name -> 127.0.0.1:port of its tcp_table listener
    pub tcp: Vec<(String, String)>,
    pub service: Arc<Service>,
    /// The thread running lookupd's event loop (with `threads = 1`, all its work).
    tid: i32,
    /// Stopped before the temp dir of its sockets goes.
    _running: InProcess<LookupdHandle>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts lookupd with `config` (listeners and pid file are put in a temp dir).
    pub fn start(mut config: Config) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        crate::set_mode(dir.path(), 0o755);
        let socket = dir.path().join("lookupd.sock");
        let l = &mut config.lookupd;
        l.socketmap = vec![format!("unix:{}", socket.display())];
        l.tcp_table.domains = Some("inet:127.0.0.1:0".into());
        l.tcp_table.mailboxes = Some("inet:127.0.0.1:0".into());
        l.tcp_table.aliases = Some("inet:127.0.0.1:0".into());
        l.tcp_table.senders = Some("inet:127.0.0.1:0".into());
        l.tcp_table.transport = Some("inet:127.0.0.1:0".into());
        l.socket_group = String::new();
        l.socket_mode = "0660".into();
        l.user = String::new();
        l.pid_file = dir.path().join("lookupd.pid");
        let loaded = Loaded {
            config,
            source: Source::Builtin,
        };
        // On the runtime vmail-lookupd builds ([lookupd] threads).
        let running = crate::daemon::lookupd(loaded).expect("start lookupd");
        let (endpoints, service, tid) = (
            running.handle.endpoints.clone(),
            running.handle.service.clone(),
            running.tid,
        );
        let names = ["domains", "mailboxes", "aliases", "senders", "transport"];
        let tcp = endpoints[1..]
            .iter()
            .zip(names)
            .map(|(e, n)| (n.to_string(), e.trim_start_matches("inet:").to_string()))
            .collect();
        Daemon {
            socket,
            tcp,
            service,
            tid,
            _running: running,
            _dir: dir,
        }
    }

    pub fn socketmap_table(&self, map: &str) -> String {
        format!("socketmap:unix:{}:{map}", self.socket.display())
    }

    pub fn tcp_table(&self, map: &str) -> String {
        let addr = &self.tcp.iter().find(|(n, _)| n == map).unwrap().1;
        format!("tcp:{addr}")
    }

    pub fn pid_file(&self) -> PathBuf {
        self._dir.path().join("lookupd.pid")
    }

    /// CPU time lookupd's event-loop thread has used so far.
    pub fn cpu_time(&self) -> Duration {
        crate::thread_cpu_time(self.tid).expect("the thread's schedstat")
    }
}

/// A raw socketmap client on one connection.
pub struct Raw {
    stream: UnixStream,
    /// Bytes read past the last reply: pipelined replies can arrive in one read.
    pending: Vec<u8>,
}

impl Raw {
    pub fn connect(p: &Path) -> Raw {
        let stream = UnixStream::connect(p).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one request payload as a netstring and reads one reply.
    pub fn ask(&mut self, payload: &[u8]) -> String {
        let mut out = Vec::new();
        vmail_proto::netstring::encode(payload, &mut out);
        self.send(&out);
        self.reply().expect("a reply")
    }

    /// Reads one netstring reply; `None` when the server closed the connection.
    pub fn reply(&mut self) -> Option<String> {
        let mut b = [0u8; 4096];
        loop {
            if let Ok(Some((p, used))) = vmail_proto::netstring::parse(&self.pending, 1 << 20) {
                let reply = String::from_utf8_lossy(p).into_owned();
                self.pending.drain(..used);
                return Some(reply);
            }
            match self.stream.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&b[..n]),
            }
        }
    }
}

/// An SQLite directory with the classic tables (the directory's own init) and `rows` written
/// with plain SQL.
pub fn prepare_sqlite(rows: &str) -> (tempfile::TempDir, Config) {
    let (g, cfg) = crate::sqlite_config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        vmail_directory::Directory::open(&cfg)
            .await
            .unwrap()
            .init(true)
            .await
            .unwrap();
    });
    rusqlite::Connection::open(&cfg.database.sqlite_path)
        .unwrap()
        .execute_batch(rows)
        .unwrap();
    (g, cfg)
}
