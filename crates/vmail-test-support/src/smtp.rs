//! A minimal SMTP client for the private Postfix of `postfix.rs` (reads the greeting first:
//! smtpd rejects commands sent before it), and swaks for AUTH and STARTTLS.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// One SMTP reply: the code and the text of all its lines (joined with `\n`, codes removed).
/// Code 0 means the connection closed or failed instead (the text says how).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl SmtpReply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What happened to one message sent with [`smtp_send`].
#[derive(Debug, Clone, Default)]
pub struct SmtpOutcome {
    pub greeting: SmtpReply,
    pub ehlo: SmtpReply,
    pub mail: SmtpReply,
    /// One `(recipient, RCPT reply)` per recipient tried (none when MAIL was refused).
    pub rcpt: Vec<(String, SmtpReply)>,
    /// The reply ending the message (after the final `.`), or the refusal of `DATA` itself;
    /// `None` when no recipient was accepted and `DATA` was not sent.
    pub data: Option<SmtpReply>,
    /// The queue id from a `250 ... queued as ID` reply.
    pub queue_id: Option<String>,
    /// Every line sent (`C: `) and received (`S: `), message body elided.
    pub transcript: String,
}

impl SmtpOutcome {
    /// The RCPT reply code for `recipient` (0 if it was not tried).
    pub fn rcpt_code(&self, recipient: &str) -> u16 {
        self.rcpt
            .iter()
            .find(|(r, _)| r == recipient)
            .map_or(0, |(_, reply)| reply.code)
    }

    /// Whether the message was accepted (`250` after the final dot).
    pub fn accepted(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.code == 250)
    }
}

struct SmtpConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    transcript: String,
}

impl SmtpConn {
    fn reply(&mut self) -> SmtpReply {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => {
                    self.transcript.push_str("S: <connection closed>\n");
                    return SmtpReply {
                        code: 0,
                        text: "connection closed".into(),
                    };
                }
                Err(e) => {
                    let _ = writeln!(self.transcript, "S: <error {e}>");
                    return SmtpReply {
                        code: 0,
                        text: e.to_string(),
                    };
                }
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let _ = writeln!(self.transcript, "S: {line}");
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            text.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return SmtpReply {
                    code,
                    text: text.join("\n"),
                };
            }
        }
    }

    fn command(&mut self, cmd: &str) -> SmtpReply {
        let _ = writeln!(self.transcript, "C: {cmd}");
        if let Err(e) = self.writer.write_all(format!("{cmd}\r\n").as_bytes()) {
            let _ = writeln!(self.transcript, "C: <error {e}>");
            return SmtpReply {
                code: 0,
                text: e.to_string(),
            };
        }
        self.reply()
    }
}

/// Sends one message over plain SMTP to `127.0.0.1:port`: reads the 220 greeting first (smtpd
/// rejects commands sent before it), then EHLO, MAIL FROM, one RCPT TO per recipient (every
/// reply recorded), DATA if any recipient was accepted, QUIT. `message` is the whole message
/// (headers, blank line, body); bare LFs become CRLF and lines starting with `.` are
/// dot-stuffed. Never panics on an SMTP refusal or a dropped connection (see the codes, 0 for
/// a closed connection); panics only if it cannot connect.
pub fn smtp_send(port: u16, from: &str, to: &[&str], message: &str) -> SmtpOutcome {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to smtp 127.0.0.1:{port}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut c = SmtpConn {
        reader: BufReader::new(stream.try_clone().expect("clone stream")),
        writer: stream,
        transcript: String::new(),
    };
    let mut out = SmtpOutcome {
        greeting: c.reply(),
        ..SmtpOutcome::default()
    };
    let finish = |mut c: SmtpConn, mut out: SmtpOutcome| {
        if out.greeting.code != 0 {
            c.command("QUIT");
        }
        out.transcript = c.transcript;
        out
    };
    if out.greeting.code != 220 {
        return finish(c, out);
    }
    out.ehlo = c.command("EHLO client.test.invalid");
    if out.ehlo.code != 250 {
        return finish(c, out);
    }
    out.mail = c.command(&format!("MAIL FROM:<{from}>"));
    if out.mail.code != 250 {
        return finish(c, out);
    }
    for rcpt in to {
        let reply = c.command(&format!("RCPT TO:<{rcpt}>"));
        let closed = reply.code == 0;
        out.rcpt.push((rcpt.to_string(), reply));
        if closed {
            return finish(c, out);
        }
    }
    if !out.rcpt.iter().any(|(_, r)| r.is_positive()) {
        return finish(c, out);
    }
    let data = c.command("DATA");
    if data.code != 354 {
        out.data = Some(data);
        return finish(c, out);
    }
    let mut wire = String::with_capacity(message.len() + 64);
    for line in message.lines() {
        if line.starts_with('.') {
            wire.push('.');
        }
        wire.push_str(line.strip_suffix('\r').unwrap_or(line));
        wire.push_str("\r\n");
    }
    wire.push_str(".\r\n");
    let _ = writeln!(c.transcript, "C: <message, {} bytes>\nC: .", wire.len());
    if let Err(e) = c.writer.write_all(wire.as_bytes()) {
        out.data = Some(SmtpReply {
            code: 0,
            text: e.to_string(),
        });
        return finish(c, out);
    }
    let end = c.reply();
    out.queue_id = end
        .text
        .split_once("queued as ")
        .map(|(_, id)| id.trim().to_string());
    out.data = Some(end);
    finish(c, out)
}

/// Runs `swaks ARGS...` (for AUTH and STARTTLS tests) and returns its output; panics if swaks
/// cannot be run (check `have("swaks")` first to skip). Exit 0 means the transaction
/// succeeded; swaks prints the transcript on stdout.
pub fn swaks(args: &[&str]) -> Output {
    Command::new("swaks")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks (is it installed?)")
}
