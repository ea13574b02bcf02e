//! Dovecot's `\001` tab-escaping (`src/lib/strescape.c`) and the line framing of its
//! line protocols (`src/lib/istream.c`): shared by the auth protocol and by the dict
//! ([`crate::dict`]) and Lua ([`crate::lua`]) protocols and LMTP's command lines
//! ([`crate::lmtp`]), which reach it as `crate::auth::…`.

/// Dovecot's escape byte for its internal protocols.
const ESC: u8 = 0x01;

/// Appends `raw` with Dovecot's tab-escaping (`str_append_tabescaped_n()` in
/// `strescape.c`): NUL, `\001`, TAB, CR and LF become `\001` followed by `0`, `1`, `t`,
/// `r`, `n`. Every other byte, including non-UTF-8, passes through.
pub fn tab_escape(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    for &b in raw {
        let code = match b {
            0 => b'0',
            ESC => b'1',
            b'\t' => b't',
            b'\r' => b'r',
            b'\n' => b'n',
            _ => {
                out.push(b);
                continue;
            }
        };
        out.extend_from_slice(&[ESC, code]);
    }
}

/// Undoes [`tab_escape`] exactly as Dovecot's `str_tabunescape()` does, which never
/// fails: `\001` followed by a byte other than `0 1 t r n` yields that byte, and a
/// `\001` at the very end is dropped.
pub fn tab_unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        if b != ESC {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'0') => out.push(0),
            Some(b'1') => out.push(ESC),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Finds the end of the first line within `max` bytes: `Ok(Some(n))` with `n` counting
/// the LF, `Ok(None)` while no LF has arrived, `Err(())` once `max` bytes have arrived
/// without one. Shared by the auth, dict, Lua and LMTP codecs.
pub(crate) fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, ()> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => Ok(Some(lf + 1)),
        None if buf.len() >= max => Err(()),
        None => Ok(None),
    }
}

/// Drops the LF and one CR before it, as Dovecot's `i_stream_next_line()` does.
pub(crate) fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// ASCII digits only, as Dovecot's `str_to_uintmax()`: no sign, no spaces, not empty.
pub(crate) fn parse_decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}
