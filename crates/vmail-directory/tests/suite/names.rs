//! Names that would share another account's Maildir or leave the base directory (issue 15),
//! on both backends: refused by every administrative write, and refused as a temporary
//! failure by every reader when a row holds one anyway.

use vmail_directory::{Error, Map};

use super::Env;

both! {
    writes_refuse_bad_names(false),
    readers_refuse_bad_rows(false),
    readers_refuse_bad_rows_classic(true),
}

fn refused(r: Result<(), Error>, needle: &str, what: &str) {
    match r {
        Err(Error::Invalid(m)) => assert!(m.contains(needle), "{what}: {m}"),
        other => panic!("{what}: {other:?}"),
    }
}

async fn writes_refuse_bad_names(e: &Env) {
    let d = &e.dir;
    d.add_domain("example.org").await.unwrap();
    d.add_user("alice@example.org", "{PLAIN}x", None)
        .await
        .unwrap();
    let slash = "contains '/'";
    for dom in ["../../etc", "a/b.org", "example.org/"] {
        refused(d.add_domain(dom).await, slash, dom);
    }
    refused(d.add_domain("..org").await, "starts with '.'", "..org");
    refused(d.add_domain("xn--bad-.org").await, "IDNA", "xn--bad-");
    let long = format!("{}@example.org", "a".repeat(300));
    for (user, needle) in [
        ("alice/.@example.org", slash),
        ("alice@example.org/", slash),
        ("../x@example.org", slash),
        ("a/../../b@example.org", slash),
        (long.as_str(), "at most 64"),
    ] {
        refused(d.add_user(user, "{PLAIN}x", None).await, needle, user);
    }
    let dest = |s: &str| vec![s.to_string()];
    refused(
        d.add_alias("x/.@example.org", &dest("alice@example.org"))
            .await,
        slash,
        "alias source",
    );
    refused(
        d.add_alias("info@example.org", &dest("../x@example.org"))
            .await,
        slash,
        "alias destination",
    );
    refused(
        d.add_alias("@example.org", &dest("@../../etc")).await,
        slash,
        "alias domain",
    );
    refused(
        d.set_transport("a/b.org", "vmail:").await,
        slash,
        "transport",
    );
    // Nothing was written.
    assert_eq!(d.list_domains().await.unwrap(), ["example.org"]);
    assert_eq!(d.list_users(None).await.unwrap().len(), 1);
    assert!(d.list_aliases(None).await.unwrap().is_empty());
    assert_eq!(d.lookup(Map::Transport, "a/b.org").await.unwrap(), None);
    // A bad row written with plain SQL can still be removed.
    (e.raw)("INSERT INTO users (email, password) VALUES ('alice/.@example.org', 'x');");
    d.del_user("alice/.@example.org").await.unwrap();
    assert_eq!(d.list_users(None).await.unwrap().len(), 1);
    // Good names still work, external destinations keep their case.
    d.add_alias("info@example.org", &dest("Someone@Gmail.com"))
        .await
        .unwrap();
    assert_eq!(
        d.lookup(Map::Aliases, "info@example.org").await.unwrap(),
        Some("Someone@gmail.com".into())
    );
}

/// Rows no write can make any more, inserted with plain SQL as an old install or another tool
/// would: every answer that carries or implies a mailbox is a temporary failure; good rows
/// beside them keep working.
const BAD_ROWS: &str = "
INSERT INTO domains (domain) VALUES ('example.org');
INSERT INTO domains (domain) VALUES ('../../etc');
INSERT INTO domains (domain) VALUES ('example.org/');
INSERT INTO users (email, password) VALUES ('alice@example.org', '{PLAIN}x');
INSERT INTO users (email, password) VALUES ('alice/.@example.org', '{PLAIN}x');
INSERT INTO users (email, password) VALUES ('../x@example.org', '{PLAIN}x');
INSERT INTO users (email, password) VALUES ('x@../../etc', '{PLAIN}x');
INSERT INTO users (email, password) VALUES ('alice@example.org/', '{PLAIN}x');
";

async fn readers_refuse_bad_rows(e: &Env) {
    readers_check(e).await;
}

async fn readers_refuse_bad_rows_classic(e: &Env) {
    readers_check(e).await;
}

async fn readers_check(e: &Env) {
    (e.raw)(BAD_ROWS);
    let d = &e.dir;
    for key in [
        "alice/.@example.org",
        "../x@example.org",
        "x@../../etc",
        "alice@example.org/",
    ] {
        for map in [Map::Mailboxes, Map::Aliases, Map::Senders, Map::Recipient] {
            match d.lookup(map, key).await {
                Err(err @ Error::UnsafeMailbox { .. }) => assert!(err.is_temporary()),
                other => panic!("{map} {key}: {other:?}"),
            }
        }
        match d.user(key).await {
            Err(err @ Error::UnsafeMailbox { .. }) => assert!(err.is_temporary()),
            other => panic!("user {key}: {other:?}"),
        }
        assert!(d.recipient(key).await.is_err(), "{key}");
    }
    // With an extension too: the LDA's lookup strips it and finds the bad row.
    assert!(d.recipient("alice/.+x@example.org").await.is_err());
    // Good rows are untouched.
    assert_eq!(
        d.lookup(Map::Mailboxes, "alice@example.org").await.unwrap(),
        Some("example.org/alice/".into())
    );
    let alice = d.user("alice@example.org").await.unwrap().unwrap();
    assert_eq!(alice.home, "/home/vmail/example.org/alice");
}

/// `[queries] user` may return `home` and `mail` columns: they must be canonical and under
/// the base too.
#[tokio::test]
async fn custom_query_paths_are_checked() {
    let tweak = |c: &mut vmail_config::Config| {
        c.database.queries.user =
            Some("SELECT email, password, home, mail FROM boxes WHERE email = %s".into());
    };
    let ddl = "CREATE TABLE boxes (email varchar(255), password varchar(255), home varchar(255), mail varchar(255));
        INSERT INTO boxes VALUES ('ok@x.org', 'p', '/home/vmail/x.org/ok', 'maildir:~/Maildir');
        INSERT INTO boxes VALUES ('up@x.org', 'p', '/home/vmail/../../etc', 'maildir:~/Maildir');
        INSERT INTO boxes VALUES ('out@x.org', 'p', '/srv/other/out', 'maildir:~/Maildir');
        INSERT INTO boxes VALUES ('dot@x.org', 'p', '/home/vmail/x.org/alice/.', 'maildir:~/Maildir');
        INSERT INTO boxes VALUES ('mail@x.org', 'p', '/home/vmail/x.org/mail', 'maildir:/home/vmail/x.org/alice/Maildir/..');
        INSERT INTO boxes VALUES ('opt@x.org', 'p', '/home/vmail/x.org/opt', 'maildir:~/M:INBOX=/home/vmail/x.org/a/../b');";
    let mut envs = vec![Env::sqlite(true, tweak).await];
    if let Some(m) = Env::mysql("names::custom_query_paths_are_checked", true, tweak).await {
        envs.push(m);
    }
    for e in &envs {
        (e.raw)(ddl);
        let ok = e.dir.user("ok@x.org").await.unwrap().unwrap();
        assert_eq!(ok.home, "/home/vmail/x.org/ok");
        for key in [
            "up@x.org",
            "out@x.org",
            "dot@x.org",
            "mail@x.org",
            "opt@x.org",
        ] {
            match e.dir.lookup(Map::Recipient, key).await {
                Err(err @ Error::UnsafeMailbox { .. }) => assert!(err.is_temporary()),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
