//! Fault injection: permissions (as `nobody` in a child, since root ignores modes), a full
//! file system (a 256 KiB tmpfs), a read-only file system, a file size limit (EFBIG), a
//! delivery SIGKILLed halfway, and peak memory of a 32 MiB delivery.
//!
//! Child processes re-run this test binary with only `child_deliver` selected; it reads
//! its job from `VMAIL_CHILD_*` variables, prints `HWM <kB> <kB>` and `RESULT ...` lines,
//! and exits with the delivery's exit code, as the LDA would.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vmail_maildir::{deliver, Delivery, Error};
use vmail_test_support::maildir::*;
use vmail_test_support::Tmpfs;

const NOBODY: u32 = 65534;

/// Peak resident set size of this process, in kB.
fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "helper: runs in a child process started by the fault-injection tests"]
fn child_deliver() {
    let Ok(maildir) = std::env::var("VMAIL_CHILD_MAILDIR") else {
        return;
    };
    if let Ok(limit) = std::env::var("VMAIL_CHILD_FSIZE") {
        let limit: libc::rlim_t = limit.parse().unwrap();
        let rl = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: plain syscalls. Without ignoring SIGXFSZ the write past the limit kills
        // the process instead of failing with EFBIG.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0);
        }
    }
    if let Ok(uid) = std::env::var("VMAIL_CHILD_UID") {
        let id: u32 = uid.parse().unwrap();
        nix::unistd::setgroups(&[]).unwrap();
        nix::unistd::setgid(nix::unistd::Gid::from_raw(id)).unwrap();
        nix::unistd::setuid(nix::unistd::Uid::from_raw(id)).unwrap();
        assert!(nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_err());
    }
    let d = Delivery::new(Path::new(&maildir), "child");
    let input = std::env::var("VMAIL_CHILD_INPUT").unwrap();
    let before = vm_hwm_kib();
    let result = if input == "stdin" {
        deliver(&d, &mut std::io::stdin().lock())
    } else if let Some(n) = input.strip_prefix("gen:") {
        deliver(&d, &mut GenReader::new(n.parse().unwrap()))
    } else if let Some(n) = input.strip_prefix("slurp:") {
        // Calibration: what holding the whole message in memory looks like.
        let mut all = Vec::new();
        GenReader::new(n.parse().unwrap())
            .read_to_end(&mut all)
            .unwrap();
        deliver(&d, &mut Cursor::new(all))
    } else {
        panic!("bad VMAIL_CHILD_INPUT {input}");
    };
    let after = vm_hwm_kib();
    println!("HWM {before} {after}");
    let code = match result {
        Ok(got) => {
            println!("RESULT ok {} {}", got.size, got.path.display());
            0
        }
        Err(e) => {
            println!("RESULT err {} {} {e}", e.exit_code(), e.is_temporary());
            e.exit_code()
        }
    };
    std::io::stdout().flush().unwrap();
    std::process::exit(code);
}

fn child(maildir: &Path, input: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "child_deliver",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("VMAIL_CHILD_MAILDIR", maildir)
    .env("VMAIL_CHILD_INPUT", input)
    .env_remove("VMAIL_CHILD_UID")
    .env_remove("VMAIL_CHILD_FSIZE")
    .stdin(Stdio::null());
    c
}

fn line<'a>(out: &'a Output, prefix: &str) -> &'a str {
    let stdout = std::str::from_utf8(&out.stdout).unwrap();
    stdout
        .lines()
        // The harness may print "test child_deliver ... " before our text on that line.
        .find_map(|l| l.find(prefix).map(|at| &l[at + prefix.len()..]))
        .unwrap_or_else(|| {
            panic!(
                "no {prefix:?} line; stdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A Maildir in a fresh temp dir that the child's user can reach; returns the uid the
/// child should drop to (root ignores permission bits, so as root the child runs as
/// `nobody` over `nobody`-owned directories).
fn maildir_for_child() -> (tempfile::TempDir, PathBuf, Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let md = dir.path().join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    let uid = if is_root() {
        for p in [&md, &md.join("tmp"), &md.join("new"), &md.join("cur")] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        Some(NOBODY)
    } else {
        None
    };
    (dir, md, uid)
}

fn run_as(md: &Path, uid: Option<u32>, input: &str) -> Output {
    let mut c = child(md, input);
    if let Some(uid) = uid {
        c.env("VMAIL_CHILD_UID", uid.to_string());
    }
    c.output().unwrap()
}

#[test]
fn unwritable_tmp_is_a_temporary_failure() {
    let (_dir, md, uid) = maildir_for_child();
    // Control: the same user can deliver when tmp/ is writable.
    let ok = run_as(&md, uid, "gen:1000");
    assert_eq!(ok.status.code(), Some(0), "{}", line(&ok, "RESULT "));
    for f in names(&md.join("new")) {
        fs::remove_file(md.join("new").join(f)).unwrap();
    }

    chmod(&md.join("tmp"), 0o500);
    let out = run_as(&md, uid, "gen:1000");
    let result = line(&out, "RESULT ");
    assert_eq!(out.status.code(), Some(75), "{result}");
    assert!(result.starts_with("err 75 true create "), "{result}");
    assert!(result.contains("Permission denied"), "{result}");
    assert_no_messages(&md);
}

#[test]
fn unwritable_new_is_a_temporary_failure_and_tmp_is_cleaned() {
    let (_dir, md, uid) = maildir_for_child();
    chmod(&md.join("new"), 0o500);
    let out = run_as(&md, uid, "gen:100000");
    let result = line(&out, "RESULT ");
    assert_eq!(out.status.code(), Some(75), "{result}");
    assert!(result.starts_with("err 75 true link "), "{result}");
    assert_no_messages(&md);
}

#[test]
fn file_size_limit_efbig_is_a_temporary_failure() {
    let (_dir, md, _) = maildir_for_child();
    let out = child(&md, "gen:1048576")
        .env("VMAIL_CHILD_FSIZE", "65536")
        .output()
        .unwrap();
    let result = line(&out, "RESULT ");
    assert_eq!(out.status.code(), Some(75), "{result}");
    assert!(result.contains("File too large"), "{result}");
    assert_no_messages(&md);

    // Control: a limit above the message size does not get in the way.
    let out = child(&md, "gen:1048576")
        .env("VMAIL_CHILD_FSIZE", "4194304")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", line(&out, "RESULT "));
}

#[test]
fn killed_mid_write_leaves_nothing_in_new() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    let mut proc = child(&md, "stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = proc.stdin.take().unwrap();
    stdin.write_all(b"Subject: slow\r\n\r\n").unwrap();
    let line = [b'y'; 1022];
    for _ in 0..300 {
        stdin.write_all(&line).unwrap();
        stdin.write_all(b"\r\n").unwrap();
    }
    stdin.flush().unwrap();
    // Wait until the child has written part of the message into tmp/.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tmp_len = loop {
        let len: u64 = names(&md.join("tmp"))
            .iter()
            .filter_map(|n| fs::metadata(md.join("tmp").join(n)).ok())
            .map(|m| m.len())
            .sum();
        if len >= 256 * 1024 {
            break len;
        }
        assert!(Instant::now() < deadline, "child never wrote to tmp/");
        std::thread::sleep(Duration::from_millis(10));
    };
    proc.kill().unwrap(); // SIGKILL, pipe still open: the child is mid-message
    let status = proc.wait().unwrap();
    drop(stdin);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(names(&md.join("new")).is_empty(), "partial message in new/");
    assert!(names(&md.join("cur")).is_empty());
    // The partial file stays in tmp/ (Dovecot removes tmp/ files older than 36 hours).
    let left = names(&md.join("tmp"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(tmp_len < 300 * 1024 + 100);
}

#[test]
fn peak_memory_does_not_grow_with_the_message() {
    const SIZE: u64 = 32 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");

    let out = child(&md, &format!("gen:{SIZE}")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", line(&out, "RESULT "));
    let hwm: Vec<u64> = line(&out, "HWM ")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let grew_kib = hwm[1] - hwm[0];
    eprintln!("streaming 32 MiB: VmHWM {} -> {} kB", hwm[0], hwm[1]);
    assert!(grew_kib < 4 * 1024, "peak RSS grew by {grew_kib} kB");
    let delivered = only_file(&md.join("new"));
    assert!(fs::metadata(&delivered).unwrap().len() > SIZE * 95 / 100);

    // Calibration: the same measurement does see a message held in memory.
    let out = child(&md, &format!("slurp:{SIZE}")).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let hwm: Vec<u64> = line(&out, "HWM ")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    eprintln!("slurping 32 MiB: VmHWM {} -> {} kB", hwm[0], hwm[1]);
    assert!(hwm[1] - hwm[0] >= SIZE / 1024, "{hwm:?}");
}

#[test]
fn full_file_system_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _fs = match Tmpfs::mount(&mnt, "256k") {
        Ok(m) => m,
        Err(why) => {
            vmail_test_support::skip(
                "full_file_system_is_a_temporary_failure",
                &format!("cannot mount tmpfs: {why}"),
            );
            return;
        }
    };
    let md = mnt.join("Maildir");
    let d = Delivery::new(&md, "h");
    let mut gen = GenReader::new(1024 * 1024);
    let e = deliver(&d, &mut gen).unwrap_err();
    match &e {
        Error::Io { op, source, .. } => {
            assert_eq!(*op, "write");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_temporary());
    assert_eq!(e.exit_code(), 75);
    assert_eq!(e.enhanced_status(), "4.3.1");
    assert_no_messages(&md);
    // The space of the partial file was given back: a small message still fits.
    deliver(&d, &mut Cursor::new(b"S: small\n\nb\n")).unwrap();
    assert_eq!(names(&md.join("new")).len(), 1);
}

#[test]
fn read_only_file_system_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let fs_guard = match Tmpfs::mount(&mnt, "1m") {
        Ok(m) => m,
        Err(why) => {
            vmail_test_support::skip(
                "read_only_file_system_is_a_temporary_failure",
                &format!("cannot mount tmpfs: {why}"),
            );
            return;
        }
    };
    let md = mnt.join("Maildir");
    let d = Delivery::new(&md, "h");
    deliver(&d, &mut Cursor::new(b"S: before\n\nb\n")).unwrap();
    fs_guard.remount_ro();
    let e = deliver(&d, &mut Cursor::new(b"S: after\n\nb\n")).unwrap_err();
    match &e {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::EROFS)),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.exit_code(), 75);
    assert_eq!(names(&md.join("new")).len(), 1);
    assert!(names(&md.join("tmp")).is_empty());
}
