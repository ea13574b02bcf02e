//! The SASL payloads: PLAIN, LOGIN and the base64 they travel in.

use super::*;

#[test]
fn plain_variants() {
    let c = decode_plain(&b64(b"\0user@example.org\0pw")).unwrap();
    assert_eq!(
        (c.authzid, c.authcid, c.password.expose()),
        (None, b"user@example.org".to_vec(), &b"pw"[..])
    );
    let c = decode_plain(&b64(b"u\0u\0pw")).unwrap();
    assert_eq!(c.authzid, None, "authzid equal to authcid is no authzid");
    let c = decode_plain(&b64(b"admin\0u\0pw")).unwrap();
    assert_eq!(c.authzid, Some(b"admin".to_vec()));
    let c = decode_plain(&b64(b"\0u\0")).unwrap();
    assert!(c.password.is_empty());
    let c = decode_plain(&b64(b"\0\xff\xfe@b\0p\xc3")).unwrap();
    assert_eq!(c.authcid, b"\xff\xfe@b");
    assert_eq!(c.password.expose(), b"p\xc3");
}

#[test]
fn plain_rejects() {
    for raw in [
        &b""[..],
        b"user",
        b"user\0",
        b"\0user",
        b"\0user\0pw\0",
        b"\0fa\0il\0ing\0withthis",
        b"failing\0withthis",
    ] {
        assert_eq!(
            decode_plain(&b64(raw)),
            Err(SaslError::PlainSyntax),
            "{raw:?}"
        );
    }
    assert_eq!(decode_plain(&b64(b"\0\0pw")), Err(SaslError::EmptyUsername));
    assert_eq!(
        decode_plain(&b64(b"admin\0\0pw")),
        Err(SaslError::EmptyUsername)
    );
}

#[test]
fn base64_rules() {
    // Padding optional; trailing bits ignored like Dovecot's decoder.
    assert_eq!(decode_base64(b"YQ==").unwrap().expose(), b"a");
    assert_eq!(decode_base64(b"YQ").unwrap().expose(), b"a");
    assert_eq!(decode_base64(b"YR==").unwrap().expose(), b"a");
    // Partial padding is tolerated too.
    assert_eq!(decode_base64(b"YQ=").unwrap().expose(), b"a");
    assert_eq!(decode_base64(b"").unwrap().expose(), b"");
    for bad in [
        &b"Y"[..],
        b"=",
        b"YQ== ",
        b" YQ==",
        b"Y Q==",
        b"YQ==\r",
        b"YQ\t==",
        b"YQ==YQ==",
        b"Y-_=",
        b"YQ==\0",
        b"\xff\xff\xff\xff",
    ] {
        assert_eq!(decode_base64(bad), Err(SaslError::InvalidBase64), "{bad:?}");
        assert_eq!(decode_plain(bad), Err(SaslError::InvalidBase64), "{bad:?}");
    }
    assert!(!SaslError::InvalidBase64.to_string().is_empty());
}

#[test]
fn login_steps() {
    assert_eq!(
        decode_login_step(b"dXNlckBleGFtcGxlLm9yZw==")
            .unwrap()
            .expose(),
        b"user@example.org"
    );
    assert!(decode_login_step(b"").unwrap().is_empty());
    assert_eq!(decode_login_step(&b64(b"a\0b")), Err(SaslError::Nul));
    assert_eq!(
        decode_login_step(b"not base64!"),
        Err(SaslError::InvalidBase64)
    );
    assert_eq!(
        reply_bytes(&Reply::Cont {
            id: 1,
            challenge: LOGIN_PROMPTS[1].as_bytes().to_vec()
        }),
        b"CONT\t1\tUGFzc3dvcmQ6\n"
    );
}
