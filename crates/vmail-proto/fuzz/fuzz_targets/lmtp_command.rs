//! LMTP command lines and the session on arbitrary bytes: never panics, never consumes
//! more than it was given, and every reply it would send is well-formed wire text
//! (CRLF only at line ends, no control bytes, a code on every line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::lmtp::{
    self, Action, Config, LineEnds, LineTooLong, Reply, Session, Status, MAX_LINE,
};

fn check(reply: &Reply) {
    let wire = reply.to_bytes();
    assert!(wire.ends_with(b"\r\n"));
    for line in wire.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CRLF line end");
        assert!(line.len() >= 3 && line.len() <= 510);
        assert!(line[..3].iter().all(u8::is_ascii_digit));
        assert!(line.iter().all(|&b| (32..127).contains(&b)));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match lmtp::find_line(buf) {
            Ok(Some(n)) => {
                assert!(n <= buf.len() && n <= MAX_LINE && buf[n - 1] == b'\n');
                if let Err(reply) = lmtp::parse_command(&buf[..n]) {
                    check(&reply);
                }
                buf = &buf[n..];
            }
            Ok(None) => break,
            Err(LineTooLong) => {
                assert!(buf.len() >= MAX_LINE);
                break;
            }
        }
    }

    let mut session = Session::new(Config {
        hostname: "mx.example.org".into(),
        max_size: 200,
        max_recipients: 4,
        max_errors: 50,
        line_ends: LineEnds::Lf,
    });
    let mut rest = data;
    let mut body = Vec::new();
    // Each step consumes input or yields an action; bound the loop all the same.
    for _ in 0..=data.len() * 2 + 10 {
        let (n, action) = session.advance(rest, &mut body);
        assert!(n <= rest.len());
        rest = &rest[n..];
        body.clear();
        match action {
            Action::NeedInput => break,
            Action::Close(r) => {
                check(&r);
                break;
            }
            Action::Reply(r) | Action::StartData(r) => check(&r),
            Action::Recipient(m) => {
                let verdict = if m.local().len() % 2 == 0 {
                    Reply::new(250, Some(Status::new(2, 1, 5)), "Ok")
                } else {
                    Reply::unknown_user(m.local())
                };
                check(&session.rcpt_verdict(verdict));
            }
            Action::Message { .. } => {
                let n = session.transaction().map_or(0, |t| t.recipients.len());
                assert!(n > 0);
                let replies = session.data_verdicts(vec![Reply::delivered("ok"); n]);
                assert_eq!(replies.len(), n);
                replies.iter().for_each(check);
            }
            Action::Replies(rs) => rs.iter().for_each(check),
        }
    }
});
