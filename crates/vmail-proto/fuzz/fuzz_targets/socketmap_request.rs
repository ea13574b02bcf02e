//! Socketmap server path on arbitrary bytes: frame, parse, answer. Never panics, and
//! every reply it would send is a frame Postfix accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::{netstring, socketmap};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    // Pipelined frames, as a server loop would consume them.
    while let Ok(Some((payload, consumed))) = netstring::parse(buf, socketmap::MAX_REQUEST) {
        let reply = match socketmap::parse_request(payload) {
            Ok(req) => {
                assert!(!req.map.is_empty());
                let mut again = Vec::new();
                socketmap::encode_request(&req, &mut again);
                let (p, _) = netstring::parse(&again, socketmap::MAX_REQUEST)
                    .unwrap()
                    .unwrap();
                assert_eq!(socketmap::parse_request(p), Ok(req));
                match req.lookup_key() {
                    // Echo the key as data: exercises the OK encoder with odd text.
                    Some(key) => socketmap::Reply::Ok(key.to_owned()),
                    None => socketmap::Reply::NotFound,
                }
            }
            Err(e) => socketmap::Reply::Perm(e.to_string()),
        };
        let mut out = Vec::new();
        socketmap::encode_reply(&reply, &mut out);
        let (parsed, n) = socketmap::parse_reply_frame(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        // lookup_key() excludes NUL, so only the size limit can turn OK into TEMP.
        if let socketmap::Reply::Ok(data) = &reply {
            if data.len() + 3 <= socketmap::MAX_REPLY {
                assert_eq!(&parsed, &reply);
            } else {
                assert!(matches!(parsed, socketmap::Reply::Temp(_)));
            }
        }
        buf = &buf[consumed..];
    }
    // The raw payload parser alone, too.
    let _ = socketmap::parse_request(data);
});
