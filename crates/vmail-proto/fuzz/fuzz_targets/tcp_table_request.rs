//! tcp_table server path on arbitrary bytes: split lines, parse, answer. Never panics,
//! and every reply it would send is a line Postfix accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::tcp_table::{self, TcpReply, TcpRequest, MAX_REPLY_LINE};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(n)) = tcp_table::find_line(buf, 4096) {
        let reply = match tcp_table::parse_request(&buf[..n]) {
            Ok(TcpRequest::Get(key)) => {
                let mut again = Vec::new();
                tcp_table::encode_request(&TcpRequest::Get(key.clone()), &mut again);
                assert_eq!(
                    tcp_table::parse_request(&again),
                    Ok(TcpRequest::Get(key.clone()))
                );
                match vmail_proto::lookup_key(&key) {
                    Some(k) => TcpReply::Ok(k.to_owned()),
                    None => TcpReply::NotFound("no such key".into()),
                }
            }
            Ok(TcpRequest::Put { .. }) => TcpReply::NotFound("put is not supported".into()),
            Err(e) => TcpReply::Temp(e.to_string()),
        };
        let mut out = Vec::new();
        tcp_table::encode_reply(&reply, &mut out);
        assert!(out.len() <= MAX_REPLY_LINE);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let parsed = tcp_table::parse_reply(&out).unwrap();
        if matches!(reply, TcpReply::Ok(_)) && matches!(parsed, TcpReply::Ok(_)) {
            assert_eq!(parsed, reply);
        }
        buf = &buf[n..];
    }
    let _ = tcp_table::decode_param(data);
});
