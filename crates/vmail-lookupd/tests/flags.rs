//! Disabled mailboxes and disabled domains as Postfix sees them (issue 20, items 1 and 5):
//! every map through `postmap -q`, and the RCPT answers of a real smtpd wired with the
//! `recipient_access` map as `contrib/postfix/main.cf.vmail` does.

use vmail_config::Config;
use vmail_test_support::lookupd::{have_postmap, mysql_tables, Daemon};
use vmail_test_support::postfix::{postmap_query, PostfixBuilder, PostmapResult};
use vmail_test_support::{set_mode, TestDb};

/// vmail's flag columns (`vmailctl migrate`), a disabled mailbox in a domain with a
/// catch-all and one in a domain without, and a disabled domain with forwardings, a
/// catch-all, a user, a transport and an alias domain pointing at it.
const ROWS: &str = "
INSERT INTO domains (domain) VALUES ('example.org'), ('plain.test'), ('alias.test'), ('offalias.test');
INSERT INTO domains (domain, active) VALUES ('off.test', 0);
INSERT INTO users (email, password) VALUES ('carol@example.org', 'x'), ('dan@off.test', 'x');
INSERT INTO users (email, password, active) VALUES ('x@example.org', 'x', 0), ('y@plain.test', 'x', 0);
INSERT INTO forwardings (source, destination) VALUES ('@example.org', 'carol@example.org'),
  ('@alias.test', '@example.org'),
  ('info@off.test', 'carol@example.org'), ('@off.test', 'carol@example.org'),
  ('@offalias.test', '@off.test');
INSERT INTO transport (domain, transport) VALUES ('off.test', 'vmail:'), ('example.org', 'vmail:');
";

const DISABLED: &str = "550 5.2.1 Mailbox disabled";

fn prepare(test: &str) -> Option<(TestDb, Config)> {
    if !have_postmap(test) {
        return None;
    }
    let (db, cfg) = mysql_tables(test, false)?;
    db.sql(ROWS);
    Some((db, cfg))
}

fn expect(d: &Daemon, cases: &[(&str, &str, Option<&str>)]) {
    for (map, key, want) in cases {
        let want = match want {
            Some(v) => PostmapResult::Found(v.to_string()),
            None => PostmapResult::NotFound,
        };
        let got = postmap_query(key, &d.socketmap_table(map));
        assert_eq!(got, want, "postmap -q {key:?} socketmap:...:{map}");
    }
}

/// A disabled mailbox ends the search: its mail never reaches the domain's catch-all, the
/// catch-all's owner may not send as it, and `recipient_access` refuses it as disabled.
#[test]
fn a_disabled_mailbox_is_never_handed_to_the_catch_all() {
    let Some((_db, cfg)) = prepare("a_disabled_mailbox_is_never_handed_to_the_catch_all") else {
        return;
    };
    let d = Daemon::start(cfg);
    expect(
        &d,
        &[
            // The catch-all still serves unknown users.
            ("aliases", "nobody@example.org", Some("carol@example.org")),
            ("aliases", "x@example.org", None),
            ("aliases", "x+tag@example.org", None),
            ("aliases", "X@Example.org", None),
            ("aliases", "x@alias.test", None),
            ("mailboxes", "x@example.org", None),
            ("mailboxes", "x+tag@example.org", None),
            ("senders", "nobody@example.org", Some("carol@example.org")),
            ("senders", "x@example.org", None),
            ("senders", "x+tag@example.org", None),
            ("recipient_access", "x@example.org", Some(DISABLED)),
            ("recipient_access", "x+tag@example.org", Some(DISABLED)),
            ("recipient_access", "y@plain.test", Some(DISABLED)),
            ("recipient_access", "carol@example.org", None),
            ("recipient_access", "nobody@example.org", None),
            ("recipient_access", "nobody@plain.test", None),
            // Postfix also asks access maps about the domain and `user@`.
            ("recipient_access", "example.org", None),
            ("recipient_access", "x@", None),
        ],
    );
}

/// A disabled domain answers nothing in any map: its forwardings, catch-all, users and
/// transport, also through an alias domain pointing at it.
#[test]
fn a_disabled_domain_is_disabled_for_every_map() {
    let Some((db, cfg)) = prepare("a_disabled_domain_is_disabled_for_every_map") else {
        return;
    };
    let d = Daemon::start(cfg);
    let off: &[(&str, &str, Option<&str>)] = &[
        ("domains", "off.test", None),
        ("aliases", "info@off.test", None),
        ("aliases", "info+x@off.test", None),
        ("aliases", "random@off.test", None),
        ("aliases", "dan@off.test", None),
        ("aliases", "info@offalias.test", None),
        ("aliases", "random@offalias.test", None),
        ("mailboxes", "dan@off.test", None),
        ("senders", "info@off.test", None),
        ("senders", "random@off.test", None),
        ("senders", "dan@off.test", None),
        ("senders", "info@offalias.test", None),
        ("transport", "off.test", None),
        ("transport", "dan@off.test", None),
        // Its users are refused as disabled.
        ("recipient_access", "dan@off.test", Some(DISABLED)),
    ];
    expect(&d, off);
    // Other domains are untouched.
    expect(
        &d,
        &[
            ("transport", "example.org", Some("vmail:")),
            ("aliases", "carol@alias.test", Some("carol@example.org")),
        ],
    );
    // The same rows with the domain enabled: each of the answers above comes back.
    db.sql("UPDATE domains SET active = 1 WHERE domain = 'off.test';");
    d.service.flush_cache();
    expect(
        &d,
        &[
            ("domains", "off.test", Some("virtual")),
            ("aliases", "info@off.test", Some("carol@example.org")),
            ("aliases", "random@off.test", Some("carol@example.org")),
            ("aliases", "info@offalias.test", Some("info@off.test")),
            ("senders", "info@off.test", Some("carol@example.org")),
            ("senders", "info@offalias.test", Some("carol@example.org")),
            ("mailboxes", "dan@off.test", Some("off.test/dan/")),
            ("transport", "off.test", Some("vmail:")),
            ("recipient_access", "dan@off.test", None),
        ],
    );
}

/// Through a real smtpd wired as contrib's main.cf.vmail: RCPT to a disabled mailbox gets
/// `550 5.2.1`, with an extension too and with no catch-all in the domain; an unknown user
/// still gets `5.1.1` and a mailbox is accepted.
#[test]
fn smtpd_refuses_a_disabled_mailbox_with_5_2_1() {
    let test = "smtpd_refuses_a_disabled_mailbox_with_5_2_1";
    let Some((_db, cfg)) = prepare(test) else {
        return;
    };
    let d = Daemon::start(cfg);
    // smtpd runs as `postfix`.
    set_mode(&d.socket, 0o666);
    let table = |map: &str| d.socketmap_table(map);
    let Some(pf) = PostfixBuilder::new()
        .main(&format!("virtual_mailbox_domains = {}", table("domains")))
        .main(&format!("virtual_alias_maps = {}", table("aliases")))
        .main(&format!("virtual_mailbox_maps = {}", table("mailboxes")))
        .main(&format!(
            "smtpd_recipient_restrictions = check_recipient_access {}",
            table("recipient_access")
        ))
        .main("recipient_delimiter = +")
        .main("virtual_transport = discard:test")
        .start(test)
    else {
        return;
    };
    let rcpts = [
        "x@example.org",
        "x+tag@example.org",
        "y@plain.test",
        "nobody@plain.test",
        "carol@example.org",
    ];
    let out = pf.send(
        "someone@outside.test",
        &rcpts,
        "Subject: disabled\n\nhello\n",
    );
    let reply = |r: &str| {
        out.rcpt
            .iter()
            .find(|(x, _)| x == r)
            .map(|(_, reply)| (reply.code, reply.text.clone()))
            .unwrap_or_default()
    };
    for r in ["x@example.org", "x+tag@example.org", "y@plain.test"] {
        let (code, text) = reply(r);
        assert!(
            code == 550 && text.starts_with("5.2.1 "),
            "RCPT TO:<{r}>: {code} {text}\n{}\n{}",
            out.transcript,
            pf.maillog()
        );
    }
    let (code, text) = reply("nobody@plain.test");
    assert!(
        code == 550 && text.starts_with("5.1.1 "),
        "{code} {text}\n{}",
        out.transcript
    );
    assert_eq!(
        out.rcpt_code("carol@example.org"),
        250,
        "{}",
        out.transcript
    );
    assert!(out.accepted(), "{}", out.transcript);
}

/// Postfix wired with tcp_table instead of socketmap (main.cf.vmail's alternative) has the
/// same `recipient_access` map on a listener of its own: without one, a disabled mailbox
/// could only be refused as "5.1.1 User unknown" there.
#[test]
fn recipient_access_is_served_over_tcp_table_too() {
    let Some((_db, mut cfg)) = prepare("recipient_access_is_served_over_tcp_table_too") else {
        return;
    };
    let port = vmail_test_support::free_port();
    cfg.lookupd.tcp_table.recipient_access = Some(format!("inet:127.0.0.1:{port}"));
    let d = Daemon::start(cfg);
    let table = format!("tcp:127.0.0.1:{port}");
    assert_eq!(
        postmap_query("x@example.org", &table),
        PostmapResult::Found(DISABLED.to_string())
    );
    assert_eq!(
        postmap_query("carol@example.org", &table),
        PostmapResult::NotFound
    );
    drop(d);
}
