use super::*;

fn config() -> Config {
    Config {
        hostname: "mx.example.org".into(),
        max_size: 1000,
        max_recipients: 3,
        max_errors: 10,
        line_ends: LineEnds::Lf,
    }
}

/// What a server built on the session would write and store.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    wire: String,
    messages: Vec<(Vec<String>, Vec<u8>)>,
    closed: bool,
    /// Largest input the session left unconsumed (what the server must buffer).
    max_pending: usize,
}

/// Drives a session over `chunks` like a server would: recipients whose local part
/// starts with "bad" are unknown, deliveries to "full" ones are over quota.
fn run(chunks: &[&[u8]], cfg: Config) -> Transcript {
    let mut s = Session::new(cfg);
    let mut t = Transcript::default();
    let push = |t: &mut Transcript, r: &Reply| {
        t.wire.push_str(std::str::from_utf8(&r.to_bytes()).unwrap())
    };
    push(&mut t, &s.greeting());
    let mut buf: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    let mut spool = Vec::new();
    'chunks: for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let (n, action) = s.advance(&buf, &mut body);
            assert!(n <= buf.len());
            buf.drain(..n);
            spool.append(&mut body);
            match action {
                Action::NeedInput => break,
                Action::Reply(r) | Action::StartData(r) => push(&mut t, &r),
                Action::Close(r) => {
                    push(&mut t, &r);
                    t.closed = true;
                    break 'chunks;
                }
                Action::Recipient(m) => {
                    let verdict = if m.local().starts_with("bad") {
                        Reply::unknown_user("no such user")
                    } else {
                        Reply::new(250, Some(Status::new(2, 1, 5)), "Ok")
                    };
                    push(&mut t, &s.rcpt_verdict(verdict));
                }
                Action::Message { size } => {
                    let rcpts = s.transaction().unwrap().recipients.clone();
                    assert_eq!(
                        size as usize,
                        spool.len() + spool.iter().filter(|&&b| b == b'\n').count()
                    );
                    let verdicts = rcpts
                        .iter()
                        .map(|m| match m.local().starts_with("full") {
                            true => Reply::over_quota("quota exceeded"),
                            false => Reply::delivered(&format!("<{}> delivered", m.address())),
                        })
                        .collect();
                    for r in s.data_verdicts(verdicts) {
                        push(&mut t, &r);
                    }
                    let names = rcpts.iter().map(Mailbox::address).collect();
                    t.messages.push((names, std::mem::take(&mut spool)));
                }
                Action::Replies(rs) => {
                    spool.clear();
                    for r in rs {
                        push(&mut t, &r);
                    }
                }
            }
        }
        t.max_pending = t.max_pending.max(buf.len());
    }
    t
}

fn run1(input: &str) -> Transcript {
    run(&[input.as_bytes()], config())
}

const LHLO_REPLY: &str = "250-mx.example.org\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-SIZE 1000\r\n250 SMTPUTF8\r\n";

const SESSION: &str = "LHLO postfix.example.org\r\n\
MAIL FROM:<s@example.org> SIZE=20 BODY=8BITMIME\r\n\
RCPT TO:<a@example.org>\r\nRCPT TO:<bad@example.org>\r\nRCPT TO:<full@example.org>\r\nDATA\r\n\
Subject: hi\r\n\r\n..dot\r\n.\r\n\
MAIL FROM:<> \r\nRCPT TO:<a@example.org>\r\nDATA\r\n.\r\nQUIT\r\n";

#[test]
fn a_pipelined_session_gets_one_reply_per_command_and_per_recipient() {
    let t = run1(SESSION);
    let expect = String::new()
        + "220 mx.example.org LMTP ready\r\n"
        + LHLO_REPLY
        + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n250 2.1.5 Ok\r\n"
        + "354 End data with <CR><LF>.<CR><LF>\r\n"
        + "250 2.0.0 <a@example.org> delivered\r\n552 5.2.2 quota exceeded\r\n"
        + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
        + "250 2.0.0 <a@example.org> delivered\r\n221 2.0.0 Bye\r\n";
    assert_eq!(t.wire, expect);
    assert!(t.closed);
    assert_eq!(t.messages.len(), 2);
    let rcpts = vec!["a@example.org".to_string(), "full@example.org".into()];
    assert_eq!(t.messages[0], (rcpts, b"Subject: hi\n\n.dot\n".to_vec()));
    assert_eq!(t.messages[1].1, b"");
}

#[test]
fn any_split_of_the_input_gives_the_same_session() {
    let whole = run1(SESSION);
    let input = SESSION.as_bytes();
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let t = run(&[a, b], config());
        assert_eq!(
            (&t.wire, &t.messages),
            (&whole.wire, &whole.messages),
            "cut at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let t = run(&bytes, config());
    assert_eq!((t.wire, t.messages), (whole.wire, whole.messages));
}

fn replies_after_lhlo(commands: &str) -> String {
    let t = run1(&format!("LHLO x\r\n{commands}"));
    let head = format!("220 mx.example.org LMTP ready\r\n{LHLO_REPLY}");
    t.wire.strip_prefix(&head).unwrap().to_string()
}

#[test]
fn commands_out_of_order_get_503() {
    let t = run1("MAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\n");
    assert_eq!(
        t.wire,
        "220 mx.example.org LMTP ready\r\n503 5.5.1 Error: send LHLO first\r\n\
         503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(
        replies_after_lhlo("MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\n"),
        "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n503 5.5.1 Error: no valid recipients\r\n"
    );
    // Only refused recipients: DATA is still refused, and no message data is read.
    assert_eq!(
        replies_after_lhlo("MAIL FROM:<a@b>\r\nRCPT TO:<bad@b>\r\nDATA\r\nNOOP\r\n"),
        "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n503 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn rset_noop_vrfy_lhlo_anywhere() {
    assert_eq!(
        replies_after_lhlo(
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\nRCPT TO:<c@d>\r\nNOOP\r\nVRFY x\r\n"
        ),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n\
         250 2.0.0 Ok\r\n252 2.5.0 Send mail and I will try my best\r\n"
    );
    // A second LHLO ends the transaction too.
    let t = replies_after_lhlo("MAIL FROM:<a@b>\r\nLHLO y\r\nRCPT TO:<c@d>\r\n");
    assert!(t.ends_with("503 5.5.1 Error: need MAIL command\r\n"), "{t}");
    let t = run1("NOOP\r\nRSET\r\nQUIT\r\nNOOP\r\n");
    assert!(t
        .wire
        .ends_with("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"));
    assert!(t.closed);
}

#[test]
fn size_limits_at_mail_and_after_data() {
    assert_eq!(
        replies_after_lhlo("MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n"),
        "552 5.3.4 Error: message file too big\r\n250 2.1.0 Ok\r\n"
    );
    // Over the maximum in DATA: read to the end, 552 for each recipient, in step after.
    let big = "x".repeat(600);
    let t = replies_after_lhlo(&format!(
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@d>\r\nDATA\r\n{big}\r\n{big}\r\n.\r\nNOOP\r\n"
    ));
    assert!(t.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Error: message file too big\r\n552 5.3.4 Error: message file too big\r\n250 2.0.0 Ok\r\n"), "{t}");
}

#[test]
fn recipients_are_capped_per_transaction() {
    let t = replies_after_lhlo(
        "MAIL FROM:<a@b>\r\nRCPT TO:<bad@d>\r\nRCPT TO:<c1@d>\r\nRCPT TO:<c2@d>\r\nRCPT TO:<c3@d>\r\nRCPT TO:<c4@d>\r\n",
    );
    assert!(
        t.ends_with("250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n"),
        "{t}"
    );
    assert_eq!(
        t.matches("250 2.1.5").count(),
        3,
        "refused ones do not count"
    );
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    assert_eq!(
        replies_after_lhlo("MAIL FROM:<j\u{f6}@b>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<\u{fc}@d>\r\n"),
        "553 5.6.7 Error: non-ASCII address without SMTPUTF8\r\n250 2.1.0 Ok\r\n\
         553 5.6.7 Error: non-ASCII address without SMTPUTF8\r\n"
    );
    assert_eq!(
        replies_after_lhlo("MAIL FROM:<j\u{f6}@b> SMTPUTF8\r\nRCPT TO:<\u{fc}@d>\r\n"),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
    );
}

#[test]
fn an_over_long_line_is_discarded_as_it_comes_and_answered_once() {
    let long = format!("NOOP {}\r\n", "x".repeat(10 * MAX_LINE));
    let input = format!("LHLO x\r\n{long}NOOP\r\n");
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(100).collect();
    let t = run(&chunks, config());
    assert!(
        t.wire
            .ends_with("500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"),
        "{}",
        t.wire
    );
    assert!(t.max_pending < MAX_LINE + 100, "buffered {}", t.max_pending);
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut cfg = config();
    cfg.max_errors = 2;
    let t = run(&[b"EHLO x\r\nHELO x\r\n\0\r\nNOOP\r\n"], cfg);
    assert!(t.closed);
    assert!(
        t.wire
            .ends_with("421 4.7.0 mx.example.org Error: too many errors\r\n"),
        "{}",
        t.wire
    );
}

#[test]
fn verdict_calls_at_the_wrong_time_change_nothing() {
    let mut s = Session::new(config());
    assert_eq!(s.rcpt_verdict(Reply::ok("x")).code(), 503);
    assert!(s.data_verdicts(vec![Reply::ok("x")]).is_empty());
    assert!(s.transaction().is_none());
}

/// Runs `input` (one transaction, every recipient accepted) and returns the replies
/// the session makes of `verdicts` after DATA.
fn data_replies(s: &mut Session, mut input: &[u8], verdicts: Vec<Reply>) -> Vec<Reply> {
    let mut body = Vec::new();
    loop {
        let (n, action) = s.advance(input, &mut body);
        input = &input[n..];
        match action {
            Action::Recipient(_) => {
                s.rcpt_verdict(Reply::ok(""));
            }
            Action::Message { .. } => return s.data_verdicts(verdicts),
            Action::NeedInput => panic!("stalled"),
            _ => {}
        }
    }
}

#[test]
fn missing_and_extra_data_verdicts_still_give_one_reply_per_recipient() {
    let mut s = Session::new(config());
    let transaction = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@d>\r\nDATA\r\n.\r\n";
    let first = [&b"LHLO x\r\n"[..], transaction].concat();
    let replies = data_replies(&mut s, &first, vec![]);
    assert_eq!(
        replies.iter().map(Reply::code).collect::<Vec<_>>(),
        [451, 451]
    );
    assert!(s.transaction().is_none(), "the transaction ended");
    let three = vec![Reply::ok("1"), Reply::ok("2"), Reply::ok("3")];
    let replies = data_replies(&mut s, transaction, three);
    assert_eq!(replies, [Reply::ok("1"), Reply::ok("2")]);
}

/// No limit (vmail-lmtpd's `max_message_size = 0`) is advertised as RFC 1870's `SIZE 0`,
/// not as a number Postfix's signed size cannot hold; any SIZE= is then accepted.
#[test]
fn no_size_limit_is_advertised_as_size_0() {
    let cfg = Config {
        max_size: u64::MAX,
        ..config()
    };
    let t = run(
        &[b"LHLO x\r\nMAIL FROM:<s@example.org> SIZE=99999999999\r\n"],
        cfg,
    );
    assert!(t.wire.contains("250-SIZE 0\r\n"), "{}", t.wire);
    assert!(t.wire.ends_with("250 2.1.0 Ok\r\n"), "{}", t.wire);
}
