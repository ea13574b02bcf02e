//! swaks as the SMTP client of the submission port (STARTTLS and AUTH).

use std::process::{Command, Output, Stdio};

/// One run of swaks and its transcript.
pub struct Swaks {
    pub status: Option<i32>,
    pub transcript: String,
}

impl Swaks {
    pub fn run(args: &[&str]) -> Swaks {
        let out: Output = crate::postfix::swaks(args);
        Swaks {
            status: out.status.code(),
            transcript: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// The first server reply after the first line swaks sent that starts with `sent`
    /// (e.g. `AUTH`, `MAIL FROM`, `RCPT TO`, `.` for the end of the message), skipping 334
    /// challenges: its code and text. swaks marks what it sends with `->` (`~>` under TLS) and
    /// what it receives with `<-`/`<~` (`<**`/`<~*` for an error reply).
    pub fn reply_after(&self, sent: &str) -> Option<(u16, String)> {
        let mut after = false;
        for line in self.transcript.lines() {
            let l = line.trim_start();
            let (marker, rest) = l.split_once(' ').unwrap_or((l, ""));
            let rest = rest.trim_start();
            if !after {
                if marker.ends_with('>') && rest.starts_with(sent) {
                    after = true;
                }
                continue;
            }
            if marker.starts_with('<') {
                let code: u16 = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code != 334 {
                    return Some((code, rest.get(4..).unwrap_or("").to_string()));
                }
            }
        }
        None
    }

    pub fn code_after(&self, sent: &str) -> u16 {
        self.reply_after(sent).map_or(0, |(c, _)| c)
    }
}

/// A client of the submission port: swaks over STARTTLS, authenticating with `mech` as
/// `user`/`password`.
pub struct Submitter<'a> {
    pub port: u16,
    pub mech: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

impl Submitter<'_> {
    /// STARTTLS and AUTH, then QUIT.
    pub fn auth_only(&self) -> Swaks {
        self.run(self.user, "postmaster@example.org", "unused", Some("AUTH"))
    }

    /// [`Submitter::auth_only`] from the local address `local` (e.g. `127.0.0.2`: all of
    /// 127/8 is loopback), so smtpd and vmail-authd see another client address.
    pub fn auth_only_from(&self, local: &str) -> Swaks {
        self.run_with(
            self.user,
            "postmaster@example.org",
            "unused",
            Some("AUTH"),
            &["--local-interface", local],
        )
    }

    /// STARTTLS, AUTH, and a message from `from` to `to` with `token` in its subject and body.
    pub fn send(&self, from: &str, to: &str, token: &str) -> Swaks {
        self.run(from, to, token, None)
    }

    fn run(&self, from: &str, to: &str, token: &str, quit_after: Option<&str>) -> Swaks {
        self.run_with(from, to, token, quit_after, &[])
    }

    fn run_with(
        &self,
        from: &str,
        to: &str,
        token: &str,
        quit_after: Option<&str>,
        extra: &[&str],
    ) -> Swaks {
        let port = self.port.to_string();
        let subject = format!("Subject: {token}");
        let body = format!("Body of {token}.");
        let mut args = vec![
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--ehlo",
            "client.test.invalid",
            "--auth",
            self.mech,
            "--auth-user",
            self.user,
            "--auth-password",
            self.password,
            "--from",
            from,
            "--to",
            to,
            "--header",
            &subject,
            "--body",
            &body,
            "--timeout",
            "30",
        ];
        if let Some(q) = quit_after {
            args.extend(["--quit-after", q]);
        }
        args.extend(extra);
        Swaks::run(&args)
    }
}

/// Whether swaks can do STARTTLS (it needs Perl's Net::SSLeay, a Recommends of the Debian
/// package, which `--no-install-recommends` leaves out).
pub fn swaks_has_tls() -> bool {
    Command::new("perl")
        .args(["-MNet::SSLeay", "-e", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
