//! Issue 15, 10d: rows whose addresses differ from the key only in the case of non-ASCII
//! letters, written with plain SQL. MariaDB's default collations match them; SQLite's NOCASE
//! folds ASCII only, so the SQLite backend folds them itself. Both answer alike.

use std::time::Duration;

use vmail_directory::rows::{self, Rows};
use vmail_directory::{Directory, Error, Map};
use vmail_lookupd::cache::shared::Shared;

use super::Env;

both! {
    non_ascii_case_is_folded(false),
    non_ascii_case_is_folded_classic(true),
}

const ROWS: &str = "
INSERT INTO domains (domain) VALUES ('example.org');
INSERT INTO domains (domain) VALUES ('ÉXAMPLE.net');
INSERT INTO users (email, password) VALUES ('Élise@example.org', 'x');
INSERT INTO users (email, password) VALUES ('Åsa@ÉXAMPLE.net', 'x');
INSERT INTO forwardings (source, destination) VALUES ('Ünï@example.org', 'Élise@example.org');
INSERT INTO transport (domain, transport) VALUES ('ÉXAMPLE.net', 'vmail:');
";

async fn non_ascii_case_is_folded(e: &Env) {
    check(e).await;
}

async fn non_ascii_case_is_folded_classic(e: &Env) {
    check(e).await;
}

async fn check(e: &Env) {
    (e.raw)(ROWS);
    let hour = Duration::from_secs(3600);
    // The plain directory, as vmailctl and vmail-lda-direct read it.
    answers_folded(&e.dir).await;
    // With lookupd's memo too: it reads a user's row and forwardings in one statement.
    let memo = Shared::new(Directory::open(&e.cfg).await.unwrap()).with_memo(hour, hour, 100);
    answers_folded(&memo).await;
    // Administration compares the same way: no second Élise, and ÉXAMPLE.net is éxample.net.
    let r = e.dir.add_user("élise@example.org", "{PLAIN}x", None).await;
    assert!(matches!(r, Err(Error::Exists(_))), "{r:?}");
    e.dir
        .add_user("bo@éxample.net", "{PLAIN}x", None)
        .await
        .unwrap();
    assert_eq!(
        e.dir
            .lookup(Map::Mailboxes, "bo@éxample.net")
            .await
            .unwrap()
            .as_deref(),
        Some("éxample.net/bo/")
    );
}

/// Every map, the login and the recipient of [`ROWS`], asked in other cases.
async fn answers_folded<R: Rows>(d: &R) {
    for (map, key, want) in [
        (Map::Domains, "éxample.net", "virtual"),
        (Map::Mailboxes, "élise@example.org", "example.org/élise/"),
        (Map::Mailboxes, "ÉLISE+x@EXAMPLE.ORG", "example.org/élise/"),
        (Map::Mailboxes, "åsa@éxample.net", "éxample.net/åsa/"),
        (Map::Aliases, "élise@example.org", "élise@example.org"),
        (Map::Aliases, "ünï@example.org", "Élise@example.org"),
        (Map::Senders, "élise@example.org", "élise@example.org"),
        (Map::Transport, "éxample.net", "vmail:"),
        (Map::Transport, "x@ÉXAMPLE.NET", "vmail:"),
    ] {
        let got = rows::lookup(d, map, key).await.unwrap();
        assert_eq!(got.as_deref(), Some(want), "{map} {key}");
    }
    let u = d
        .directory()
        .user("élise@example.org")
        .await
        .unwrap()
        .expect("élise");
    assert_eq!(u.email, "Élise@example.org");
    assert!(u.active);
    let (u, ext) = rows::recipient(d, "åsa+news@éxample.net")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.email.as_str(), ext.as_deref()),
        ("Åsa@ÉXAMPLE.net", Some("+news"))
    );
    assert!(u.active, "the domain row differs in case too");
    // Other letters still do not match.
    assert_eq!(
        rows::lookup(d, Map::Mailboxes, "elise@example.org")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        rows::lookup(d, Map::Mailboxes, "èlise@example.org")
            .await
            .unwrap(),
        None
    );
}
