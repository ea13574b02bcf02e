//! vmailctl's edits and transfers (issue 18, item 5) on both backends: `set_user`,
//! `set_domain_active`, transports, and `import` as one transaction.

use vmail_directory::{Error, Import, Map, Record, UserChanges};

use super::Env;

both! {
    edits_change_what_the_maps_answer(false),
    edits_on_a_classic_schema_ask_for_migrate(true),
    import_is_one_transaction(false),
    refused_values_are_told_apart(true),
}

/// A value the database refuses (MariaDB's strict mode, SQLite's CHECK) is
/// `is_refused_data` — vmailctl's EX_DATAERR — and still temporary for the daemons; a
/// duplicate key is still `Exists`.
async fn refused_values_are_told_apart(e: &Env) {
    if !e.mysql {
        // SQLite stores any length in a varchar(128); an admin's CHECK is what refuses there.
        (e.raw)(
            "DROP TABLE transport; CREATE TABLE transport (domain varchar(128) NOT NULL \
             DEFAULT '' COLLATE NOCASE, transport varchar(128) NOT NULL DEFAULT '' \
             CHECK (length(transport) <= 128), UNIQUE (domain));",
        );
    }
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    let long = format!("smtp:[{}.example]", "r".repeat(130));
    let err = d.set_transport("example.net", &long).await.unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    assert!(err.is_refused_data() && err.is_temporary(), "{err}");
    assert!(
        err.to_string()
            .starts_with("the database refused the value: "),
        "{err}"
    );
    assert!(matches!(
        d.add_domain("example.net").await,
        Err(Error::Exists(_))
    ));
    if e.mysql {
        // The classic domains.domain is varchar(50).
        let err = d
            .add_domain(&format!("{}.example", "d".repeat(52)))
            .await
            .unwrap_err();
        assert!(err.is_refused_data(), "{err:?}");
        assert!(
            err.to_string()
                .contains("Data too long for column 'domain'"),
            "{err}"
        );
    }
    assert_eq!(d.list_transports().await.unwrap(), []);
}

async fn edits_change_what_the_maps_answer(e: &Env) {
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    d.add_user("dan@example.net", "{PLAIN}x", None)
        .await
        .unwrap();
    let all = UserChanges {
        quota_bytes: Some(4096),
        services: Some(Some(vec!["IMAP".into(), "smtp".into(), "imap".into()])),
        active: Some(false),
    };
    d.set_user("Dan@Example.NET", &all).await.unwrap();
    let u = d.user("dan@example.net").await.unwrap().unwrap();
    assert_eq!(u.quota_bytes, Some(4096));
    assert_eq!(
        u.services,
        Some(vec!["imap".to_string(), "smtp".to_string()])
    );
    assert!(!u.active);
    let back = UserChanges {
        quota_bytes: Some(0),
        services: Some(None),
        active: Some(true),
    };
    d.set_user("dan@example.net", &back).await.unwrap();
    let u = d.user("dan@example.net").await.unwrap().unwrap();
    assert_eq!((u.quota_bytes, u.services, u.active), (None, None, true));
    assert!(matches!(
        d.set_user("nobody@example.net", &back).await,
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        d.set_user("dan@example.net", &UserChanges::default()).await,
        Err(Error::Invalid(_))
    ));
    let bad = UserChanges {
        services: Some(Some(vec!["im ap".into()])),
        ..UserChanges::default()
    };
    assert!(matches!(
        d.set_user("dan@example.net", &bad).await,
        Err(Error::Invalid(_))
    ));

    d.set_domain_active("example.net", false).await.unwrap();
    assert_eq!(e.q(Map::Domains, "example.net").await, None);
    assert_eq!(
        d.list_domains_flagged().await.unwrap(),
        vec![("example.net".to_string(), false)]
    );
    d.set_domain_active("EXAMPLE.net", true).await.unwrap();
    assert!(e.q(Map::Domains, "example.net").await.is_some());
    assert!(matches!(
        d.set_domain_active("unknown.test", false).await,
        Err(Error::Missing(_))
    ));

    d.set_transport("example.net", "smtp:[relay]")
        .await
        .unwrap();
    assert_eq!(
        d.list_transports().await.unwrap(),
        vec![("example.net".to_string(), "smtp:[relay]".to_string())]
    );
    d.del_transport("example.net").await.unwrap();
    assert!(d.list_transports().await.unwrap().is_empty());
    assert!(matches!(
        d.del_transport("example.net").await,
        Err(Error::Missing(_))
    ));
}

async fn edits_on_a_classic_schema_ask_for_migrate(e: &Env) {
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    d.add_user("dan@example.net", "{PLAIN}x", None)
        .await
        .unwrap();
    let quota = UserChanges {
        quota_bytes: Some(1),
        ..UserChanges::default()
    };
    assert!(matches!(
        d.set_user("dan@example.net", &quota).await,
        Err(Error::NeedsMigrate("users.quota"))
    ));
    assert!(matches!(
        d.set_domain_active("example.net", false).await,
        Err(Error::NeedsMigrate("domains.active"))
    ));
    // Every domain of a classic schema is active.
    assert_eq!(
        d.list_domains_flagged().await.unwrap(),
        vec![("example.net".to_string(), true)]
    );
}

async fn import_is_one_transaction(e: &Env) {
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    let rows = vec![
        Record::Domain {
            domain: "new.test".into(),
            active: false,
        },
        Record::User {
            email: "a@new.test".into(),
            password: "{PLAIN}x".into(),
            active: true,
            quota_bytes: 10,
            services: Some("imap".into()),
        },
        Record::Domain {
            domain: "example.net".into(),
            active: true,
        },
    ];
    assert!(matches!(
        d.import(&rows, Import::default()).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(d.list_domains().await.unwrap(), vec!["example.net"]);
    assert!(d.user("a@new.test").await.unwrap().is_none());
    assert_eq!(
        d.import(
            &rows,
            Import {
                replace: true,
                ..Import::default()
            }
        )
        .await
        .unwrap(),
        3
    );
    let exported = d.export().await.unwrap();
    assert_eq!(exported.len(), 3, "{exported:?}");
    assert!(exported.contains(&rows[0]) && exported.contains(&rows[1]));
}
