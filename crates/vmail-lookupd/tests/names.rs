//! Rows whose mailbox would be another account's or outside the base (issue 15), written
//! with plain SQL: Postfix gets a temporary failure for every map that implies a mailbox,
//! never an answer that would deliver into it.

use vmail_test_support::lookupd::{have_postmap, prepare_sqlite, Daemon, Raw, ROWS};
use vmail_test_support::postfix::{postmap_query, PostmapResult};

const BAD_ROWS: &str = "
INSERT INTO domains (domain) VALUES ('../../etc');
INSERT INTO users (email, password) VALUES ('alice/.@example.org', 'x');
INSERT INTO users (email, password) VALUES ('../x@example.org', 'x');
INSERT INTO users (email, password) VALUES ('x@../../etc', 'x');
";

#[test]
fn rows_that_escape_or_share_a_maildir_answer_temp() {
    if !have_postmap("rows_that_escape_or_share_a_maildir_answer_temp") {
        return;
    }
    let (_g, cfg) = prepare_sqlite(&format!("{ROWS}{BAD_ROWS}"));
    let d = Daemon::start(cfg);
    let mut raw = Raw::connect(&d.socket);
    for key in ["alice/.@example.org", "../x@example.org", "x@../../etc"] {
        for map in ["mailboxes", "aliases", "senders", "recipient"] {
            let r = raw.ask(format!("{map} {key}").as_bytes());
            assert!(r.starts_with("TEMP "), "{map} {key}: {r}");
            if map == "recipient" || map == "senders" {
                continue;
            }
            for table in [d.socketmap_table(map), d.tcp_table(map)] {
                match postmap_query(key, &table) {
                    PostmapResult::Failed { .. } => {}
                    other => panic!("postmap -q {key} {table}: {other:?}"),
                }
            }
        }
    }
    // alice herself is untouched.
    assert_eq!(
        postmap_query("alice@example.org", &d.socketmap_table("mailboxes")),
        PostmapResult::Found("example.org/alice/".into())
    );
}
