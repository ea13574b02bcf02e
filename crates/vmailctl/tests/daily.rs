//! The daily commands of issue 18 (item 5): `user show`/`set`, `domain disable`/`enable`,
//! `transport del`/`list`, pre-hashed passwords, JSON errors and doveadm's exit statuses,
//! on SQLite and MariaDB alike.

use std::path::Path;

use clap::CommandFactory;

mod common;
use common::{code, down_config, mariadb_config, ok, sqlite_config, vmailctl, write_config};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn daily(cfg: &Path) {
    ok(cfg, &["init"], "");
    ok(cfg, &["domain", "add", "example.org"], "");
    assert_eq!(
        ok(cfg, &["user", "add", "Alice@Example.ORG"], "pw one\n"),
        "user alice@example.org added\n"
    );

    // show: every field but the hash.
    let out = ok(cfg, &["user", "show", "alice@example.org"], "");
    for line in [
        "email\talice@example.org\n",
        "active\tyes\n",
        "quota\t0\n",
        "services\tall\n",
        "home\t",
        "mail\t",
    ] {
        assert!(out.contains(line), "no {line:?} in {out}");
    }
    assert!(!out.contains("$6$"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&ok(
        cfg,
        &["--json", "user", "show", "alice@example.org"],
        "",
    ))
    .unwrap();
    assert_eq!(j["email"], "alice@example.org");
    assert_eq!(j["active"], true);
    assert!(j.get("password").is_none(), "{j}");

    // set: several fields at once.
    ok(
        cfg,
        &[
            "user",
            "set",
            "alice@example.org",
            "--quota",
            "5000",
            "--services",
            "imap,SMTP",
            "--active",
            "no",
        ],
        "",
    );
    let j: serde_json::Value = serde_json::from_str(&ok(
        cfg,
        &["--json", "user", "show", "alice@example.org"],
        "",
    ))
    .unwrap();
    assert_eq!(j["quota"], 5000);
    assert_eq!(j["services"], "imap,smtp");
    assert_eq!(j["active"], false);
    let o = vmailctl(cfg, &["auth", "test", "alice@example.org"], "pw one\n");
    assert_eq!(code(&o), 1, "disabled");
    ok(
        cfg,
        &[
            "user",
            "set",
            "alice@example.org",
            "--active",
            "yes",
            "--services",
            "all",
            "--quota",
            "0",
        ],
        "",
    );
    let out = ok(cfg, &["user", "show", "alice@example.org"], "");
    assert!(
        out.contains("active\tyes\n")
            && out.contains("services\tall\n")
            && out.contains("quota\t0\n"),
        "{out}"
    );
    ok(cfg, &["auth", "test", "alice@example.org"], "pw one\n");

    // Unknown user / domain / transport: 67, as doveadm.
    for args in [
        &["user", "show", "nobody@example.org"][..],
        &["user", "set", "nobody@example.org", "--quota", "1"][..],
        &["user", "del", "nobody@example.org"][..],
        &["user", "disable", "nobody@example.org"][..],
        &["domain", "disable", "unknown.test"][..],
        &["domain", "del", "unknown.test"][..],
        &["alias", "del", "nothing@example.org"][..],
        &["transport", "del", "example.org"][..],
    ] {
        let o = vmailctl(cfg, args, "x\n");
        assert_eq!(code(&o), 67, "{args:?}: {o:?}");
    }
    ok(cfg, &["user", "passwd", "alice@example.org"], "pw one\n");
    assert_eq!(
        code(&vmailctl(
            cfg,
            &["user", "passwd", "nobody@example.org"],
            "x\n"
        )),
        67
    );
    // ... but adding to an unknown domain is bad input, not an unknown user.
    assert_eq!(
        code(&vmailctl(cfg, &["user", "add", "bob@unknown.test"], "x\n")),
        2
    );

    // Under --json the error is one object on stdout, nothing on stderr.
    let o = vmailctl(cfg, &["--json", "user", "show", "nobody@example.org"], "");
    assert_eq!(code(&o), 67);
    assert!(o.stderr.is_empty(), "{o:?}");
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["status"], 67);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("nobody@example.org does not exist"),
        "{j}"
    );

    // Domains: disabled answers nothing, enabled again answers.
    ok(cfg, &["domain", "disable", "example.org"], "");
    assert_eq!(
        ok(cfg, &["domain", "list"], ""),
        "example.org\t(disabled)\n"
    );
    let o = vmailctl(cfg, &["query", "domains", "example.org"], "");
    assert_eq!(code(&o), 1, "{o:?}");
    ok(cfg, &["domain", "enable", "example.org"], "");
    assert_eq!(ok(cfg, &["domain", "list"], ""), "example.org\n");
    assert_eq!(
        ok(cfg, &["query", "domains", "example.org"], ""),
        "virtual\n"
    );

    // Transports.
    ok(
        cfg,
        &[
            "transport",
            "set",
            "example.org",
            "lmtp:unix:private/dovecot-lmtp",
        ],
        "",
    );
    assert_eq!(
        ok(cfg, &["transport", "list"], ""),
        "example.org\tlmtp:unix:private/dovecot-lmtp\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(cfg, &["--json", "transport", "list"], "")).unwrap();
    assert_eq!(j[0]["transport"], "lmtp:unix:private/dovecot-lmtp");
    ok(cfg, &["transport", "del", "example.org"], "");
    assert_eq!(ok(cfg, &["transport", "list"], ""), "");

    // A pre-hashed password from stdin.
    let hash = ok(cfg, &["pw"], "hashed pw\n");
    ok(
        cfg,
        &["user", "passwd", "alice@example.org", "--hashed"],
        &hash,
    );
    ok(cfg, &["auth", "test", "alice@example.org"], "hashed pw\n");
    ok(
        cfg,
        &["user", "add", "carol@example.org", "--hashed"],
        &hash,
    );
    ok(cfg, &["auth", "test", "carol@example.org"], "hashed pw\n");
    for bad in ["{NOSUCH}abc\n", "not a hash\n", "\n"] {
        let o = vmailctl(cfg, &["user", "add", "dave@example.org", "--hashed"], bad);
        assert_eq!(code(&o), 2, "{bad:?} accepted: {o:?}");
    }
    assert_eq!(
        code(&vmailctl(cfg, &["user", "show", "dave@example.org"], "")),
        67
    );
}

#[test]
fn daily_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    daily(&sqlite_config(dir.path()));
}

#[test]
fn daily_commands_on_mariadb() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_db, cfg)) = mariadb_config(dir.path(), "daily_commands_on_mariadb") else {
        return;
    };
    daily(&cfg);
}

/// A classic schema lacks the columns: a clear error naming `vmailctl migrate`, EX_CONFIG.
#[test]
fn classic_schema_asks_for_migrate_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init", "--classic"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    ok(&cfg, &["user", "add", "a@example.org"], "pw\n");
    for args in [
        &["domain", "disable", "example.org"][..],
        &["user", "set", "a@example.org", "--quota", "1"][..],
        &["user", "set", "a@example.org", "--services", "imap"][..],
        &["user", "disable", "a@example.org"][..],
    ] {
        let o = vmailctl(&cfg, args, "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 78, "{args:?}: {err}");
        assert!(err.contains("run `vmailctl migrate`"), "{args:?}: {err}");
    }
    // Nothing half-written, and everything works after migrate.
    ok(&cfg, &["migrate"], "");
    ok(&cfg, &["domain", "disable", "example.org"], "");
    ok(&cfg, &["user", "set", "a@example.org", "--quota", "1"], "");
}

#[test]
fn usage_errors_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    for args in [
        &[][..],
        &["--bogus"][..],
        &["user"][..],
        &["user", "set"][..],
        &["user", "set", "a@example.org"][..],
        &["user", "set", "a@example.org", "--active", "maybe"][..],
    ] {
        let o = vmailctl(&cfg, args, "");
        assert_eq!(code(&o), 64, "{args:?}: {o:?}");
    }
    let o = vmailctl(&cfg, &["--json", "user", "show"], "");
    assert_eq!(code(&o), 64);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["status"], 64);
    assert!(ok(&cfg, &["--help"], "").contains("Exit status"));
}

#[test]
fn database_down_is_exit_75_for_admin_commands_too() {
    let dir = tempfile::tempdir().unwrap();
    // A closed port, then a socket that is not there.
    let socket = write_config(
        dir.path(),
        "[database]\nbackend = \"mysql\"\nhosts = [\"/nonexistent/mysqld.sock\"]\nconnect_timeout_ms = 300\n",
    );
    let o = vmailctl(&socket, &["user", "show", "a@example.org"], "");
    assert_eq!(code(&o), 75, "missing socket: {o:?}");
    let cfg = down_config(dir.path());
    for args in [
        &["user", "show", "a@example.org"][..],
        &["user", "set", "a@example.org", "--quota", "1"][..],
        &["domain", "list"][..],
        &["transport", "list"][..],
    ] {
        let o = vmailctl(&cfg, args, "");
        assert_eq!(code(&o), 75, "{args:?}: {o:?}");
    }
    for args in [
        &["--json", "auth", "test", "a@example.org"][..],
        &["--json", "query", "domains", "example.org"][..],
    ] {
        let o = vmailctl(&cfg, args, "pw\n");
        assert_eq!(code(&o), 75, "{args:?}: {o:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {o:?}");
        let _: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    }
    let o = vmailctl(&cfg, &["--json", "domain", "list"], "");
    assert_eq!(code(&o), 75);
    assert!(o.stderr.is_empty(), "{o:?}");
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (j["ok"].clone(), j["status"].clone()),
        (false.into(), 75.into())
    );
}

/// With `fold_local_part = false` the local part is stored as typed; the confirmation says
/// what was stored, not a lower-cased guess.
#[test]
fn confirmations_print_the_stored_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[address]\nfold_local_part = false\n",
            dir.path().join("v.db").display()
        ),
    );
    ok(&cfg, &["init"], "");
    assert_eq!(
        ok(&cfg, &["domain", "add", "Example.ORG"], ""),
        "domain example.org added\n"
    );
    assert_eq!(
        ok(&cfg, &["user", "add", "Alice@Example.ORG"], "pw\n"),
        "user Alice@example.org added\n"
    );
    assert_eq!(ok(&cfg, &["user", "list"], ""), "Alice@example.org\n");
}

/// Every subcommand and every argument says what it is for in `--help`.
#[test]
fn every_subcommand_and_option_has_help() {
    fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if c.get_about().is_none() && path != "vmailctl" {
            missing.push(format!("{path}: no about"));
        }
        for a in c.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {id}: no help"));
            }
        }
        for s in c.get_subcommands() {
            if s.get_name() == "help" {
                continue;
            }
            walk(s, &format!("{path} {}", s.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&vmailctl::Cli::command(), "vmailctl", &mut missing);
    assert!(missing.is_empty(), "{missing:#?}");
}
