//! A database outage is a temporary failure on both protocols (Postfix answers 454, Dovecot
//! "temporary failure"), never "wrong password" or "unknown user", and authd recovers by
//! itself when the database is back. Only a login verified within `cache_recheck_s` keeps
//! working meanwhile, from memory.

use std::time::{Duration, Instant};

use vmail_test_support::authd::*;
use vmail_test_support::PrivateMariaDb;

#[test]
fn outage_is_temporary_on_auth_and_dict_and_recovers() {
    let test = "outage_is_temporary_on_auth_and_dict_and_recovers";
    let Some(mut db) = PrivateMariaDb::start(test) else {
        return;
    };
    let config = outage_config(db.config());
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"pw").unwrap();
    populate(
        &config,
        &["example.org"],
        &[("alice@example.org", &hash), ("bob@example.org", &hash)],
    );
    let d = Daemon::start(config);
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(1, "alice@example.org", "pw", "192.0.2.1")).is_some());
    let mut dict = DictClient::connect(&d);
    assert!(dict
        .lookup("passdb/alice@example.org", "")
        .starts_with("O{"));

    db.kill();
    let t = Instant::now();
    // alice logged in with this password moments ago: answered from memory.
    let mut c = AuthClient::connect(&d);
    assert_eq!(
        is_ok(&c.plain(2, "alice@example.org", "pw", "192.0.2.1")).as_deref(),
        Some("alice@example.org")
    );
    // Anything else needs the row: a temporary failure closes the connection without a
    // reply (Postfix: 454), for a right and a wrong password alike (nothing can be checked).
    for (id, login, pw) in [
        (3, "bob@example.org", "pw"),
        (4, "alice@example.org", "wrong"),
    ] {
        let mut c = AuthClient::connect(&d);
        let resp = b64(format!("\0{login}\0{pw}").as_bytes());
        c.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice=smtp\trip=192.0.2.1\tresp={resp}\n"
        ));
        assert_eq!(
            c.line(),
            None,
            "database down must close the connection unanswered"
        );
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "answered within the deadline"
        );
    }
    // Dovecot opens a connection per lookup. alice's row was found moments ago: Dovecot
    // gets it from memory (cache_recheck_s), as alice's SMTP login above; any other row
    // needs the database.
    let mut dict = DictClient::connect(&d);
    assert!(dict
        .lookup("passdb/alice@example.org", "")
        .starts_with("O{"));
    let mut dict = DictClient::connect(&d);
    let l = dict.lookup("passdb/bob@example.org", "");
    assert!(
        l.starts_with('F'),
        "dict must answer F (temporary), got {l:?}"
    );
    let mut dict = DictClient::connect(&d);
    dict.send("I0\t0\tshared/userdb/\t*\n");
    let l = dict.line().unwrap();
    assert!(l.starts_with('F'), "iteration must fail, got {l:?}");

    db.resume();
    let t = Instant::now();
    let back = vmail_test_support::wait_until(Duration::from_secs(10), || {
        let mut c = AuthClient::connect(&d);
        is_ok(&c.plain(10, "alice@example.org", "pw", "192.0.2.1")).is_some()
    });
    assert!(back, "authd did not recover after the database came back");
    eprintln!("recovered {:?} after the database was back", t.elapsed());
    let mut dict = DictClient::connect(&d);
    assert!(dict
        .lookup("userdb/alice@example.org", "")
        .starts_with("O{"));
}
