//! Lua channel server path on arbitrary bytes: split lines, parse, answer. Never panics;
//! what parses re-encodes to a line that parses back the same; every reply is one line
//! that parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::lua::{self, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(n)) = lua::find_line(buf) {
        assert!(n <= lua::MAX_LINE && buf[n - 1] == b'\n');
        let replies = match lua::parse_request(&buf[..n]) {
            Ok(req) => {
                if !matches!(req, Request::Unsupported(_) | Request::Version { .. }) {
                    let mut again = Vec::new();
                    lua::encode_request(&req, &mut again);
                    assert_eq!(lua::parse_request(&again), Ok(req.clone()));
                }
                match req {
                    Request::Pass { id, login, service, .. } => vec![
                        Reply::Ok {
                            id: id.clone(),
                            user: login,
                            fields: vec![(
                                "userdb_mail".into(),
                                String::from_utf8_lossy(&service).into_owned(),
                            )],
                        },
                        Reply::Fail { id },
                    ],
                    Request::Lookup { id, .. } => vec![Reply::Disabled { id }],
                    Request::User { id, login } => vec![
                        Reply::Row {
                            id: id.clone(),
                            user: login,
                        },
                        Reply::NotFound { id },
                    ],
                    Request::List { id } => vec![Reply::End { id }],
                    Request::Version { .. } | Request::Unsupported(_) => Vec::new(),
                }
            }
            Err(e) => vec![Reply::Temp {
                id: b"1".to_vec(),
                reason: e.to_string(),
            }],
        };
        for reply in replies {
            let mut out = Vec::new();
            lua::encode_reply(&reply, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let parsed = lua::parse_reply(&out);
            match (&reply, parsed) {
                (Reply::Temp { .. }, Ok(Reply::Temp { .. })) => {}
                // A user or value holding '=' or a key without one does not come back
                // split the same: only what authd really sends must round-trip.
                (Reply::Ok { .. }, _) => {}
                (_, parsed) => assert_eq!(parsed, Ok(reply)),
            }
        }
        buf = &buf[n..];
    }
    let _ = lua::parse_reply(data);
});
