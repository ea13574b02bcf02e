//! Examples for each rule in the module documentation, in its order: escaping and
//! framing and the client's lines here, the server's output in `tests/reply.rs`, the
//! SASL payloads in `tests/sasl.rs`; the property tests over all of them are in
//! `tests/properties.rs`.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn esc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    tab_escape(raw, &mut out);
    out
}

fn reply_bytes(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(reply, &mut out);
    out
}

fn auth(line: &[u8]) -> Result<AuthRequest, AuthError> {
    match parse_command(line)? {
        ClientCommand::Auth(req) => Ok(req),
        other => panic!("not AUTH: {other:?}"),
    }
}

fn b64(raw: &[u8]) -> Vec<u8> {
    STANDARD.encode(raw).into_bytes()
}

// --- escaping ---

#[test]
fn escape_matches_dovecot() {
    assert_eq!(
        esc(b"a\tb\nc\rd\x01e\0f"),
        b"a\x01tb\x01nc\x01rd\x011e\x010f"
    );
    assert_eq!(esc(b"plain@example.org"), b"plain@example.org");
    assert_eq!(esc(b"\xc3\xbc\x7f\xff"), b"\xc3\xbc\x7f\xff");
    // The escape byte itself round-trips, also next to escape codes.
    assert_eq!(tab_unescape(&esc(b"\x011\x01t")), b"\x011\x01t");
}

#[test]
fn unescape_is_as_lenient_as_dovecot() {
    assert_eq!(tab_unescape(b"\x01t\x01r\x01n\x011\x010"), b"\t\r\n\x01\0");
    // Unknown code: the byte itself. Trailing escape byte: dropped.
    assert_eq!(tab_unescape(b"a\x01xb"), b"axb");
    assert_eq!(tab_unescape(b"a\x01"), b"a");
    assert_eq!(tab_unescape(b"\x01\x01"), b"\x01");
    assert_eq!(tab_unescape(b""), b"");
}

#[test]
fn all_bytes_escape_to_no_framing_bytes() {
    let all: Vec<u8> = (0..=255).collect();
    let e = esc(&all);
    assert!(!e.iter().any(|&b| matches!(b, 0 | b'\t' | b'\r' | b'\n')));
    assert_eq!(tab_unescape(&e), all);
}

// --- framing ---

#[test]
fn find_line_edges() {
    assert_eq!(find_line(b""), Ok(None));
    assert_eq!(find_line(b"CPID\t1"), Ok(None));
    assert_eq!(find_line(b"CPID\t1\nAUTH"), Ok(Some(7)));
    let mut line = vec![b'x'; MAX_LINE - 1];
    line.push(b'\n');
    assert_eq!(find_line(&line), Ok(Some(MAX_LINE)));
    let long = vec![b'x'; MAX_LINE];
    assert_eq!(
        find_line(&long),
        Err(AuthError::LineTooLong { max: MAX_LINE })
    );
    assert_eq!(
        find_line(&long[..MAX_LINE - 1]),
        Ok(None),
        "still waiting below the limit"
    );
    assert!(AuthError::LineTooLong { max: MAX_LINE }
        .to_string()
        .contains("line too long"));
}

#[test]
fn every_truncation_is_incomplete() {
    let line = b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGEAYg==\n";
    for cut in 0..line.len() {
        assert_eq!(find_line(&line[..cut]), Ok(None), "cut {cut}");
    }
    assert_eq!(find_line(line), Ok(Some(line.len())));
}

#[test]
fn overlong_line_is_refused_by_the_parser_too() {
    let mut line = b"AUTH\t1\tPLAIN\tservice=smtp\tx=".to_vec();
    line.resize(MAX_LINE + 1, b'a');
    assert_eq!(
        parse_command(&line),
        Err(AuthError::LineTooLong { max: MAX_LINE })
    );
}

// --- handshake commands ---

#[test]
fn parses_postfix_handshake() {
    assert_eq!(
        parse_command(b"VERSION\t1\t2\n"),
        Ok(ClientCommand::Version { major: 1, minor: 2 })
    );
    assert_eq!(
        parse_command(b"VERSION\t1\t0"),
        Ok(ClientCommand::Version { major: 1, minor: 0 })
    );
    assert_eq!(
        parse_command(b"CPID\t4242\r\n"),
        Ok(ClientCommand::Cpid(4242))
    );
}

#[test]
fn bad_handshakes() {
    for line in [&b"VERSION\t1"[..], b"VERSION\t1\t2\t3", b"VERSION", b"CPID"] {
        assert!(
            matches!(parse_command(line), Err(AuthError::Malformed { .. })),
            "{line:?}"
        );
    }
    for line in [
        &b"VERSION\tx\t2"[..],
        b"VERSION\t1\t-2",
        b"VERSION\t1\t",
        b"CPID\t0",
        b"CPID\t",
        b"CPID\t12 ",
        b"CPID\t4294967296",
    ] {
        assert!(
            matches!(parse_command(line), Err(AuthError::BadNumber { .. })),
            "{line:?}"
        );
    }
    assert_eq!(
        parse_command(b"CPID\t4294967295"),
        Ok(ClientCommand::Cpid(u32::MAX))
    );
}

#[test]
fn unknown_commands_are_reported_by_name() {
    assert_eq!(
        parse_command(b"REQUEST\t1\t2\n"),
        Ok(ClientCommand::Unknown("REQUEST".into()))
    );
    // Command names are case-sensitive, as Dovecot's strncmp().
    assert_eq!(
        parse_command(b"auth\t1\tPLAIN\tservice=smtp"),
        Ok(ClientCommand::Unknown("auth".into()))
    );
    assert_eq!(
        parse_command(b"\n"),
        Ok(ClientCommand::Unknown(String::new()))
    );
    let ClientCommand::Unknown(name) = parse_command(&[b'\x1b'; 5000]).unwrap() else {
        panic!()
    };
    assert!(name.len() < 300, "{}", name.len());
    assert!(name.starts_with("\\x1b"));
}

#[test]
fn raw_nul_is_refused() {
    assert_eq!(
        parse_command(b"AUTH\t1\tPLAIN\0\tservice=smtp"),
        Err(AuthError::Nul)
    );
    assert_eq!(parse_command(b"\0"), Err(AuthError::Nul));
}

// --- AUTH ---

#[test]
fn parses_postfix_auth() {
    let req = auth(
        b"AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.1\trip=2001:db8::5\
          \tsecured\tresp=AGFAYgBzZWNyZXQ=\n",
    )
    .unwrap();
    assert_eq!(req.id, 7);
    assert_eq!(req.mechanism(), Some(Mechanism::Plain));
    assert_eq!(req.service, b"smtp");
    assert!(req.no_login);
    assert_eq!(req.local_ip, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(
        req.remote_ip,
        Some(IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap()))
    );
    assert_eq!(req.secured, Secured::Yes);
    let creds = decode_plain(req.resp.as_ref().unwrap().expose()).unwrap();
    assert_eq!(creds.authcid, b"a@b");
    assert_eq!(creds.password.expose(), b"secret");
    assert!(req.other.is_empty());
}

#[test]
fn auth_parameters() {
    let req = auth(
        b"AUTH\t1\tlogin\tservice=imap\tlip=[::1]\trip=not-an-ip\tlport=143\trport=0\
          \tsecured=tls\tvalid-client-cert\tno-penalty\tsession=abc\tlocal_name=mx.example\
          \tdebug\tclient_id=x=y\t\tservice=smtp",
    )
    .unwrap();
    assert_eq!(req.mechanism(), Some(Mechanism::Login));
    assert_eq!(req.service, b"smtp", "last one wins");
    assert_eq!(req.local_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert_eq!(req.remote_ip, None);
    assert_eq!(req.local_port, Some(143));
    assert_eq!(req.remote_port, None, "port 0 is no port");
    assert_eq!(req.secured, Secured::Tls);
    assert!(req.valid_client_cert && req.no_penalty && !req.no_login);
    assert_eq!(req.session.as_deref(), Some(&b"abc"[..]));
    assert_eq!(req.local_name.as_deref(), Some(&b"mx.example"[..]));
    assert_eq!(
        req.other,
        vec![
            (b"debug".to_vec(), None),
            (b"client_id".to_vec(), Some(b"x=y".to_vec()))
        ]
    );
    assert_eq!(req.resp, None);
}

#[test]
fn auth_values_are_unescaped() {
    let req = auth(b"AUTH\t1\tPLAIN\tservice=sm\x01ttp\tsession=a\x011b\x010c").unwrap();
    assert_eq!(req.service, b"sm\ttp");
    assert_eq!(req.session.as_deref(), Some(&b"a\x01b\0c"[..]));
    // Escaped digits in the id are unescaped first, as Dovecot does.
    assert_eq!(auth(b"AUTH\t1\x017\tPLAIN\tservice=smtp").unwrap().id, 17);
}

#[test]
fn auth_ids() {
    assert_eq!(auth(b"AUTH\t007\tPLAIN\tservice=smtp").unwrap().id, 7);
    assert_eq!(
        auth(b"AUTH\t4294967295\tPLAIN\tservice=smtp").unwrap().id,
        u32::MAX
    );
    for line in [
        &b"AUTH\t0\tPLAIN\tservice=smtp"[..],
        b"AUTH\tx\tPLAIN\tservice=smtp",
        b"AUTH\t-1\tPLAIN\tservice=smtp",
        b"AUTH\t+1\tPLAIN\tservice=smtp",
        b"AUTH\t 1\tPLAIN\tservice=smtp",
        b"AUTH\t4294967296\tPLAIN\tservice=smtp",
        b"AUTH\t99999999999999999999999999\tPLAIN\tservice=smtp",
        b"AUTH\t\tPLAIN\tservice=smtp",
    ] {
        assert!(
            matches!(
                parse_command(line),
                Err(AuthError::BadNumber {
                    command: "AUTH",
                    ..
                })
            ),
            "{line:?}"
        );
    }
    let msg = parse_command(&[&b"AUTH\t"[..], &[b'9'; 10_000], b"\tPLAIN"].concat())
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 300, "{msg}");
}

#[test]
fn auth_structure_errors() {
    assert!(matches!(
        parse_command(b"AUTH\t1"),
        Err(AuthError::Malformed { .. })
    ));
    assert!(matches!(
        parse_command(b"AUTH"),
        Err(AuthError::Malformed { .. })
    ));
    assert_eq!(
        parse_command(b"AUTH\t1\tPLAIN"),
        Err(AuthError::MissingService { id: 1 })
    );
    assert_eq!(
        parse_command(b"AUTH\t1\tPLAIN\tservices=smtp\tresp=AA=="),
        Err(AuthError::MissingService { id: 1 })
    );
    // An empty service is still a service.
    assert_eq!(auth(b"AUTH\t1\tPLAIN\tservice=").unwrap().service, b"");
    // Dovecot 2.4's clients send `protocol=` (seen from its `doveadm auth test`); as in
    // Dovecot's auth server, both name one field and the last one given counts.
    assert_eq!(
        auth(b"AUTH\t1\tPLAIN\tprotocol=smtp\tfinal-resp-ok\tresp=AA==")
            .unwrap()
            .service,
        b"smtp"
    );
    assert_eq!(
        auth(b"AUTH\t1\tPLAIN\tservice=imap\tprotocol=smtp")
            .unwrap()
            .service,
        b"smtp"
    );
    assert_eq!(
        parse_command(b"AUTH\t3\tPLAIN\tresp=AA==\tservice=smtp"),
        Err(AuthError::ParamAfterResp { id: 3 })
    );
    assert_eq!(
        parse_command(b"AUTH\t3\tPLAIN\tservice=smtp\tresp=AA==\t"),
        Err(AuthError::ParamAfterResp { id: 3 })
    );
    // Unknown mechanisms parse; the server closes the connection.
    let req = auth(b"AUTH\t1\tCRAM-MD5\tservice=smtp").unwrap();
    assert_eq!(req.mechanism(), None);
    assert_eq!(auth(b"AUTH\t1\t\tservice=smtp").unwrap().mechanism(), None);
}

#[test]
fn crlf_and_invalid_utf8() {
    let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tsession=\xff\xfe\r\n").unwrap();
    assert_eq!(req.session.as_deref(), Some(&b"\xff\xfe"[..]));
    // Only one CR is dropped.
    let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\r\r\n").unwrap();
    assert_eq!(req.service, b"smtp\r");
}

#[test]
fn initial_response_rules() {
    let mut req = AuthRequest::new(1, "PLAIN", "smtp");
    assert_eq!(req.initial_response(2), Ok(None));
    req.resp = Some(Secret::new(Vec::new()));
    assert_eq!(req.initial_response(2), Ok(Some(Secret::default())));
    assert_eq!(req.initial_response(0), Ok(None), "Exim's empty resp=");
    req.resp = Some(Secret::new(b"=".to_vec()));
    assert_eq!(req.initial_response(2), Ok(Some(Secret::default())));
    assert_eq!(req.initial_response(0), Ok(Some(Secret::default())));
    req.resp = Some(Secret::new(b"AGEAYg==".to_vec()));
    assert_eq!(
        req.initial_response(2).unwrap().unwrap().expose(),
        b"\0a\0b"
    );
    req.resp = Some(Secret::new(b"!!!!".to_vec()));
    assert_eq!(req.initial_response(2), Err(SaslError::InvalidBase64));
    // "resp" without '=' is an empty resp=.
    let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tresp").unwrap();
    assert_eq!(req.resp, Some(Secret::default()));
}

#[test]
fn cont_and_cancel() {
    let ClientCommand::Cont { id, data } = parse_command(b"CONT\t5\tdXNlcg==\n").unwrap() else {
        panic!()
    };
    assert_eq!((id, data.expose()), (5, &b"dXNlcg=="[..]));
    // The rest of the line is the data, raw, even with more tabs in it.
    let ClientCommand::Cont { data, .. } = parse_command(b"CONT\t5\ta\tb").unwrap() else {
        panic!()
    };
    assert_eq!(data.expose(), b"a\tb");
    assert_eq!(
        decode_login_step(data.expose()),
        Err(SaslError::InvalidBase64)
    );
    let ClientCommand::Cont { data, .. } = parse_command(b"CONT\t5\t").unwrap() else {
        panic!()
    };
    assert!(data.is_empty());
    assert!(matches!(
        parse_command(b"CONT\t5"),
        Err(AuthError::Malformed { .. })
    ));
    assert!(matches!(
        parse_command(b"CONT\tx\tAA=="),
        Err(AuthError::BadNumber { .. })
    ));
    assert_eq!(parse_command(b"CANCEL\t9"), Ok(ClientCommand::Cancel(9)));
    assert!(parse_command(b"CANCEL\t9\t1").is_err());
}

#[test]
fn debug_output_hides_secrets() {
    let req = auth(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFAYgBodW50ZXIy").unwrap();
    let dbg = format!("{req:?}");
    assert!(!dbg.contains("AGFAYgBodW50ZXIy"), "{dbg}");
    assert!(dbg.contains("redacted"));
    let cont = parse_command(b"CONT\t1\taHVudGVyMg==").unwrap();
    assert!(!format!("{cont:?}").contains("aHVudGVyMg"));
    let creds = decode_plain(b"AGFAYgBodW50ZXIy").unwrap();
    let dbg = format!("{creds:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("a@b"));
    assert!(!format!("{:?}", decode_login_step(b"aHVudGVyMg==")).contains("hunter2"));
}

#[test]
fn mechanism_names() {
    assert_eq!(Mechanism::from_name(b"plain"), Some(Mechanism::Plain));
    assert_eq!(Mechanism::from_name(b"LoGiN"), Some(Mechanism::Login));
    assert_eq!(Mechanism::from_name(b"PLAIN "), None);
    assert_eq!(Mechanism::from_name(b""), None);
}

mod properties;
mod reply;
mod sasl;
