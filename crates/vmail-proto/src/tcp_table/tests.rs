use super::*;
use proptest::prelude::*;

fn enc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_param(raw, &mut out);
    out
}

fn reply_bytes(reply: &TcpReply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(reply, &mut out);
    out
}

/// What Postfix's `hex_quote()` decides, written the way Postfix writes it.
fn postfix_quotes(ch: u8) -> bool {
    let is_space = matches!(ch, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let is_print = ch.is_ascii() && (0x20..0x7f).contains(&ch);
    !(ch != b'%' && !is_space && is_print)
}

#[test]
fn all_256_bytes_round_trip() {
    for b in 0..=255u8 {
        let e = enc(&[b]);
        if postfix_quotes(b) {
            assert_eq!(e, format!("%{b:02X}").as_bytes(), "byte {b:#04x}");
        } else {
            assert_eq!(e, [b], "byte {b:#04x}");
        }
        assert_eq!(decode_param(&e).unwrap(), [b]);
        // Lower-case hex decodes too.
        assert_eq!(decode_param(format!("%{b:02x}").as_bytes()).unwrap(), [b]);
    }
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(decode_param(&enc(&all)).unwrap(), all);
}

#[test]
fn encoding_matches_the_documented_set() {
    assert_eq!(enc(b"a b%c\td\x7fe\xc3\xa9"), b"a%20b%25c%09d%7Fe%C3%A9");
    assert_eq!(enc(b"user+ext@example.org"), b"user+ext@example.org");
}

#[test]
fn bad_escapes_are_errors() {
    for (input, offset) in [
        (&b"%G1"[..], 0),
        (b"ab%1G", 2),
        (b"%4", 0),
        (b"x%", 1),
        (b"%", 0),
        (b"%%41", 0),
        (b"%-1", 0),
    ] {
        match decode_param(input) {
            Err(TcpTableError::BadEscape { offset: got, .. }) => {
                assert_eq!(got, offset, "{input:?}")
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
}

#[test]
fn mixed_case_and_raw_bytes_decode_like_hex_unquote() {
    assert_eq!(decode_param(b"%4a%4B%4c").unwrap(), b"JKL");
    assert_eq!(decode_param(b"raw\xff\t").unwrap(), b"raw\xff\t");
    assert_eq!(decode_param(b"").unwrap(), b"");
}

#[test]
fn parses_get() {
    assert_eq!(
        parse_request(b"get user%2Bext@example.org\n"),
        Ok(TcpRequest::Get(b"user+ext@example.org".to_vec()))
    );
    assert_eq!(
        parse_request(b"get a%20b"),
        Ok(TcpRequest::Get(b"a b".to_vec()))
    );
    assert_eq!(parse_request(b"GET x"), Ok(TcpRequest::Get(b"x".to_vec())));
    assert_eq!(
        parse_request(b"get x\r\n"),
        Ok(TcpRequest::Get(b"x".to_vec()))
    );
}

#[test]
fn empty_key_parses() {
    let req = parse_request(b"get \n").unwrap();
    assert_eq!(req, TcpRequest::Get(Vec::new()));
    assert_eq!(crate::lookup_key(b""), None);
}

#[test]
fn invalid_utf8_and_nul_keys_parse() {
    assert_eq!(
        parse_request(b"get %FF%00x"),
        Ok(TcpRequest::Get(b"\xff\0x".to_vec()))
    );
}

#[test]
fn sql_metacharacters_pass_through_untouched() {
    let key: &[u8] = b"x'; DROP TABLE users; -- \"%_\\@example.org";
    let mut line = Vec::new();
    encode_request(&TcpRequest::Get(key.to_vec()), &mut line);
    assert_eq!(parse_request(&line), Ok(TcpRequest::Get(key.to_vec())));
}

#[test]
fn parses_put() {
    assert_eq!(
        parse_request(b"put k%20 v\n"),
        Ok(TcpRequest::Put {
            key: b"k ".to_vec(),
            value: b"v".to_vec()
        })
    );
}

#[test]
fn malformed_requests() {
    assert_eq!(parse_request(b""), Err(TcpTableError::EmptyRequest));
    assert_eq!(parse_request(b"\n"), Err(TcpTableError::EmptyRequest));
    assert_eq!(parse_request(b"\r\n"), Err(TcpTableError::EmptyRequest));
    assert!(matches!(
        parse_request(b"del x\n"),
        Err(TcpTableError::UnknownCommand(_))
    ));
    assert!(matches!(
        parse_request(b" get x\n"),
        Err(TcpTableError::UnknownCommand(_))
    ));
    for (line, got) in [(&b"get"[..], 0), (b"get a b", 2), (b"get  a", 2)] {
        assert_eq!(
            parse_request(line),
            Err(TcpTableError::WrongParamCount {
                command: "get",
                expected: 1,
                got
            }),
            "{line:?}"
        );
    }
    assert!(matches!(
        parse_request(b"put k"),
        Err(TcpTableError::WrongParamCount { command: "put", .. })
    ));
    assert!(matches!(
        parse_request(b"get %G1\n"),
        Err(TcpTableError::BadEscape { offset: 0, .. })
    ));
    assert!(matches!(
        parse_request(b"get abc%4\n"),
        Err(TcpTableError::BadEscape { offset: 3, .. })
    ));
}

#[test]
fn errors_do_not_echo_megabytes() {
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b'%', 1_000_000));
    let msg = parse_request(&line).unwrap_err().to_string();
    assert!(msg.len() < 200, "{} bytes", msg.len());
    let cmd = vec![b'x'; 1_000_000];
    let msg = parse_request(&cmd).unwrap_err().to_string();
    assert!(msg.len() < 200, "{} bytes", msg.len());
}

#[test]
fn find_line_edges() {
    assert_eq!(find_line(b"", 10), Ok(None));
    assert_eq!(find_line(b"get a", 10), Ok(None));
    assert_eq!(find_line(b"get a\n", 10), Ok(Some(6)));
    assert_eq!(find_line(b"\n", 10), Ok(Some(1)));
    // A line of exactly max bytes, LF included, is fine.
    assert_eq!(find_line(b"123456789\n", 10), Ok(Some(10)));
    assert_eq!(
        find_line(b"1234567890", 10),
        Err(TcpTableError::LineTooLong { max: 10 })
    );
    assert_eq!(
        find_line(b"1234567890\n", 10),
        Err(TcpTableError::LineTooLong { max: 10 })
    );
    // Bytes after the first line do not matter.
    assert_eq!(find_line(b"a\nbbbbbbbbbbbbbbbbbbbbbb", 10), Ok(Some(2)));
}

#[test]
fn every_truncation_of_a_request_is_incomplete() {
    let line = b"get user%2Bext@example.org\n";
    for cut in 0..line.len() {
        assert_eq!(
            find_line(&line[..cut], MAX_REQUEST_LINE),
            Ok(None),
            "cut {cut}"
        );
    }
    assert_eq!(find_line(line, MAX_REQUEST_LINE), Ok(Some(line.len())));
}

#[test]
fn pipelined_lines() {
    let mut buf = Vec::new();
    encode_request(&TcpRequest::Get(b"a@b".to_vec()), &mut buf);
    encode_request(&TcpRequest::Get(b"c d".to_vec()), &mut buf);
    buf.extend_from_slice(b"get partial");
    let n1 = find_line(&buf, MAX_REQUEST_LINE).unwrap().unwrap();
    assert_eq!(
        parse_request(&buf[..n1]),
        Ok(TcpRequest::Get(b"a@b".to_vec()))
    );
    let n2 = find_line(&buf[n1..], MAX_REQUEST_LINE).unwrap().unwrap();
    assert_eq!(
        parse_request(&buf[n1..n1 + n2]),
        Ok(TcpRequest::Get(b"c d".to_vec()))
    );
    assert_eq!(find_line(&buf[n1 + n2..], MAX_REQUEST_LINE), Ok(None));
}

#[test]
fn encodes_replies() {
    assert_eq!(
        reply_bytes(&TcpReply::Ok("a@b.c, d@e.f".into())),
        b"200 a@b.c,%20d@e.f\n"
    );
    assert_eq!(reply_bytes(&TcpReply::Ok(String::new())), b"200 \n");
    assert_eq!(
        reply_bytes(&TcpReply::NotFound("not found".into())),
        b"500 not%20found\n"
    );
    assert_eq!(
        reply_bytes(&TcpReply::Temp("100% broken\n".into())),
        b"400 100%25%20broken?\n"
    );
}

#[test]
fn ok_at_the_limit_is_sent_whole() {
    let data = "a".repeat(MAX_REPLY_LINE - 5);
    let bytes = reply_bytes(&TcpReply::Ok(data.clone()));
    assert_eq!(bytes.len(), MAX_REPLY_LINE);
    assert_eq!(parse_reply(&bytes), Ok(TcpReply::Ok(data)));
}

#[test]
fn oversized_ok_becomes_400_not_truncated() {
    for data in ["a".repeat(MAX_REPLY_LINE - 4), " ".repeat(1400)] {
        let bytes = reply_bytes(&TcpReply::Ok(data));
        assert!(bytes.len() <= MAX_REPLY_LINE);
        match parse_reply(&bytes) {
            Ok(TcpReply::Temp(reason)) => assert!(reason.contains("exceeds"), "{reason}"),
            other => panic!("expected 400, got {other:?}"),
        }
    }
}

#[test]
fn ok_with_nul_becomes_400() {
    let bytes = reply_bytes(&TcpReply::Ok("a\0b".into()));
    assert!(bytes.starts_with(b"400 "));
}

#[test]
fn reply_parser_is_as_strict_as_postfix() {
    for line in [
        &b""[..],
        b"200",
        b"20 x",
        b"2000x",
        b"200x",
        b"300 x",
        b"200 %G1",
        b"200 \xff",
    ] {
        assert!(parse_reply(line).is_err(), "{line:?}");
    }
    assert_eq!(parse_reply(b"250 x\n"), Ok(TcpReply::Ok("x".into())));
}

proptest! {
    #[test]
    fn param_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let e = enc(&raw);
        prop_assert!(e.iter().all(|&b| b.is_ascii_graphic()));
        prop_assert_eq!(decode_param(&e), Ok(raw));
    }

    #[test]
    fn get_round_trip(key in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut line = Vec::new();
        encode_request(&TcpRequest::Get(key.clone()), &mut line);
        prop_assert_eq!(find_line(&line, MAX_REQUEST_LINE), Ok(Some(line.len())));
        prop_assert_eq!(parse_request(&line), Ok(TcpRequest::Get(key)));
    }

    #[test]
    fn put_round_trip(key in proptest::collection::vec(any::<u8>(), 0..64),
                      value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let req = TcpRequest::Put { key, value };
        let mut line = Vec::new();
        encode_request(&req, &mut line);
        prop_assert_eq!(parse_request(&line), Ok(req));
    }

    #[test]
    fn ok_reply_round_trips_or_defers(data in "(?s).{0,1500}") {
        let bytes = reply_bytes(&TcpReply::Ok(data.clone()));
        prop_assert!(bytes.len() <= MAX_REPLY_LINE);
        prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        match parse_reply(&bytes) {
            Ok(TcpReply::Ok(got)) => prop_assert_eq!(got, data),
            Ok(TcpReply::Temp(_)) => {
                prop_assert!(data.contains('\0') || data.len() * 3 + 5 > MAX_REPLY_LINE)
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn texts_always_parse_back(text in "(?s).{0,500}", temp in any::<bool>()) {
        let reply = if temp { TcpReply::Temp(text) } else { TcpReply::NotFound(text) };
        let bytes = reply_bytes(&reply);
        let parsed = parse_reply(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
    }

    #[test]
    fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512),
                           max in 0usize..600) {
        let _ = parse_request(&buf);
        let _ = parse_reply(&buf);
        let _ = decode_param(&buf);
        if let Ok(Some(n)) = find_line(&buf, max) {
            prop_assert!(n <= max && n <= buf.len() && buf[n - 1] == b'\n');
        }
    }
}
