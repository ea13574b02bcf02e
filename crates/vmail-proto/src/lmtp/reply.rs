//! Server replies: a three-digit code, an optional enhanced status code (RFC 3463) on
//! every line, and text that can never break the framing.

use crate::sanitize_reason;

/// Longest text of one reply line: RFC 5321 4.5.3.1.5 allows 512 octets per reply line
/// with code and CRLF; "250-" plus "x.xxx.xxx " and CRLF take at most 20.
const TEXT_MAX: usize = 480;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 0-999.
    pub subject: u16,
    /// 0-999.
    pub detail: u16,
}

impl Status {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Status {
        Status {
            class,
            subject,
            detail,
        }
    }
}

/// One reply, single- or multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Status>,
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. The text is sanitised: no CR, LF or other control character
    /// from a reason (which may come from a database or a peer) can reach the wire.
    pub fn new(code: u16, status: Option<Status>, text: &str) -> Reply {
        Reply::multi(code, status, [text])
    }

    /// A reply of one line per item (at least one line is always sent). A code outside
    /// 200-599 is a caller's bug and becomes 451 4.3.0 rather than a reply Postfix
    /// cannot parse; a status whose class disagrees with the code is dropped (RFC 3463
    /// 2: the class must match the code's first digit).
    pub fn multi<I, S>(code: u16, status: Option<Status>, lines: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (code, status) = if (200..600).contains(&code) {
            let status = status.filter(|s| {
                u16::from(s.class) == code / 100 && s.subject < 1000 && s.detail < 1000
            });
            (code, status)
        } else {
            (451, Some(Status::new(4, 3, 0)))
        };
        let mut lines: Vec<String> = lines
            .into_iter()
            .map(|l| sanitize_reason(l.as_ref(), TEXT_MAX))
            .collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            status,
            lines,
        }
    }

    /// The reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn status(&self) -> Option<Status> {
        self.status
    }

    /// The (sanitised) text lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// A 2xx reply: the command (or, after DATA, the delivery) succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Appends the reply in wire form: `code-` on every line but the last, `code ` on
    /// the last, the status code after it on each line, CRLF line ends.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let mut text = String::new();
            if let Some(s) = self.status {
                text.push_str(&format!("{}.{}.{}", s.class, s.subject, s.detail));
            }
            if !line.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(line);
            }
            if text.is_empty() && sep == ' ' {
                out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
            } else {
                out.extend_from_slice(format!("{}{sep}{text}\r\n", self.code).as_bytes());
            }
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// 250 2.0.0 with `text`.
    pub fn ok(text: &str) -> Reply {
        Reply::new(250, Some(Status::new(2, 0, 0)), text)
    }

    /// The verdict for a delivered recipient: 250 2.0.0.
    pub fn delivered(text: &str) -> Reply {
        Reply::ok(text)
    }

    /// No such user: 550 5.1.1 (vmail-lda's EX_NOUSER).
    pub fn unknown_user(text: &str) -> Reply {
        Reply::new(550, Some(Status::new(5, 1, 1)), text)
    }

    /// Over quota, permanently: 552 5.2.2.
    pub fn over_quota(text: &str) -> Reply {
        Reply::new(552, Some(Status::new(5, 2, 2)), text)
    }

    /// Over quota, try again later: 452 4.2.2.
    pub fn over_quota_temporary(text: &str) -> Reply {
        Reply::new(452, Some(Status::new(4, 2, 2)), text)
    }

    /// A temporary local failure (database down, disk trouble): 451 4.3.0.
    pub fn temporary_failure(text: &str) -> Reply {
        Reply::new(451, Some(Status::new(4, 3, 0)), text)
    }

    /// A mail loop: 554 5.4.6.
    pub fn mail_loop(text: &str) -> Reply {
        Reply::new(554, Some(Status::new(5, 4, 6)), text)
    }

    /// Message larger than the maximum: 552 5.3.4 (RFC 1870 6.1, RFC 3463).
    pub fn too_big() -> Reply {
        Reply::new(
            552,
            Some(Status::new(5, 3, 4)),
            "Error: message file too big",
        )
    }

    pub(crate) fn syntax(code: u16, subject: u16, detail: u16, text: &str) -> Reply {
        Reply::new(code, Some(Status::new(5, subject, detail)), text)
    }
}
