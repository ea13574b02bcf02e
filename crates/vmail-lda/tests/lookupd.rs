//! vmail-lda resolving recipients through a running vmail-lookupd (`[lda] lookupd`), as the
//! contrib configuration sets it up: answers from lookupd are used, its absence falls back to
//! the database, and any trouble in between defers.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use vmail_config::{Loaded, Source};

const MSG: &[u8] = b"From: bob@remote.test\nSubject: hi\n\nHello.\n";

/// An SQLite directory with alice, a disabled user, and the home template the LDA delivers
/// under.
struct Directory {
    dir: tempfile::TempDir,
    db_config: String,
}

impl Directory {
    fn new() -> Directory {
        let dir = tempfile::tempdir().unwrap();
        vmail_test_support::set_mode(dir.path(), 0o755);
        let db_config = format!(
            "[database]\nsqlite_path = \"{0}/v.db\"\n[mailbox]\nhome = \"{0}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n",
            dir.path().display()
        );
        let cfg = vmail_config::parse(&db_config, &dir.path().join("x.toml")).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let d = vmail_directory::Directory::open(&cfg).await.unwrap();
            d.init(false).await.unwrap();
            d.add_domain("example.org").await.unwrap();
            d.add_user("alice@example.org", "{PLAIN}x", None)
                .await
                .unwrap();
            d.add_user("off@example.org", "{PLAIN}x", None)
                .await
                .unwrap();
            d.set_active("off@example.org", false).await.unwrap();
        });
        Directory { dir, db_config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn inbox(&self, user: &str) -> Vec<PathBuf> {
        let new = self
            .path()
            .join(format!("vmail/example.org/{user}/Maildir/new"));
        std::fs::read_dir(new)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// A config file for the LDA: `[lda] lookupd` at `socket`, with `database` as its own
    /// fallback.
    fn lda_config(&self, name: &str, socket: &Path, database: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(
            &p,
            format!(
                "{database}\n[lda]\nlookupd = \"unix:{}\"\nlookupd_timeout_ms = 2000\n",
                socket.display()
            ),
        )
        .unwrap();
        p
    }
}

/// lookupd in-process, serving only an `[lookupd] lda` listener.
struct Lookupd {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lookupd {
    fn start(d: &Directory) -> Lookupd {
        let socket = d.path().join("lookupd-lda");
        let mut config = vmail_config::parse(&d.db_config, &d.path().join("l.toml")).unwrap();
        let l = &mut config.lookupd;
        l.socketmap = Vec::new();
        l.lda = vec![format!("unix:{}", socket.display())];
        l.lda_socket_group = String::new();
        l.lda_socket_mode = "0600".into();
        l.user = String::new();
        l.pid_file = d.path().join("lookupd.pid");
        let loaded = Loaded {
            config,
            source: Source::Builtin,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let daemon = vmail_lookupd::Lookupd::bind(&loaded)
                    .await
                    .expect("bind lookupd");
                ready_tx.send(()).unwrap();
                daemon
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv().expect("lookupd started");
        Lookupd {
            socket,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Lookupd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lda(config: &Path, recipient: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmail-lda"))
        .arg("--config")
        .arg(config)
        .args(["-f", "bob@remote.test", "-d", recipient])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    child.wait_with_output().unwrap()
}

fn line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A database the LDA cannot reach: only an answer from lookupd can make it deliver.
fn unreachable_db() -> String {
    format!(
        "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\nconnect_timeout_ms = 300\nquery_timeout_ms = 1000\n",
        vmail_test_support::free_port()
    )
}

#[test]
fn answers_come_from_lookupd() {
    let d = Directory::new();
    let mut lookupd = Lookupd::start(&d);
    let mode = std::fs::metadata(&lookupd.socket).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.unwrap(), 0o600, "lda_socket_mode");
    let cfg = d.lda_config("lda.toml", &lookupd.socket, &unreachable_db());

    let o = lda(&cfg, "alice@example.org");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let o = lda(&cfg, "Alice+News@Example.ORG");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let inbox = d.inbox("alice");
    assert_eq!(inbox.len(), 2);
    for f in &inbox {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("Return-Path: <bob@remote.test>\nDelivered-To: alice@example.org\n"),
            "{text}"
        );
    }

    let o = lda(&cfg, "nobody@example.org");
    assert_eq!(o.status.code(), Some(67), "{}", line(&o));
    assert!(line(&o).starts_with("5.1.1"), "{}", line(&o));
    let o = lda(&cfg, "off@example.org");
    assert_eq!(o.status.code(), Some(67), "{}", line(&o));
    assert!(line(&o).starts_with("5.2.1"), "{}", line(&o));
    assert!(d.inbox("off").is_empty());

    // lookupd stopped: the LDA asks the database itself. Unreachable too: defer, never bounce.
    lookupd.stop();
    let o = lda(&cfg, "alice@example.org");
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).starts_with("4.4.3"), "{}", line(&o));
    let direct = d.lda_config("direct.toml", &lookupd.socket, &d.db_config);
    let o = lda(&direct, "alice+x@example.org");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(d.inbox("alice").len(), 3);
    let o = lda(&direct, "nobody@example.org");
    assert_eq!(o.status.code(), Some(67), "{}", line(&o));
}

/// A socket that accepts, reads the request and answers `answer` (or nothing).
fn fake_lookupd(path: &Path, answer: &'static [u8]) -> std::thread::JoinHandle<()> {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer);
        }
    })
}

#[test]
fn lookupd_trouble_defers_even_with_a_working_database() {
    let d = Directory::new();
    for (i, answer) in [
        &b"32:TEMP database connection refused,"[..],
        b"19:TIMEOUT lookup slow,",
        b"27:PERM no map named recipient,",
        b"11:OK garbage,",
        b"",
        b"9:NOTFO",
    ]
    .into_iter()
    .enumerate()
    {
        let socket = d.path().join(format!("fake{i}"));
        let t = fake_lookupd(&socket, answer);
        let cfg = d.lda_config(&format!("fake{i}.toml"), &socket, &d.db_config);
        let o = lda(&cfg, "alice@example.org");
        assert_eq!(o.status.code(), Some(75), "{answer:?}: {}", line(&o));
        assert!(line(&o).starts_with("4.4.3"), "{}", line(&o));
        t.join().unwrap();
    }
    assert!(d.inbox("alice").is_empty());
}

/// `vmail-lda` alone (no `vmail-lda-direct` beside it): lookupd's answers are all it needs;
/// without lookupd it must become the direct program, and when that is missing it defers.
#[test]
fn vmail_lda_needs_its_direct_sibling_only_when_lookupd_cannot_answer() {
    let d = Directory::new();
    let alone = d.path().join("alone");
    std::fs::create_dir(&alone).unwrap();
    let lda_bin = alone.join("vmail-lda");
    std::fs::copy(env!("CARGO_BIN_EXE_vmail-lda"), &lda_bin).unwrap();
    let mut lookupd = Lookupd::start(&d);
    let cfg = d.lda_config("alone.toml", &lookupd.socket, &d.db_config);
    let run = |recipient: &str| {
        let mut child = Command::new(&lda_bin)
            .arg("--config")
            .arg(&cfg)
            .args(["-d", recipient])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(MSG).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run("alice@example.org");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(d.inbox("alice").len(), 1);
    lookupd.stop();
    let o = run("alice@example.org");
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(
        line(&o).starts_with("4.3.5") && line(&o).contains("vmail-lda-direct"),
        "{}",
        line(&o)
    );
    assert_eq!(d.inbox("alice").len(), 1);
    // A "sibling" that is vmail-lda itself must not exec forever.
    let sibling = alone.join("vmail-lda-direct");
    std::os::unix::fs::symlink(&lda_bin, &sibling).unwrap();
    let o = run("alice@example.org");
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).contains("vmail-lda itself"), "{}", line(&o));
    std::fs::remove_file(&sibling).unwrap();
    // With its sibling beside it, the same configuration delivers from the database.
    std::fs::copy(
        env!("CARGO_BIN_EXE_vmail-lda-direct"),
        alone.join("vmail-lda-direct"),
    )
    .unwrap();
    let o = run("alice@example.org");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(d.inbox("alice").len(), 2);
}
