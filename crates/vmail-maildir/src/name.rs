//! Maildir unique file names: `<secs>.M<usecs>P<pid>Q<n>.<host>`.
//!
//! The delivery identifier follows <https://cr.yp.to/proto/maildir.html> ("Mn" microseconds,
//! "Pn" process id, "Qn" deliveries made by this process), which is also what Dovecot's
//! `maildir_filename_generate()` produces (minus the `Q`). `P` makes names unique between
//! processes, `Q` within one process, so no clock or `stat()` dance is needed (see
//! "Mail delivery" in Dovecot's `MailboxFormat.Maildir` wiki page).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Deliveries started by this process; the `Q<n>` part of the name.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Escapes a host name for the last part of a Maildir name.
///
/// `/` becomes `\057` and `:` becomes `\072`, as the maildir spec says ("To deal with
/// invalid host names, replace / with \057 and : with \072"): `/` would be a path separator
/// and `:` starts the `:2,<flags>` info part. As an extension, `,` (Dovecot reads
/// `,S=`/`,W=` fields from the name), `\` (so the escaping stays unambiguous) and control
/// bytes are escaped the same way, as `\` and three octal digits. Dovecot itself refuses to
/// start with `/` in the host name and does not escape `:` (`lib/hostpid.c`); it never has
/// to read the host part back, so any escaping is compatible. An empty host becomes
/// `localhost` so the name never ends in a dot.
pub fn escape_hostname(host: &str) -> String {
    if host.is_empty() {
        return "localhost".to_owned();
    }
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' | ':' | ',' | '\\' | '\0'..='\x1f' | '\x7f' => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Formats a unique name from its parts; `host` must already be escaped.
pub fn unique_name(secs: u64, usecs: u32, pid: u32, q: u64, host: &str) -> String {
    format!("{secs}.M{usecs}P{pid}Q{q}.{host}")
}

/// The next unique name for this process, from the clock, the pid and the counter.
pub(crate) fn next_unique_name(escaped_host: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let q = DELIVERIES.fetch_add(1, Ordering::Relaxed) + 1;
    unique_name(
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        escaped_host,
    )
}

/// The system host name (`gethostname(2)`), unescaped; `localhost` if it cannot be read.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes; gethostname NUL-terminates on
    // success unless truncated, which the position() below handles.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..len]) {
        s if s.is_empty() => "localhost".to_owned(),
        s => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn escapes_slash_and_colon_like_the_maildir_spec() {
        assert_eq!(escape_hostname("mx1.example.com"), "mx1.example.com");
        assert_eq!(escape_hostname("a/b:c"), "a\\057b\\072c");
        assert_eq!(escape_hostname("a,S=1"), "a\\054S=1");
        assert_eq!(escape_hostname("back\\slash"), "back\\134slash");
        assert_eq!(escape_hostname("tab\there\n"), "tab\\011here\\012");
        assert_eq!(escape_hostname(""), "localhost");
        assert_eq!(escape_hostname("ünï"), "ünï");
    }

    #[test]
    fn name_has_the_documented_shape() {
        assert_eq!(
            unique_name(1700000000, 42, 1234, 7, "host"),
            "1700000000.M42P1234Q7.host"
        );
    }

    #[test]
    fn names_never_repeat_in_one_process() {
        let names: HashSet<String> = (0..20_000).map(|_| next_unique_name("h")).collect();
        assert_eq!(names.len(), 20_000);
        for n in &names {
            assert!(!n.contains('/') && !n.contains(':'), "{n}");
        }
    }

    #[test]
    fn names_never_repeat_across_threads() {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..2_000)
                        .map(|_| next_unique_name("h"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for n in h.join().unwrap() {
                assert!(all.insert(n));
            }
        }
        assert_eq!(all.len(), 16_000);
    }

    #[test]
    fn system_hostname_is_not_empty() {
        assert!(!system_hostname().is_empty());
    }
}
