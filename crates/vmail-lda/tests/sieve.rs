//! Issue 19 item 1: a recipient with an active Sieve script gets the message through Dovecot's
//! LDA (here a stand-in that records its argv and stdin and exits as told), with the same
//! envelope and the message as Postfix gave it (after vmail's own trace fields); everybody
//! else's is written by vmail-lda.
//! Whatever Dovecot's LDA does, the result is one pipe(8) understands, never a silent drop.

use std::path::{Path, PathBuf};
use std::process::Output;

mod direct;
mod fixture;

use fixture::{run_lda as lda, Directory, Lookupd};

/// As pipe(8) with `flags=DRhu` hands it over: its trace fields first, CRLF nowhere.
const MSG: &[u8] = b"Return-Path: <bob@remote.test>\nDelivered-To: alice+lists@example.org\nFrom: bob@remote.test\nTo: alice@example.org\nSubject: hi\n\nHello.\n";

/// The shared directory (alice, bob; homes under `DIR/vmail`), and a stand-in dovecot-lda at
/// `DIR/dovecot-lda` that writes its arguments (one a line) to `DIR/argv` and its stdin to
/// `DIR/stdin`, then exits with the status in `DIR/status` (0 without one; `kill`: SIGKILL;
/// `hang`: waits for a `sleep 60` whose pid is in `DIR/sleeper`). With a file `DIR/spawn`,
/// it starts that `sleep 60` first, as a child of its own.
struct World {
    d: Directory,
}

impl World {
    fn new() -> World {
        let d = Directory::new();
        let fake = d.path().join("dovecot-lda");
        std::fs::write(
            &fake,
            "#!/bin/sh\nd=$(dirname \"$0\")\n\
             [ -f \"$d/spawn\" ] && { sleep 60 & echo $! > \"$d/sleeper\"; }\n\
             printf '%s\\n' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\n\
             s=$(cat \"$d/status\" 2>/dev/null || echo 0)\n\
             [ \"$s\" = kill ] && kill -9 $$\n\
             [ \"$s\" = hang ] && { sleep 60 & echo $! > \"$d/sleeper\"; wait; }\nexit \"$s\"\n",
        )
        .unwrap();
        vmail_test_support::set_mode(&fake, 0o755);
        World { d }
    }

    fn path(&self) -> &Path {
        self.d.path()
    }

    fn home(&self, user: &str) -> PathBuf {
        self.path().join("vmail/example.org").join(user)
    }

    /// Gives `user` an active script as ManageSieve keeps it: a link into `~/sieve/`.
    fn give_script(&self, user: &str) {
        let sieve = self.home(user).join("sieve");
        std::fs::create_dir_all(&sieve).unwrap();
        std::fs::write(sieve.join("main.sieve"), "keep;\n").unwrap();
        std::os::unix::fs::symlink("sieve/main.sieve", self.home(user).join(".dovecot.sieve"))
            .unwrap();
    }

    /// The LDA's config: the directory's, plus `lda` lines under `[lda]`.
    fn config(&self, lda: &str) -> PathBuf {
        let p = self.path().join("lda.toml");
        let fake = self.path().join("dovecot-lda");
        std::fs::write(
            &p,
            format!(
                "{}\n[lda]\ndovecot_lda = \"{}\"\n{lda}\n",
                self.d.db_config,
                fake.display()
            ),
        )
        .unwrap();
        p
    }

    fn set_status(&self, status: &str) {
        std::fs::write(self.path().join("status"), status).unwrap();
    }

    /// What the stand-in was given, if it ran since the last call: (argv, stdin). Taken, so
    /// that a later call does not see this run's record as its own.
    fn handed(&self) -> Option<(Vec<String>, Vec<u8>)> {
        let (argv_file, stdin_file) = (self.path().join("argv"), self.path().join("stdin"));
        let argv = std::fs::read_to_string(&argv_file).ok()?;
        // Written after argv: wait for the `cat` only as long as the process lived.
        let stdin = std::fs::read(&stdin_file).unwrap_or_default();
        let _ = std::fs::remove_file(argv_file);
        let _ = std::fs::remove_file(stdin_file);
        Some((argv.lines().map(String::from).collect(), stdin))
    }

    fn files(&self, user: &str, sub: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.home(user).join("Maildir").join(sub))
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

const ENVELOPE: [&str; 6] = [
    "-f",
    "bob@remote.test",
    "-a",
    "alice+lists@example.org",
    "-d",
    "alice+lists@example.org",
];

fn said(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_recipient_with_a_script_gets_the_message_through_dovecot_lda() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("");
    let o = lda(&cfg, &ENVELOPE, MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (argv, stdin) = w.handed().expect("dovecot-lda ran");
    assert_eq!(
        argv,
        [
            "-d",
            "alice@example.org",
            "-r",
            "alice+lists@example.org",
            "-a",
            "alice+lists@example.org",
            "-f",
            "bob@remote.test"
        ]
    );
    assert_eq!(stdin, MSG, "the message as Postfix gave it");
    assert!(w.files("alice", "new").is_empty() && w.files("alice", "tmp").is_empty());

    // dovecot-lda's own options pass on, and -m; a null sender stays null.
    let o = lda(
        &cfg,
        &[
            "-c",
            "/etc/dovecot/x.conf",
            "-o",
            "a=b",
            "-e",
            "-f",
            "",
            "-d",
            "alice@example.org",
            "-m",
            "Lists",
        ],
        b"Subject: x\n\nbody\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (argv, stdin) = w.handed().unwrap();
    assert_eq!(
        argv,
        [
            "-c",
            "/etc/dovecot/x.conf",
            "-o",
            "a=b",
            "-e",
            "-d",
            "alice@example.org",
            "-r",
            "alice@example.org",
            "-a",
            "alice@example.org",
            "-f",
            "",
            "-m",
            "Lists"
        ]
    );
    // Dovecot's LDA adds neither Return-Path nor Delivered-To: vmail's own fields go first.
    assert_eq!(
        String::from_utf8_lossy(&stdin),
        "Return-Path: <>\nDelivered-To: alice@example.org\nSubject: x\n\nbody\n"
    );
}

/// Without pipe(8)'s D and R flags, Dovecot's LDA gets the Return-Path and Delivered-To
/// vmail would have written; so a message a Sieve `redirect` sends back is a loop.
#[test]
fn dovecot_lda_gets_vmail_s_trace_fields_and_a_redirect_back_is_a_loop() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("");
    let bare = b"From: bob@remote.test\nSubject: hi\n\nHello.\n";
    let o = lda(&cfg, &ENVELOPE, bare);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (_, stdin) = w.handed().expect("dovecot-lda ran");
    let want = [
        &b"Return-Path: <bob@remote.test>\nDelivered-To: alice+lists@example.org\n"[..],
        bare,
    ]
    .concat();
    assert_eq!(
        String::from_utf8_lossy(&stdin),
        String::from_utf8_lossy(&want)
    );
    // What Dovecot's LDA would redirect, back at the same address through Postfix (which
    // puts its Received: on top): a loop.
    let back = [&b"Received: by mx.example.org (Postfix)\n"[..], &stdin].concat();
    let o = lda(&cfg, &ENVELOPE, &back);
    assert_eq!(o.status.code(), Some(69), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("5.4.6 "),
        "{}",
        said(&o)
    );
    assert!(w.handed().is_none());
}

#[test]
fn without_a_script_vmail_delivers_itself() {
    let w = World::new();
    w.give_script("alice");
    let o = lda(&w.config(""), &["-d", "bob@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(w.handed().is_none(), "dovecot-lda ran for bob");
    assert_eq!(w.files("bob", "new").len(), 1);
    // `sieve_script = ""` turns the hand-off off.
    let o = lda(&w.config("sieve_script = \"\""), &ENVELOPE, MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(
        w.handed().is_none(),
        "dovecot-lda ran with the hand-off off"
    );
    assert_eq!(w.files("alice", "new").len(), 1);
    // Another name under the home.
    let o = lda(
        &w.config("sieve_script = \"sieve/main.sieve\""),
        &ENVELOPE,
        MSG,
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(w.handed().is_some());
    assert_eq!(w.files("alice", "new").len(), 1);
}

#[test]
fn dovecot_lda_failing_is_a_temporary_failure_and_its_verdicts_pass_through() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("");
    // 64 (an argument it refuses) and 67 (Dovecot's userdb disagrees) are local problems.
    for (status, want) in [
        ("67", 75),
        ("64", 75),
        ("77", 77),
        ("75", 75),
        ("1", 75),
        ("kill", 75),
        ("0", 0),
    ] {
        w.set_status(status);
        let o = lda(&cfg, &ENVELOPE, MSG);
        assert_eq!(o.status.code(), Some(want), "status {status}: {}", said(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        if want == 75 && status != "75" {
            let code = if status.starts_with('6') {
                "4.3.5 "
            } else {
                "4.3.0 "
            };
            assert!(out.starts_with(code), "status {status}: {out}");
        }
        assert!(w.files("alice", "new").is_empty(), "status {status}");
    }
    // Missing: 75 with the reason.
    let missing = w.path().join("lda2.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("/dovecot-lda\"", "/no-such-lda\"");
    std::fs::write(&missing, text).unwrap();
    let o = lda(&missing, &ENVELOPE, MSG);
    assert_eq!(o.status.code(), Some(75), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no-such-lda"),
        "{}",
        said(&o)
    );
    assert!(w.files("alice", "new").is_empty());
}

#[test]
fn a_hostile_sieve_script_is_refused_at_config_load() {
    let w = World::new();
    for bad in ["../bob/.dovecot.sieve", "/etc/passwd", "sieve/../../x"] {
        let o = lda(
            &w.config(&format!("sieve_script = \"{bad}\"")),
            &ENVELOPE,
            MSG,
        );
        assert_eq!(o.status.code(), Some(75), "{bad}: {}", said(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("lda.sieve_script"),
            "{bad}: {}",
            said(&o)
        );
        assert!(w.handed().is_none());
    }
}

/// With lookupd, the message is written into the Maildir's `tmp/` while lookupd answers;
/// for a recipient with a script, Dovecot's LDA is fed from that file, which goes whatever
/// the outcome: nothing in `tmp/` or `new/`.
#[test]
fn a_message_staged_while_lookupd_answers_goes_to_dovecot_lda_and_leaves_nothing() {
    let w = World::new();
    w.give_script("alice");
    let lookupd = Lookupd::start(&w.d);
    let socket = &lookupd.socket;
    let maildir = w.home("alice").join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let cfg = w.config(&format!(
        "lookupd = \"unix:{}\"\nlookupd_timeout_ms = 2000",
        socket.display()
    ));
    // Without Return-Path: vmail stages it with one from -f, which dovecot-lda gets too.
    let msg = &MSG[MSG.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let with_return_path = [&b"Return-Path: <bob@remote.test>\n"[..], msg].concat();
    for status in ["0", "75", "kill", "67", "77"] {
        w.set_status(status);
        let o = lda(&cfg, &ENVELOPE, msg);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(" stage="),
            "not staged: {}",
            said(&o)
        );
        let want = if status == "77" {
            77
        } else if status == "0" {
            0
        } else {
            75
        };
        assert_eq!(o.status.code(), Some(want), "{status}: {}", said(&o));
        let (_, stdin) = w.handed().expect("dovecot-lda ran");
        assert_eq!(stdin, with_return_path, "{status}");
        for sub in ["tmp", "new"] {
            assert!(w.files("alice", sub).is_empty(), "{status}: {sub}/");
        }
    }
}

/// `[lda] max_message_size` holds for Sieve users too (Dovecot's LDA is killed before it
/// sees the end), and a link in a circle is no script, as a dangling one is not.
#[test]
fn a_message_too_big_is_refused_and_a_link_in_a_circle_is_no_script() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("max_message_size = 1000");
    let big = [MSG, &vec![b'x'; 300_000][..]].concat();
    let o = lda(&cfg, &ENVELOPE, &big);
    assert_eq!(o.status.code(), Some(65), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("5.3.4 "),
        "{}",
        said(&o)
    );
    // Killed with what it started (a child of its own would still hold part of the
    // message). Past a pipe's buffer before the limit, so that the stand-in has started
    // its child and is reading when the limit is reached.
    std::fs::write(w.path().join("spawn"), "").unwrap();
    let cfg_200k = w.config("max_message_size = 200000");
    let o = lda(&cfg_200k, &ENVELOPE, &big);
    assert_eq!(o.status.code(), Some(65), "{}", said(&o));
    let sleeper = std::fs::read_to_string(w.path().join("sleeper")).unwrap();
    let stat = format!("/proc/{}/stat", sleeper.trim());
    let alive = std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the LDA's child survived a refused message: {stat}");
    std::fs::remove_file(w.path().join("spawn")).unwrap();
    let o = lda(&cfg, &ENVELOPE, MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert_eq!(w.handed().unwrap().1, MSG);

    std::fs::create_dir_all(w.home("bob")).unwrap();
    let link = w.home("bob").join(".dovecot.sieve");
    std::os::unix::fs::symlink(".dovecot.sieve", &link).unwrap();
    let o = lda(&cfg, &["-d", "bob@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    assert!(w.handed().is_none(), "dovecot-lda ran for a looping link");
    assert_eq!(w.files("bob", "new").len(), 1);
}

/// dovecot-lda exits 64 for an -a or -r it cannot parse, which pipe(8) bounced: such an
/// address is left out, and a 64 or 67 defers with 4.3.5 (vmail found the user active).
#[test]
fn an_address_dovecot_lda_refuses_is_left_out_and_its_usage_error_defers() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("");
    for odd in [
        "jürgen@example.org",
        "john smith@example.org",
        "a(b@example.org",
    ] {
        let o = lda(&cfg, &["-a", odd, "-d", "alice@example.org"], MSG);
        assert_eq!(o.status.code(), Some(0), "{odd}: {}", said(&o));
        let (argv, _) = w.handed().expect("dovecot-lda ran");
        assert_eq!(
            argv,
            ["-d", "alice@example.org", "-r", "alice@example.org"],
            "{odd}"
        );
    }
    let o = lda(&cfg, &["-d", "alice+jürgen@example.org"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (argv, _) = w.handed().expect("dovecot-lda ran");
    assert_eq!(argv, ["-d", "alice@example.org"]);
    for status in ["64", "67", "78"] {
        w.set_status(status);
        let o = lda(&cfg, &ENVELOPE, MSG);
        assert_eq!(o.status.code(), Some(75), "{status}: {}", said(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("4.3.5 "), "{status}: {out}");
        assert!(out.contains(&format!("status {status}")), "{status}: {out}");
    }
}

/// vmail's quota (`users.quota`, `[lda] over_quota`) holds for a recipient with a script:
/// Dovecot's LDA enforces none of its own unless its quota plugin is set up. full@ may store
/// 10 bytes: a mailbox over that already refuses before the message is read, and a staged
/// message that does not fit is refused by its size.
#[test]
fn the_quota_holds_for_a_recipient_with_a_script() {
    let w = World::new();
    w.give_script("full");
    let maildir = w.home("full").join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let full = ["-f", "bob@remote.test", "-d", "full@example.org"];
    // Staged while lookupd answers: it fits nowhere in 10 bytes.
    let lookupd = Lookupd::start(&w.d);
    let staged = w.config(&format!(
        "lookupd = \"unix:{}\"\nlookupd_timeout_ms = 2000",
        lookupd.socket.display()
    ));
    // As pipe(8)'s D flag hands it over: staged while lookupd answers.
    let msg = b"Delivered-To: full@example.org\nSubject: hi\n\nHello.\n";
    let o = lda(&staged, &full, msg);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(" stage="),
        "{}",
        said(&o)
    );
    assert_eq!(o.status.code(), Some(69), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("5.2.2 "),
        "{}",
        said(&o)
    );
    assert!(
        w.handed().is_none(),
        "dovecot-lda ran for a message over quota"
    );
    assert!(w.files("full", "tmp").is_empty());
    // Over quota already: refused (or deferred) before anything is read.
    std::fs::write(maildir.join("cur/1.M1P1.x,S=100:2,S"), vec![b'x'; 100]).unwrap();
    // Counted afresh (the file above was not delivered through it).
    let _ = std::fs::remove_file(maildir.join("maildirsize"));
    for (over_quota, code, status) in [("bounce", 69, "5.2.2 "), ("defer", 75, "4.2.2 ")] {
        let cfg = w.config(&format!("over_quota = \"{over_quota}\""));
        let o = lda(&cfg, &full, MSG);
        assert_eq!(o.status.code(), Some(code), "{over_quota}: {}", said(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with(status),
            "{}",
            said(&o)
        );
        assert!(w.handed().is_none(), "{over_quota}: dovecot-lda ran");
    }
}

/// A hung Dovecot's LDA was waited for until pipe(8)'s command_time_limit killed vmail-lda
/// and bounced the message: after `[lda] dovecot_lda_timeout_ms` it is killed with what it
/// started (its process group), and the message deferred with the reason.
#[test]
fn a_hung_dovecot_lda_is_killed_with_its_children_and_the_message_deferred() {
    let w = World::new();
    w.give_script("alice");
    w.set_status("hang");
    let cfg = w.config("dovecot_lda_timeout_ms = 500");
    let start = std::time::Instant::now();
    let o = lda(&cfg, &ENVELOPE, MSG);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(o.status.code(), Some(75), "{}", said(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("4.3.0 "), "{out}");
    assert!(out.contains("dovecot_lda_timeout_ms"), "{out}");
    let sleeper = std::fs::read_to_string(w.path().join("sleeper")).unwrap();
    let stat = format!("/proc/{}/stat", sleeper.trim());
    // Gone, or a zombie waiting for whoever reaps orphans here.
    let alive = std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the LDA's child survived: {stat}");
}

/// The folder vmail-lda would deliver into (`[lda] folder_from_extension` here) is Dovecot's
/// LDA's `-m` too, and Dovecot's spelling of the script's path, `~/.dovecot.sieve`, is the
/// same path under the home.
#[test]
fn the_folder_vmail_chose_is_dovecot_lda_s_and_a_tilde_path_is_under_the_home() {
    let w = World::new();
    w.give_script("alice");
    let cfg = w.config("folder_from_extension = true\nsieve_script = \"~/.dovecot.sieve\"");
    let o = lda(&cfg, &ENVELOPE, MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (argv, _) = w.handed().expect("dovecot-lda ran for ~/.dovecot.sieve");
    assert_eq!(argv[argv.len() - 2..], ["-m", "lists"], "{argv:?}");
    // -m INBOX is no folder; without an extension there is none.
    let o = lda(&cfg, &["-d", "alice@example.org", "-m", "INBOX"], MSG);
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let (argv, _) = w.handed().unwrap();
    assert!(!argv.contains(&"-m".to_string()), "{argv:?}");
    assert!(w.handed().is_none(), "the record of one run seen twice");
}
