//! authd's tests' harness: an authd running in-process on temp sockets, a directory to fill,
//! and raw clients for the auth, dict and Lua protocols.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::InProcess;
use vmail_authd::Authenticator;
use vmail_config::{Config, Loaded, Source};
use vmail_directory::Directory;
use vmail_proto::auth::{self, Reply};

pub struct Daemon {
    pub auth_socket: PathBuf,
    pub dict_socket: PathBuf,
    /// The Lua channel's socket; the test's own uid (root) is the allowed peer.
    pub lua_socket: PathBuf,
    pub authenticator: Arc<Authenticator>,
    /// Where the sockets and the pid file are.
    pub dir: PathBuf,
    /// The temp dir of [`Daemon::start`], removed with the daemon.
    /// Stopped before the temp dir of its sockets goes (fields drop in order).
    _running: InProcess<Arc<Authenticator>>,
    tmp: Option<tempfile::TempDir>,
}

/// Test defaults: short delays so failures do not slow the suite down.
pub fn test_config(mut config: Config) -> Config {
    config.authd.failure_delay_ms = 150;
    config.authd.max_delay_ms = 600;
    config
}

/// [`test_config`] for a database the test will kill: connections and queries give up
/// within a second, and authd's requests within two, so an outage shows within a test.
pub fn outage_config(config: Config) -> Config {
    let mut config = test_config(config);
    config.database.connect_timeout_ms = 500;
    config.database.query_timeout_ms = 1000;
    config.authd.request_timeout_ms = 2000;
    config
}

impl Daemon {
    /// Starts authd with `config`; sockets and pid file go to a temp dir (mode 0755 so a
    /// Dovecot or Postfix running as another user can reach them).
    pub fn start(config: Config) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = Daemon::start_in(config, tmp.path());
        d.tmp = Some(tmp);
        d
    }

    /// [`Daemon::start`] with the sockets in `dir`, which the caller keeps (and removes), e.g.
    /// a `SharedDir` of the Debian 13 root, where a chrooted Dovecot finds them.
    pub fn start_in(mut config: Config, dir: &Path) -> Daemon {
        crate::set_mode(dir, 0o755);
        let auth_socket = dir.join("auth.sock");
        let dict_socket = dir.join("dict.sock");
        let lua_socket = dir.join("lua.sock");
        let a = &mut config.authd;
        a.auth = vec![format!("unix:{}", auth_socket.display())];
        a.dict = vec![format!("unix:{}", dict_socket.display())];
        a.auth_socket_group = String::new();
        a.dict_socket_group = String::new();
        a.lua = vec![format!("unix:{}", lua_socket.display())];
        // Tests may set their own peers; by default, whoever runs them.
        if a.lua_peers == vmail_config::AuthdConfig::default().lua_peers {
            a.lua_peers = vec![nix_uid().to_string()];
        }
        // The packaged group may not exist here; a test may set another one.
        if a.lua_socket_group == vmail_config::AuthdConfig::default().lua_socket_group {
            a.lua_socket_group = String::new();
        }
        a.auth_socket_mode = "0660".into();
        a.dict_socket_mode = "0660".into();
        a.user = String::new();
        a.pid_file = dir.join("authd.pid");
        let loaded = Loaded {
            config,
            source: Source::Builtin,
        };
        let running = crate::daemon::authd(loaded, None).expect("start authd");
        let authenticator = running.handle.clone();
        Daemon {
            auth_socket,
            dict_socket,
            lua_socket,
            authenticator,
            dir: dir.to_path_buf(),
            _running: running,
            tmp: None,
        }
    }

    /// Opens the sockets to everybody (root-run tests whose Postfix/Dovecot processes run
    /// as unprivileged users); the temp dir is private to the test anyway.
    pub fn open_sockets(&self) {
        crate::set_mode(&self.auth_socket, 0o666);
        crate::set_mode(&self.dict_socket, 0o666);
        crate::set_mode(&self.lua_socket, 0o666);
    }

    /// Dict lookups answered so far, whatever the outcome (authd's
    /// `vmail_authd_dict_requests_total`, summed over its labels).
    pub fn dict_lookups(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.authenticator.stats;
        s.dict_found.load(Relaxed) + s.dict_not_found.load(Relaxed) + s.dict_failed.load(Relaxed)
    }

    /// Password checks run so far (`vmail_authd_password_checks_total`).
    pub fn checks(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.authenticator.stats.checks.load(Relaxed)
    }

    /// Attempts failed unchecked so far: blocked by the network's penalty.
    pub fn blocked(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.authenticator.stats.blocked.load(Relaxed)
    }

    /// Dict connections accepted so far (`vmail_authd_dict_connections_total`).
    pub fn dict_connections(&self) -> u64 {
        let s = &self.authenticator.stats;
        s.dict_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("authd.pid")
    }
}

/// The uid the tests run as.
pub fn nix_uid() -> u32 {
    // SAFETY: getuid() has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Runs `f` on a fresh directory built from `config` (in its own runtime).
pub fn with_dir<T>(config: &Config, f: impl AsyncFnOnce(&Directory) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = Directory::open(config).await.unwrap();
        f(&d).await
    })
}

/// Creates the schema (migrated: active flags, services) and the users as (email, hash).
pub fn populate(config: &Config, domains: &[&str], users: &[(&str, &str)]) {
    with_dir(config, async |d| {
        d.init(false).await.unwrap();
        d.migrate().await.unwrap();
        for dom in domains {
            d.add_domain(dom).await.unwrap();
        }
        for (email, hash) in users {
            d.add_user(email, hash, None).await.unwrap();
        }
    })
}

/// A fresh SQLite directory with the test delays ([`test_config`]): the schema, `domains` and
/// `users` as (email, hash) ([`populate`]), the logins in `disabled` switched off, then `sql`
/// (unless empty) run as a postmaster editing the tables by hand ([`sqlite_exec`]).
pub fn sqlite_directory(
    domains: &[&str],
    users: &[(&str, &str)],
    disabled: &[&str],
    sql: &str,
) -> (tempfile::TempDir, Config) {
    let (tmp, config) = crate::sqlite_config();
    let config = test_config(config);
    populate(&config, domains, users);
    with_dir(&config, async |d| {
        for email in disabled {
            d.set_active(email, false).await.unwrap();
        }
    });
    if !sql.is_empty() {
        sqlite_exec(&config, sql);
    }
    (tmp, config)
}

/// A finished command's exit status and output, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh SHA512-CRYPT hash of `pw`, as vmailctl stores it.
pub fn sha512(pw: &str) -> String {
    vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, pw.as_bytes()).unwrap()
}

pub fn b64(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// One connection of a line protocol on a unix socket (15 s read timeout): what the clients
/// of authd's auth, dict and Lua protocols share, and reach through `Deref`.
pub struct LineConn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl LineConn {
    pub fn connect(socket: &Path) -> LineConn {
        let s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        LineConn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    pub fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    /// Sends raw bytes; `false` once the server closed the connection.
    pub fn send_bytes(&mut self, b: &[u8]) -> bool {
        self.w.write_all(b).is_ok()
    }

    /// The next line without its LF; `None` once the server closed the connection.
    pub fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches('\n').to_string()),
        }
    }
}

macro_rules! line_client {
    ($($client:ident),*) => {$(
        impl std::ops::Deref for $client {
            type Target = LineConn;
            fn deref(&self) -> &LineConn {
                &self.conn
            }
        }

        impl std::ops::DerefMut for $client {
            fn deref_mut(&mut self) -> &mut LineConn {
                &mut self.conn
            }
        }
    )*};
}

line_client!(AuthClient, DictClient, LuaClient);

/// A raw Dovecot auth-protocol client.
pub struct AuthClient {
    conn: LineConn,
    /// The server's handshake lines.
    pub handshake: Vec<String>,
}

impl AuthClient {
    /// Connects and reads the server handshake; does not send ours.
    pub fn connect_raw(daemon: &Daemon) -> AuthClient {
        AuthClient::connect_raw_to(&daemon.auth_socket)
    }

    /// [`AuthClient::connect_raw`] to any auth socket (an authd run as a process).
    pub fn connect_raw_to(socket: &std::path::Path) -> AuthClient {
        let mut c = AuthClient {
            conn: LineConn::connect(socket),
            handshake: Vec::new(),
        };
        loop {
            let l = c.line().expect("handshake line");
            let done = l == "DONE";
            c.handshake.push(l);
            if done {
                break;
            }
        }
        c
    }

    /// Connects and completes the handshake as Postfix does.
    pub fn connect(daemon: &Daemon) -> AuthClient {
        let mut c = AuthClient::connect_raw(daemon);
        c.send("VERSION\t1\t2\nCPID\t4242\n");
        c
    }

    pub fn reply(&mut self) -> Reply {
        let l = self.line().expect("a reply line");
        auth::parse_reply(l.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    /// AUTH PLAIN with an initial response; returns the reply.
    pub fn plain(&mut self, id: u32, user: &str, password: &str, rip: &str) -> Reply {
        let resp = b64(format!("\0{user}\0{password}").as_bytes());
        self.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={resp}\n"
        ));
        self.reply()
    }
}

pub fn is_ok(r: &Reply) -> Option<String> {
    match r {
        Reply::Ok { user, .. } => Some(String::from_utf8_lossy(user).into_owned()),
        _ => None,
    }
}

/// A raw dict-proxy client after the hello (as Dovecot 2.3.19 sends it).
pub struct DictClient {
    conn: LineConn,
}

impl DictClient {
    pub fn connect(daemon: &Daemon) -> DictClient {
        let mut c = DictClient {
            conn: LineConn::connect(&daemon.dict_socket),
        };
        c.send("H3\t2\t0\t\tauth\n");
        c
    }

    /// Looks `key` (without `shared/`) up: the raw reply line.
    pub fn lookup(&mut self, key: &str, user: &str) -> String {
        self.send(&format!("Lshared/{key}\t{user}\n"));
        self.line().expect("a dict reply")
    }

    /// Iterates `userdb/` as `doveadm user '*'` does: the rows, sorted.
    pub fn iterate_userdb(&mut self) -> Vec<String> {
        self.send("I0\t0\tshared/userdb/\t*\n");
        let mut rows = Vec::new();
        loop {
            let l = self.line().expect("an iteration row");
            if l.is_empty() {
                break;
            }
            rows.push(l);
        }
        rows.sort();
        rows
    }

    /// Parses an `O{json}` reply.
    pub fn json(&mut self, key: &str, user: &str) -> serde_json::Value {
        let l = self.lookup(key, user);
        let body = l
            .strip_prefix('O')
            .unwrap_or_else(|| panic!("not found: {l:?}"));
        serde_json::from_str(body).unwrap()
    }
}

/// Runs `sql` on the SQLite directory of `config`, as a postmaster editing the table by
/// hand would (columns vmailctl has no command for, such as `services`).
pub fn sqlite_exec(config: &Config, sql: &str) {
    let c = rusqlite::Connection::open(&config.database.sqlite_path).unwrap();
    c.execute_batch(sql).unwrap();
}

/// A raw client of the Lua channel, as `contrib/dovecot/vmail-auth.lua` speaks it.
pub struct LuaClient {
    conn: LineConn,
}

impl LuaClient {
    /// Connects and sends `VERSION\t1`.
    pub fn connect(daemon: &Daemon) -> LuaClient {
        let mut c = LuaClient::connect_raw(&daemon.lua_socket);
        c.send("VERSION\t1\n");
        c
    }

    /// Connects without sending anything.
    pub fn connect_raw(socket: &std::path::Path) -> LuaClient {
        LuaClient {
            conn: LineConn::connect(socket),
        }
    }

    /// Sends one request line (LF added) and returns the reply line.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(&format!("{request}\n"));
        self.line()
            .unwrap_or_else(|| panic!("no reply to {request:?}"))
    }

    /// Sends `LIST` and returns the lines up to and including `END` (or `TEMP`).
    pub fn list(&mut self, id: &str) -> Vec<String> {
        self.send(&format!("LIST\t{id}\n"));
        let mut rows = Vec::new();
        loop {
            let l = self.line().expect("a LIST line");
            let last = !l.starts_with("ROW\t");
            rows.push(l);
            if last {
                return rows;
            }
        }
    }
}
