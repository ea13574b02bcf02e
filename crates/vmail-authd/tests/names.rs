//! Rows whose mailbox would be another account's or outside the base (issue 15), written
//! with plain SQL: Dovecot's dict passdb and userdb get a temporary failure (never a home to
//! log into), and a SASL login for one is a temporary failure too.

use vmail_test_support::authd::*;

#[test]
fn rows_that_escape_or_share_a_maildir_are_a_temporary_failure() {
    let (_t, config) = vmail_test_support::sqlite_config();
    let config = test_config(config);
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"pw").unwrap();
    populate(&config, &["example.org"], &[("alice@example.org", &hash)]);
    let rows = [
        "alice/.@example.org",
        "../x@example.org",
        "x@../../etc",
        "alice@example.org/",
    ];
    let db = rusqlite::Connection::open(&config.database.sqlite_path).unwrap();
    for email in rows {
        db.execute(
            "INSERT INTO users (email, password) VALUES (?1, ?2)",
            [email, hash.as_str()],
        )
        .unwrap();
    }
    let d = Daemon::start(config);
    let mut dict = DictClient::connect(&d);
    for email in rows {
        let l = dict.lookup(&format!("passdb/imap/{email}"), email);
        assert!(l.starts_with('F'), "passdb {email}: {l:?}");
    }
    // Keys whose first '/' segment holds the '@' (others are split as `userdb/<service>/`).
    for email in ["x@../../etc", "alice@example.org/"] {
        let l = dict.lookup(&format!("userdb/{email}"), email);
        assert!(l.starts_with('F'), "userdb {email}: {l:?}");
    }
    // The right password changes nothing: a temporary failure closes the connection
    // unanswered (Postfix: 454).
    for (id, email) in rows.iter().enumerate() {
        let mut c = AuthClient::connect(&d);
        let resp = b64(format!("\0{email}\0pw").as_bytes());
        c.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice=imap\trip=192.0.2.1\tresp={resp}\n"
        ));
        assert_eq!(c.line(), None, "{email}");
    }
    // alice herself is untouched.
    let u = dict.json("userdb/alice@example.org", "alice@example.org");
    assert_eq!(u["home"], "/home/vmail/example.org/alice");
    let mut c = AuthClient::connect(&d);
    assert!(is_ok(&c.plain(99, "alice@example.org", "pw", "192.0.2.1")).is_some());
}
