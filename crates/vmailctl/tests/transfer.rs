//! `export` and `import`: moving a directory from SQLite to MariaDB is two commands, and
//! the MariaDB copy exports exactly the same lines.

use std::path::Path;

mod common;
use common::{code, mariadb_config, ok, sqlite_config, vmailctl};

fn populate(cfg: &Path) {
    ok(cfg, &["init"], "");
    for d in ["example.org", "example.net", "old.test"] {
        ok(cfg, &["domain", "add", d], "");
    }
    ok(cfg, &["domain", "disable", "old.test"], "");
    ok(cfg, &["user", "add", "alice@example.org"], "pw a\n");
    ok(
        cfg,
        &["user", "add", "bob@example.net", "--quota", "5000"],
        "pw b\n",
    );
    ok(
        cfg,
        &[
            "user",
            "set",
            "bob@example.net",
            "--services",
            "imap,smtp",
            "--active",
            "no",
        ],
        "",
    );
    ok(
        cfg,
        &[
            "alias",
            "add",
            "info@example.org",
            "alice@example.org",
            "Ext@Remote.test",
        ],
        "",
    );
    ok(cfg, &["alias", "add", "@example.net", "@example.org"], "");
    ok(
        cfg,
        &["transport", "set", "example.net", "smtp:[relay.example]:25"],
        "",
    );
}

/// The export of `cfg` (and that it is one JSON object with a type per line).
fn export(cfg: &Path) -> String {
    let out = ok(cfg, &["export"], "");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["type"].is_string(), "{line}");
    }
    out
}

#[test]
fn sqlite_to_mariadb_and_back_gives_identical_lines() {
    let dir = tempfile::tempdir().unwrap();
    let lite = sqlite_config(dir.path());
    populate(&lite);
    let first = export(&lite);
    assert_eq!(first.lines().count(), 3 + 2 + 2 + 1, "{first}");
    assert!(
        first.contains(r#""type":"user""#) && first.contains("$6$"),
        "hashes go along"
    );

    let mdir = tempfile::tempdir().unwrap();
    let Some((_db, maria)) = mariadb_config(mdir.path(), "sqlite_to_mariadb_and_back") else {
        return;
    };
    ok(&maria, &["init"], "");
    assert_eq!(ok(&maria, &["import"], &first), "imported 8 row(s)\n");
    assert_eq!(export(&maria), first);
    // The copy works: logins, flags, maps.
    ok(&maria, &["auth", "test", "alice@example.org"], "pw a\n");
    assert_eq!(
        code(&vmailctl(
            &maria,
            &["auth", "test", "bob@example.net"],
            "pw b\n"
        )),
        1
    );
    assert_eq!(
        ok(&maria, &["query", "aliases", "info@example.org"], ""),
        "alice@example.org,Ext@remote.test\n"
    );
    assert_eq!(
        code(&vmailctl(&maria, &["query", "domains", "old.test"], "")),
        1
    );

    // Again: every row exists, nothing is imported; --replace overwrites.
    let o = vmailctl(&maria, &["import"], &first);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--replace"),
        "{o:?}"
    );
    ok(&maria, &["import", "--replace"], &first);
    assert_eq!(export(&maria), first);

    // And back into a fresh SQLite file from a file argument.
    let back = tempfile::tempdir().unwrap();
    let lite2 = sqlite_config(back.path());
    ok(&lite2, &["init"], "");
    let f = back.path().join("dump.jsonl");
    std::fs::write(&f, export(&maria)).unwrap();
    ok(&lite2, &["import", f.to_str().unwrap()], "");
    assert_eq!(export(&lite2), first);
}

/// One transaction: a conflicting row anywhere means no row at all.
#[test]
fn import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    let input = "{\"type\":\"domain\",\"domain\":\"new.test\"}\n\
                 {\"type\":\"domain\",\"domain\":\"example.org\"}\n";
    let o = vmailctl(&cfg, &["import"], input);
    assert_eq!(code(&o), 2, "{o:?}");
    assert_eq!(ok(&cfg, &["domain", "list"], ""), "example.org\n");
    // Bad lines are named and refused before anything is written.
    let o = vmailctl(
        &cfg,
        &["import"],
        "{\"type\":\"domain\",\"domain\":\"a.test\"}\n{\"type\":\"mailbox\"}\n",
    );
    assert_eq!(code(&o), 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 2"),
        "{o:?}"
    );
    assert_eq!(ok(&cfg, &["domain", "list"], ""), "example.org\n");
}

/// An import stores nothing that `user add`, `alias add`, `transport set` or `user set`
/// would refuse: each bad row fails the whole import (status 2) and leaves the directory as
/// it was.
#[test]
fn import_checks_rows_as_the_commands_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    let before = export(&cfg);
    let user = |email: &str, services: &str| {
        format!(
            "{{\"type\":\"user\",\"email\":\"{email}\",\"password\":\"{{PLAIN}}x\",\
             \"active\":true,\"quota\":0,\"services\":{services}}}\n"
        )
    };
    for bad in [
        // A user or alias of a domain that is neither stored nor imported.
        user("bob@elsewhere.test", "null"),
        "{\"type\":\"alias\",\"source\":\"x@elsewhere.test\",\"destination\":\"a@example.org\"}\n"
            .into(),
        // Services as `user set --services` refuses them.
        user("bob@example.org", "\"imap pop3\""),
        // Destinations as `alias add` refuses them.
        "{\"type\":\"alias\",\"source\":\"x@example.org\",\"destination\":\"not an address\"}\n"
            .into(),
        "{\"type\":\"alias\",\"source\":\"x@example.org\",\"destination\":\"a@ex/ample.org\"}\n"
            .into(),
        "{\"type\":\"alias\",\"source\":\"x@example.org\",\"destination\":\" , \"}\n".into(),
        // A transport as `transport set` refuses it.
        "{\"type\":\"transport\",\"domain\":\"example.org\",\"transport\":\"smtp: [relay]\"}\n"
            .into(),
    ] {
        let o = vmailctl(&cfg, &["import"], &bad);
        assert_eq!(code(&o), 2, "{bad}: {o:?}");
        assert_eq!(export(&cfg), before, "{bad}");
    }
    // The same rows, well formed, are imported, the destinations as `alias add` stores them.
    ok(
        &cfg,
        &["import"],
        &format!(
            "{{\"type\":\"domain\",\"domain\":\"new.test\"}}\n{}{}\
             {{\"type\":\"alias\",\"source\":\"x@new.test\",\"destination\":\"a@Example.ORG,b@remote.test\"}}\n",
            user("bob@new.test", "[\"imap\"]").replace("[\"imap\"]", "\"IMAP,pop3\""),
            user("carol@example.org", "null"),
        ),
    );
    let after = export(&cfg);
    assert!(after.contains("\"services\":\"imap,pop3\""), "{after}");
    assert!(
        after.contains("\"destination\":\"a@example.org, b@remote.test\""),
        "{after}"
    );
}

/// A classic schema cannot hold a disabled domain: EX_CONFIG, naming migrate.
#[test]
fn import_into_classic_schema_needs_migrate_for_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init", "--classic"], "");
    ok(
        &cfg,
        &["import"],
        "{\"type\":\"domain\",\"domain\":\"a.test\",\"active\":true}\n",
    );
    let o = vmailctl(
        &cfg,
        &["import"],
        "{\"type\":\"domain\",\"domain\":\"b.test\",\"active\":false}\n",
    );
    assert_eq!(code(&o), 78, "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("vmailctl migrate"));
    assert_eq!(
        ok(&cfg, &["export"], ""),
        "{\"active\":true,\"domain\":\"a.test\",\"type\":\"domain\"}\n"
    );
}

/// The connection lost after COMMIT was sent (the reply lost, the transaction committed):
/// the import is not run again on a new connection, which would report "exists" for rows
/// the first run stored; "outcome unknown", exit 75, and the rows are there once. The same
/// for a write that commits by itself (`domain add`).
#[test]
fn a_write_whose_reply_is_lost_is_not_retried() {
    use vmail_test_support::lost_reply::{Cut, LostReply};
    let dir = tempfile::tempdir().unwrap();
    let Some((db, cfg)) = mariadb_config(dir.path(), "a_write_whose_reply_is_lost") else {
        return;
    };
    ok(&cfg, &["init"], "");
    let via = |cut: Cut| {
        let proxy = LostReply::start(&db.host, cut);
        let d = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("\"{}\"", db.host),
            &format!("\"127.0.0.1:{}\"", proxy.port),
        );
        let c = common::write_config(d.path(), &text);
        (proxy, d, c)
    };
    let input = "{\"type\":\"domain\",\"domain\":\"example.org\"}\n\
                 {\"type\":\"user\",\"email\":\"a@example.org\",\"password\":\"{PLAIN}x\"}\n";
    let (proxy, _d, c) = via(Cut::Commit);
    let o = vmailctl(&c, &["import"], input);
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(code(&o), 75, "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("outcome unknown") && err.contains("vmailctl export"),
        "{err}"
    );
    assert_eq!(ok(&cfg, &["domain", "list"], ""), "example.org\n");
    ok(&cfg, &["auth", "test", "a@example.org"], "x\n");

    let (proxy, _d, c) = via(Cut::Statement("INSERT"));
    let o = vmailctl(&c, &["--json", "domain", "add", "example.net"], "");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(code(&o), 75, "{o:?}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        j["error"].as_str().unwrap().contains("outcome unknown"),
        "{j}"
    );
    assert_eq!(
        ok(&cfg, &["domain", "list"], ""),
        "example.net\nexample.org\n"
    );
}
