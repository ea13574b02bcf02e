//! Auth server path on arbitrary bytes: split lines, parse commands, decode what they
//! carry, answer. Never panics; an AUTH that parses re-encodes to a line that parses back
//! to the same request; every reply we would send is one line that parses back intact,
//! whatever bytes the username holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmail_proto::auth::{self, ClientCommand, FailCode, Reply};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(n)) = auth::find_line(buf) {
        assert!(n <= auth::MAX_LINE && buf[n - 1] == b'\n');
        let reply = match auth::parse_command(&buf[..n]) {
            Ok(ClientCommand::Auth(req)) => {
                let cmd = ClientCommand::Auth(req.clone());
                let mut again = Vec::new();
                auth::encode_command(&cmd, &mut again);
                assert_eq!(auth::parse_command(&again), Ok(cmd));
                match req.initial_response(2) {
                    Err(_) => Some(Reply::Fail {
                        id: req.id,
                        user: None,
                        code: Some(FailCode::InvalidBase64),
                        reason: Some("Invalid base64 data in initial response".into()),
                    }),
                    Ok(Some(resp)) => Some(match auth::parse_plain(resp.expose()) {
                        Ok(creds) => Reply::Ok {
                            id: req.id,
                            user: creds.authcid,
                            extra: vec![("service".into(), Some(req.service))],
                        },
                        Err(e) => Reply::Fail {
                            id: req.id,
                            user: Some(req.mech),
                            code: Some(FailCode::TempFail),
                            reason: Some(e.to_string()),
                        },
                    }),
                    Ok(None) => Some(Reply::Cont {
                        id: req.id,
                        challenge: req.service,
                    }),
                }
            }
            Ok(ClientCommand::Cont { id, data }) => match auth::decode_login_step(data.expose()) {
                Ok(user) => Some(Reply::Ok {
                    id,
                    user: user.expose().to_vec(),
                    extra: Vec::new(),
                }),
                Err(e) => Some(Reply::Fail {
                    id,
                    user: None,
                    code: None,
                    reason: Some(e.to_string()),
                }),
            },
            Ok(_) => None,
            Err(e) => {
                assert!(e.to_string().len() < 400);
                None
            }
        };
        if let Some(reply) = reply {
            let mut out = Vec::new();
            auth::encode_reply(&reply, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(auth::parse_reply(&out), Ok(reply));
        }
        buf = &buf[n..];
    }
    let mut escaped = Vec::new();
    auth::tab_escape(data, &mut escaped);
    assert!(!escaped.iter().any(|&b| matches!(b, 0 | b'\t' | b'\r' | b'\n')));
    assert_eq!(auth::tab_unescape(&escaped), data);
    let _ = auth::parse_reply(data);
});
