use super::*;
use proptest::prelude::*;

fn reply_bytes(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(reply, &mut out);
    out
}

#[test]
fn parses_the_captured_transcript() {
    assert_eq!(
        parse_request(b"H3\t2\t0\t\tauth\n"),
        Ok(Request::Hello(Hello {
            major: 3,
            minor: 2,
            value_type: VALUE_TYPE_STRING,
            user: Vec::new(),
            dict_name: b"auth".to_vec(),
        }))
    );
    let req = parse_request(b"Lshared/passdb/alice@example.test\talice@example.test\n").unwrap();
    assert_eq!(
        req,
        Request::Lookup {
            key: b"shared/passdb/alice@example.test".to_vec(),
            user: Some(b"alice@example.test".to_vec()),
        }
    );
    assert_eq!(req.shared_key(), Some(&b"passdb/alice@example.test"[..]));
    assert_eq!(
        parse_request(b"I0\t0\tshared/userdb/\t*\n"),
        Ok(Request::Iterate {
            flags: 0,
            max_rows: 0,
            path: b"shared/userdb/".to_vec(),
            user: Some(b"*".to_vec()),
        })
    );
}

#[test]
fn encodes_the_captured_replies() {
    assert_eq!(
        reply_bytes(&Reply::Found(br#"{"password":"{PLAIN}secret"}"#.to_vec())),
        b"O{\"password\":\"{PLAIN}secret\"}\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Row {
            key: b"shared/userdb/alice@example.test".to_vec(),
            value: b"{}".to_vec()
        }),
        b"Oshared/userdb/alice@example.test\t{}\n"
    );
    assert_eq!(reply_bytes(&Reply::EndOfRows), b"\n");
    assert_eq!(reply_bytes(&Reply::NotFound), b"N\n");
    assert_eq!(reply_bytes(&Reply::Failed("db down".into())), b"Fdb down\n");
    assert_eq!(
        reply_bytes(&Reply::Row {
            key: b"k".to_vec(),
            value: Vec::new()
        }),
        b"Ok\t\n",
        "the TAB stays for an empty value"
    );
}

#[test]
fn lookup_variants() {
    // Pre-2.3.17 clients send no username.
    let req = parse_request(b"Lshared/userdb/a@b").unwrap();
    assert_eq!(
        req,
        Request::Lookup {
            key: b"shared/userdb/a@b".to_vec(),
            user: None
        }
    );
    let req = parse_request(b"Lpriv/quota\tu").unwrap();
    assert_eq!(req.shared_key(), None);
    assert_eq!(
        parse_request(b"L"),
        Ok(Request::Lookup {
            key: Vec::new(),
            user: None
        })
    );
    // Escaped key, extra fields ignored, CRLF accepted, non-UTF-8 kept.
    assert_eq!(
        parse_request(b"Lshared/x\x01ty\x011\x01n\tu\xff\textra\r\n"),
        Ok(Request::Lookup {
            key: b"shared/x\ty\x01\n".to_vec(),
            user: Some(b"u\xff".to_vec())
        })
    );
    assert_eq!(
        parse_request(b"Lshared/a\x010b"),
        Ok(Request::Lookup {
            key: b"shared/a\0b".to_vec(),
            user: None
        })
    );
    assert_eq!(
        parse_request(b"Iabc\t0\tshared/"),
        Err(DictError::BadNumber {
            command: "iterate",
            field: "flags",
            input: "abc".into()
        })
    );
}

#[test]
fn iterate_variants() {
    assert_eq!(
        parse_request(b"I9\t18446744073709551615\tshared/userdb/"),
        Ok(Request::Iterate {
            flags: ITERATE_RECURSE | ITERATE_NO_VALUE,
            max_rows: u64::MAX,
            path: b"shared/userdb/".to_vec(),
            user: None
        })
    );
    for line in [&b"I0\t0"[..], b"I0", b"I"] {
        assert!(
            matches!(parse_request(line), Err(DictError::Malformed { .. })),
            "{line:?}"
        );
    }
    for line in [
        &b"I0\t18446744073709551616\tp"[..],
        b"I4294967296\t0\tp",
        b"I-1\t0\tp",
        b"I\t0\tp",
        b"I0\t 1\tp",
    ] {
        assert!(
            matches!(parse_request(line), Err(DictError::BadNumber { .. })),
            "{line:?}"
        );
    }
}

#[test]
fn hello_variants() {
    assert_eq!(
        parse_request(b"H2\t1\t1\tuser\x01t1\tquota\textra"),
        Ok(Request::Hello(Hello {
            major: 2,
            minor: 1,
            value_type: VALUE_TYPE_UINT32,
            user: b"user\t1".to_vec(),
            dict_name: b"quota".to_vec(),
        }))
    );
    assert!(matches!(
        parse_request(b"H3\t2\t0\t"),
        Err(DictError::Malformed { .. })
    ));
    assert!(matches!(
        parse_request(b"Hx\t2\t0\t\tauth"),
        Err(DictError::BadNumber { .. })
    ));
    assert!(matches!(
        parse_request(b"H\t2\t0\t\tauth"),
        Err(DictError::BadNumber { .. })
    ));
}

#[test]
fn other_commands_are_unsupported() {
    for (line, c) in [
        (&b"B1"[..], 'B'),
        (b"C1", 'C'),
        (b"S1\tk\tv", 'S'),
        (b"U1\tk", 'U'),
        (b"A1\tk\t1", 'A'),
        (b"R1", 'R'),
        (b"x", 'x'),
        (b"\xe9", '\u{e9}'),
        (b"\t", '\t'),
    ] {
        assert_eq!(parse_request(line), Ok(Request::Unsupported(c)), "{line:?}");
    }
}

#[test]
fn framing_errors() {
    assert_eq!(parse_request(b""), Err(DictError::EmptyLine));
    assert_eq!(parse_request(b"\n"), Err(DictError::EmptyLine));
    assert_eq!(parse_request(b"\r\n"), Err(DictError::EmptyLine));
    assert_eq!(parse_request(b"Lshared/a\0b"), Err(DictError::Nul));
    assert_eq!(find_line(b""), Ok(None));
    assert_eq!(find_line(b"Lshared/a"), Ok(None));
    assert_eq!(find_line(b"N\nO"), Ok(Some(2)));
    let mut line = vec![b'L'; MAX_LINE - 1];
    line.push(b'\n');
    assert_eq!(find_line(&line), Ok(Some(MAX_LINE)));
    assert!(parse_request(&line).is_ok());
    let long = vec![b'L'; MAX_LINE];
    assert_eq!(
        find_line(&long),
        Err(DictError::LineTooLong { max: MAX_LINE })
    );
    let mut longer = long.clone();
    longer.push(b'\n');
    assert_eq!(
        parse_request(&longer),
        Err(DictError::LineTooLong { max: MAX_LINE })
    );
    let line = b"Lshared/passdb/a@b\ta@b\n";
    for cut in 0..line.len() {
        assert_eq!(find_line(&line[..cut]), Ok(None), "cut {cut}");
    }
}

#[test]
fn errors_quote_little() {
    let mut line = b"I".to_vec();
    line.extend(std::iter::repeat_n(b'9', 60_000));
    line.extend_from_slice(b"\t0\tp");
    let msg = parse_request(&line).unwrap_err().to_string();
    assert!(msg.len() < 200, "{}", msg.len());
}

#[test]
fn escaping_in_replies() {
    let bytes = reply_bytes(&Reply::Found(b"a\tb\nc\x01d\re\0".to_vec()));
    assert_eq!(bytes, b"Oa\x01tb\x01nc\x011d\x01re\x010\n");
    assert_eq!(
        parse_lookup_reply(&bytes),
        Ok(Reply::Found(b"a\tb\nc\x01d\re\0".to_vec()))
    );
    let bytes = reply_bytes(&Reply::Failed("broken\tpipe\nF".into()));
    assert_eq!(bytes, b"Fbroken?pipe?F\n");
    let long = reply_bytes(&Reply::Failed("x".repeat(10_000)));
    assert_eq!(long.len(), 1 + REASON_MAX + 1);
    let row = Reply::Row {
        key: b"shared/userdb/\t\x01".to_vec(),
        value: b"{\"home\":\"/a\tb\"}".to_vec(),
    };
    let bytes = reply_bytes(&row);
    assert_eq!(bytes.iter().filter(|&&b| b == b'\t').count(), 1);
    assert_eq!(parse_iterate_reply(&bytes), Ok(row));
}

#[test]
fn reply_parsers_read_like_dovecot() {
    // Dovecot servers append timings; the client ignores them.
    assert_eq!(
        parse_lookup_reply(b"Ovalue\t1\t2\t3\t4\n"),
        Ok(Reply::Found(b"value".to_vec()))
    );
    assert_eq!(parse_lookup_reply(b"N\n"), Ok(Reply::NotFound));
    assert_eq!(parse_lookup_reply(b"F"), Ok(Reply::Failed(String::new())));
    assert!(parse_lookup_reply(b"").is_err());
    assert!(parse_lookup_reply(b"X").is_err());
    assert_eq!(parse_iterate_reply(b"\n"), Ok(Reply::EndOfRows));
    assert_eq!(parse_iterate_reply(b"\t1\t2\t3\t4\n"), Ok(Reply::EndOfRows));
    assert!(
        parse_iterate_reply(b"Okey-without-value\n").is_err(),
        "Dovecot: broken iterate reply"
    );
    assert_eq!(
        parse_iterate_reply(b"Fdb\n"),
        Ok(Reply::Failed("db".into()))
    );
    // The wrong letter makes Dovecot report "User listing returned failure".
    assert!(parse_iterate_reply(b"Nshared/userdb/a\t{}").is_err());
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #[test]
    fn requests_round_trip(key in arb_bytes(128), user in proptest::option::of(arb_bytes(32)),
                           flags in any::<u32>(), max_rows in any::<u64>(),
                           major in any::<u32>(), minor in any::<u32>(), vt in any::<u32>(),
                           huser in arb_bytes(16), name in arb_bytes(16)) {
        for req in [
            Request::Lookup { key: key.clone(), user: user.clone() },
            Request::Iterate { flags, max_rows, path: key.clone(), user: user.clone() },
            Request::Hello(Hello { major, minor, value_type: vt, user: huser.clone(),
                                   dict_name: name.clone() }),
        ] {
            let mut line = Vec::new();
            encode_request(&req, &mut line);
            prop_assert_eq!(find_line(&line), Ok(Some(line.len())));
            prop_assert_eq!(parse_request(&line), Ok(req));
        }
    }

    #[test]
    fn replies_round_trip(key in arb_bytes(128), value in arb_bytes(256)) {
        let bytes = reply_bytes(&Reply::Found(value.clone()));
        prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(parse_lookup_reply(&bytes), Ok(Reply::Found(value.clone())));
        let row = Reply::Row { key, value };
        let bytes = reply_bytes(&row);
        prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(parse_iterate_reply(&bytes), Ok(row));
    }

    #[test]
    fn failures_always_parse_back(reason in "(?s).{0,300}") {
        let bytes = reply_bytes(&Reply::Failed(reason));
        prop_assert!(matches!(parse_lookup_reply(&bytes), Ok(Reply::Failed(_))));
        prop_assert!(matches!(parse_iterate_reply(&bytes), Ok(Reply::Failed(_))));
    }

    #[test]
    fn parsers_never_panic(line in arb_bytes(600)) {
        let _ = parse_request(&line);
        let _ = parse_lookup_reply(&line);
        let _ = parse_iterate_reply(&line);
        if let Ok(Some(n)) = find_line(&line) {
            prop_assert!(n <= line.len() && line[n - 1] == b'\n');
        }
    }
}
