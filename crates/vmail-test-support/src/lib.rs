//! Test helpers shared by every vmail test: throwaway MariaDB databases on the shared server, a
//! private MariaDB server a test may stop and start (outage tests), free loopback ports, a
//! tiny tmpfs (a real full disk), and loud skips that turn into failures under CI.
//!
//! It is also the one harness the tests and `vmail-bench` share: the shipped contrib files
//! (`contrib`), the daemons in-process (`daemon`) or as processes (`process`), the mail user
//! (`MailUser`), the helpers of each crate's tests (`authd`, `lookupd`, `maildir`) and the
//! end-to-end stack (`e2e`).

pub mod authd;
pub mod contrib;
pub mod daemon;
pub mod dovecot;
pub mod e2e;
mod imap_pop3;
pub mod lookupd;
pub mod lost_reply;
pub mod maildir;
pub mod postfix;
mod postmap;
pub mod process;
pub mod root;
pub mod slow;
mod smtp;
mod users;

pub use users::MailUser;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vmail_config::{Backend, Config, Secret};

/// True when running under CI (`CI=true`), where a skipped test is a failed test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips a test loudly; under CI this panics instead, because a skip there hides a missing
/// dependency.
pub fn skip(test: &str, why: &str) {
    let msg = format!("SKIPPED {test}: {why}");
    if in_ci() {
        panic!("{msg} (CI=true: skips are failures; run scripts/test-deps)");
    }
    eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
}

/// Whether a program is on PATH (or an absolute path that exists).
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// How the tests reach the shared MariaDB server as an administrator: the `mariadb` client
/// with the arguments in `VMAIL_TEST_MYSQL_ADMIN` (default `-uroot`, i.e. root over the local
/// socket, as Debian sets it up).
fn admin_args() -> Vec<String> {
    std::env::var("VMAIL_TEST_MYSQL_ADMIN")
        .unwrap_or_else(|_| "-uroot".into())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Runs SQL through the `mariadb` command-line client, exactly as an administrator pasting a
/// how-to would. Panics with the client's message on failure.
pub fn mariadb_cli(args: &[String], db: Option<&str>, sql: &str) -> String {
    use std::io::Write;
    let mut cmd = Command::new("mariadb");
    cmd.args(args).arg("--batch").arg("--skip-column-names");
    if let Some(db) = db {
        cmd.arg(db);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mariadb client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write sql");
    let out = child.wait_with_output().expect("mariadb client");
    assert!(
        out.status.success(),
        "mariadb client failed: {}\nSQL: {sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database (and a user owning it) created for one test on the shared MariaDB server,
/// dropped again when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub user: String,
    pub password: String,
    /// `host:port` of the server (TCP on loopback).
    pub host: String,
    pub socket: String,
    admin: Vec<String>,
}

impl TestDb {
    /// Creates a throwaway database, or returns `None` after a loud skip when no MariaDB server
    /// answers (a failure under CI).
    pub fn create(test: &str) -> Option<TestDb> {
        let admin = admin_args();
        if !have("mariadb") {
            skip(test, "the mariadb client is not installed");
            return None;
        }
        let ok = Command::new("mariadb")
            .args(&admin)
            .args(["-e", "select 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip(test, "no MariaDB server answers (run scripts/test-deps)");
            return None;
        }
        let name = unique("vmailtest");
        let user = name.clone();
        let password = unique("pw");
        let info = mariadb_cli(&admin, None, "SELECT @@port, @@socket;");
        let mut f = info.split_whitespace();
        let port = f.next().unwrap_or("3306").to_string();
        let socket = f.next().unwrap_or("/run/mysqld/mysqld.sock").to_string();
        mariadb_cli(
            &admin,
            None,
            &format!(
                "CREATE DATABASE `{name}`;\n\
                 CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}';\n\
                 CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';\n\
                 GRANT ALL ON `{name}`.* TO '{user}'@'localhost';\n\
                 GRANT ALL ON `{name}`.* TO '{user}'@'127.0.0.1';\n"
            ),
        );
        Some(TestDb {
            name,
            user,
            password,
            host: format!("127.0.0.1:{port}"),
            socket,
            admin,
        })
    }

    /// Runs SQL as the administrator inside this database.
    pub fn sql(&self, sql: &str) -> String {
        mariadb_cli(&self.admin, Some(&self.name), sql)
    }

    /// A vmail configuration pointing at this database over TCP.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database.backend = Backend::Mysql;
        c.database.hosts = vec![self.host.clone()];
        c.database.user = self.user.clone();
        c.database.password = Some(Secret::new(self.password.clone()));
        c.database.dbname = self.name.clone();
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(&self.admin)
            .arg("-e")
            .arg(format!(
                "DROP DATABASE IF EXISTS `{0}`; DROP USER IF EXISTS '{1}'@'localhost'; DROP USER IF EXISTS '{1}'@'127.0.0.1';",
                self.name, self.user
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A MariaDB server of the test's own, on a temp datadir and a free loopback port, that the
/// test may stop and start again (outage tests). Never the shared server.
pub struct PrivateMariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl PrivateMariaDb {
    /// Initialises and starts the server; `None` after a loud skip when MariaDB is missing.
    pub fn start(test: &str) -> Option<PrivateMariaDb> {
        for p in ["mariadb-install-db", "/usr/sbin/mariadbd", "mariadb"] {
            if !have(p) {
                skip(
                    test,
                    &format!("{p} is not installed (run scripts/test-deps)"),
                );
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("vmail-mariadb")
            .tempdir()
            .expect("tempdir");
        set_mode(dir.path(), 0o755);
        // mariadbd runs as mysql and writes its socket, pid file and log here.
        let owned = Command::new("chown")
            .arg("mysql:mysql")
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            owned,
            "chown mysql {} failed (tests run as root)",
            dir.path().display()
        );
        let data = dir.path().join("data");
        // Its own tmpdir: a starting mariadbd deletes every `#sql*` file in its tmpdir, so two
        // servers sharing /tmp (tests in parallel, the system's MariaDB) break each other's
        // temporary tables ("Unknown table 'mysql.tmp_user_sys'" during install).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        let owned = Command::new("chown")
            .arg("mysql:mysql")
            .arg(&tmp)
            .status()
            .is_ok_and(|s| s.success());
        assert!(owned, "chown mysql {} failed", tmp.display());
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut me = PrivateMariaDb {
            port: free_port(),
            dir,
            child: None,
        };
        me.resume();
        me.sql("CREATE DATABASE mail;");
        Some(me)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Starts (again) the server on the same datadir and port, and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let d = self.dir.path();
        let child = Command::new("/usr/sbin/mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        let sock = self.socket();
        let up = wait_until(Duration::from_secs(30), || {
            Command::new("mariadb")
                .args([
                    "-uroot",
                    &format!("--socket={}", sock.display()),
                    "-e",
                    "select 1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            up,
            "private mariadbd did not start; see {}",
            d.join("error.log").display()
        );
    }

    /// Stops the server (SIGKILL: an outage, not a clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sql(&self, sql: &str) -> String {
        mariadb_cli(
            &[
                "-uroot".into(),
                format!("--socket={}", self.socket().display()),
            ],
            None,
            sql,
        )
    }

    /// A vmail configuration for database `mail` on this server over TCP, as root.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database.backend = Backend::Mysql;
        c.database.hosts = vec![format!("127.0.0.1:{}", self.port)];
        c.database.user = "root".into();
        c.database.password = None;
        c.database.dbname = "mail".into();
        c
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The calling thread's id, for [`thread_cpu_time`] from another thread.
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// CPU time a thread of this process has run so far (`/proc/self/task/TID/schedstat`, first
/// field, nanoseconds: exact, unlike the clock ticks of `stat`). With one event loop, all of
/// an in-process daemon's work.
pub fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Sets a path's permission bits.
pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `[database]` section (MySQL on a port nobody listens on) whose password file, written
/// in `dir`, every local user may read: a daemon must refuse to start with it. Returns the
/// password file and the section.
pub fn world_readable_password_database(dir: &Path) -> (PathBuf, String) {
    let pw = dir.join("db-password");
    std::fs::write(&pw, "s3cret\n").expect("writing the password file");
    set_mode(&pw, 0o644);
    let section = format!(
        "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\npassword_file = \"{}\"\n",
        free_port(),
        pw.display()
    );
    (pw, section)
}

/// An SQLite-backed configuration in a fresh temp dir (kept alive by the returned guard).
pub fn sqlite_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Config::default();
    c.database.backend = Backend::Sqlite;
    c.database.sqlite_path = dir.path().join("vmail.db");
    (dir, c)
}

/// Creates the directory `config` describes (a fresh one) with the domain example.org and
/// `users`: (address, quota in bytes, active). Password `{PLAIN}x`.
pub fn example_org(config: &Config, users: &[(&str, Option<u64>, bool)]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let d = vmail_directory::Directory::open(config)
            .await
            .expect("open directory");
        d.init(false).await.expect("init");
        d.add_domain("example.org").await.expect("add domain");
        for &(user, quota, active) in users {
            d.add_user(user, "{PLAIN}x", quota).await.expect("add user");
            if !active {
                d.set_active(user, false).await.expect("disable user");
            }
        }
        d.close().await;
    });
}

/// Starts `program args...` the way systemd starts a socket-activated service: the given
/// listening sockets as file descriptors 3, 4, ... and `LISTEN_FDS`/`LISTEN_PID` set (the
/// pid is the program's own: a shell sets it and then execs the program).
pub fn spawn_socket_activated(
    program: &Path,
    args: &[&str],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_FDS={} LISTEN_PID=$$ exec \"$0\" \"$@\"",
            fds.len()
        ))
        .arg(program)
        .args(args)
        .stdout(Stdio::null());
    let fds = fds.to_vec();
    // SAFETY: only async-signal-safe calls (dup, dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Copy first, so a socket already sitting on 3.. is not overwritten early.
            let mut copies = Vec::with_capacity(fds.len());
            for &fd in &fds {
                let c = libc::fcntl(fd, libc::F_DUPFD, 64);
                if c < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                copies.push(c);
            }
            for (i, c) in copies.into_iter().enumerate() {
                // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
                if libc::dup2(c, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A plain HTTP/1.0 GET on loopback: (status line, body). For the metrics endpoints.
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of one sample (`name{labels} value`) in a Prometheus exposition.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A tmpfs mounted for one test (a real full or read-only file system), unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "256k") at `dir`, created if missing, or explains why
    /// it cannot (not root, no permission to mount in this container).
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Remounts it read-only.
    pub fn remount_ro(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(st.success(), "remount,ro {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
