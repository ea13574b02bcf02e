//! Minimal IMAP and POP3 clients: log in (from any loopback address), read delivered mail
//! back. Used against the private Dovecot instances of `dovecot.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

fn connect(from: Option<Ipv4Addr>, port: u16) -> Result<(BufReader<TcpStream>, TcpStream), String> {
    let s = match from {
        None => TcpStream::connect(("127.0.0.1", port)),
        Some(src) => connect_from(src, port),
    }
    .map_err(|e| format!("connect {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let r = s.try_clone().map_err(|e| e.to_string())?;
    Ok((BufReader::new(r), s))
}

/// A TCP connection to `127.0.0.1:port` from the local address `src` (e.g. 127.0.0.2: all of
/// 127/8 is loopback), so a server sees another client address (Dovecot's and vmail-authd's
/// penalties count per address). std cannot bind before connecting; libc can.
fn connect_from(src: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; it is closed on every
    // error path, or handed to the TcpStream that then owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let local = sockaddr(src, 0);
        let remote = sockaddr(Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&raw const local).cast(), len) != 0
            || libc::connect(fd, (&raw const remote).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

fn read_crlf_line(r: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(line)
}

/// An IMAP string argument: a quoted string, or a non-synchronizing literal (`{N+}`, which
/// Dovecot announces as LITERAL+) for text a quoted string cannot carry (CR, LF, NUL, 8-bit).
pub fn imap_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("{{{}+}}\r\n{s}", s.len())
    }
}

/// The response to one IMAP command.
#[derive(Debug, Clone, Default)]
pub struct ImapResponse {
    /// Untagged lines (`* ...`), literals replaced by their `{N}` marker.
    pub lines: Vec<String>,
    /// The literals' bytes, in order (e.g. the message of `FETCH n BODY[]`).
    pub literals: Vec<Vec<u8>>,
    /// The tagged status without the tag: `OK ...`, `NO ...` or `BAD ...`.
    pub status: String,
}

impl ImapResponse {
    pub fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }
}

/// A logged-in IMAP connection (see [`imap_login`]).
pub struct ImapSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
    /// The server greeting (`* OK ...`).
    pub greeting: String,
}

impl ImapSession {
    /// Sends one command (without tag; arguments already quoted with [`imap_quote`]) and reads
    /// up to its tagged reply. `Err` only on I/O errors or a closed connection; `NO`/`BAD` are
    /// an `Ok` response whose [`ImapResponse::ok`] is false.
    pub fn command(&mut self, cmd: &str) -> Result<ImapResponse, String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.writer
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut resp = ImapResponse::default();
        loop {
            let line = self.logical_line(&mut resp.literals)?;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                resp.status = status.to_string();
                return Ok(resp);
            }
            resp.lines.push(line);
        }
    }

    /// One response line, with any literals (`{N}` at the end of a physical line) read into
    /// `literals` and the line continued after them.
    fn logical_line(&mut self, literals: &mut Vec<Vec<u8>>) -> Result<String, String> {
        let mut text = String::new();
        loop {
            let part = String::from_utf8_lossy(&read_crlf_line(&mut self.reader)?).into_owned();
            text.push_str(&part);
            let len = part
                .strip_suffix('}')
                .and_then(|p| p.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            let Some(len) = len else {
                return Ok(text);
            };
            let mut lit = vec![0; len];
            self.reader
                .read_exact(&mut lit)
                .map_err(|e| format!("reading a {len}-byte literal: {e}"))?;
            literals.push(lit);
        }
    }

    /// `SELECT mailbox`; returns the number of messages (`* N EXISTS`).
    pub fn select(&mut self, mailbox: &str) -> Result<u32, String> {
        let r = self.command(&format!("SELECT {}", imap_quote(mailbox)))?;
        if !r.ok() {
            return Err(r.status);
        }
        r.lines
            .iter()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .ok_or_else(|| format!("no EXISTS in {:?}", r.lines))
    }

    /// `FETCH seq RFC822.SIZE`: the message size Dovecot reports (for Maildir, the `S=` in the
    /// file name when present).
    pub fn fetch_size(&mut self, seq: u32) -> Result<u64, String> {
        let r = self.command(&format!("FETCH {seq} RFC822.SIZE"))?;
        if !r.ok() {
            return Err(r.status);
        }
        r.lines
            .iter()
            .find_map(|l| {
                let rest = l.split_once("RFC822.SIZE ")?.1;
                rest.trim_end_matches(')')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .ok_or_else(|| format!("no RFC822.SIZE in {:?}", r.lines))
    }

    /// `FETCH seq BODY.PEEK[]`: the whole message as stored (CRLF line ends), without setting
    /// `\Seen`.
    pub fn fetch_body(&mut self, seq: u32) -> Result<Vec<u8>, String> {
        let mut r = self.command(&format!("FETCH {seq} BODY.PEEK[]"))?;
        if !r.ok() {
            return Err(r.status);
        }
        if r.literals.is_empty() {
            return Err(format!("no literal in {:?}", r.lines));
        }
        Ok(r.literals.swap_remove(0))
    }

    /// `LOGOUT`.
    pub fn logout(mut self) -> Result<(), String> {
        let r = self.command("LOGOUT")?;
        if r.ok() {
            Ok(())
        } else {
            Err(r.status)
        }
    }
}

/// Connects to IMAP on `127.0.0.1:port`, reads the greeting and logs in with `LOGIN` (user and
/// password quoted with [`imap_quote`]). `Err` carries the tagged reply of a refused login
/// (Dovecot: `NO [AUTHENTICATIONFAILED] Authentication failed.`) or an I/O error.
pub fn imap_login(port: u16, user: &str, pass: &str) -> Result<ImapSession, String> {
    imap_login_from(None, port, user, pass)
}

/// [`imap_login`] from the local address `from` (see [`connect_from`]).
pub fn imap_login_from(
    from: Option<Ipv4Addr>,
    port: u16,
    user: &str,
    pass: &str,
) -> Result<ImapSession, String> {
    let (mut reader, writer) = connect(from, port)?;
    let greeting = String::from_utf8_lossy(&read_crlf_line(&mut reader)?).into_owned();
    if !greeting.starts_with("* OK") {
        return Err(format!("IMAP greeting: {greeting}"));
    }
    let mut s = ImapSession {
        reader,
        writer,
        tag: 0,
        greeting,
    };
    let r = s.command(&format!("LOGIN {} {}", imap_quote(user), imap_quote(pass)))?;
    if r.ok() {
        Ok(s)
    } else {
        Err(r.status)
    }
}

/// A logged-in POP3 connection (see [`pop3_login`]).
pub struct Pop3Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The server greeting (`+OK ...`).
    pub greeting: String,
}

impl Pop3Session {
    /// Sends one command and reads its one-line reply: `Ok` with the text after `+OK`, or `Err`
    /// with the whole `-ERR ...` line (or an I/O error).
    pub fn command(&mut self, cmd: &str) -> Result<String, String> {
        if cmd.contains(['\r', '\n']) {
            return Err(format!("POP3 command with a line break: {cmd:?}"));
        }
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&read_crlf_line(&mut self.reader)?).into_owned();
        match line.strip_prefix("+OK") {
            Some(rest) => Ok(rest.trim_start().to_string()),
            None => Err(line),
        }
    }

    /// `STAT`: (number of messages, total size in octets).
    pub fn stat(&mut self) -> Result<(u32, u64), String> {
        let r = self.command("STAT")?;
        let mut f = r.split_whitespace();
        match (
            f.next().and_then(|n| n.parse().ok()),
            f.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(format!("bad STAT reply: {r}")),
        }
    }

    /// `RETR n`: the message with CRLF line ends, dot-unstuffed, without the final `.` line.
    pub fn retr(&mut self, n: u32) -> Result<Vec<u8>, String> {
        self.command(&format!("RETR {n}"))?;
        let mut msg = Vec::new();
        loop {
            let line = read_crlf_line(&mut self.reader)?;
            if line == b"." {
                return Ok(msg);
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            msg.extend_from_slice(line);
            msg.extend_from_slice(b"\r\n");
        }
    }

    /// `QUIT`.
    pub fn quit(mut self) -> Result<(), String> {
        self.command("QUIT").map(|_| ())
    }
}

/// Connects to POP3 on `127.0.0.1:port`, reads the greeting and logs in with `USER`/`PASS`.
/// `Err` carries the server's `-ERR` line (Dovecot: `-ERR [AUTH] Authentication failed.`).
pub fn pop3_login(port: u16, user: &str, pass: &str) -> Result<Pop3Session, String> {
    let (mut reader, writer) = connect(None, port)?;
    let greeting = String::from_utf8_lossy(&read_crlf_line(&mut reader)?).into_owned();
    if !greeting.starts_with("+OK") {
        return Err(format!("POP3 greeting: {greeting}"));
    }
    let mut s = Pop3Session {
        reader,
        writer,
        greeting,
    };
    s.command(&format!("USER {user}"))?;
    s.command(&format!("PASS {pass}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_strings_are_quoted() {
        assert_eq!(imap_quote("alice@example.test"), "\"alice@example.test\"");
        assert_eq!(imap_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(imap_quote("p\u{e4}ss"), "{5+}\r\np\u{e4}ss");
        assert_eq!(imap_quote("a\nb"), "{3+}\r\na\nb");
    }
}
