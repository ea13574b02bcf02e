//! vmail-lda resolving recipients through a running vmail-lookupd (`[lda] lookupd`), as the
//! contrib configuration sets it up: answers from lookupd are used, its absence falls back to
//! the database, and any trouble in between defers.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod direct;
mod fixture;

use fixture::{Directory, Lookupd};

const MSG: &[u8] = b"From: bob@remote.test\nSubject: hi\n\nHello.\n";

fn lda(config: &Path, recipient: &str) -> Output {
    lda_timed(config, recipient, MSG).0
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
    // The LDA's own Delivered-To: names the full recipient, extension included (what the
    // loop check compares, as pipe(8)'s D flag and Postfix's virtual(8) write it).
    let mut written: Vec<String> = inbox
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.starts_with("Return-Path: <bob@remote.test>\n"),
                "{text}"
            );
            text.lines().nth(1).unwrap_or_default().to_ascii_lowercase()
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "delivered-to: alice+news@example.org",
            "delivered-to: alice@example.org"
        ]
    );

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
        feed(&mut child, MSG);
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
    std::fs::copy(direct::sibling(), alone.join("vmail-lda-direct")).unwrap();
    let o = run("alice@example.org");
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert_eq!(d.inbox("alice").len(), 2);
}

/// Writes `msg` to the LDA's stdin. An LDA that decides without reading (lookupd said no
/// first, or it cannot run) may exit before we write: a closed pipe is fine.
fn feed(child: &mut std::process::Child, msg: &[u8]) {
    if let Err(e) = child.stdin.take().unwrap().write_all(msg) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
}

/// The message as pipe(8) with `flags=DRhu` hands it over: `Delivered-To:` already first.
fn with_delivered_to(recipient: &str) -> Vec<u8> {
    [format!("Delivered-To: {recipient}\n").as_bytes(), MSG].concat()
}

/// vmail-lda with `msg` on stdin and its phase timings on; `true` when it wrote the message
/// while lookupd answered (the `stage` phase).
fn lda_timed(config: &Path, recipient: &str, msg: &[u8]) -> (Output, bool) {
    let o = fixture::run_lda(config, &["-f", "bob@remote.test", "-d", recipient], msg);
    let staged = String::from_utf8_lossy(&o.stderr).contains(" stage=");
    (o, staged)
}

/// An LDA config through lookupd at `socket` with the directory's own `[mailbox]` templates
/// (from which it guesses where to stage) and a database it cannot reach.
fn lda_config_own_templates(d: &Directory, name: &str, socket: &Path) -> PathBuf {
    let mailbox = &d.db_config[d.db_config.find("[mailbox]").unwrap()..];
    d.lda_config(name, socket, &format!("{}{mailbox}", unreachable_db()))
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn make_maildir(root: &Path) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
}

/// With `Delivered-To:` already prepended and the recipient's Maildir in place, vmail-lda
/// writes the message while lookupd answers: delivered exactly as otherwise, and when the
/// answer says no (unknown, disabled, trouble) nothing is left anywhere.
#[test]
fn the_message_is_written_while_lookupd_answers_and_only_delivered_on_its_word() {
    let d = Directory::new();
    let lookupd = Lookupd::start(&d);
    let cfg = lda_config_own_templates(&d, "lda.toml", &lookupd.socket);

    // The first delivery creates the Maildir (nothing to stage into yet).
    let (o, staged) = lda_timed(
        &cfg,
        "alice@example.org",
        &with_delivered_to("alice@example.org"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert!(!staged, "staged before the Maildir existed");
    // Then each delivery is staged, extensions included.
    for r in ["alice@example.org", "alice+news@example.org"] {
        let (o, staged) = lda_timed(&cfg, r, &with_delivered_to(r));
        assert_eq!(o.status.code(), Some(0), "{r}: {}", line(&o));
        assert!(
            staged,
            "{r}: not staged: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let inbox = d.inbox("alice");
    assert_eq!(inbox.len(), 3);
    for (f, r) in inbox.iter().filter_map(|f| {
        let text = std::fs::read_to_string(f).unwrap();
        let r = text
            .lines()
            .nth(1)?
            .strip_prefix("Delivered-To: ")?
            .to_string();
        Some((f.clone(), r))
    }) {
        let text = std::fs::read_to_string(&f).unwrap();
        let want = [
            format!("Return-Path: <bob@remote.test>\nDelivered-To: {r}\n").as_bytes(),
            MSG,
        ]
        .concat();
        assert_eq!(text.as_bytes(), want.as_slice());
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!(",S={}", want.len())), "{name}");
    }
    let alice = d.path().join("vmail/example.org/alice/Maildir");
    assert!(all_files(&alice.join("tmp")).is_empty());

    // Maildirs on disk whose users the directory disowns: staged, then dropped.
    for (user, code, status) in [("off", 67, "5.2.1"), ("gone", 67, "5.1.1")] {
        let md = d.path().join(format!("vmail/example.org/{user}/Maildir"));
        make_maildir(&md);
        let r = format!("{user}@example.org");
        let (o, staged) = lda_timed(&cfg, &r, &with_delivered_to(&r));
        assert_eq!(o.status.code(), Some(code), "{r}: {}", line(&o));
        assert!(line(&o).starts_with(status), "{r}: {}", line(&o));
        assert!(staged, "{r}: not staged");
        assert!(all_files(&md).is_empty(), "{r}: {:?}", all_files(&md));
    }

    // A loop is never staged and bounces as before.
    let looped = [
        b"Delivered-To: alice@example.org\n".to_vec(),
        with_delivered_to("alice@example.org"),
    ]
    .concat();
    let (o, staged) = lda_timed(&cfg, "alice@example.org", &looped);
    assert_eq!(o.status.code(), Some(69), "{}", line(&o));
    assert!(line(&o).starts_with("5.4.6"), "{}", line(&o));
    assert!(!staged);
    assert_eq!(d.inbox("alice").len(), 3);

    // Delivered to alice before and redirected to her own +tag address: no loop (only the
    // full recipient counts, as in Postfix's virtual(8)); staged, then linked.
    let r = "alice+lists@example.org";
    let redirected = [
        format!("Delivered-To: {r}\nDelivered-To: alice@example.org\n").as_bytes(),
        MSG,
    ]
    .concat();
    let (o, staged) = lda_timed(&cfg, r, &redirected);
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert!(staged);
    assert_eq!(d.inbox("alice").len(), 4);
    assert!(all_files(&alice.join("tmp")).is_empty());
}

/// The staging directory is only a guess from the LDA's own templates: lookupd's answer
/// alone decides where the message goes.
#[test]
fn a_wrong_staging_guess_still_delivers_where_lookupd_says() {
    let d = Directory::new();
    let lookupd = Lookupd::start(&d);
    let decoy_db = d.db_config.replace("/vmail/%d/%n", "/decoy/%d/%n");
    assert_ne!(decoy_db, d.db_config);
    let cfg = d.lda_config("decoy.toml", &lookupd.socket, &decoy_db);
    let decoy = d.path().join("decoy/example.org/alice/Maildir");
    make_maildir(&decoy);
    let r = "alice@example.org";
    let (o, staged) = lda_timed(&cfg, r, &with_delivered_to(r));
    assert_eq!(o.status.code(), Some(0), "{}", line(&o));
    assert!(staged);
    assert!(all_files(&decoy).is_empty(), "{:?}", all_files(&decoy));
    let inbox = d.inbox("alice");
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        std::fs::read(&inbox[0]).unwrap(),
        [
            b"Return-Path: <bob@remote.test>\n".as_slice(),
            &with_delivered_to(r)
        ]
        .concat()
    );
}

/// Trouble after the question went out (lookupd's TEMP, a closed connection): defer, and
/// the staged message is gone.
#[test]
fn lookupd_trouble_after_staging_defers_and_leaves_nothing() {
    let d = Directory::new();
    let md = d.path().join("vmail/example.org/alice/Maildir");
    make_maildir(&md);
    for (i, answer) in [&b"21:TEMP database is down,"[..], b"", b"9:NOTFO"]
        .into_iter()
        .enumerate()
    {
        let socket = d.path().join(format!("fake{i}"));
        let t = fake_lookupd(&socket, answer);
        let cfg = d.lda_config(&format!("fake{i}.toml"), &socket, &d.db_config);
        let r = "alice@example.org";
        let (o, staged) = lda_timed(&cfg, r, &with_delivered_to(r));
        assert_eq!(o.status.code(), Some(75), "{answer:?}: {}", line(&o));
        assert!(line(&o).starts_with("4.4.3"), "{}", line(&o));
        assert!(staged, "{answer:?}: not staged");
        t.join().unwrap();
        assert!(all_files(&md).is_empty(), "{:?}", all_files(&md));
    }
}

/// The answer's wait starts when the LDA is done writing: a message that took longer to
/// write than `lookupd_timeout_ms` must not defer for an answer that was there long ago.
#[test]
fn time_spent_writing_is_not_counted_against_lookupd() {
    let d = Directory::new();
    let socket = d.path().join("fake-slow-writer");
    let t = fake_lookupd(&socket, b"9:NOTFOUND ,");
    let endpoint = format!("unix:{}", socket.display());
    let timeout = std::time::Duration::from_millis(100);
    let pending = vmail_lda::resolve::ask(&endpoint, "nobody@example.org", timeout)
        .unwrap_or_else(|r| panic!("ask: {r:?}"));
    std::thread::sleep(timeout * 3);
    assert_eq!(pending.answer(), vmail_lda::resolve::Resolved::Unknown);
    t.join().unwrap();
}

/// When the early write fails (too big), the outcome is the one the usual delivery gives:
/// the answer first (unknown: 5.1.1), then a mailbox already over quota (deferred, as
/// configured), and only then the size.
#[test]
fn a_failed_early_write_reports_what_the_usual_delivery_would() {
    let d = Directory::new();
    let lookupd = Lookupd::start(&d);
    let cfg = lda_config_own_templates(&d, "small.toml", &lookupd.socket);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("max_message_size = 60\nover_quota = \"defer\"\n");
    std::fs::write(&cfg, text).unwrap();
    for user in ["alice", "gone", "full"] {
        make_maildir(&d.path().join(format!("vmail/example.org/{user}/Maildir")));
    }
    // full@ is over its 10 bytes already.
    let full = d.path().join("vmail/example.org/full/Maildir");
    std::fs::write(full.join("cur/1.M1P1.x,S=100:2,S"), vec![b'x'; 100]).unwrap();

    let big = |r: &str| [with_delivered_to(r), vec![b'x'; 100]].concat();
    for (user, code, status) in [
        ("alice", 65, "5.3.4"),
        ("gone", 67, "5.1.1"),
        ("full", 75, "4.2.2"),
    ] {
        let r = format!("{user}@example.org");
        let (o, staged) = lda_timed(&cfg, &r, &big(&r));
        assert_eq!(o.status.code(), Some(code), "{r}: {}", line(&o));
        assert!(line(&o).starts_with(status), "{r}: {}", line(&o));
        assert!(staged, "{r}: not staged");
    }
    assert!(d.inbox("alice").is_empty());
    for sub in ["tmp", "new"] {
        assert!(all_files(&full.join(sub)).is_empty(), "{sub}");
    }
}

/// A row `alice/.@example.org` written with plain SQL (issue 15): lookupd answers TEMP, and
/// the LDA neither stages in nor delivers to alice's Maildir, whose templates it would share.
#[test]
fn a_row_sharing_alice_s_maildir_is_neither_staged_nor_delivered() {
    let d = Directory::new();
    rusqlite::Connection::open(d.path().join("v.db"))
        .unwrap()
        .execute_batch("INSERT INTO users (email, password) VALUES ('alice/.@example.org', 'x');")
        .unwrap();
    let alice = d.path().join("vmail/example.org/alice/Maildir");
    make_maildir(&alice);
    let lookupd = Lookupd::start(&d);
    let cfg = d.lda_config("lda.toml", &lookupd.socket, &d.db_config);
    for r in ["alice/.@example.org", "alice/.+x@example.org"] {
        let (o, staged) = lda_timed(&cfg, r, &with_delivered_to(r));
        assert_eq!(o.status.code(), Some(75), "{r}: {}", line(&o));
        assert!(!staged, "{r}: staged in alice's Maildir");
        assert!(all_files(&alice).is_empty(), "{r}: {:?}", all_files(&alice));
    }
}
