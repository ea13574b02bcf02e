use super::*;

fn code(line: &str) -> (u16, Option<Status>) {
    let r = parse_command(line.as_bytes()).unwrap_err();
    (r.code(), r.status())
}

fn st(class: u8, subject: u16, detail: u16) -> Option<Status> {
    Some(Status::new(class, subject, detail))
}

fn mail(line: &str) -> MailFrom {
    match parse_command(line.as_bytes()) {
        Ok(Command::Mail(m)) => m,
        other => panic!("{line}: {other:?}"),
    }
}

fn rcpt(line: &str) -> Mailbox {
    match parse_command(line.as_bytes()) {
        Ok(Command::Rcpt(m)) => m,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn find_line_waits_for_lf_and_caps_the_search() {
    assert_eq!(find_line(b""), Ok(None));
    assert_eq!(find_line(b"NOOP\r"), Ok(None));
    assert_eq!(find_line(b"NOOP\r\nQUIT\r\n"), Ok(Some(6)));
    assert_eq!(find_line(b"NOOP\nQUIT"), Ok(Some(5)));
    let mut long = vec![b'x'; MAX_LINE - 1];
    assert_eq!(find_line(&long), Ok(None));
    long.push(b'\n');
    assert_eq!(find_line(&long), Ok(Some(MAX_LINE)));
    long.pop();
    long.push(b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(find_line(&long), Err(LineTooLong));
}

#[test]
fn simple_commands_case_insensitive_with_either_line_end() {
    for (line, cmd) in [
        ("DATA\r\n", Command::Data),
        ("data\n", Command::Data),
        ("RSET\r\n", Command::Rset),
        ("NOOP\r\n", Command::Noop),
        ("NOOP anything at all\r\n", Command::Noop),
        ("QUIT  \r\n", Command::Quit),
        ("VRFY postmaster\r\n", Command::Vrfy),
        (
            "LHLO mx.example.org\r\n",
            Command::Lhlo("mx.example.org".into()),
        ),
    ] {
        assert_eq!(parse_command(line.as_bytes()), Ok(cmd), "{line:?}");
    }
}

#[test]
fn refused_commands_get_their_codes() {
    assert_eq!(code("HELO x\r\n"), (500, st(5, 5, 1)));
    assert_eq!(code("EHLO x\r\n"), (500, st(5, 5, 1)));
    for verb in [
        "BDAT 10 LAST",
        "STARTTLS",
        "AUTH PLAIN",
        "EXPN list",
        "HELP",
        "ETRN x",
    ] {
        assert_eq!(code(verb), (502, st(5, 5, 1)), "{verb}");
    }
    assert_eq!(code("XFORWARD NAME=x"), (500, st(5, 5, 1)));
    assert_eq!(code(""), (500, st(5, 5, 1)));
    assert_eq!(code("LHLO"), (501, st(5, 5, 4)));
    assert_eq!(code("VRFY"), (501, st(5, 5, 4)));
    assert_eq!(code("DATA now"), (501, st(5, 5, 4)));
    assert_eq!(code("QUIT now"), (501, st(5, 5, 4)));
}

#[test]
fn control_bytes_and_nul_are_syntax_errors() {
    assert_eq!(code("NOOP \0x\r\n"), (500, st(5, 5, 2)));
    assert_eq!(code("NO\rOP\r\n"), (500, st(5, 5, 2)));
    assert_eq!(code("MAIL FROM:<a\0@b>\r\n"), (500, st(5, 5, 2)));
    assert_eq!(code("NOOP \x7f\r\n"), (500, st(5, 5, 2)));
    assert_eq!(parse_command(b"NOOP x\ty\r\n"), Ok(Command::Noop));
}

#[test]
fn mail_paths_and_parameters() {
    let m = mail("MAIL FROM:<>\r\n");
    assert_eq!(
        (m.sender, m.size, m.body, m.smtputf8),
        (None, None, None, false)
    );
    let m = mail("MAIL FROM:<s@example.org> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n");
    assert_eq!(m.sender.unwrap().address(), "s@example.org");
    assert_eq!(
        (m.size, m.body, m.smtputf8),
        (Some(1234), Some(Body::EightBitMime), true)
    );
    assert_eq!(
        mail("mail from: <a@b> body=7bit").body,
        Some(Body::SevenBit)
    );
    assert_eq!(code("MAIL FROM:<a@b> FOO=1"), (555, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:<a@b> BODY=BINARYMIME"), (555, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:<a@b> SMTPUTF8=yes"), (555, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:<a@b> SIZE"), (555, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:<a@b> SIZE=-1"), (501, st(5, 5, 4)));
    assert_eq!(
        code("MAIL FROM:<a@b> SIZE=99999999999999999999999"),
        (501, st(5, 5, 4))
    );
    assert_eq!(code("MAIL FROM:<a@b> SIZE=1 size=2"), (501, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:<a@b>x"), (501, st(5, 5, 4)));
    assert_eq!(code("MAIL FROM:a@b"), (501, st(5, 5, 4)));
    assert_eq!(code("MAIL TO:<a@b>"), (501, st(5, 5, 4)));
    assert_eq!(code("MAIL"), (501, st(5, 5, 4)));
}

#[test]
fn rcpt_takes_no_parameters_and_no_null_path() {
    assert_eq!(
        rcpt("RCPT TO:<u@example.org>\r\n").address(),
        "u@example.org"
    );
    assert_eq!(
        code("RCPT TO:<u@example.org> NOTIFY=NEVER"),
        (555, st(5, 5, 4))
    );
    assert_eq!(
        code("RCPT TO:<u@example.org> ORCPT=rfc822;u@x"),
        (555, st(5, 5, 4))
    );
    assert_eq!(code("RCPT TO:<>"), (501, st(5, 1, 3)));
    assert_eq!(code("RCPT TO:<postmaster>"), (501, st(5, 1, 3)));
    assert_eq!(code("RCPT FROM:<u@x>"), (501, st(5, 5, 4)));
}

#[test]
fn quoted_local_parts_are_unquoted() {
    let m = rcpt(r#"RCPT TO:<"john doe"@example.org>"#);
    assert_eq!((m.local(), m.domain()), ("john doe", "example.org"));
    let m = rcpt(r#"RCPT TO:<"a\"b\\c>d"@x.org>"#);
    assert_eq!(m.local(), r#"a"b\c>d"#);
    let m = rcpt(r#"RCPT TO:<"a@b"@c.org>"#);
    assert_eq!(m.address().rsplit_once('@'), Some(("a@b", "c.org")));
    assert_eq!(code(r#"RCPT TO:<"unterminated@x.org>"#), (501, st(5, 1, 3)));
    assert_eq!(code(r#"RCPT TO:<""@x.org>"#), (501, st(5, 1, 3)));
}

#[test]
fn source_routes_are_dropped() {
    let m = rcpt("RCPT TO:<@a.example,@b.example:u@d.example>");
    assert_eq!(m.address(), "u@d.example");
    assert_eq!(
        mail("MAIL FROM:<@a.example:s@d.example>")
            .sender
            .unwrap()
            .address(),
        "s@d.example"
    );
    assert_eq!(
        code("RCPT TO:<@a.example,b.example:u@d>"),
        (501, st(5, 1, 3))
    );
    assert_eq!(code("RCPT TO:<@a.example:>"), (501, st(5, 1, 3)));
    assert_eq!(code("MAIL FROM:<@a.example:>"), (501, st(5, 1, 7)));
}

#[test]
fn bad_addresses_are_refused() {
    for bad in [
        "<u@>",
        "<@>",
        "<u>",
        "<u@a..b>",
        "<u@.a>",
        "<.u@a>",
        "<u.@a>",
        "<u@a",
        "<u@[]>",
        "<u@[1.2.3.4>",
        "<u v@a>",
        "<u@a b>",
        "<u@a>>",
    ] {
        let line = format!("RCPT TO:{bad}");
        let r = parse_command(line.as_bytes()).unwrap_err();
        assert!(r.code() == 501, "{bad}: {r:?}");
    }
    assert_eq!(rcpt("RCPT TO:<u@[192.0.2.1]>").domain(), "[192.0.2.1]");
    assert_eq!(rcpt("RCPT TO:<a.b+c@x_y.example>").local(), "a.b+c");
    assert_eq!(rcpt("RCPT TO:<\u{fc}\u{ff}@x>\r\n").local(), "\u{fc}\u{ff}");
    assert_eq!(code("RCPT TO:<\x7fu@x>").0, 500);
    assert_eq!(parse_command(b"RCPT TO:<\xff@x>").unwrap_err().code(), 501);
}

#[test]
fn length_limits_of_rfc_5321() {
    let local64 = "l".repeat(64);
    assert_eq!(rcpt(&format!("RCPT TO:<{local64}@x.org>")).local(), local64);
    assert_eq!(
        code(&format!("RCPT TO:<{local64}l@x.org>")),
        (501, st(5, 1, 3))
    );
    let label = "d".repeat(63);
    let domain = [label.as_str(); 4].join(".");
    assert_eq!(domain.len(), 255);
    // 64 + 1 + 255 + 2 = 322 > 256: every part may be at its limit but not the path.
    assert_eq!(
        code(&format!("RCPT TO:<{local64}@{domain}>")),
        (501, st(5, 1, 3))
    );
    assert_eq!(
        code(&format!("MAIL FROM:<u@{domain}d>")),
        (501, st(5, 1, 7))
    );
    let domain = "d".repeat(252);
    assert_eq!(rcpt(&format!("RCPT TO:<u@{domain}>")).domain(), domain);
    assert_eq!(code(&format!("RCPT TO:<uu@{domain}>")), (501, st(5, 1, 3)));
    // Exactly MAX_LINE with its line end, whichever it is, and one byte more.
    let fits = format!("NOOP {}", "x".repeat(MAX_LINE - 7));
    for end in ["\r\n", ""] {
        let line = format!("{fits}{end}");
        assert_eq!(parse_command(line.as_bytes()), Ok(Command::Noop), "{end:?}");
        assert_eq!(
            code(&format!("{fits}x{end}")),
            (500, st(5, 5, 2)),
            "{end:?}"
        );
    }
    let line = format!("{fits}x\n");
    assert_eq!(find_line(line.as_bytes()), Ok(Some(MAX_LINE)));
    assert_eq!(parse_command(line.as_bytes()), Ok(Command::Noop));
    let long = format!("NOOP {}\r\n", "x".repeat(MAX_LINE));
    assert_eq!(code(&long), (500, st(5, 5, 2)));
}

#[test]
fn utf8_addresses_parse_and_say_they_are_not_ascii() {
    let m = mail("MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8");
    let s = m.sender.unwrap();
    assert_eq!(s.address(), "j\u{f6}rg@b\u{fc}cher.example");
    assert!(!s.is_ascii());
    assert!(rcpt("RCPT TO:<a@b>").is_ascii());
}

#[test]
fn any_split_of_a_pipelined_group_gives_the_same_lines() {
    let group = b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nDATA\r\n";
    let whole = lines(group);
    assert_eq!(whole.len(), 4);
    for cut in 0..=group.len() {
        // Only a prefix is available: the lines found are a prefix of the whole.
        let got = lines(&group[..cut]);
        assert_eq!(got[..], whole[..got.len()], "cut at {cut}");
    }
}

fn lines(mut buf: &[u8]) -> Vec<Result<Command, Reply>> {
    let mut out = Vec::new();
    while let Ok(Some(n)) = find_line(buf) {
        assert!(n <= buf.len());
        out.push(parse_command(&buf[..n]));
        buf = &buf[n..];
    }
    out
}
