//! The vmail-lookupd binary as an init system runs it: signals, pid file, privilege drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmail_test_support::lookupd::Raw;
use vmail_test_support::{wait_until, TestDb};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(p: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &p.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn write_config(dir: &std::path::Path, db: &TestDb, user: &str, pid: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("vmail-{}.toml", pid.replace('/', "-")));
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"{}\"]\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"{}\"\n\
             [lookupd]\nsocketmap = [\"unix:{}/lookupd.sock\"]\nsocket_group = \"\"\nuser = \"{user}\"\npid_file = \"{}/{pid}\"\n",
            db.host, db.user, db.password, db.name,
            dir.display(), dir.display()
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &std::path::Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

#[test]
fn sighup_flushes_sigterm_stops_cleanly_and_privileges_are_dropped() {
    let Some(db) = TestDb::create("sighup_flushes_sigterm_stops_cleanly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    vmail_test_support::set_mode(dir.path(), 0o755);
    let cfg = write_config(dir.path(), &db, "nobody", "run/lookupd.pid");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = vmail_config::load(Some(&cfg)).unwrap();
    rt.block_on(async {
        let d = vmail_directory::Directory::open(&loaded.config)
            .await
            .unwrap();
        d.init(false).await.unwrap();
        d.add_domain("example.org").await.unwrap();
    });
    let sock = dir.path().join("lookupd.sock");
    // In a directory that does not exist yet: the daemon makes it for the user it drops to.
    let pid_file = dir.path().join("run/lookupd.pid");
    let mut p = start(&cfg);
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()
            && pid_file.exists()),
        "daemon did not start"
    );

    // Runs as nobody after binding; the socket was made before, with mode 0660.
    let nobody = vmail_test_support::postfix::lookup_user("nobody")
        .unwrap()
        .0
        .to_string();
    let uid_line = || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", p.0.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_string()
    };
    let dropped = wait_until(Duration::from_secs(5), || {
        let l = uid_line();
        !l.is_empty() && l.split_whitespace().skip(1).all(|u| u == nobody)
    });
    assert!(dropped, "still {}", uid_line());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );

    let mut c = Raw::connect(&sock);
    assert_eq!(c.ask(b"mailboxes new@example.org"), "NOTFOUND ");
    db.sql("INSERT INTO users (email, password) VALUES ('new@example.org', 'x');");
    assert_eq!(c.ask(b"mailboxes new@example.org"), "NOTFOUND ", "cached");
    // What `vmailctl flush` does: the daemon holding the pid file is reloaded.
    assert_eq!(
        vmail_daemon::signal_reload(&pid_file, "vmail-lookupd").unwrap(),
        vmail_daemon::Reload::Sent(p.0.id() as i32)
    );
    assert!(wait_until(Duration::from_secs(5), || c
        .ask(b"mailboxes new@example.org")
        == "OK example.org/new/"));

    // SIGTERM: in-flight work finishes, the process exits 0 and cleans up after itself.
    signal(&p.0, "TERM");
    let exited = wait_until(Duration::from_secs(10), || {
        matches!(p.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "did not stop on SIGTERM");
    assert!(p.0.wait().unwrap().success());
    // Having dropped root, the process cannot unlink its socket in a root-owned directory
    // (Postfix's daemons are in the same position): it must not name anything live, and the
    // next start must replace it. The pid file, in a directory of nobody's, is gone.
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_err(),
        "nobody may answer"
    );
    assert!(!pid_file.exists(), "pid file left behind");
    assert!(matches!(
        vmail_daemon::signal_reload(&pid_file, "vmail-lookupd").unwrap(),
        vmail_daemon::Reload::NotRunning(_)
    ));
    // This time the pid file is in the root-owned directory, where nobody cannot remove it:
    // emptied at exit, it names no process, and the lock is gone with the process.
    let cfg = write_config(dir.path(), &db, "nobody", "lookupd.pid");
    let pid_file = dir.path().join("lookupd.pid");
    let mut p2 = start(&cfg);
    assert!(wait_until(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    }));
    let mut c = Raw::connect(&sock);
    assert_eq!(c.ask(b"mailboxes new@example.org"), "OK example.org/new/");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", p2.0.id())
    );
    signal(&p2.0, "TERM");
    assert!(p2.0.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "");
    assert!(matches!(
        vmail_daemon::signal_reload(&pid_file, "vmail-lookupd").unwrap(),
        vmail_daemon::Reload::NotRunning(_)
    ));
}

/// A configuration error exits with EX_CONFIG (78), which the unit's
/// `RestartPreventExitStatus=` names: systemd must not restart a daemon that can only fail
/// again until the admin edits the file.
#[test]
fn bad_config_is_refused_at_start_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vmail.toml");
    std::fs::write(&cfg, "[lookupd]\nsocket_mode = \"0666\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lookupd.socket_mode"), "{err}");
    assert_eq!(out.status.code(), Some(78), "{err}");
    // A file that does not parse, or is not there, is the same kind of error.
    std::fs::write(&cfg, "[lookupd\n").unwrap();
    for path in [cfg.clone(), dir.path().join("missing.toml")] {
        let out = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {err}", path.display());
        assert!(err.starts_with("Error: "), "{err}");
    }
    // A group or user this host does not have (Dovecot's group without Dovecot): `--check`
    // says so, and a start fails the same way before binding anything.
    std::fs::write(
        &cfg,
        format!(
            "[lookupd]\nsocketmap = [\"unix:{d}/l.sock\"]\nsocket_group = \"no-such-group-vmail\"\n\
             user = \"\"\npid_file = \"{d}/l.pid\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    for args in [&["--check"][..], &[]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.contains("lookupd.socket_group: no such group \"no-such-group-vmail\""),
            "{err}"
        );
        assert!(
            !dir.path().join("l.sock").exists(),
            "bound before the check"
        );
    }
    std::fs::write(
        &cfg,
        format!(
            "[lookupd]\nsocketmap = [\"unix:{d}/l.sock\"]\nsocket_group = \"\"\n\
             user = \"no-such-user-vmail\"\npid_file = \"{d}/l.pid\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("lookupd.user: no such user"), "{err}");
    // A usage error stays clap's 2.
    let out = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
        .arg("--no-such-option")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A database password file every local user may read is refused at start-up, as ssh
/// refuses a world-readable key: the error names the file and its mode.
#[test]
fn world_readable_password_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (pw, database) = vmail_test_support::world_readable_password_database(dir.path());
    let cfg = dir.path().join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "{database}[lookupd]\nsocketmap = [\"unix:{d}/lookupd.sock\"]\nsocket_group = \"\"\nuser = \"\"\npid_file = \"{d}/lookupd.pid\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let run = |patience| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmail-lookupd"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A daemon that starts serves until killed: give it a bounded time to refuse.
        let exited = wait_until(patience, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        (
            exited && !out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    let (refused, err, code) = run(Duration::from_secs(10));
    assert!(
        refused,
        "started with a world-readable password file: {err}"
    );
    // A configuration error (EX_CONFIG): restarting cannot mend the file's mode.
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&pw.display().to_string()), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    // Group-readable (root:vmail 0640) is the documented setting: it starts (the database
    // being down is only a temporary failure per lookup).
    vmail_test_support::set_mode(&pw, 0o640);
    let (refused, err, _) = run(Duration::from_secs(2));
    assert!(!refused, "{err}");
}

/// systemd socket activation: the daemon serves the sockets it inherits (a UNIX socketmap
/// socket and a TCP tcp_table socket, bound by "systemd" = this test) instead of binding
/// its own, and leaves the socket file in place when it exits (the .socket unit owns it).
#[test]
fn serves_inherited_sockets_from_systemd() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("activated.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let db = dir.path().join("vmail.db");
    let cfg = dir.path().join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"sqlite\"\nsqlite_path = \"{}\"\n\
             [lookupd]\nsocketmap = [\"unix:{}\"]\nsocket_group = \"\"\nuser = \"\"\npid_file = \"{}/lookupd.pid\"\n\
             [lookupd.tcp_table]\ndomains = \"inet:127.0.0.1:{port}\"\n",
            db.display(),
            sock.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let loaded = vmail_config::load(Some(&cfg)).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let d = vmail_directory::Directory::open(&loaded.config)
            .await
            .unwrap();
        d.init(false).await.unwrap();
        d.add_domain("example.org").await.unwrap();
    });
    let child = vmail_test_support::spawn_socket_activated(
        std::path::Path::new(env!("CARGO_BIN_EXE_vmail-lookupd")),
        &["--config", cfg.to_str().unwrap()],
        &[unix.as_raw_fd(), tcp.as_raw_fd()],
    )
    .unwrap();
    let p = Proc(child);
    // The test still holds the sockets too: connections queue on them until the daemon
    // accepts, exactly as with systemd.
    let mut raw = Raw::connect(&sock);
    assert_eq!(raw.ask(b"domains example.org"), "OK virtual");
    let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut t, b"get example.org\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&t), &mut line).unwrap();
    assert!(line.starts_with("200 "), "{line:?}");
    signal(&p.0, "TERM");
    let mut p = p;
    let status = p.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        sock.exists(),
        "an inherited socket file belongs to systemd and must stay"
    );
}
