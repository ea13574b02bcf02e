//! The database every system reads: the how-to's tables filled with the bench's users and
//! aliases, and their hashes switched to SHA512-CRYPT between phases.

use anyhow::{bail, Result};
use vmail_test_support::TestDb;

use super::{alias, login, password, DOMAIN};

/// Fills the database with the classic tables: `users` user0.. with the how-to's
/// `ENCRYPT()` (DES) hashes, `forwardings` alias0.. -> user0.., one domain, no transport rows.
pub(crate) fn populate(db: &TestDb, users: usize, aliases: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        vmail_directory::Directory::open(&db.config())
            .await?
            .init(true)
            .await?;
        anyhow::Ok(())
    })?;
    // The how-to's varchar(20) holds only DES; SHA512-CRYPT needs more (vmailctl migrate
    // widens it the same way).
    let mut sql = format!(
        "ALTER TABLE users MODIFY password varchar(255) NOT NULL;\n\
         INSERT INTO domains (domain) VALUES ('{DOMAIN}');\n"
    );
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|n| format!("('{}', ENCRYPT('{}'))", login(*n), password(*n)))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO users (email, password) VALUES {};\n",
            rows.join(",")
        ));
    }
    if aliases > 0 {
        let rows: Vec<String> = (0..aliases)
            .map(|k| format!("('{}', '{}')", alias(k), login(k)))
            .collect();
        sql.push_str(&format!(
            "INSERT INTO forwardings (source, destination) VALUES {};\n",
            rows.join(",")
        ));
    }
    db.sql(&sql);
    let des = db.sql("SELECT COUNT(*) FROM users WHERE LENGTH(password) = 13;");
    if des.trim() != users.to_string() {
        bail!("ENCRYPT() did not give DES hashes for every user ({des} of {users})");
    }
    Ok(())
}

/// Replaces every hash by a SHA512-CRYPT one (`$6$`, 5000 rounds, no `{SCHEME}` prefix, as
/// `mkpasswd -m sha-512` or `doveadm pw -s SHA512-CRYPT` without the prefix; pam_mysql's
/// crypt(3) and Dovecot's `CRYPT` read it as such).
pub(crate) fn rehash_sha512(db: &TestDb, users: usize) -> Result<()> {
    // Bare `$6$`: vmail-passwd writes the `{SHA512-CRYPT}` prefix, pam_mysql would not
    // understand it.
    let hashes: Vec<(usize, String)> = crate::sha512_hashes(users, password)?
        .into_iter()
        .map(|(n, h)| (n, h.trim_start_matches("{SHA512-CRYPT}").to_string()))
        .collect();
    let mut sql = String::from(
        "CREATE TEMPORARY TABLE h (email varchar(80) PRIMARY KEY, password varchar(255));\n",
    );
    for chunk in hashes.chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|(n, h)| format!("('{}', '{}')", login(*n), h.replace('\'', "''")))
            .collect();
        sql.push_str(&format!("INSERT INTO h VALUES {};\n", rows.join(",")));
    }
    sql.push_str("UPDATE users u JOIN h ON h.email = u.email SET u.password = h.password;\n");
    db.sql(&sql);
    let n = db.sql("SELECT COUNT(*) FROM users WHERE password LIKE '$6$%';");
    if n.trim() != users.to_string() {
        bail!("only {} of {users} users got a SHA512-CRYPT hash", n.trim());
    }
    Ok(())
}
