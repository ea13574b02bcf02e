//! SASL payload decoders on arbitrary bytes: never panic, and what PLAIN accepts is
//! exactly three NUL-free parts with a non-empty authcid that re-encode to an answer
//! decoding to the same credentials; LOGIN answers round-trip likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::auth;

/// Plain standard base64 with padding, written here so the target needs no other crate.
fn b64(raw: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    for creds in [auth::decode_plain(data).ok(), auth::parse_plain(data).ok()]
        .into_iter()
        .flatten()
    {
        assert!(!creds.authcid.is_empty());
        assert!(creds.authzid.as_deref() != Some(&creds.authcid[..]));
        let authzid = creds.authzid.clone().unwrap_or_default();
        for part in [&authzid[..], &creds.authcid, creds.password.expose()] {
            assert!(!part.contains(&0));
        }
        assert_eq!(format!("{:?}", creds.password), "Secret(<redacted>)");
        let raw = [&authzid[..], b"\0", &creds.authcid, b"\0", creds.password.expose()].concat();
        assert_eq!(auth::parse_plain(&raw).as_ref(), Ok(&creds));
        assert_eq!(auth::decode_plain(&b64(&raw)).as_ref(), Ok(&creds));
    }
    if let Ok(answer) = auth::decode_login_step(data) {
        assert!(!answer.expose().contains(&0));
        assert_eq!(auth::decode_login_step(&b64(answer.expose())), Ok(answer));
    }
    // Our own encoding of anything always decodes back.
    assert_eq!(auth::decode_base64(&b64(data)).unwrap().expose(), data);
});
