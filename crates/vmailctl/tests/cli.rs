//! vmailctl as a postmaster uses it: the real binary, passwords on stdin, exit statuses that
//! scripts can rely on.

use std::path::Path;
use std::process::Command;

use vmail_test_support::TestDb;

mod common;
use common::{code, down_config, ok, sqlite_config, vmailctl, write_config};

fn exercise(cfg: &Path) {
    ok(cfg, &["init"], "");
    ok(cfg, &["domain", "add", "Example.ORG"], "");
    ok(
        cfg,
        &["user", "add", "alice@example.org", "--quota", "1000000"],
        "s3cret pass\n",
    );
    ok(
        cfg,
        &[
            "alias",
            "add",
            "info@example.org",
            "alice@example.org",
            "ext@remote.test",
        ],
        "",
    );
    ok(
        cfg,
        &["alias", "add", "@example.org", "alice@example.org"],
        "",
    );

    assert_eq!(
        ok(cfg, &["query", "domains", "example.org"], ""),
        "virtual\n"
    );
    assert_eq!(
        ok(cfg, &["query", "mailboxes", "alice+x@example.org"], ""),
        "example.org/alice/\n"
    );
    assert_eq!(
        ok(cfg, &["query", "aliases", "info@example.org"], ""),
        "alice@example.org,ext@remote.test\n"
    );
    assert_eq!(
        ok(cfg, &["query", "aliases", "anyone@example.org"], ""),
        "alice@example.org\n"
    );
    let o = vmailctl(cfg, &["query", "mailboxes", "nobody@example.org"], "");
    assert_eq!(code(&o), 1, "not found exits 1 like postmap -q");
    assert!(o.stdout.is_empty());
    let o = vmailctl(cfg, &["query", "nosuchmap", "x"], "");
    // A map name is part of the command line (completions offer the names): EX_USAGE.
    assert_eq!(code(&o), 64);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nosuchmap") && err.contains("recipient_access"),
        "{err}"
    );

    let j: serde_json::Value = serde_json::from_str(&ok(
        cfg,
        &["--json", "query", "senders", "info@example.org"],
        "",
    ))
    .unwrap();
    assert_eq!(j["value"], "alice@example.org,ext@remote.test");

    // The stored hash is the strong default, not the password.
    let users: serde_json::Value =
        serde_json::from_str(&ok(cfg, &["--json", "user", "list"], "")).unwrap();
    assert_eq!(users[0]["email"], "alice@example.org");

    let out = ok(cfg, &["auth", "test", "alice@example.org"], "s3cret pass\n");
    assert!(out.contains("auth succeeded"), "{out}");
    let o = vmailctl(cfg, &["auth", "test", "alice@example.org"], "wrong\n");
    assert_eq!(code(&o), 1);
    let o = vmailctl(
        cfg,
        &["auth", "test", "nobody@example.org"],
        "s3cret pass\n",
    );
    assert_eq!(code(&o), 1);
    ok(cfg, &["user", "passwd", "alice@example.org"], "n3w\n");
    assert_eq!(
        code(&vmailctl(
            cfg,
            &["auth", "test", "alice@example.org"],
            "s3cret pass\n"
        )),
        1
    );
    ok(cfg, &["auth", "test", "alice@example.org"], "n3w\n");
    ok(cfg, &["user", "disable", "alice@example.org"], "");
    assert_eq!(
        code(&vmailctl(
            cfg,
            &["auth", "test", "alice@example.org"],
            "n3w\n"
        )),
        1
    );
    ok(cfg, &["user", "enable", "alice@example.org"], "");

    // Clear errors, non-zero status.
    for (args, stdin, needle) in [
        (&["domain", "add", "example.org"][..], "", "already exists"),
        (
            &["user", "add", "alice@example.org"][..],
            "x\n",
            "already exists",
        ),
        (
            &["user", "add", "bob@unknown.test"][..],
            "x\n",
            "domain unknown.test does not exist",
        ),
        (
            &["user", "add", "not-an-address"][..],
            "x\n",
            "not a valid address",
        ),
        (
            &["user", "add", "bob@example.org"][..],
            "\n",
            "empty password",
        ),
        (&["domain", "del", "example.org"][..], "", "--force"),
    ] {
        let o = vmailctl(cfg, args, stdin);
        assert_eq!(code(&o), 2, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    ok(cfg, &["domain", "del", "example.org", "--force"], "");
    assert_eq!(ok(cfg, &["domain", "list"], ""), "");
}

#[test]
fn sqlite_workflow() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&sqlite_config(dir.path()));
}

#[test]
fn mariadb_workflow() {
    let Some(db) = TestDb::create("mariadb_workflow") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The password lives in a file, never in argv or the main config.
    let pwfile = dir.path().join("db-password");
    std::fs::write(&pwfile, format!("{}\n", db.password)).unwrap();
    vmail_test_support::set_mode(&pwfile, 0o600);
    let cfg = write_config(
        dir.path(),
        &format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"{}\"]\nuser = \"{}\"\npassword_file = \"{}\"\ndbname = \"{}\"\n",
            db.host,
            db.user,
            pwfile.display(),
            db.name
        ),
    );
    exercise(&cfg);
}

#[test]
fn database_down_is_exit_75_not_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = down_config(dir.path());
    for args in [
        &["query", "aliases", "a@example.org"][..],
        &["query", "domains", "example.org"][..],
        &["auth", "test", "a@example.org"][..],
    ] {
        let o = vmailctl(&cfg, args, "pw\n");
        assert_eq!(
            code(&o),
            75,
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn check_prints_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[database]\nbackend = \"mysql\"\npassword = \"hunter2\"\n",
    );
    let out = ok(&cfg, &["--check"], "");
    assert!(out.contains("backend = \"mysql\""), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    // Like doveconf -n: only what differs from the defaults; -a prints everything.
    assert!(
        !out.contains("[lookupd]") && !out.contains("sqlite_path"),
        "{out}"
    );
    let all = ok(&cfg, &["--check", "-a"], "");
    assert!(all.contains("backend = \"mysql\""), "{all}");
    assert!(
        all.contains("[lookupd]") && all.contains("sqlite_path"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
    let bad = write_config(dir.path(), "[database]\nbakend = \"mysql\"\n");
    let o = vmailctl(&bad, &["--check"], "");
    assert_eq!(code(&o), 78, "EX_CONFIG, as doveadm");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bakend") && err.contains("vmail.toml"),
        "{err}"
    );
}

/// Kills and reaps a helper process however the test ends.
struct Helper(std::process::Child);

impl Helper {
    fn alive(&mut self) -> bool {
        // A SIGHUP, had one been sent, is delivered by the time vmailctl has exited; the
        // pause only lets the kernel finish the (default: fatal) action.
        std::thread::sleep(std::time::Duration::from_millis(100));
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pid file left by a crashed daemon names a pid that another program may have now: after a
/// change, vmailctl must not SIGHUP it (seen: an unrelated `sleep` killed), and says that the
/// daemon is not running. A locked pid file naming a program that is not the daemon is not
/// trusted either.
#[test]
fn stale_pid_files_never_get_an_unrelated_process_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (lookupd_pid, authd_pid) = (d.join("lookupd.pid"), d.join("authd.pid"));
    let lmtpd_pid = d.join("lmtpd.pid");
    let cfg = write_config(
        d,
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[lookupd]\npid_file = \"{}\"\n[authd]\npid_file = \"{}\"\n[lmtpd]\npid_file = \"{}\"\n",
            d.join("v.db").display(),
            lookupd_pid.display(),
            authd_pid.display(),
            lmtpd_pid.display()
        ),
    );
    let mut sleep = Helper(Command::new("sleep").arg("60").spawn().unwrap());
    for f in [&lookupd_pid, &authd_pid, &lmtpd_pid] {
        std::fs::write(f, format!("{}\n", sleep.0.id())).unwrap();
    }
    ok(&cfg, &["init"], "");
    let said = ok(&cfg, &["flush"], "");
    assert!(
        sleep.alive(),
        "vmailctl flush signalled pid {}",
        sleep.0.id()
    );
    assert!(
        said.contains("no vmail-lookupd running (stale pid file"),
        "{said}"
    );
    assert!(
        said.contains("no vmail-authd running (stale pid file"),
        "{said}"
    );
    // The review of issue 19: lmtpd's directory keeps the schema it learned, so flush (and
    // every change, `migrate` and `init` among them) reaches it too.
    assert!(
        said.contains("no vmail-lmtpd running (stale pid file"),
        "{said}"
    );
    assert!(
        said.contains(&format!("pid {} left alone", sleep.0.id())),
        "{said}"
    );
    // Every change signals the daemons too.
    ok(&cfg, &["domain", "add", "example.org"], "");
    assert!(
        sleep.alive(),
        "vmailctl domain add signalled pid {}",
        sleep.0.id()
    );

    // Locked (here by flock(1)), but the pid runs sleep, not vmail-lookupd.
    let script = format!("echo $$ > {}; exec sleep 60", lookupd_pid.display());
    let mut locked = Helper(
        Command::new("flock")
            .arg(&lookupd_pid)
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    let written = vmail_test_support::wait_until(std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(&lookupd_pid).is_ok_and(|t| t.trim() != sleep.0.id().to_string())
    });
    assert!(written);
    let pid = std::fs::read_to_string(&lookupd_pid).unwrap();
    let o = vmailctl(&cfg, &["flush"], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains(&format!("pid {} runs", pid.trim())), "{err}");
    assert!(err.contains("not vmail-lookupd; not signalled"), "{err}");
    assert!(locked.alive() && sleep.alive());
}

/// Rows the classic `mysql:` maps reach through MariaDB's collation (issue 20, item 3):
/// `vmailctl audit` names each one vmail matches differently, and rows with trailing spaces
/// keep working (maps and logins) as they did with the classic maps and pam_mysql.
#[test]
fn audit_names_rows_the_classic_collation_matched() {
    let Some(db) = TestDb::create("audit_names_rows_the_classic_collation_matched") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[database]\nbackend = \"mysql\"\nhosts = [\"{}\"]\nuser = \"{}\"\npassword = \"{}\"\ndbname = \"{}\"\n",
            db.host, db.user, db.password, db.name
        ),
    );
    ok(&cfg, &["init"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    assert_eq!(
        ok(&cfg, &["audit"], ""),
        "0 row(s) vmail never matches, 0 matched differently from the classic maps\n"
    );
    db.sql(
        "INSERT INTO domains (domain) VALUES ('münchen.test');
         INSERT INTO users (email, password) VALUES ('pad@example.org ', '{PLAIN}secret'),
           (' lead@example.org', 'x'), ('alicé@example.org', 'x'), ('a b@example.org', 'x');
         INSERT INTO forwardings (source, destination) VALUES ('padfw@example.org  ', 'pad@example.org'),
           ('@münchen.test', 'pad@example.org'), ('nodomain', 'pad@example.org');",
    );
    let o = vmailctl(&cfg, &["audit"], "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    for line in [
        r#"users.email "pad@example.org ": trailing spaces"#,
        r#"users.email " lead@example.org": spaces, control characters"#,
        r#"users.email "alicé@example.org": non-ASCII under an accent-insensitive collation"#,
        r#"users.email "a b@example.org": spaces, control characters"#,
        r#"forwardings.source "padfw@example.org  ": trailing spaces"#,
        r#"forwardings.source "@münchen.test": non-ASCII"#,
        r#"forwardings.source "nodomain": not a valid address"#,
        r#"domains.domain "münchen.test": non-ASCII"#,
        "3 row(s) vmail never matches, 5 matched differently",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok_or_unmatched(&cfg, &["--json", "audit"])).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(8), "{json}");
    // Trailing spaces are ignored as the collation ignores them: maps and logins work.
    assert_eq!(
        ok(&cfg, &["query", "mailboxes", "pad@example.org"], ""),
        "example.org/pad/\n"
    );
    assert_eq!(
        ok(&cfg, &["query", "aliases", "padfw@example.org"], ""),
        "pad@example.org\n"
    );
    ok(
        &cfg,
        &["auth", "test", "pad@example.org", "--service", "smtp"],
        "secret\n",
    );
    // An accent variant is not matched (the classic maps would): documented and listed.
    let o = vmailctl(&cfg, &["query", "mailboxes", "alice@example.org"], "");
    assert_eq!(code(&o), 1);
}

/// stdout of a command that exits 0 or 1 (`audit` with unmatched rows).
fn ok_or_unmatched(config: &Path, args: &[&str]) -> String {
    let o = vmailctl(config, args, "");
    assert!(matches!(code(&o), 0 | 1), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Names that would share another account's Maildir or leave the base directory (issue 15):
/// each refused with the rule it breaks, nothing written, good names still accepted.
#[test]
fn names_that_escape_or_share_a_maildir_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    ok(&cfg, &["user", "add", "alice@example.org"], "pw\n");
    ok(
        &cfg,
        &["alias", "add", "info@example.org", "alice@example.org"],
        "",
    );
    let long = format!("{}@example.org", "a".repeat(300));
    let slash = "contains '/'";
    let dot = "starts with '.'";
    let idna = "not a valid IDNA host name";
    for (args, needle) in [
        (&["domain", "add", "../../etc"][..], slash),
        (&["domain", "add", "a/b.org"][..], slash),
        (&["domain", "add", "example.org/"][..], slash),
        (&["domain", "add", "..org"][..], dot),
        (&["domain", "add", "xn--bad-.org"][..], idna),
        (&["domain", "add", "a_b.org"][..], idna),
        (&["user", "add", "alice/.@example.org"][..], slash),
        (&["user", "add", "alice@example.org/"][..], slash),
        (&["user", "add", "../x@example.org"][..], slash),
        (&["user", "add", "a/../../b@example.org"][..], slash),
        (&["user", "add", ".alice@example.org"][..], dot),
        (&["user", "add", "bob:LAYOUT=fs@example.org"][..], "':'"),
        (&["user", "add", &long][..], "300 octets long; at most 64"),
        (
            &["alias", "add", "x/.@example.org", "alice@example.org"][..],
            slash,
        ),
        (&["alias", "add", "@..org", "alice@example.org"][..], dot),
        (
            &["alias", "add", "info@example.org", "../x@example.org"][..],
            slash,
        ),
        (
            &["alias", "add", "info@example.org", "x@a/b.org"][..],
            slash,
        ),
        (&["alias", "add", "@example.org", "@../../etc"][..], slash),
        (&["transport", "set", "../../etc", "vmail:"][..], slash),
    ] {
        let o = vmailctl(&cfg, args, "pw\n");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 2, "{args:?} accepted: {err}");
        assert!(
            err.contains("refused") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // Nothing half-written.
    assert_eq!(ok(&cfg, &["domain", "list"], ""), "example.org\n");
    assert_eq!(ok(&cfg, &["user", "list"], ""), "alice@example.org\n");
    assert_eq!(
        ok(&cfg, &["alias", "list"], ""),
        "info@example.org\talice@example.org\n"
    );
    // Good names, external destinations and alias domains keep working.
    ok(&cfg, &["domain", "add", "exämple.com"], "");
    ok(&cfg, &["domain", "add", "xn--bcher-kva.example"], "");
    ok(&cfg, &["user", "add", "o'neil.x+y@exämple.com"], "pw\n");
    ok(
        &cfg,
        &["alias", "add", "info@example.org", "User@Gmail.com"],
        "",
    );
    ok(&cfg, &["alias", "add", "@exämple.com", "@example.org"], "");
    ok(&cfg, &["transport", "set", "exämple.com", "vmail:"], "");
    assert_eq!(
        ok(&cfg, &["query", "aliases", "info@example.org"], ""),
        "alice@example.org,User@gmail.com\n"
    );
    // A bad row written before this rule can still be removed.
    let db = rusqlite::Connection::open(dir.path().join("v.db")).unwrap();
    db.execute_batch("INSERT INTO users (email, password) VALUES ('alice/.@example.org', 'x');")
        .unwrap();
    ok(&cfg, &["user", "del", "alice/.@example.org"], "");
    assert_eq!(
        ok(&cfg, &["user", "list", "example.org"], ""),
        "alice@example.org\n"
    );
}

/// SQLite compares `'pad@example.org '` and `'pad@example.org'` as different (NOCASE does not
/// pad), so vmail never reaches a padded row there: `audit` must list it as never matched
/// (exit 1), not as "matched as if the spaces were absent" (exit 0), which left the
/// postmaster believing mail for it still arrives.
#[test]
fn audit_on_sqlite_lists_padded_rows_as_never_matched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmail.sqlite");
    let cfg = write_config(
        dir.path(),
        &format!("[database]\nsqlite_path = \"{}\"\n", db.display()),
    );
    ok(&cfg, &["init"], "");
    ok(&cfg, &["domain", "add", "example.org"], "");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "INSERT INTO users (email, password) VALUES ('pad@example.org ', 'x');
             INSERT INTO forwardings (source, destination) VALUES ('padfw@example.org ', 'x@example.org');",
        )
        .unwrap();
    // What vmail answers for them: nothing.
    let o = vmailctl(&cfg, &["query", "mailboxes", "pad@example.org"], "");
    assert_eq!(code(&o), 1, "{o:?}");
    let o = vmailctl(&cfg, &["query", "aliases", "padfw@example.org"], "");
    assert_eq!(code(&o), 1, "{o:?}");
    let o = vmailctl(&cfg, &["audit"], "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(
        out.contains("2 row(s) vmail never matches, 0 matched differently"),
        "{out}"
    );
}

/// `vmailctl init` run by root on SQLite gives the new file to `[lookupd] user`, who the
/// daemons and vmail-lda run as (left to root, vmail-lda-direct could not open it); a file
/// that is a link is not followed. Needs root (skipped otherwise).
#[test]
fn init_as_root_gives_the_sqlite_file_to_the_daemons_user() {
    use std::os::unix::fs::MetadataExt;
    if !nix_is_root() {
        vmail_test_support::skip(
            "init_as_root_gives_the_sqlite_file_to_the_daemons_user",
            "needs root",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nobody = vmail_test_support::postfix::lookup_user("nobody").unwrap();
    let db = d.join("v.db");
    let cfg = write_config(
        d,
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[lookupd]\nuser = \"nobody\"\npid_file = \"{d}/l.pid\"\n[authd]\npid_file = \"{d}/a.pid\"\n",
            db.display(),
            d = d.display()
        ),
    );
    let said = ok(&cfg, &["init"], "");
    assert!(said.contains("to user nobody"), "{said}");
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody.0, nobody.1));
    // Run again: nothing of root's left to give, and nothing said about it.
    let said = ok(&cfg, &["init"], "");
    assert!(!said.contains("gave"), "{said}");

    // A link in the database's place (the directory is the mail user's): its target stays
    // root's.
    let target = d.join("root-only");
    std::fs::write(&target, "").unwrap();
    let linked = d.join("linked.db");
    std::os::unix::fs::symlink(&target, &linked).unwrap();
    let cfg = write_config(
        d,
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[lookupd]\nuser = \"nobody\"\npid_file = \"{d}/l.pid\"\n[authd]\npid_file = \"{d}/a.pid\"\n",
            linked.display(),
            d = d.display()
        ),
    );
    let said = ok(&cfg, &["init"], "");
    assert!(!said.contains("gave"), "{said}");
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
    // Nor a hard link: the file has another name, root's.
    let hard = d.join("hard.db");
    std::fs::remove_file(&linked).unwrap();
    std::fs::hard_link(&target, &hard).unwrap();
    let cfg = write_config(
        d,
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[lookupd]\nuser = \"nobody\"\npid_file = \"{d}/l.pid\"\n[authd]\npid_file = \"{d}/a.pid\"\n",
            hard.display(),
            d = d.display()
        ),
    );
    let said = ok(&cfg, &["init"], "");
    assert!(!said.contains("gave"), "{said}");
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
