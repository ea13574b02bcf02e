//! Dict proxy server path on arbitrary bytes: split lines, parse, answer. Never panics;
//! what parses re-encodes to a line that parses back the same; every reply is one line
//! that a Dovecot-style client reads back intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::dict::{self, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(n)) = dict::find_line(buf) {
        assert!(n <= dict::MAX_LINE && buf[n - 1] == b'\n');
        let replies = match dict::parse_request(&buf[..n]) {
            Ok(req) => {
                if !matches!(req, Request::Unsupported(_)) {
                    let mut again = Vec::new();
                    dict::encode_request(&req, &mut again);
                    assert_eq!(dict::parse_request(&again), Ok(req.clone()));
                }
                match req {
                    Request::Lookup { key, user } => vec![
                        (true, Reply::Found(user.unwrap_or(key))),
                        (true, Reply::NotFound),
                    ],
                    Request::Iterate { path, user, .. } => vec![
                        (
                            false,
                            Reply::Row {
                                key: path,
                                value: user.unwrap_or_default(),
                            },
                        ),
                        (false, Reply::EndOfRows),
                    ],
                    Request::Hello(h) => vec![(true, Reply::Found(h.dict_name))],
                    Request::Unsupported(c) => vec![(true, Reply::Failed(c.to_string()))],
                }
            }
            Err(e) => vec![(false, Reply::Failed(e.to_string()))],
        };
        for (lookup, reply) in replies {
            let mut out = Vec::new();
            dict::encode_reply(&reply, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let parsed = if lookup {
                dict::parse_lookup_reply(&out)
            } else {
                dict::parse_iterate_reply(&out)
            };
            match (&reply, parsed) {
                (Reply::Failed(_), Ok(Reply::Failed(_))) => {}
                (_, parsed) => assert_eq!(parsed, Ok(reply)),
            }
        }
        buf = &buf[n..];
    }
    let _ = dict::parse_lookup_reply(data);
    let _ = dict::parse_iterate_reply(data);
});
