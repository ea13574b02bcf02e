//! Durable delivery of one message into a Maildir (Maildir++ folders, Dovecot-compatible
//! `maildirsize` quota) — the storage half of `vmail-lda`, which Postfix's pipe(8) runs once
//! per recipient. Synchronous, bounded memory, no database.
//!
//! The first law is Postfix's: never lose a message, never leave a partial file in `new/`,
//! never report success before the data is on disk. [`deliver`] therefore
//! 1. creates `tmp/<secs>.M<usecs>P<pid>Q<n>.<host>` with O_EXCL, mode 0600;
//! 2. streams the prepended headers and the input into it through a fixed
//!    [`BUFFER_SIZE`] buffer (a 1 GiB message uses the same memory as a 1 KiB one),
//!    converting CRLF to LF, scanning the header section for a `Delivered-To` loop and
//!    stopping early at the size or quota limit;
//! 3. fsyncs the file;
//! 4. link()s it to `new/<name>,S=<size>` — never overwriting (an existing name gets a new
//!    one; rename() only where the file system has no hard links) — and fsyncs `new/`;
//! 5. removes the `tmp/` name and appends the delta to `maildirsize`.
//!
//! Any failure before the end of step 4 removes what was written and returns an error;
//! the caller exits 75 unless the error is permanent ([`Error::is_temporary`]). A process
//! killed mid-write leaves at most a file in `tmp/`, never in `new/`; Dovecot deletes
//! `tmp/` files older than 36 hours when it opens the mailbox (`maildir_check_tmp()`).
//! If fsyncing `new/` fails after the link, the new file is unlinked again so Postfix's
//! retry cannot produce a duplicate.
//!
//! [`Stage`] and [`deliver_staged`] (`staged.rs`) run the same steps in two halves, so that
//! vmail-lda can write and fsync the message while lookupd is still answering.
//!
//! Formats, as Dovecot 2.3 writes and reads them (`maildir-save.c`,
//! `maildir-filename.c`, `quota-maildir.c`):
//! - `S=` is the size of the file as written (prepended headers included, after the LF
//!   conversion), which Dovecot takes as the physical size without a `stat()`. `W=` (the
//!   CRLF size) is not written: Dovecot computes it when first asked.
//! - Names in `new/` carry no `:2,` info: Dovecot only moves a saved message straight to
//!   `cur/` (with `:2,<flags>`) when it has flags, and a delivery has none.
//! - Lines end in LF (Dovecot's default, `mail_save_crlf = no`). Only CR LF pairs are
//!   converted; a lone CR stays, and a message without a final newline is stored exactly
//!   so, as `dovecot-lda` does.
//!
//! ```no_run
//! use std::path::Path;
//! use vmail_maildir::{deliver, Delivery, Quota};
//!
//! let host = vmail_maildir::system_hostname();
//! let mut d = Delivery::new(Path::new("/var/vmail/example.org/alice/Maildir"), &host);
//! d.prepend.push(("Return-Path".into(), "<bob@example.net>".into()));
//! d.prepend.push(("Delivered-To".into(), "alice@example.org".into()));
//! d.loop_check = Some("alice@example.org");
//! d.quota = Some(Quota { max_bytes: Some(1 << 30), max_messages: None });
//! match deliver(&d, &mut std::io::stdin().lock()) {
//!     Ok(_) => std::process::exit(0),
//!     Err(e) => {
//!         eprintln!("{} {e}", e.enhanced_status());
//!         std::process::exit(e.exit_code());
//!     }
//! }
//! ```

mod dirs;
mod error;
mod folder;
mod headers;
mod lf;
mod name;
pub mod quota;
mod staged;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use error::{sysexits, Error, OverQuota};
pub use folder::{folder_target, InvalidFolder, Target, MAX_FOLDER_LEN};
pub use headers::{LoopDetector, MAX_HEADER_SCAN};
pub use name::{escape_hostname, system_hostname, unique_name};
pub use quota::{Quota, Usage};
pub use staged::{deliver_staged, Stage, Staged};

use lf::LfNormalizer;

/// The read buffer size; the write buffer is the same plus the prepended headers. These
/// two buffers are all the memory a delivery uses for the message.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// The read buffer starts this small and doubles up to [`BUFFER_SIZE`] whenever a read fills
/// it: a fresh process takes a page fault for every page it zeroes, and a 1 KiB message
/// should not pay 16 of them (~0.1 ms in a VM) for a buffer only big messages need.
const FIRST_READ: usize = 4 * 1024;

/// One delivery: where, what to add, which limits.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The user's Maildir root (`…/Maildir`); it and its `tmp/ new/ cur/` are created when
    /// missing (mode 0700, missing parents too).
    pub maildir: &'a Path,
    /// A Maildir++ folder in its on-disk form (`Lists`, `Lists.Work` → `.Lists.Work`; see
    /// [`folder_target`]). Used only if its directory exists, else the message goes to
    /// INBOX and [`Delivered::folder`] says so; an invalid name also means INBOX (never
    /// lose the message over a bad `-m` argument).
    pub folder: Option<&'a str>,
    /// Header fields written before the message, in order, as `Name: value\n`
    /// (e.g. `Return-Path`, `Delivered-To`). The caller decides what to add; nothing is
    /// deduplicated. Names must be printable ASCII without `:`, values without CR/LF/NUL.
    pub prepend: Vec<(String, String)>,
    /// Refuse with [`Error::Loop`] if the message's header section already has
    /// `Delivered-To:` with this address (see [`LoopDetector`]).
    pub loop_check: Option<&'a str>,
    /// Maildir++ quota limits; `None` leaves `maildirsize` alone entirely.
    pub quota: Option<Quota>,
    /// Largest stored size accepted (prepended headers included, after LF conversion).
    pub max_size: Option<u64>,
    /// Host name for unique file names (escaped here, see [`escape_hostname`]).
    pub hostname: &'a str,
}

impl<'a> Delivery<'a> {
    /// A delivery to INBOX with nothing prepended and no limits.
    pub fn new(maildir: &'a Path, hostname: &'a str) -> Self {
        Delivery {
            maildir,
            folder: None,
            prepend: Vec::new(),
            loop_check: None,
            quota: None,
            max_size: None,
            hostname,
        }
    }
}

/// A message safely stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The file in `new/`.
    pub path: PathBuf,
    /// Its size in bytes (the `S=` value).
    pub size: u64,
    /// The folder it went to as requested, or `None` for INBOX (including a fallback).
    pub folder: Option<String>,
    /// Things worth logging that did not fail the delivery: a folder fallback, a
    /// `maildirsize` that could not be rewritten or appended to, a `tmp/` name that could
    /// not be removed.
    pub warnings: Vec<String>,
}

/// Delivers one message read from `input`; see the crate documentation for the steps.
pub fn deliver(d: &Delivery<'_>, input: &mut dyn Read) -> Result<Delivered, Error> {
    let head = format_prepend(&d.prepend)?;
    let host = escape_hostname(d.hostname);
    let mut warnings = Vec::new();
    let (mailbox, folder, quota_before) = prepare(d, &host, &mut warnings)?;

    let mut tmp = TmpFile::create(&mailbox.join("tmp"), &host)?;
    let size = write_message(&mut tmp, &head, input, d, quota_before)?;
    tmp.file
        .sync_all()
        .map_err(|e| Error::io("fsync", &tmp.path, e))?;

    // Check again with fresh numbers: other deliveries may have landed while we read.
    if let Some(q) = &d.quota {
        let usage = quota::current_usage(d.maildir, q, &host, &mut warnings)?;
        quota::check(q, usage, size).map_err(Error::OverQuota)?;
    }

    let path = commit(&mut tmp, &mailbox.join("new"), size, &host, &mut warnings)?;
    Ok(delivered(d, path, size, folder, warnings))
}

/// The mailbox directory a delivery goes to, the folder name (`None` for INBOX), and the
/// quota with the usage found before anything was written.
type Prepared<'d> = (PathBuf, Option<String>, Option<(&'d Quota, Usage)>);

/// What a delivery checks before it reads any input: the Maildir (created if missing), the
/// folder, and whether the mailbox is over quota already.
fn prepare<'d>(
    d: &'d Delivery<'_>,
    host: &str,
    warnings: &mut Vec<String>,
) -> Result<Prepared<'d>, Error> {
    dirs::ensure_maildir(d.maildir)?;
    let (mailbox, folder) = choose_mailbox(d.maildir, d.folder, warnings)?;
    // Already over quota: refuse before reading anything.
    let quota_before = match &d.quota {
        Some(q) => {
            let usage = quota::current_usage(d.maildir, q, host, warnings)?;
            quota::check(q, usage, 0).map_err(Error::OverQuota)?;
            Some((q, usage))
        }
        None => None,
    };
    Ok((mailbox, folder, quota_before))
}

/// The checks [`deliver`] makes before reading any input (see `prepare`), for a caller
/// whose [`Stage::write`] failed: its outcome must be the one `deliver` would have given
/// (a full mailbox defers or bounces as configured before a too-big message bounces).
pub fn precheck(d: &Delivery<'_>) -> Result<(), Error> {
    precheck_size(d, 0)
}

/// [`precheck`], and whether `size` more bytes (and one message) still fit the quota: for a
/// caller that hands a message of known size to another delivery agent (vmail-lda, for a
/// recipient with a Sieve script), so that the quota holds for it as for [`deliver`].
pub fn precheck_size(d: &Delivery<'_>, size: u64) -> Result<(), Error> {
    let host = escape_hostname(d.hostname);
    match prepare(d, &host, &mut Vec::new())? {
        (_, _, Some((q, usage))) => quota::check(q, usage, size).map_err(Error::OverQuota),
        _ => Ok(()),
    }
}

/// The end of every delivery, once the message is safe in `new/`: nothing from here on may
/// turn into a failure (a retry would deliver it twice).
fn delivered(
    d: &Delivery<'_>,
    path: PathBuf,
    size: u64,
    folder: Option<String>,
    mut warnings: Vec<String>,
) -> Delivered {
    if d.quota.is_some() {
        let delta = i64::try_from(size).unwrap_or(i64::MAX);
        if let Err(e) = quota::append(d.maildir, delta, 1) {
            warnings.push(format!(
                "append to {}: {e}",
                d.maildir.join(quota::MAILDIRSIZE).display()
            ));
        }
    }
    Delivered {
        path,
        size,
        folder,
        warnings,
    }
}

/// `fields` as [`deliver`] writes them before the message (`Name: value\n` each), for a
/// caller that hands the message to another delivery agent with the same fields.
/// [`Error::InvalidHeader`] for a name or value that cannot be a header field.
pub fn format_prepend(fields: &[(String, String)]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (name, value) in fields {
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(Error::InvalidHeader(format!("bad field name {name:?}")));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
            return Err(Error::InvalidHeader(format!(
                "line break or NUL in the value of {name}"
            )));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        if !value.is_empty() {
            out.push(b' ');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// The mailbox directory to deliver to, and the folder name if it is not INBOX.
fn choose_mailbox(
    root: &Path,
    folder: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(PathBuf, Option<String>), Error> {
    let Some(name) = folder else {
        return Ok((root.to_path_buf(), None));
    };
    match folder_target(name) {
        Ok(Target::Inbox) => Ok((root.to_path_buf(), None)),
        Ok(Target::Folder(dir)) => {
            let path = root.join(dir);
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    dirs::ensure_maildir(&path)?;
                    Ok((path, Some(name.to_owned())))
                }
                Ok(_) => {
                    warnings.push(format!(
                        "folder {name:?} is not a directory, delivered to INBOX"
                    ));
                    Ok((root.to_path_buf(), None))
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    warnings.push(format!(
                        "folder {name:?} does not exist, delivered to INBOX"
                    ));
                    Ok((root.to_path_buf(), None))
                }
                Err(e) => Err(Error::io("stat", path, e)),
            }
        }
        Err(e) => {
            warnings.push(format!("folder {name:?}: {e}, delivered to INBOX"));
            Ok((root.to_path_buf(), None))
        }
    }
}

/// The file in `tmp/`, removed on drop unless committed.
#[derive(Debug)]
struct TmpFile {
    file: File,
    path: PathBuf,
    name: String,
    armed: bool,
}

impl TmpFile {
    fn create(dir: &Path, host: &str) -> Result<TmpFile, Error> {
        // The name is unique by construction; O_EXCL still guards against a clock that
        // went backwards onto a recycled pid (Dovecot's maildir_create_tmp() does the same).
        let mut last = None;
        for _ in 0..16 {
            let name = name::next_unique_name(host);
            let path = dir.join(&name);
            // Readable too: a staged message is copied from it into another Maildir.
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TmpFile {
                        file,
                        path,
                        name,
                        armed: true,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(Error::io("create", path, e)),
            }
        }
        let (path, e) = last.expect("loop ran");
        Err(Error::io("create", path, e))
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Streams the headers and the input into the temporary file; returns the size written.
fn write_message(
    tmp: &mut TmpFile,
    head: &[u8],
    input: &mut dyn Read,
    d: &Delivery<'_>,
    quota_before: Option<(&Quota, Usage)>,
) -> Result<u64, Error> {
    let mut inbuf = vec![0u8; FIRST_READ];
    // One extra byte: a CR held back from the previous chunk.
    let mut out = Vec::with_capacity(BUFFER_SIZE + 1 + head.len());
    let mut lf = LfNormalizer::default();
    let mut detector = d.loop_check.map(LoopDetector::new);
    let mut size: u64 = 0;
    let mut any_input = false;
    out.extend_from_slice(head);
    loop {
        let n = match input.read(&mut inbuf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Input(e)),
        };
        if n == 0 && !any_input {
            return Err(Error::Empty);
        }
        let filled = n == inbuf.len();
        any_input = true;
        let start = out.len();
        if n == 0 {
            lf.finish(&mut out);
        } else {
            lf.push(&inbuf[..n], &mut out);
        }
        if let Some(det) = detector.as_mut() {
            let found = det.feed(&out[start..]) || (n == 0 && det.finish());
            if found {
                return Err(Error::Loop {
                    address: d.loop_check.unwrap_or_default().to_owned(),
                });
            }
            if det.is_done() {
                detector = None;
            }
        }
        size += out.len() as u64;
        if let Some(limit) = d.max_size {
            if size > limit {
                return Err(Error::TooBig { limit });
            }
        }
        if let Some((q, usage)) = quota_before {
            quota::check(q, usage, size).map_err(Error::OverQuota)?;
        }
        tmp.file
            .write_all(&out)
            .map_err(|e| Error::io("write", &tmp.path, e))?;
        out.clear();
        if n == 0 {
            return Ok(size);
        }
        if filled && inbuf.len() < BUFFER_SIZE {
            inbuf.resize(inbuf.len() * 2, 0);
        }
    }
}

/// Errors of link() on file systems without hard links.
fn link_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

/// Moves the fsynced file into `new/` and makes that durable.
fn commit(
    tmp: &mut TmpFile,
    new_dir: &Path,
    size: u64,
    host: &str,
    warnings: &mut Vec<String>,
) -> Result<PathBuf, Error> {
    let mut base = tmp.name.clone();
    let mut collisions = 0;
    let dest = loop {
        let dest = new_dir.join(format!("{base},S={size}"));
        // link() rather than rename(): it never replaces an existing message.
        match fs::hard_link(&tmp.path, &dest) {
            Ok(()) => break dest,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && collisions < 16 => {
                collisions += 1;
                base = name::next_unique_name(host);
            }
            Err(e) if link_unsupported(&e) => {
                fs::rename(&tmp.path, &dest).map_err(|e| Error::io("rename", &dest, e))?;
                tmp.armed = false;
                break dest;
            }
            Err(e) => return Err(Error::io("link", &dest, e)),
        }
    };
    if let Err(e) = dirs::fsync_dir(new_dir) {
        // Not known to be durable, so not delivered: take it back so that Postfix's retry
        // does not leave two copies. (tmp/ is removed by the guard.)
        let _ = fs::remove_file(&dest);
        return Err(Error::io("fsync", new_dir, e));
    }
    if tmp.armed {
        tmp.armed = false;
        if let Err(e) = fs::remove_file(&tmp.path) {
            warnings.push(format!("remove {}: {e}", tmp.path.display()));
        }
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_rendering() {
        let h = format_prepend(&[
            ("Return-Path".into(), "<a@b>".into()),
            ("X-Empty".into(), String::new()),
        ])
        .unwrap();
        assert_eq!(h, b"Return-Path: <a@b>\nX-Empty:\n");
    }

    #[test]
    fn prepend_refuses_injection() {
        for (n, v) in [
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("", "v"),
            ("X", "a\nInjected: 1"),
            ("X", "a\rb"),
            ("X", "a\0b"),
            ("Ünï", "v"),
        ] {
            let r = format_prepend(&[(n.into(), v.into())]);
            assert!(matches!(r, Err(Error::InvalidHeader(_))), "{n:?} {v:?}");
            assert!(r.unwrap_err().is_temporary());
        }
    }
}
