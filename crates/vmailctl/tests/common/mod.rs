//! What every vmailctl test file uses: the real binary with a config, stdin and its output.

#![allow(dead_code)] // each test file uses its own part

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn vmailctl(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmailctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("VMAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmailctl");
    // Commands that read no password may exit before we write: a closed pipe is fine.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("vmailctl")
}

pub fn ok(config: &Path, args: &[&str], stdin: &str) -> String {
    let o = vmailctl(config, args, stdin);
    assert!(
        o.status.success(),
        "vmailctl {args:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

pub fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("vmail.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// A configuration on an SQLite file `v.db` in `dir`.
pub fn sqlite_config(dir: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[database]\nsqlite_path = \"{}\"\n",
            dir.join("v.db").display()
        ),
    )
}

/// A configuration on a fresh MariaDB database, or None where the test database is absent
/// (the database is dropped with the returned handle).
pub fn mariadb_config(
    dir: &Path,
    name: &str,
) -> Option<(vmail_test_support::TestDb, std::path::PathBuf)> {
    let db = vmail_test_support::TestDb::create(name)?;
    let cfg = write_config(
        dir,
        &format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"{}\"]\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"{}\"\n",
            db.host, db.user, db.password, db.name
        ),
    );
    Some((db, cfg))
}

/// A configuration whose MariaDB is down: a closed port, short timeouts.
pub fn down_config(dir: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"127.0.0.1:{}\"]\nconnect_timeout_ms = 300\nquery_timeout_ms = 1000\n",
            vmail_test_support::free_port()
        ),
    )
}
