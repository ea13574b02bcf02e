//! A database outage is a temporary failure on both protocols (Postfix answers 454, Dovecot
//! "temporary failure"), never "wrong password" or "unknown user", and authd recovers by
//! itself when the database is back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vmail_proto::auth::{FailCode, Reply};
use vmail_test_support::PrivateMariaDb;

#[test]
fn outage_is_temporary_on_auth_and_dict_and_recovers() {
    let test = "outage_is_temporary_on_auth_and_dict_and_recovers";
    let Some(mut db) = PrivateMariaDb::start(test) else {
        return;
    };
    let mut config = test_config(db.config());
    config.database.connect_timeout_ms = 500;
    config.database.query_timeout_ms = 1000;
    config.authd.request_timeout_ms = 2000;
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"pw").unwrap();
    populate(&config, &["example.org"], &[("alice@example.org", &hash)]);
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "pw", "192.0.2.1")).is_some());
    let mut dict = DictClient::connect(&d);
    assert!(dict.lookup("passdb/alice@example.org", "").starts_with("O{"));

    db.kill();
    let t = Instant::now();
    match c.plain(2, "alice@example.org", "pw", "192.0.2.1") {
        Reply::Fail { code: Some(FailCode::TempFail), .. } => {}
        other => panic!("database down must be a temporary failure, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(4), "answered within the deadline");
    // Even a wrong password is "try later" while we cannot know.
    assert!(matches!(
        c.plain(3, "alice@example.org", "wrong", "192.0.2.1"),
        Reply::Fail { code: Some(FailCode::TempFail), .. }
    ));
    // Dovecot opens a connection per lookup.
    let mut dict = DictClient::connect(&d);
    let l = dict.lookup("passdb/alice@example.org", "");
    assert!(l.starts_with('F'), "dict must answer F (temporary), got {l:?}");
    let mut dict = DictClient::connect(&d);
    dict.send("I0\t0\tshared/userdb/\t*\n");
    let l = dict.line().unwrap();
    assert!(l.starts_with('F'), "iteration must fail, got {l:?}");

    db.resume();
    let t = Instant::now();
    let mut id = 10;
    let back = vmail_test_support::wait_until(Duration::from_secs(10), || {
        id += 1;
        is_ok(&c.plain(id, "alice@example.org", "pw", "192.0.2.1")).is_some()
    });
    assert!(back, "authd did not recover after the database came back");
    eprintln!("recovered {:?} after the database was back", t.elapsed());
    let mut dict = DictClient::connect(&d);
    assert!(dict.lookup("userdb/alice@example.org", "").starts_with("O{"));
}
