//! Socketmap client path on arbitrary bytes (what vmail-lda reads from lookupd): framing and
//! reply parsing never panic, never claim more bytes than they were given, and an OK reply
//! survives re-encoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::socketmap;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, consumed))) = socketmap::parse_reply_frame(data) {
        assert!(consumed <= data.len());
        if let socketmap::Reply::Ok(text) = &reply {
            if !text.contains('\0') {
                let mut out = Vec::new();
                socketmap::encode_reply(&reply, &mut out);
                let (again, n) = socketmap::parse_reply_frame(&out).unwrap().unwrap();
                assert_eq!(n, out.len());
                assert_eq!(again, reply);
            }
        }
    }
    let _ = socketmap::parse_reply(data);
});
