//! What the end-to-end tests (`tests/`) share: the lane they run in (`lane.rs`), the
//! shipped `contrib/` files turned into the test's configuration (`crate::contrib`), the
//! vmail daemons as real processes and the setup shared by a file's tests
//! (`crate::process`), the whole wired stack (`stack.rs`), swaks (`smtp.rs`), and Maildir
//! helpers.

pub mod lane;
pub mod sieve;
pub mod smtp;
pub mod stack;

pub use crate::contrib::*;
pub use crate::process::*;
pub use crate::MailUser;
pub use lane::*;
pub use smtp::*;
pub use stack::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::root::SystemRoot;
use crate::wait_until;
pub use crate::{e2e_binaries, shared_setup};

/// The real programs under test, built by the test's package from their own `main.rs`
/// (see `tests/Cargo.toml`), so they are always fresh; [`e2e_binaries!`] names them.
#[derive(Clone, Copy, Debug)]
pub struct Binaries {
    pub lda: &'static str,
    /// What `lda` execs (as `<its own path>-direct`) when lookupd cannot answer.
    pub lda_direct: &'static str,
    pub lookupd: &'static str,
    pub authd: &'static str,
    /// Started only for a stack with [`Transport::Lmtp`].
    pub lmtpd: &'static str,
}

/// The [`Binaries`] of the calling test package (vmail-e2e): Cargo tells their paths only to
/// the tests of the package that builds them, so this expands there.
#[macro_export]
macro_rules! e2e_binaries {
    () => {
        $crate::e2e::Binaries {
            lda: env!("CARGO_BIN_EXE_e2e-vmail-lda"),
            lda_direct: env!("CARGO_BIN_EXE_e2e-vmail-lda-direct"),
            lookupd: env!("CARGO_BIN_EXE_e2e-vmail-lookupd"),
            authd: env!("CARGO_BIN_EXE_e2e-vmail-authd"),
            lmtpd: env!("CARGO_BIN_EXE_e2e-vmail-lmtpd"),
        }
    };
}

pub fn mail_user() -> MailUser {
    MailUser::nobody().expect("the system user `nobody` and group `nogroup`")
}

/// A self-signed certificate and key for the submission smtpd, made the way an administrator
/// would: `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `doveadm pw -s SCHEME -p PASSWORD` of `root`'s Dovecot, exactly as printed (with its
/// `{SCHEME}` prefix), as an administrator makes hashes.
pub fn doveadm_pw(root: &SystemRoot, scheme: &str, password: &str) -> String {
    let out = root
        .command("doveadm")
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("run doveadm pw");
    assert!(
        out.status.success(),
        "doveadm pw -s {scheme}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with(&format!("{{{scheme}}}")), "{hash}");
    hash
}

/// Fills the directory through the vmail library, with the configuration the daemons use.
pub fn with_directory<T>(
    config: &Path,
    f: impl AsyncFnOnce(&vmail_directory::Directory) -> T,
) -> T {
    let loaded = vmail_config::load(Some(config)).expect("load the test's vmail.toml");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = vmail_directory::Directory::open(&loaded.config)
            .await
            .expect("open the directory");
        f(&d).await
    })
}

/// The files of a Maildir's INBOX (`new/` and `cur/`: Dovecot moves what it has seen).
pub fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flat_map(|r| r.filter_map(|e| e.ok().map(|e| e.path())))
        .collect();
    v.sort();
    v
}

/// The messages in a Maildir's INBOX containing `token`, as (path, text).
pub fn messages_with(maildir: &Path, token: &str) -> Vec<(PathBuf, String)> {
    maildir_files(maildir)
        .into_iter()
        .filter_map(|p| {
            let text = String::from_utf8_lossy(&std::fs::read(&p).ok()?).into_owned();
            text.contains(token).then_some((p, text))
        })
        .collect()
}

/// Waits (up to `timeout`) until a message containing `token` is in the Maildir, then a
/// moment longer so that a duplicate would show too; returns all of them.
pub fn wait_for_message(maildir: &Path, token: &str, timeout: Duration) -> Vec<(PathBuf, String)> {
    if wait_until(timeout, || !messages_with(maildir, token).is_empty()) {
        std::thread::sleep(Duration::from_millis(300));
    }
    messages_with(maildir, token)
}

/// The header section of a stored message (up to the first empty line).
pub fn header(text: &str) -> &str {
    text.split_once("\n\n").map_or(text, |(h, _)| h)
}

/// A message with `token` in the subject and the body.
pub fn message(from: &str, to: &str, token: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {token}\nMessage-ID: <{token}@client.test.invalid>\n\n\
         Body of {token}.\n.a line starting with a dot\n"
    )
}

/// Insists that a stored [`message`] came through the stack's smtpd (its `Received:` line)
/// with its dot-stuffing undone (the line starting with a dot is whole again).
pub fn assert_came_through_smtpd(text: &str) {
    assert!(
        header(text).contains("by test.invalid (Postfix)"),
        "no Received: line of our smtpd: {text}"
    );
    assert!(
        text.contains("\n.a line starting with a dot\n"),
        "dot-stuffing not undone: {text}"
    );
}

/// Insists that smtpd refused `to` at RCPT as an unknown user of one of our domains
/// (contrib's `virtual_mailbox_maps` through lookupd).
pub fn assert_refused_as_unknown(out: &crate::postfix::SmtpOutcome, to: &str) {
    let reply = out
        .rcpt
        .iter()
        .find(|(r, _)| r == to)
        .map(|(_, reply)| reply)
        .unwrap_or_else(|| panic!("no RCPT TO:<{to}>: {}", out.transcript));
    assert_eq!(reply.code, 550, "{}", out.transcript);
    assert!(
        reply.text.starts_with(&format!(
            "5.1.1 <{to}>: Recipient address rejected: User unknown in virtual mailbox table"
        )),
        "{}",
        out.transcript
    );
}

/// Insists that the daemon `d` runs as `user` only: real, effective, saved and filesystem
/// ids, and no supplementary group but its own (contrib's `user =`, here nobody).
pub fn assert_runs_as(d: &DaemonProcess, user: &MailUser) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap_or_else(|e| panic!("{} (pid {}): {e}", d.name, d.pid()));
    let ids = |key: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid:"), [user.uid; 4], "{}: {status}", d.name);
    assert_eq!(ids("Gid:"), [user.gid; 4], "{}: {status}", d.name);
    assert_eq!(ids("Groups:"), [user.gid], "{}: {status}", d.name);
}

/// Insists that `sock` has contrib's socket mode, 0660, and the group `gid`.
pub fn assert_socket(sock: &Path, gid: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    assert_eq!(m.permissions().mode() & 0o7777, 0o660, "{}", sock.display());
    assert_eq!(m.gid(), gid, "{}", sock.display());
}
