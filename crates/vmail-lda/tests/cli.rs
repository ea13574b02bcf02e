//! vmail-lda as pipe(8) runs it: message on stdin, exit status and one status line out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod direct;

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new(extra: &str) -> Env {
        // Without lookupd, vmail-lda execs its sibling.
        direct::sibling();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("vmail.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nsqlite_path = \"{0}/v.db\"\n[mailbox]\nhome = \"{0}/vmail/%d/%n\"\nmail = \"maildir:~/Maildir\"\n{extra}",
                dir.path().display()
            ),
        )
        .unwrap();
        let e = Env { dir, config };
        let ctl = |args: &[&str], stdin: &str| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let loaded = vmail_config::load(Some(&e.config)).unwrap();
            rt.block_on(async {
                let d = vmail_directory::Directory::open(&loaded.config)
                    .await
                    .unwrap();
                match args {
                    ["init"] => drop(d.init(false).await.unwrap()),
                    ["domain", x] => d.add_domain(x).await.unwrap(),
                    ["user", x] => d.add_user(x, stdin, None).await.unwrap(),
                    ["quota", x] => d.add_user(x, stdin, Some(2000)).await.unwrap(),
                    ["disable", x] => d.set_active(x, false).await.unwrap(),
                    _ => unreachable!(),
                }
            });
        };
        ctl(&["init"], "");
        ctl(&["domain", "example.org"], "");
        ctl(&["user", "alice@example.org"], "{PLAIN}x");
        ctl(&["user", "off@example.org"], "{PLAIN}x");
        ctl(&["disable", "off@example.org"], "");
        ctl(&["quota", "small@example.org"], "{PLAIN}x");
        e
    }

    fn lda(&self, args: &[&str], message: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmail-lda"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Err(e) = child.stdin.take().unwrap().write_all(message) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        }
        child.wait_with_output().unwrap()
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("vmail/example.org/{user}/Maildir"))
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

const MSG: &[u8] =
    b"From: bob@remote.test\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

#[test]
fn delivers_with_headers_and_size() {
    let e = Env::new("");
    let o = e.lda(
        &[
            "-f",
            "bob@remote.test",
            "-a",
            "alice@example.org",
            "-d",
            "alice@example.org",
        ],
        MSG,
    );
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let new = files(&e.maildir("alice").join("new"));
    assert_eq!(new.len(), 1);
    assert!(files(&e.maildir("alice").join("tmp")).is_empty());
    let body = std::fs::read(&new[0]).unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("Return-Path: <bob@remote.test>\nDelivered-To: alice@example.org\nFrom: bob@remote.test\n"), "{text}");
    assert!(!text.contains('\r'));
    let name = new[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.ends_with(&format!(",S={}", body.len())), "{name}");
}

#[test]
fn postfix_prepended_headers_are_not_duplicated() {
    let e = Env::new("");
    let m =
        b"Return-Path: <bob@remote.test>\nDelivered-To: alice@example.org\nSubject: x\n\nbody\n";
    let o = e.lda(&["-f", "bob@remote.test", "-d", "alice@example.org"], m);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let text = std::fs::read_to_string(&files(&e.maildir("alice").join("new"))[0]).unwrap();
    assert_eq!(text.matches("Return-Path:").count(), 1, "{text}");
    assert_eq!(text.matches("Delivered-To:").count(), 1, "{text}");
}

#[test]
fn extension_reaches_the_user_and_optionally_a_folder() {
    let e = Env::new("");
    let o = e.lda(&["-d", "Alice+News@Example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 1);

    let e = Env::new("[lda]\nfolder_from_extension = true\n");
    // No such folder: INBOX.
    assert_eq!(
        e.lda(&["-d", "alice+lists@example.org"], MSG).status.code(),
        Some(0)
    );
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 1);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(e.maildir("alice").join(".lists").join(sub)).unwrap();
    }
    assert_eq!(
        e.lda(&["-d", "alice+lists@example.org"], MSG).status.code(),
        Some(0)
    );
    assert_eq!(files(&e.maildir("alice").join(".lists/new")).len(), 1);
}

#[test]
fn permanent_failures_bounce_with_status_codes() {
    let e = Env::new("");
    let cases: &[(&[&str], &[u8], i32, &str)] = &[
        (&["-d", "nobody@example.org"], MSG, 67, "5.1.1"),
        (&["-d", "nobody+x@example.org"], MSG, 67, "5.1.1"),
        (&["-d", "alice@unknown.test"], MSG, 67, "5.1.1"),
        (&["-d", "off@example.org"], MSG, 67, "5.2.1"),
        (&["-d", "alice@example.org"], b"", 65, "5.6.0"),
        (
            &["-d", "alice@example.org"],
            b"Delivered-To: alice@example.org\nReceived: x\nDelivered-To: alice@example.org\n\nloop\n",
            69,
            "5.4.6",
        ),
    ];
    for (args, msg, code, status) in cases {
        let o = e.lda(args, msg);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", line(&o));
        assert!(line(&o).starts_with(status), "{args:?}: {}", line(&o));
    }
    assert!(files(&e.maildir("alice").join("new")).is_empty());
}

/// Issue 15 item 8: without pipe(8)'s `D` flag the LDA writes `Delivered-To:` with the
/// stored address, so a message for `alice+lists@` that comes back carries
/// `alice@example.org`: a loop, in whatever case or form this mailbox's addresses take.
/// Other mailboxes' lines are history: the same message still reaches another user.
#[test]
fn a_message_back_at_an_extension_address_is_a_loop() {
    let e = Env::new("");
    let body = b"Subject: back again\n\nloop\n";
    for (rcpt, seen) in [
        ("alice+lists@example.org", "<Alice+lists@EXAMPLE.org>"),
        ("alice+lists@example.org", "alice+lists@example.org"),
        ("Alice+Lists@Example.org", "alice+lists@example.org"),
        ("alice@example.org", "ALICE@example.org"),
    ] {
        let m = [
            format!("Received: by mx\nDelivered-To: {seen}\n").as_bytes(),
            body,
        ]
        .concat();
        let o = e.lda(&["-f", "bob@remote.test", "-d", rcpt], &m);
        assert_eq!(o.status.code(), Some(69), "{rcpt} {seen}: {}", line(&o));
        assert!(line(&o).starts_with("5.4.6"), "{rcpt} {seen}: {}", line(&o));
        // As pipe(8)'s D flag would have it: its own line for -d first, then the old one.
        let m = [format!("Delivered-To: {rcpt}\n").as_bytes(), &m].concat();
        let o = e.lda(&["-f", "bob@remote.test", "-d", rcpt], &m);
        assert_eq!(o.status.code(), Some(69), "D {rcpt} {seen}: {}", line(&o));
        assert!(
            line(&o).starts_with("5.4.6"),
            "D {rcpt} {seen}: {}",
            line(&o)
        );
    }
    assert!(files(&e.maildir("alice").join("new")).is_empty());
    assert!(files(&e.maildir("alice").join("tmp")).is_empty());

    // Delivered to alice, redirected by her to her own +tag address: no loop (Postfix's
    // virtual(8) compares the full recipient too).
    let m = [&b"Delivered-To: alice@example.org\n"[..], body].concat();
    let o = e.lda(&["-d", "alice+archive@example.org"], &m);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 1);
    for f in files(&e.maildir("alice").join("new")) {
        std::fs::remove_file(f).unwrap();
    }

    // Delivered to alice, forwarded to another user: delivered there.
    let m = [&b"Delivered-To: alice@example.org\n"[..], body].concat();
    let o = e.lda(&["-d", "small+x@example.org"], &m);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(files(&e.maildir("small").join("new")).len(), 1);
    // The first delivery of a message to alice+lists@ is no loop, and writes the line
    // that makes its return one.
    let o = e.lda(&["-d", "alice+lists@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let new = files(&e.maildir("alice").join("new"));
    assert_eq!(new.len(), 1);
    let stored = std::fs::read(&new[0]).unwrap();
    assert!(stored.starts_with(b"Delivered-To: alice+lists@example.org\n"));
    // Back through Postfix (whose cleanup puts its Received: line on top).
    let back = [&b"Received: from lists.example by mx\n"[..], &stored].concat();
    let o = e.lda(&["-d", "alice+lists@example.org"], &back);
    assert_eq!(o.status.code(), Some(69), "{}", line(&o));
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 1);
}

#[test]
fn quota_bounces_or_defers_as_configured() {
    let big = [MSG, &vec![b'x'; 5000][..], b"\n"].concat();
    let e = Env::new("");
    let o = e.lda(&["-d", "small@example.org"], &big);
    assert_eq!(o.status.code(), Some(69), "{}", line(&o));
    assert!(line(&o).starts_with("5.2.2"));
    let e = Env::new("[lda]\nover_quota = \"defer\"\n");
    let o = e.lda(&["-d", "small@example.org"], &big);
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).starts_with("4.2.2"));
    assert!(files(&e.maildir("small").join("new")).is_empty());
    // A small message fits.
    assert_eq!(
        e.lda(&["-d", "small@example.org"], MSG).status.code(),
        Some(0)
    );
}

#[test]
fn trouble_defers_never_bounces() {
    // Misconfiguration and bad invocations: 75 so a postmaster can fix it.
    let e = Env::new("");
    for args in [
        &["-f", "x@y"][..],
        &["--bogus", "-d", "alice@example.org"][..],
    ] {
        let o = e.lda(args, MSG);
        assert_eq!(o.status.code(), Some(75), "{args:?}: {}", line(&o));
        assert!(line(&o).starts_with("4."), "{}", line(&o));
    }
    // dovecot-lda's own options are accepted, so only argv's path changes in master.cf.
    let o = e.lda(
        &[
            "-c",
            "/etc/dovecot/dovecot.conf",
            "-e",
            "-k",
            "-o",
            "a=b",
            "-d",
            "alice@example.org",
        ],
        MSG,
    );
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));

    // Database down.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\nconnect_timeout_ms = 300\nquery_timeout_ms = 1000\n",
            vmail_test_support::free_port()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vmail-lda"))
        .arg("--config")
        .arg(&cfg)
        .args(["-d", "alice@example.org"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).starts_with("4.4.3"), "{}", line(&o));

    // The Maildir cannot be created (a file where the directory should be).
    let e = Env::new("");
    std::fs::create_dir_all(e.dir.path().join("vmail/example.org/alice")).unwrap();
    std::fs::write(e.maildir("alice"), b"not a dir").unwrap();
    let o = e.lda(&["-d", "alice@example.org"], MSG);
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).starts_with("4."), "{}", line(&o));
}

/// Issue 15 item 10a: a full file system (a real ENOSPC, from a tiny tmpfs under the
/// user's home) defers with RFC 3463's "mail system full", 4.3.1, and leaves nothing behind.
#[test]
fn a_full_disk_defers_as_mail_system_full() {
    let test = "a_full_disk_defers_as_mail_system_full";
    let e = Env::new("");
    let home = e.dir.path().join("vmail/example.org/alice");
    let _fs = match vmail_test_support::Tmpfs::mount(&home, "64k") {
        Ok(m) => m,
        Err(why) => {
            vmail_test_support::skip(test, &format!("cannot mount tmpfs: {why}"));
            return;
        }
    };
    let big = [MSG, &vec![b'x'; 1024 * 1024][..], b"\n"].concat();
    let o = e.lda(&["-d", "alice@example.org"], &big);
    assert_eq!(o.status.code(), Some(75), "{}", line(&o));
    assert!(line(&o).starts_with("4.3.1 "), "{}", line(&o));
    assert!(line(&o).contains("No space left on device"), "{}", line(&o));
    for sub in ["tmp", "new", "cur"] {
        assert!(files(&e.maildir("alice").join(sub)).is_empty(), "{sub}");
    }
    // The space was given back: a small message fits.
    let o = e.lda(&["-d", "alice@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
}

#[test]
fn phase_timings_only_when_asked() {
    let e = Env::new("");
    let run = |timing: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmail-lda"));
        c.arg("--config")
            .arg(&e.config)
            .args(["-d", "alice@example.org"])
            .env_remove("VMAIL_LDA_TIMING")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if timing {
            c.env("VMAIL_LDA_TIMING", "1");
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(MSG).unwrap();
        child.wait_with_output().unwrap()
    };
    // Postfix turns stderr into DSN text: nothing there unless asked for.
    let o = run(false);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(true);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let t = err.trim();
    assert!(t.starts_with("vmail-lda timing: args="), "{t}");
    for phase in ["config", "runtime", "open", "lookup", "deliver", "total"] {
        assert!(t.contains(&format!(" {phase}=")), "{phase}: {t}");
    }
    assert!(o.stdout.is_empty());
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 2);
}

/// vmail-lda has no Rust `main` (start-up cost), so it sets up what std's start-up would:
/// SIGPIPE ignored, and fds 0-2 open. A write to a closed pipe is then an error that ends in
/// a status line and exit code, not a death by signal; and a delivery started with stdout and
/// stderr closed works.
#[test]
fn process_setup_without_std_start_up() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    // stdout is a pipe nobody reads: --version's write fails with EPIPE.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let status = Command::new(env!("CARGO_BIN_EXE_vmail-lda"))
        .arg("--version")
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), None, "killed by a signal: {status:?}");
    assert_eq!(status.code(), Some(75), "{status:?}");

    let e = Env::new("");
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmail-lda"));
    c.arg("--config")
        .arg(&e.config)
        .args(["-d", "alice@example.org"])
        .env("VMAIL_LDA_TIMING", "1")
        .stdin(Stdio::piped());
    // SAFETY: only close(2), which is async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let _ = nix::unistd::close(1);
            let _ = nix::unistd::close(2);
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let new = files(&e.maildir("alice").join("new"));
    assert_eq!(new.len(), 1);
    let body = std::fs::read(&new[0]).unwrap();
    assert!(
        body.ends_with(b"Hello.\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// Rows written with plain SQL whose mailbox would be alice's (`alice/.`) or outside the base
/// (issue 15): deferred (75), nothing written anywhere.
#[test]
fn rows_that_escape_or_share_a_maildir_defer_and_write_nothing() {
    let e = Env::new("");
    let o = e.lda(&["-d", "alice@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    let db = rusqlite::Connection::open(e.dir.path().join("v.db")).unwrap();
    db.execute_batch(
        "INSERT INTO domains (domain) VALUES ('../../etc');
         INSERT INTO users (email, password) VALUES ('alice/.@example.org', 'x');
         INSERT INTO users (email, password) VALUES ('../x@example.org', 'x');
         INSERT INTO users (email, password) VALUES ('x@../../etc', 'x');",
    )
    .unwrap();
    let before = files(&e.dir.path().join("vmail"));
    for rcpt in [
        "alice/.@example.org",
        "alice/.+tag@example.org",
        "../x@example.org",
        "x@../../etc",
    ] {
        let o = e.lda(&["-d", rcpt], MSG);
        assert_eq!(o.status.code(), Some(75), "{rcpt}: {}", line(&o));
        assert!(line(&o).starts_with("4."), "{rcpt}: {}", line(&o));
    }
    assert_eq!(files(&e.maildir("alice").join("new")).len(), 1);
    assert!(files(&e.maildir("alice").join("tmp")).is_empty());
    assert_eq!(files(&e.dir.path().join("vmail")), before);
    // `{dir}/vmail/../../etc/x` is `{dir}/../etc/x`.
    let parent = e.dir.path().parent().unwrap();
    assert!(!parent.join("etc/x").exists());
}
