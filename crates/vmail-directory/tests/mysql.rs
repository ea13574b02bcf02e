//! MariaDB-only behaviour: the how-to's exact statements, outages, failover, idle timeouts.
//! A database that is down must give a *temporary* error within the configured deadline,
//! never "not found", and the directory must answer again as soon as the server is back.

use std::time::{Duration, Instant};

use vmail_directory::{Directory, Map};
use vmail_test_support::{free_port, PrivateMariaDb, TestDb};

/// The how-to's CREATE TABLE and INSERT statements, verbatim (MyISAM, ENCRYPT()).
const HOWTO: &str = "
CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain) ) ENGINE=MyISAM;
CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL, PRIMARY KEY (source) ) ENGINE=MyISAM;
CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL, PRIMARY KEY (email) ) ENGINE=MyISAM;
CREATE TABLE transport ( domain varchar(128) NOT NULL default '', transport varchar(128) NOT NULL default '', UNIQUE KEY domain (domain) ) ENGINE=MyISAM;
INSERT INTO domains (domain) VALUES ('example.com');
INSERT INTO users (email, password) VALUES ('sales@example.com', ENCRYPT('secret'));
INSERT INTO forwardings (source, destination) VALUES ('info@example.com', 'sales@example.com');
INSERT INTO transport (domain, transport) VALUES ('example.com', 'smtp:mail.example.com');
";

#[tokio::test]
async fn howto_schema_and_rows_work_unchanged() {
    let Some(db) = TestDb::create("howto_schema_and_rows_work_unchanged") else {
        return;
    };
    db.sql(HOWTO);
    let dir = Directory::open(&db.config()).await.unwrap();
    assert_eq!(
        dir.lookup(Map::Domains, "example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("virtual")
    );
    assert_eq!(
        dir.lookup(Map::Mailboxes, "sales@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("example.com/sales/")
    );
    assert_eq!(
        dir.lookup(Map::Aliases, "info@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("sales@example.com")
    );
    assert_eq!(
        dir.lookup(Map::Transport, "example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("smtp:mail.example.com")
    );
    let u = dir.user("sales@example.com").await.unwrap().unwrap();
    let hash = u.password.unwrap();
    assert_eq!(hash.len(), 13, "ENCRYPT() makes a 13-character DES hash");
    assert!(u.active, "no active column means active");
    // migrate keeps the data and the MyISAM tables readable by the classic queries.
    let done = dir.migrate().await.unwrap();
    assert!(
        done.iter().any(|s| s.contains("widened users.password")),
        "{done:?}"
    );
    let out = db.sql("SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'users' AND column_name = 'password';");
    assert_eq!(out.trim(), "255");
    assert_eq!(
        db.sql("SELECT password FROM users WHERE email='sales@example.com';")
            .trim(),
        hash
    );
}

fn quick(cfg: &mut vmail_config::Config) {
    cfg.database.connect_timeout_ms = 500;
    cfg.database.query_timeout_ms = 2_000;
}

#[tokio::test]
async fn outage_is_temporary_and_recovery_is_quick() {
    let Some(mut server) = PrivateMariaDb::start("outage_is_temporary_and_recovery_is_quick")
    else {
        return;
    };
    let mut cfg = server.config();
    quick(&mut cfg);
    let dir = Directory::open(&cfg).await.unwrap();
    dir.init(false).await.unwrap();
    dir.add_domain("example.com").await.unwrap();
    dir.add_user("alice@example.com", "{PLAIN}x", None)
        .await
        .unwrap();
    let want = Some("example.com/alice/".to_string());
    assert_eq!(
        dir.lookup(Map::Mailboxes, "alice@example.com")
            .await
            .unwrap(),
        want
    );

    // Idle connections killed by the server's wait_timeout are replaced transparently.
    server.sql("SET GLOBAL wait_timeout = 1;");
    let dir2 = Directory::open(&cfg).await.unwrap();
    assert_eq!(
        dir2.lookup(Map::Mailboxes, "alice@example.com")
            .await
            .unwrap(),
        want
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        dir2.lookup(Map::Mailboxes, "alice@example.com")
            .await
            .unwrap(),
        want
    );

    server.kill();
    for map in Map::ALL {
        let t = Instant::now();
        let key = if map == Map::Domains {
            "example.com"
        } else {
            "alice@example.com"
        };
        let err = dir.lookup(map, key).await.unwrap_err();
        assert!(err.is_temporary(), "{map}: {err}");
        assert!(
            t.elapsed() < Duration::from_millis(2_500),
            "{map}: {:?}",
            t.elapsed()
        );
    }
    let err = dir.user("alice@example.com").await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(dir
        .recipient("alice@example.com")
        .await
        .unwrap_err()
        .is_temporary());

    server.resume();
    let back = Instant::now();
    let mut answers = 0;
    while back.elapsed() < Duration::from_secs(5) {
        if dir.lookup(Map::Mailboxes, "alice@example.com").await.ok() == Some(want.clone()) {
            answers += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "directory answered again {:?} after MariaDB came back",
        back.elapsed()
    );
    assert_eq!(
        answers, 1,
        "no correct answer within 5 s of MariaDB coming back"
    );
    // And "not found" is still "not found", not an error.
    assert_eq!(
        dir.lookup(Map::Mailboxes, "nobody@example.com")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn unreachable_and_silent_servers_are_temporary_within_the_deadline() {
    // Nothing listens on this port: connection refused.
    let mut cfg = vmail_config::Config::default();
    cfg.database.backend = vmail_config::Backend::Mysql;
    cfg.database.hosts = vec![format!("127.0.0.1:{}", free_port())];
    quick(&mut cfg);
    let dir = Directory::open(&cfg).await.unwrap();
    let t = Instant::now();
    let e = dir.lookup(Map::Aliases, "a@example.com").await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));

    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.database.hosts = vec![silent.local_addr().unwrap().to_string()];
    let dir = Directory::open(&cfg).await.unwrap();
    let t = Instant::now();
    let e = dir.user("a@example.com").await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(2_600),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn failover_to_the_next_server() {
    let Some(db) = TestDb::create("failover_to_the_next_server") else {
        return;
    };
    let mut cfg = db.config();
    quick(&mut cfg);
    cfg.database
        .hosts
        .insert(0, format!("127.0.0.1:{}", free_port()));
    let dir = Directory::open(&cfg).await.unwrap();
    dir.init(false).await.unwrap();
    dir.add_domain("example.com").await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            dir.lookup(Map::Domains, "example.com")
                .await
                .unwrap()
                .as_deref(),
            Some("virtual")
        );
    }
}

/// A write is not repeated once sent (its reply may be lost with the write committed), so
/// an idle pooled connection that the server dropped meanwhile must be found dead before
/// anything is sent: the write then goes out on a fresh connection and succeeds, as reads do.
#[tokio::test]
async fn a_write_on_a_dropped_idle_connection_goes_out_on_a_fresh_one() {
    let Some(db) = TestDb::create("a_write_on_a_dropped_idle_connection") else {
        return;
    };
    let dir = Directory::open(&db.config()).await.unwrap();
    dir.init(false).await.unwrap();
    dir.add_domain("example.com").await.unwrap();
    // The server drops the pooled connection (as a restart or wait_timeout would).
    let drop_pooled = || {
        let ids = db.sql(&format!(
            "SELECT id FROM information_schema.processlist WHERE user = '{}';",
            db.user
        ));
        assert!(!ids.trim().is_empty(), "no pooled connection to drop");
        for id in ids.split_whitespace() {
            db.sql(&format!("KILL {id};"));
        }
    };
    drop_pooled();
    dir.add_domain("example.net").await.unwrap();
    // A transaction: the statements before COMMIT may be repeated.
    drop_pooled();
    dir.set_transport("example.net", "smtp:[relay]")
        .await
        .unwrap();
    assert_eq!(
        dir.list_domains().await.unwrap(),
        ["example.com", "example.net"]
    );
}
