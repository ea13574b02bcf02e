//! Log lines for files, the journal and fail2ban: plain text unless stderr is a terminal, and
//! no value a client sent (a login, a map key) can colour a line, fake one or split one.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Logs to stderr (journald picks it up under systemd); level from `VMAIL_LOG`, else
/// `default_level`. Colours only on a terminal and without `NO_COLOR` (https://no-color.org):
/// escape codes in a log file or the journal break `grep rip=...` and fail2ban's regexes.
pub fn init_logging(default_level: &str) {
    let colour = colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let filter =
        EnvFilter::try_from_env("VMAIL_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // try_init, not set_global_default: it also routes the `log` crate's records (libraries
    // that use it) through the same format.
    let _ = subscriber(std::io::stderr, colour, filter).try_init();
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything but "".
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The one log format: timestamp, level, message, then `name=value` fields with every control
/// character of a value escaped. tracing-subscriber (0.3.23) escapes ESC and a few others in
/// the message only; a field written with `%` (a login, a key) goes out raw, newline included,
/// which would let a client write a line of its choosing into the log fail2ban reads.
fn subscriber<W>(
    writer: W,
    colour: bool,
    filter: EnvFilter,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fields = format::debug_fn(|w: &mut Writer<'_>, field, value| {
        if field.name() != "message" {
            write!(w, "{}=", field.name())?;
        }
        let mut e = Escaping {
            out: w,
            left: VALUE_MAX,
            cut: false,
        };
        write!(e, "{value:?}")?;
        if e.cut {
            e.out.write_str(CUT)?;
        }
        Ok(())
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(colour)
        .with_target(false)
        .fmt_fields(fields)
        .with_env_filter(filter)
        .finish()
}

/// The most one value (a field, the message) puts into a line, escapes included. journald
/// cuts a line longer than its `LineMax` (48 KiB by default) into separate entries, the rest
/// starting where the cut falls; a login of escaped control characters (`\u{1b}`: six bytes
/// each, and Postfix passes 9 KiB of SASL response) could place its own text at the start
/// of such an entry, e.g. `WARN authentication failed rip=<someone else> user=` followed
/// by the value's closing quote: a line fail2ban takes for a failure of that address.
/// Values cut this short keep every line of every daemon far below `LineMax`.
const VALUE_MAX: usize = 2048;
/// Marks a value cut at [`VALUE_MAX`].
const CUT: &str = "...[cut]";

/// Writes text with control characters (C0, DEL, C1) as Rust escapes (`\n`, `\u{1b}`), at
/// most `left` bytes of it; `cut` tells that the rest was dropped.
struct Escaping<'a, W> {
    out: &'a mut W,
    left: usize,
    cut: bool,
}

impl<W: fmt::Write> Escaping<'_, W> {
    /// Writes `s` if it fits, else as much as fits (`whole`: nothing, so that an escape is
    /// never cut in half) and marks the value cut.
    fn emit(&mut self, s: &str, whole: bool) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            return self.out.write_str(s);
        }
        let mut end = if whole { 0 } else { self.left };
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.left = 0;
        self.cut = true;
        self.out.write_str(&s[..end])
    }
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while !rest.is_empty() && !self.cut {
            let i = rest.find(char::is_control).unwrap_or(rest.len());
            if i > 0 {
                self.emit(&rest[..i], false)?;
                rest = &rest[i..];
                continue;
            }
            let c = rest.chars().next().unwrap_or_default();
            let esc: String = c.escape_default().collect();
            self.emit(&esc, true)?;
            rest = &rest[c.len_utf8()..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(colour: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let b2 = buf.clone();
        let s = subscriber(move || b2.clone(), colour, EnvFilter::new("info"));
        tracing::subscriber::with_default(s, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        let plain = logged(
            false,
            || tracing::warn!(rip = %"192.0.2.7", service = "smtp", "authentication failed"),
        );
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(
            plain.contains(" WARN authentication failed rip=192.0.2.7 service=\"smtp\"\n"),
            "{plain:?}"
        );
    }

    #[test]
    fn client_values_cannot_colour_split_or_fake_a_line() {
        let evil =
            "x\x1b[31m\n2026-01-01T00:00:00Z  WARN authentication failed rip=198.51.100.66\r\u{9b}";
        for colour in [false, true] {
            let out = logged(colour, || {
                let span = tracing::info_span!("dict_lookup", key = %evil);
                let _g = span.enter();
                tracing::warn!(user = %evil, key = evil, dbg = ?evil, "lookup of {evil}");
            });
            assert_eq!(out.matches('\n').count(), 1, "{out:?}");
            assert!(out.ends_with('\n'));
            assert!(!out.contains('\r') && !out.contains('\u{9b}'), "{out:?}");
            if !colour {
                assert!(!out.contains('\x1b'), "{out:?}");
            }
            // Every value and the message, in the span too, shows the escapes as text.
            assert_eq!(out.matches(r"\u{1b}[31m\n2026").count(), 5, "{out:?}");
        }
    }

    /// journald cuts a line at `LineMax` (48 KiB) into entries of their own: a long login of
    /// escaped control characters must not be able to choose what starts the next entry.
    #[test]
    fn client_values_are_cut_far_below_journald_line_max() {
        let tail = "WARN authentication failed rip=198.51.100.66 user=";
        let login = format!("{}{tail}", "\x1b".repeat(9000));
        let out = logged(false, || {
            let span = tracing::info_span!("auth", key = %login);
            let _g = span.enter();
            tracing::warn!(rip = %"203.0.113.7", user = ?login, "authentication failed {login}");
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.len() < 4 * (VALUE_MAX + 100), "{} bytes", out.len());
        assert!(!out.contains(tail), "{out}");
        assert_eq!(out.matches(CUT).count(), 3, "{out}");
        assert!(out.contains(" authentication failed "), "{out}");
        assert!(out.contains("rip=203.0.113.7 user=\"\\u{1b}"), "{out}");
        // Short values are whole.
        let short = logged(false, || tracing::warn!(user = ?"a\x1bb", "x"));
        assert!(short.ends_with(" WARN x user=\"a\\u{1b}b\"\n"), "{short:?}");
    }
}
