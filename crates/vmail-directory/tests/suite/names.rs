//! Names that would share another account's Maildir or leave the base directory (issue 15),
//! on both backends: refused by every administrative write, and refused as a temporary
//! failure by every reader when a row holds one anyway.

use vmail_directory::{Error, Map};

use super::Env;

both! {
    writes_refuse_bad_names(false),
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
