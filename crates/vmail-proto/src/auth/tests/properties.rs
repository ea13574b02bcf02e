//! Round trips and no-panic properties over the whole codec.

use super::*;

fn arb_ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|o| Some(IpAddr::from(o))),
        any::<[u8; 16]>().prop_map(|o| Some(IpAddr::from(o))),
    ]
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

const KNOWN: [&[u8]; 12] = [
    b"service",
    b"lip",
    b"rip",
    b"lport",
    b"rport",
    b"secured",
    b"valid-client-cert",
    b"nologin",
    b"no-penalty",
    b"session",
    b"local_name",
    b"resp",
];

fn arb_other() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    let name = proptest::collection::vec(any::<u8>().prop_filter("no =", |&b| b != b'='), 1..12)
        .prop_filter("not a known name", |n| !KNOWN.contains(&n.as_slice()));
    proptest::collection::vec((name, proptest::option::of(arb_bytes(24))), 0..4)
}

prop_compose! {
    fn arb_request()(
        id in 1..=u32::MAX,
        mech in arb_bytes(16),
        service in arb_bytes(16),
        local_ip in arb_ip(),
        remote_ip in arb_ip(),
        local_port in proptest::option::of(1..=u16::MAX),
        remote_port in proptest::option::of(1..=u16::MAX),
        secured in prop_oneof![Just(Secured::No), Just(Secured::Yes), Just(Secured::Tls)],
        flags in any::<[bool; 3]>(),
        session in proptest::option::of(arb_bytes(16)),
        local_name in proptest::option::of(arb_bytes(16)),
        resp in proptest::option::of(arb_bytes(64)),
        other in arb_other(),
    ) -> AuthRequest {
        AuthRequest {
            id, mech, service, local_ip, remote_ip, local_port, remote_port, secured,
            valid_client_cert: flags[0], no_login: flags[1], no_penalty: flags[2],
            session, local_name, resp: resp.map(Secret::new), other,
        }
    }
}

proptest! {
    #[test]
    fn escape_round_trip(raw in arb_bytes(512)) {
        let e = esc(&raw);
        prop_assert!(!e.iter().any(|&b| matches!(b, 0 | b'\t' | b'\r' | b'\n')));
        prop_assert_eq!(tab_unescape(&e), raw);
    }

    #[test]
    fn auth_line_round_trip(req in arb_request()) {
        let cmd = ClientCommand::Auth(req);
        let mut line = Vec::new();
        encode_command(&cmd, &mut line);
        prop_assert_eq!(find_line(&line), Ok(Some(line.len())));
        prop_assert_eq!(parse_command(&line), Ok(cmd));
    }

    #[test]
    fn replies_round_trip(id in any::<u32>(), user in arb_bytes(64),
                          challenge in arb_bytes(64), temp in any::<bool>()) {
        for reply in [
            Reply::Ok { id, user: user.clone(), extra: vec![("k".into(), Some(user.clone()))] },
            Reply::Cont { id, challenge: challenge.clone() },
            Reply::Fail { id, user: Some(user.clone()),
                          code: temp.then_some(FailCode::TempFail), reason: None },
        ] {
            let bytes = reply_bytes(&reply);
            prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(parse_reply(&bytes), Ok(reply));
        }
    }

    #[test]
    fn plain_round_trip(authcid in arb_bytes(32).prop_filter("", |v| !v.is_empty() && !v.contains(&0)),
                        password in arb_bytes(32).prop_filter("", |v| !v.contains(&0))) {
        let raw = [&b"\0"[..], &authcid, b"\0", &password].concat();
        let creds = decode_plain(&b64(&raw)).unwrap();
        prop_assert_eq!(creds.authcid, authcid);
        prop_assert_eq!(creds.password.expose(), &password[..]);
    }

    #[test]
    fn parsers_never_panic(line in arb_bytes(600)) {
        let _ = parse_command(&line);
        let _ = parse_reply(&line);
        let _ = decode_plain(&line);
        let _ = parse_plain(&line);
        let _ = decode_login_step(&line);
        if let Ok(Some(n)) = find_line(&line) {
            prop_assert!(n <= line.len() && line[n - 1] == b'\n');
        }
    }
}
