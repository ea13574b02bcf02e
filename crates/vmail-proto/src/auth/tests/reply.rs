//! The server's output: the handshake, the replies, and the lenient reply parser.

use super::*;

#[test]
fn handshake_in_dovecot_order() {
    let mut out = Vec::new();
    let mut cookie = [0u8; 16];
    cookie[0] = 0xab;
    cookie[15] = 0x01;
    encode_handshake(
        &Handshake {
            mechanisms: &[Mechanism::Plain, Mechanism::Login],
            server_pid: 123,
            connection_id: 4,
            cookie,
        },
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t123\n\
         CUID\t4\nCOOKIE\tab000000000000000000000000000001\nDONE\n"
    );
}

#[test]
fn encodes_replies() {
    assert_eq!(
        reply_bytes(&Reply::Ok {
            id: 1,
            user: b"a@b".to_vec(),
            extra: vec![]
        }),
        b"OK\t1\tuser=a@b\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Ok {
            id: 2,
            user: b"a@b".to_vec(),
            extra: vec![
                ("nologin".into(), None),
                ("x".into(), Some(b"1\t2".to_vec()))
            ]
        }),
        b"OK\t2\tuser=a@b\tnologin\tx=1\x01t2\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Cont {
            id: 3,
            challenge: b"Username:".to_vec()
        }),
        b"CONT\t3\tVXNlcm5hbWU6\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Cont {
            id: 3,
            challenge: vec![]
        }),
        b"CONT\t3\t\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Fail {
            id: 4,
            user: Some(b"nobody@b".to_vec()),
            code: None,
            reason: None
        }),
        b"FAIL\t4\tuser=nobody@b\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Fail {
            id: 5,
            user: None,
            code: Some(FailCode::InvalidBase64),
            reason: Some("Invalid base64 data in initial response".into())
        }),
        b"FAIL\t5\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
    );
    assert_eq!(
        reply_bytes(&Reply::Fail {
            id: 6,
            user: Some(b"a@b".to_vec()),
            code: Some(FailCode::TempFail),
            reason: Some("db\tdown\n".into())
        }),
        b"FAIL\t6\tuser=a@b\tcode=temp_fail\ttemp\treason=db?down?\n"
    );
}

#[test]
fn hostile_usernames_cannot_break_lines() {
    let user = b"evil\tuser=root\nOK\t9\tuser=root\r\0\x01".to_vec();
    for reply in [
        Reply::Ok {
            id: 1,
            user: user.clone(),
            extra: vec![],
        },
        Reply::Fail {
            id: 1,
            user: Some(user.clone()),
            code: None,
            reason: None,
        },
    ] {
        let bytes = reply_bytes(&reply);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\t').count(), 2);
        assert_eq!(parse_reply(&bytes), Ok(reply));
    }
    let long_reason = Reply::Fail {
        id: 1,
        user: None,
        code: None,
        reason: Some("é".repeat(10_000)),
    };
    let bytes = reply_bytes(&long_reason);
    assert!(bytes.len() < 300);
    assert!(bytes.is_ascii());
}

#[test]
fn parses_dovecot_replies_leniently() {
    assert_eq!(
        parse_reply(b"OK\t1\tuser=a@b\t\n"),
        Ok(Reply::Ok {
            id: 1,
            user: b"a@b".to_vec(),
            extra: vec![]
        })
    );
    assert_eq!(
        parse_reply(b"FAIL\t2\tuser=x\ttemp\tunknown"),
        Ok(Reply::Fail {
            id: 2,
            user: Some(b"x".to_vec()),
            code: Some(FailCode::TempFail),
            reason: None
        })
    );
    for line in [
        &b"OK\t1"[..],
        b"OK\tx\tuser=a",
        b"DONE",
        b"CONT\t1\t!!",
        b"",
    ] {
        assert!(parse_reply(line).is_err(), "{line:?}");
    }
}
