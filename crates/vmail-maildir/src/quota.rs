//! Maildir++ quota kept in `<maildir>/maildirsize`, in the format Dovecot's `maildir` quota
//! backend reads and writes (`quota-maildir.c`; the Courier `README.maildirquota` spec).
//!
//! The file is a limits line (`<bytes>S,<count>C`, `0S` when unlimited) followed by lines
//! `<bytes> <count>` whose sums are the usage. Deliveries append one line with O_APPEND. The
//! file is rebuilt from a directory scan (new/ and cur/ of INBOX and every `.folder`; tmp/
//! never counts; sizes from `,S=` in names, else `stat()`) and replaced by rename() when:
//! - it is missing, unreadable as a whole, or has a NUL byte or a malformed line;
//! - it has grown to 5120 bytes or more;
//! - its limits line differs from the configured limits (Dovecot with configured limits
//!   rewrites it the same way);
//! - it says "over quota" but has more than one usage line or is older than 15 minutes —
//!   Dovecot's rule for not refusing mail on stale numbers.
//!
//! Simplifications, all shared with the spec's "quota is advisory" stance: no locking (two
//! concurrent deliveries may both fit under the limit, or a delta may be appended to a file
//! that a concurrent rebuild is replacing, until the next rebuild); Dovecot's check that no
//! mailbox changed during the scan is not done; the rebuilt file is not fsynced (an empty or
//! torn file is simply rebuilt next time). Per-folder rules (`quota_rule = Trash:ignore`)
//! are not supported: every folder counts, as with Dovecot's default rules.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::Error;

/// The quota file's name in the Maildir root.
pub const MAILDIRSIZE: &str = "maildirsize";

/// A `maildirsize` this big or bigger is rebuilt (Dovecot and the Maildir++ spec).
pub const REBUILD_SIZE: usize = 5120;

/// An over-quota `maildirsize` older than this is not trusted.
const STALE: Duration = Duration::from_secs(15 * 60);

/// Configured limits. `None` (or `Some(0)`, which is how Maildir++ writes "unlimited")
/// means no limit; with both unlimited the usage is still tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_bytes: Option<u64>,
    pub max_messages: Option<u64>,
}

impl Quota {
    /// `(bytes, count)`, 0 meaning unlimited, capped to the signed 64-bit range as Dovecot
    /// does when it parses the file.
    fn limits(&self) -> (u64, u64) {
        let cap = |v: Option<u64>| v.unwrap_or(0).min(i64::MAX as u64);
        (cap(self.max_bytes), cap(self.max_messages))
    }
}

/// Bytes and messages stored, as the quota counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// The limits line: `<bytes>S`, `<count>C` or `<bytes>S,<count>C`; `0S` with no limits
/// (`maildirsize_write()` in Dovecot).
pub fn format_limits(bytes: u64, count: u64) -> String {
    let mut s = String::new();
    if bytes != 0 || count == 0 {
        s.push_str(&format!("{bytes}S"));
    }
    if count != 0 {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&format!("{count}C"));
    }
    s
}

/// Parses a limits line; unknown or malformed parts are ignored, as Dovecot does.
pub fn parse_limits(line: &[u8]) -> (u64, u64) {
    let (mut bytes, mut count) = (0, 0);
    for part in line.split(|&b| b == b',') {
        let Some((&kind, digits)) = part.split_last() else {
            continue;
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Some(v) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        let v = v.min(i64::MAX as u64);
        match kind {
            b'S' => bytes = v,
            b'C' => count = v,
            _ => {}
        }
    }
    (bytes, count)
}

/// Skips whitespace, then reads an optionally signed decimal (like scanf's `%lld`).
fn parse_int(s: &[u8]) -> Option<(i64, &[u8])> {
    let s = s.trim_ascii_start();
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in &s[..digits] {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some((if neg { -v } else { v }, &s[digits..]))
}

/// A usage line, read like Dovecot's `sscanf(line, "%lld %d")`: trailing text is ignored.
fn parse_delta(line: &[u8]) -> Option<(i64, i64)> {
    let (bytes, rest) = parse_int(line)?;
    let (count, _) = parse_int(rest)?;
    Some((bytes, count))
}

/// Reads the usage from a `maildirsize`'s contents (less than [`REBUILD_SIZE`] bytes), or
/// `None` when it must be rebuilt. `fresh`: modified within the last 15 minutes.
fn parse(content: &[u8], limits: (u64, u64), fresh: bool) -> Option<Usage> {
    // An unfinished last line (a writer caught mid-append) is ignored.
    let end = content.iter().rposition(|&b| b == b'\n')?;
    let text = &content[..end];
    if text.contains(&0) {
        return None;
    }
    let mut lines = text.split(|&b| b == b'\n');
    if parse_limits(lines.next()?) != limits {
        return None;
    }
    let (mut bytes, mut count, mut n) = (0i64, 0i64, 0usize);
    for line in lines {
        let (b, c) = parse_delta(line)?;
        bytes = bytes.checked_add(b)?;
        count = count.checked_add(c)?;
        n += 1;
    }
    if bytes < 0 || count < 0 {
        return None;
    }
    let usage = Usage {
        bytes: bytes as u64,
        messages: count as u64,
    };
    let over =
        (limits.0 != 0 && usage.bytes > limits.0) || (limits.1 != 0 && usage.messages > limits.1);
    if over && (n > 1 || !fresh) {
        return None;
    }
    Some(usage)
}

/// The `,S=<size>` field of a Maildir file name, as Dovecot's quota scan reads it: digits
/// ending at `:`, `,` or the end of the name.
pub fn size_from_name(name: &[u8]) -> Option<u64> {
    let at = name.windows(3).position(|w| w == b",S=")?;
    let rest = &name[at + 3..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        None | Some(b':') | Some(b',') => {}
        Some(_) => return None,
    }
    let mut v: u64 = 0;
    for &d in &rest[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

fn not_there(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE)
    )
}

/// Adds up the messages of one `new/` or `cur/` directory.
fn sum_dir(dir: &Path, usage: &mut Usage) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if not_there(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.as_bytes();
        if name.first() == Some(&b'.') && matches!(name.get(1), None | Some(b'.')) {
            continue;
        }
        let size = match size_from_name(name) {
            Some(s) => s,
            None => match fs::metadata(entry.path()) {
                Ok(m) => m.len(),
                // Moved (new/ -> cur/, expunged) while we looked: as Dovecot, skip.
                Err(e) if not_there(&e) => continue,
                Err(e) => return Err(e),
            },
        };
        usage.bytes = usage.bytes.saturating_add(size);
        usage.messages += 1;
    }
    Ok(())
}

/// Recounts the whole Maildir: new/ and cur/ of INBOX and of every `.folder`.
pub fn recalculate(maildir: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    sum_dir(&maildir.join("new"), &mut usage)?;
    sum_dir(&maildir.join("cur"), &mut usage)?;
    for entry in fs::read_dir(maildir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.first() != Some(&b'.') || bytes == b"." || bytes == b".." {
            continue;
        }
        let dir = entry.path();
        sum_dir(&dir.join("new"), &mut usage)?;
        sum_dir(&dir.join("cur"), &mut usage)?;
    }
    Ok(usage)
}

/// Reads at most `REBUILD_SIZE + 1` bytes of the file and its mtime; `None` if missing.
fn read_head(path: &Path) -> io::Result<Option<(Vec<u8>, SystemTime)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mtime = file.metadata()?.modified()?;
    let mut buf = Vec::with_capacity(REBUILD_SIZE + 1);
    file.take(REBUILD_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok(Some((buf, mtime)))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `maildirsize` with a fresh limits line and one usage line, via a temporary
/// file and rename() so readers never see it half written.
fn write_file(maildir: &Path, limits: (u64, u64), usage: Usage, host: &str) -> io::Result<()> {
    let content = format!(
        "{}\n{} {}\n",
        format_limits(limits.0, limits.1),
        usage.bytes,
        usage.messages
    );
    let (tmp, mut file) = loop {
        // Like Dovecot's safe_mkstemp_hostpid(): no leading dot, which Maildir++ would
        // take for a folder.
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = maildir.join(format!("{MAILDIRSIZE}.{host}.{}.{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(content.as_bytes())
        .and_then(|()| fs::rename(&tmp, maildir.join(MAILDIRSIZE)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The current usage: from `maildirsize` when it can be trusted, else recounted (and the
/// file rewritten). A failure to rewrite is reported in `warnings` only.
pub(crate) fn current_usage(
    maildir: &Path,
    quota: &Quota,
    host: &str,
    warnings: &mut Vec<String>,
) -> Result<Usage, Error> {
    let limits = quota.limits();
    let path = maildir.join(MAILDIRSIZE);
    match read_head(&path) {
        Ok(Some((buf, mtime))) if buf.len() < REBUILD_SIZE => {
            let fresh = mtime.elapsed().map(|age| age < STALE).unwrap_or(true);
            if let Some(usage) = parse(&buf, limits, fresh) {
                return Ok(usage);
            }
        }
        Ok(_) => {}
        Err(e) => return Err(Error::io("read", path, e)),
    }
    let usage = recalculate(maildir).map_err(|e| Error::io("quota recount", maildir, e))?;
    if let Err(e) = write_file(maildir, limits, usage, host) {
        warnings.push(format!("rewrite {}: {e}", path.display()));
    }
    Ok(usage)
}

/// The usage of a Maildir under `quota`, rebuilding `maildirsize` if needed (what
/// `doveadm quota get` would show).
pub fn usage(maildir: &Path, quota: &Quota, hostname: &str) -> Result<Usage, Error> {
    let mut warnings = Vec::new();
    current_usage(
        maildir,
        quota,
        &crate::name::escape_hostname(hostname),
        &mut warnings,
    )
}

/// Appends `<bytes> <count>\n` with one O_APPEND write. A missing file is left missing (the
/// next delivery rebuilds it with the new message counted); returns whether it appended.
pub(crate) fn append(maildir: &Path, bytes: i64, count: i64) -> io::Result<bool> {
    let mut file = match OpenOptions::new()
        .append(true)
        .open(maildir.join(MAILDIRSIZE))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let line = format!("{bytes} {count}\n");
    let n = file.write(line.as_bytes())?;
    if n != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short append to maildirsize",
        ));
    }
    Ok(true)
}

/// Checks a message of `size` bytes against the limits and usage.
pub(crate) fn check(quota: &Quota, usage: Usage, size: u64) -> Result<(), crate::OverQuota> {
    let (max_bytes, max_count) = quota.limits();
    if max_count != 0 && usage.messages.saturating_add(1) > max_count {
        return Err(crate::OverQuota::Messages {
            used: usage.messages,
            limit: max_count,
        });
    }
    if max_bytes != 0 && usage.bytes.saturating_add(size) > max_bytes {
        return Err(crate::OverQuota::Storage {
            used: usage.bytes,
            message: size,
            limit: max_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_line_like_dovecot() {
        assert_eq!(format_limits(0, 0), "0S");
        assert_eq!(format_limits(1000, 0), "1000S");
        assert_eq!(format_limits(0, 10), "10C");
        assert_eq!(format_limits(1000, 10), "1000S,10C");
        assert_eq!(parse_limits(b"1000S,10C"), (1000, 10));
        assert_eq!(parse_limits(b"10C,1000S"), (1000, 10));
        assert_eq!(parse_limits(b"0S"), (0, 0));
        assert_eq!(parse_limits(b"junk,5C"), (0, 5));
        assert_eq!(parse_limits(b""), (0, 0));
        assert_eq!(parse_limits(b"99999999999999999999S"), (0, 0));
        assert_eq!(parse_limits(b"18446744073709551615S"), (i64::MAX as u64, 0));
    }

    #[test]
    fn deltas_like_sscanf() {
        assert_eq!(parse_delta(b"123 1"), Some((123, 1)));
        assert_eq!(parse_delta(b"-123 -1"), Some((-123, -1)));
        assert_eq!(parse_delta(b"  5   2 trailing"), Some((5, 2)));
        assert_eq!(parse_delta(b"5"), None);
        assert_eq!(parse_delta(b""), None);
        assert_eq!(parse_delta(b"x 1"), None);
    }

    #[test]
    fn parse_sums_lines() {
        let l = (1000, 10);
        assert_eq!(
            parse(b"1000S,10C\n100 2\n50 1\n-20 -1\n", l, true),
            Some(Usage {
                bytes: 130,
                messages: 2
            })
        );
        // Limits line only: zero usage.
        assert_eq!(parse(b"1000S,10C\n", l, true), Some(Usage::default()));
        // Unfinished last line ignored.
        assert_eq!(
            parse(b"1000S,10C\n100 2\n50", l, true),
            Some(Usage {
                bytes: 100,
                messages: 2
            })
        );
    }

    #[test]
    fn parse_asks_for_rebuild() {
        let l = (1000, 10);
        assert_eq!(parse(b"", l, true), None);
        assert_eq!(parse(b"1000S,10C", l, true), None);
        assert_eq!(parse(b"2000S,10C\n1 1\n", l, true), None, "limits changed");
        assert_eq!(parse(b"1000S,10C\n1 1\n\n", l, true), None, "empty line");
        assert_eq!(parse(b"1000S,10C\nx y\n", l, true), None);
        assert_eq!(parse(b"1000S,10C\n1\0 1\n", l, true), None);
        assert_eq!(parse(b"1000S,10C\n-5 1\n", l, true), None, "negative");
        // Over quota: trusted only with one usage line and when fresh.
        assert_eq!(
            parse(b"1000S,10C\n1001 1\n", l, true),
            Some(Usage {
                bytes: 1001,
                messages: 1
            })
        );
        assert_eq!(parse(b"1000S,10C\n1001 1\n", l, false), None);
        assert_eq!(parse(b"1000S,10C\n1000 1\n1 1\n", l, true), None);
        assert_eq!(parse(b"1000S,10C\n0 11\n", l, false), None);
        // At the limit is not over.
        assert!(parse(b"1000S,10C\n999 5\n1 5\n", l, false).is_some());
    }

    #[test]
    fn size_from_names() {
        assert_eq!(size_from_name(b"1.M2P3Q4.h,S=1234"), Some(1234));
        assert_eq!(size_from_name(b"1.M2P3Q4.h,S=1234:2,S"), Some(1234));
        assert_eq!(size_from_name(b"1.M2P3Q4.h,S=1234,W=1300:2,"), Some(1234));
        assert_eq!(size_from_name(b"1.M2P3Q4.h,S=12x"), None);
        assert_eq!(size_from_name(b"1.M2P3Q4.h"), None);
        assert_eq!(size_from_name(b"1.M2P3Q4.h,S=:2,"), Some(0));
    }

    #[test]
    fn check_limits() {
        let q = Quota {
            max_bytes: Some(100),
            max_messages: Some(2),
        };
        let u = Usage {
            bytes: 60,
            messages: 1,
        };
        assert_eq!(check(&q, u, 40), Ok(()));
        assert!(matches!(
            check(&q, u, 41),
            Err(crate::OverQuota::Storage { .. })
        ));
        let full = Usage {
            bytes: 0,
            messages: 2,
        };
        assert!(matches!(
            check(&q, full, 1),
            Err(crate::OverQuota::Messages { .. })
        ));
        assert_eq!(check(&Quota::default(), u, u64::MAX), Ok(()));
        let zero = Quota {
            max_bytes: Some(0),
            max_messages: Some(0),
        };
        assert_eq!(check(&zero, u, u64::MAX), Ok(()), "0 means unlimited");
    }
}
