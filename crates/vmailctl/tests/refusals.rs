//! Data the database or vmailctl refuses is EX_DATAERR (65), never "temporary" (75), which a
//! script would retry forever: a value too long for its column (MariaDB's strict mode), a
//! CHECK constraint (SQLite), an imported hash authd could not use. A database that is down
//! stays 75.

use std::path::Path;

mod common;
use common::{code, down_config, mariadb_config, ok, sqlite_config, vmailctl, write_config};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A transport longer than the classic `transport.transport` varchar(128).
fn long_transport() -> String {
    format!("smtp:[{}.example]", "r".repeat(130))
}

/// Refused writes, as commands and as an import, and nothing written by them.
fn refused_is_65(cfg: &Path) {
    ok(cfg, &["domain", "add", "example.org"], "");
    let before = ok(cfg, &["export"], "");
    let o = vmailctl(
        cfg,
        &["transport", "set", "example.org", &long_transport()],
        "",
    );
    assert_eq!(code(&o), 65, "{o:?}");
    assert!(
        stderr(&o).contains("the database refused the value: "),
        "{o:?}"
    );
    let o = vmailctl(
        cfg,
        &[
            "--json",
            "transport",
            "set",
            "example.org",
            &long_transport(),
        ],
        "",
    );
    assert_eq!(code(&o), 65, "{o:?}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((&j["ok"], &j["status"]), (&false.into(), &65.into()), "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("the database refused the value: "),
        "{j}"
    );
    let import = format!(
        "{{\"type\":\"domain\",\"domain\":\"new.test\"}}\n\
         {{\"type\":\"transport\",\"domain\":\"new.test\",\"transport\":\"{}\"}}\n",
        long_transport()
    );
    let o = vmailctl(cfg, &["import"], &import);
    assert_eq!(code(&o), 65, "{o:?}");
    assert_eq!(ok(cfg, &["export"], ""), before);
}

#[test]
fn refused_values_exit_65_on_mariadb() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_db, cfg)) = mariadb_config(dir.path(), "refused_values_exit_65_on_mariadb") else {
        return;
    };
    ok(&cfg, &["init", "--classic"], "");
    // The classic domains.domain is varchar(50).
    let long = format!("{}.example", "d".repeat(52));
    let o = vmailctl(&cfg, &["domain", "add", &long], "");
    assert_eq!(code(&o), 65, "{o:?}");
    assert!(
        stderr(&o).contains("the database refused the value: Data too long for column 'domain'"),
        "{o:?}"
    );
    refused_is_65(&cfg);
    // A hash wider than the how-to's users.password varchar(20): refused before MariaDB
    // would truncate it, and `vmailctl migrate` widens the column: a configuration of the
    // database (78), as a missing column is.
    let o = vmailctl(
        &cfg,
        &["user", "add", "--hashed", "wide@example.org"],
        "{SHA512-CRYPT}$6$saltsalt$Zl3V4n6U6yQKcQm7J0g7xvqj3M3oG4yF0y0xk2hQm1m0Jq2QvV3Z5o2nYQ0pQ9qG1d3iF1w0bXjJ5j9g5cH8n/\n",
    );
    assert_eq!(code(&o), 78, "{o:?}");
    assert!(stderr(&o).contains("vmailctl migrate"), "{o:?}");
    ok(&cfg, &["migrate"], "");
    let o = vmailctl(
        &cfg,
        &["user", "add", "--hashed", "wide@example.org"],
        "{SHA512-CRYPT}$6$saltsalt$Zl3V4n6U6yQKcQm7J0g7xvqj3M3oG4yF0y0xk2hQm1m0Jq2QvV3Z5o2nYQ0pQ9qG1d3iF1w0bXjJ5j9g5cH8n/\n",
    );
    assert_eq!(code(&o), 0, "{o:?}");
    // A database that is down is still temporary.
    let o = vmailctl(
        &down_config(dir.path()),
        &["domain", "add", "example.net"],
        "",
    );
    assert_eq!(code(&o), 75, "{o:?}");
}

#[test]
fn refused_values_exit_65_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init", "--classic"], "");
    // SQLite stores any length in a varchar; an admin's CHECK is what refuses there.
    rusqlite::Connection::open(dir.path().join("v.db"))
        .unwrap()
        .execute_batch(
            "DROP TABLE transport; CREATE TABLE transport (domain varchar(128) NOT NULL \
             DEFAULT '' COLLATE NOCASE, transport varchar(128) NOT NULL DEFAULT '' \
             CHECK (length(transport) <= 128), UNIQUE (domain));",
        )
        .unwrap();
    refused_is_65(&cfg);
}

fn user(email: &str, password: &str) -> String {
    format!("{{\"type\":\"user\",\"email\":\"{email}\",\"password\":\"{password}\"}}\n")
}

/// An import's hashes are checked as `user add --hashed` checks them, bare ones under
/// `[passwords] default_scheme` as authd reads them: a bad one refuses the whole import
/// (65), naming its line.
#[test]
fn import_refuses_hashes_authd_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init"], "");
    let domain = "{\"type\":\"domain\",\"domain\":\"example.org\"}\n";
    for bad in ["{NOSUCH}abc", "not a hash", "", "{SHA512-CRYPT}$6$short"] {
        let input = format!("{domain}{}", user("bob@example.org", bad));
        let o = vmailctl(&cfg, &["import"], &input);
        assert_eq!(code(&o), 65, "{bad:?} accepted: {o:?}");
        assert!(
            stderr(&o).contains("line 2: user bob@example.org: "),
            "{bad:?}: {o:?}"
        );
        assert_eq!(ok(&cfg, &["export"], ""), "", "{bad:?}");
    }
    let o = vmailctl(
        &cfg,
        &["--json", "import"],
        &format!("{domain}{}", user("bob@example.org", "{NOSUCH}abc")),
    );
    assert_eq!(code(&o), 65, "{o:?}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["status"], 65, "{j}");

    // Bare DES and MD5-crypt, as classic databases store them, under the default CRYPT.
    let des = "abNANd1rDfiNc";
    let md5 = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1";
    ok(
        &cfg,
        &["import"],
        &format!(
            "{domain}{}{}{}",
            user("des@example.org", des),
            user("md5@example.org", md5),
            user("plain@example.org", "{PLAIN}pw")
        ),
    );
    ok(&cfg, &["auth", "test", "md5@example.org"], "secret\n");
    ok(&cfg, &["auth", "test", "plain@example.org"], "pw\n");

    // Under another default_scheme a bare DES hash is not one authd could read.
    let other = tempfile::tempdir().unwrap();
    let cfg = write_config(
        other.path(),
        &format!(
            "[database]\nsqlite_path = \"{}\"\n[passwords]\ndefault_scheme = \"PLAIN-MD5\"\n",
            other.path().join("v.db").display()
        ),
    );
    ok(&cfg, &["init"], "");
    let o = vmailctl(
        &cfg,
        &["import"],
        &format!("{domain}{}", user("des@example.org", des)),
    );
    assert_eq!(code(&o), 65, "{o:?}");
    assert!(stderr(&o).contains("default_scheme = PLAIN-MD5"), "{o:?}");
}

/// A database may hold users whose hash authd cannot use (mail-only accounts with an empty
/// password, a scheme from another system): its export must import back. With
/// --keep-unusable-hashes such rows are imported as they are, each with a warning, and
/// export gives the same lines again; no login succeeds for them.
#[test]
fn import_keeps_unusable_hashes_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path());
    ok(&cfg, &["init"], "");
    let domain = "{\"type\":\"domain\",\"domain\":\"example.org\"}\n";
    let input = format!(
        "{domain}{}{}",
        user("empty@example.org", ""),
        user("other@example.org", "{NOSUCH}abc")
    );
    let refused = vmailctl(&cfg, &["import"], &input);
    assert_eq!(code(&refused), 65, "{refused:?}");
    assert!(
        stderr(&refused).contains("--keep-unusable-hashes"),
        "{refused:?}"
    );
    let o = vmailctl(&cfg, &["import", "--keep-unusable-hashes"], &input);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(stderr(&o).matches("warning: line").count(), 2, "{o:?}");
    let exported = ok(&cfg, &["export"], "");
    for email in ["empty@example.org", "other@example.org"] {
        assert!(exported.contains(email), "{exported}");
    }
    assert!(exported.contains("\"password\":\"\""), "{exported}");
    assert!(exported.contains("{NOSUCH}abc"), "{exported}");
    // The round trip: the export imports into a fresh directory with the flag.
    let again = tempfile::tempdir().unwrap();
    let cfg2 = sqlite_config(again.path());
    ok(&cfg2, &["init"], "");
    let o = vmailctl(&cfg2, &["import", "--keep-unusable-hashes"], &exported);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(ok(&cfg2, &["export"], ""), exported);
    let o = vmailctl(&cfg, &["auth", "test", "empty@example.org"], "\n");
    assert_ne!(code(&o), 0, "an empty hash let a login in: {o:?}");
}
