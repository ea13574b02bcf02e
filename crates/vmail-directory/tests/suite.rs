//! One directory test suite, run against both backends: the embedded SQLite default and a
//! throwaway database on a real MariaDB server.

use std::time::Duration;

use vmail_config::Config;
use vmail_directory::rows::Rows;
use vmail_directory::{Directory, Error, Map, RecipientRecord};
use vmail_lookupd::cache::shared::Shared;
use vmail_test_support::{sqlite_config, TestDb};

/// A directory plus a way to write rows behind its back, as an old install or another tool
/// would.
struct Env {
    dir: Directory,
    cfg: Config,
    raw: Box<dyn Fn(&str) + Send + Sync>,
    mysql: bool,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Env {
    async fn sqlite(classic_only: bool, tweak: impl FnOnce(&mut Config)) -> Env {
        let (guard, mut cfg) = sqlite_config();
        tweak(&mut cfg);
        let path = cfg.database.sqlite_path.clone();
        let dir = Directory::open(&cfg).await.expect("open sqlite");
        dir.init(classic_only).await.expect("init");
        Env {
            dir,
            cfg,
            raw: Box::new(move |sql| {
                let c = rusqlite::Connection::open(&path).expect("open raw");
                c.execute_batch(sql).expect("raw sql");
            }),
            mysql: false,
            _guard: Box::new(guard),
        }
    }

    async fn mysql(test: &str, classic_only: bool, tweak: impl FnOnce(&mut Config)) -> Option<Env> {
        let db = TestDb::create(test)?;
        let mut cfg = db.config();
        tweak(&mut cfg);
        let dir = Directory::open(&cfg).await.expect("open mysql");
        dir.init(classic_only).await.expect("init");
        let db = std::sync::Arc::new(db);
        let d2 = db.clone();
        Some(Env {
            dir,
            cfg,
            raw: Box::new(move |sql| {
                d2.sql(sql);
            }),
            mysql: true,
            _guard: Box::new(db),
        })
    }

    async fn q(&self, map: Map, key: &str) -> Option<String> {
        self.dir
            .lookup(map, key)
            .await
            .unwrap_or_else(|e| panic!("{map} {key:?}: {e}"))
    }
}

/// The rows an old install holds, inserted with plain SQL as the how-to does (with literal
/// DES hashes where the how-to calls MySQL's ENCRYPT()).
const CLASSIC_ROWS: &str = "
INSERT INTO domains (domain) VALUES ('example.com');
INSERT INTO domains (domain) VALUES ('example.org');
INSERT INTO domains (domain) VALUES ('alias.test');
INSERT INTO users (email, password) VALUES ('sales@example.com', 'abNANd1rDfiNc');
INSERT INTO users (email, password) VALUES ('alice@example.org', 'abNANd1rDfiNc');
INSERT INTO users (email, password) VALUES ('Bob@Example.org', 'abNANd1rDfiNc');
INSERT INTO forwardings (source, destination) VALUES ('info@example.com', 'sales@example.com');
INSERT INTO forwardings (source, destination) VALUES ('team@example.org', 'alice@example.org, bob@example.org,carol@remote.test');
INSERT INTO forwardings (source, destination) VALUES ('@example.com', 'sales@example.com');
INSERT INTO forwardings (source, destination) VALUES ('@alias.test', '@example.org');
INSERT INTO transport (domain, transport) VALUES ('example.com', 'vmail:');
";

/// Keys every map is asked in the differential tests: mailboxes, aliases, catch-alls, alias
/// domains, extensions, case, flags and SQL metacharacters.
const KEYS: &[&str] = &[
    "alice@example.org",
    "ALICE@Example.ORG",
    "bob@example.org",
    "alice+tag@example.org",
    "info@example.com",
    "info+x@example.com",
    "team@example.org",
    "sales@example.com",
    "nobody@example.com",
    "nobody@example.org",
    "nobody+x@example.org",
    "x@alias.test",
    "alice@alias.test",
    "alice+t@alias.test",
    "someone@nowhere.test",
    "@example.com",
    "@alias.test",
    "example.com",
    "x' OR '1'='1@example.org",
    "dan@off.test",
    "eve@example.org",
    "fay@example.org",
    "list@example.org",
];

macro_rules! both {
    ($($name:ident($classic:expr)),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let env = super::Env::sqlite($classic, |_| {}).await;
                    super::$name(&env).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(env) = super::Env::mysql(concat!("mysql::", stringify!($name)), $classic, |_| {}).await else { return };
                    super::$name(&env).await;
                }
            )*
        }
    };
}

/// Names that escape or share a Maildir (issue 15).
#[path = "suite/names.rs"]
mod names;

/// vmailctl's edits and transfers (issue 18).
#[path = "suite/edit.rs"]
mod edit;

/// Non-ASCII letters in another case (issue 15, 10d).
#[path = "suite/unicode_case.rs"]
mod unicode_case;

both! {
    classic_rows_are_read(true),
    search_order_and_extensions(true),
    alias_domains_reject_unknown_users(true),
    a_domain_forwarded_to_another_server(true),
    senders_map(true),
    transport_map(true),
    hostile_keys_are_inert(true),
    admin_operations(false),
    disabled_users_and_domains(false),
    recipient_records(false),
    password_column_width_is_enforced(true),
    migrate_is_idempotent_and_keeps_data(true),
    memo_answers_like_plain(false),
    memo_answers_like_plain_classic(true),
    address_set_answers_like_plain(false),
    address_set_answers_like_plain_classic(true),
}

/// lookupd's memo reads an address's forwardings and user row in one statement
/// (`prefetch_address`, a UNION of both halves): every map must answer exactly as without it,
/// and an unknown address must cost one round trip for both, plus the catch-all once per
/// domain.
async fn memo_answers_like_plain(e: &Env) {
    memo_check(e, true).await;
}

async fn memo_answers_like_plain_classic(e: &Env) {
    memo_check(e, false).await;
}

/// The rows of the memo and address set tests; `flags`: the schema has vmail's optional
/// columns (users.active, domains.active, ...).
fn memo_rows(e: &Env, flags: bool) {
    (e.raw)(CLASSIC_ROWS);
    if flags {
        (e.raw)(
            "INSERT INTO domains (domain, active) VALUES ('off.test', 0);
             INSERT INTO users (email, password) VALUES ('dan@off.test', 'x');
             INSERT INTO users (email, password, active, quota) VALUES ('eve@example.org', 'x', 0, 0), ('fay@example.org', 'x', 1, 5000);
             INSERT INTO forwardings (source, destination) VALUES ('list@example.org', 'eve@example.org, fay@example.org');",
        );
    }
}

async fn memo_check(e: &Env, flags: bool) {
    memo_rows(e, flags);
    let memo = Shared::new(Directory::open(&e.cfg).await.unwrap()).with_memo(
        Duration::from_secs(60),
        Duration::from_secs(60),
        1000,
    );
    let keys = KEYS;
    for key in keys {
        for map in Map::ALL {
            memo.clear_memo();
            let want = e.dir.lookup(map, key).await.unwrap();
            let got = memo.lookup(map, key).await.unwrap();
            assert_eq!(got, want, "{map} {key:?}");
            // Again, now from what the first lookup memoized.
            assert_eq!(
                memo.lookup(map, key).await.unwrap(),
                want,
                "{map} {key:?} (memo)"
            );
        }
    }
    // One statement for an unknown address's forwardings and user row, and the domain's
    // catch-all once; Postfix's `mailboxes` lookup after `aliases` costs nothing.
    memo.clear_memo();
    let cost = |before: u64| memo.queries_sent() - before;
    let n = memo.queries_sent();
    assert_eq!(ask(&memo, Map::Aliases, "new1@example.org").await, None);
    assert_eq!(cost(n), 2, "aliases of the first unknown address");
    let n = memo.queries_sent();
    assert_eq!(ask(&memo, Map::Mailboxes, "new1@example.org").await, None);
    assert_eq!(cost(n), 0, "mailboxes after aliases");
    let n = memo.queries_sent();
    assert_eq!(ask(&memo, Map::Aliases, "new2@example.org").await, None);
    assert_eq!(cost(n), 1, "aliases of the next unknown address");
    // A mailbox: found in the same statement.
    let n = memo.queries_sent();
    assert!(ask(&memo, Map::Aliases, "alice@example.org")
        .await
        .is_some());
    assert!(ask(&memo, Map::Mailboxes, "alice@example.org")
        .await
        .is_some());
    assert_eq!(cost(n), 1, "a mailbox's aliases and mailboxes");

    // A memo that keeps no "not found" ([cache] negative_ttl_s = 0) keeps nothing of an
    // unknown address: the one statement must still serve the whole aliases lookup.
    let no_neg = Shared::new(Directory::open(&e.cfg).await.unwrap()).with_memo(
        Duration::from_secs(60),
        Duration::ZERO,
        1000,
    );
    let n = no_neg.queries_sent();
    assert_eq!(ask(&no_neg, Map::Aliases, "new3@example.org").await, None);
    assert_eq!(
        no_neg.queries_sent() - n,
        2,
        "aliases of an unknown address (address + catch-all)"
    );
}

/// lookupd's address set (`Shared::with_address_set`): once read, every map answers
/// every key exactly as a directory without it, with the local part folded or not, and an
/// unknown address of a domain without a catch-all costs no statement at all.
async fn address_set_answers_like_plain(e: &Env) {
    address_set_check(e, true).await;
}

async fn address_set_answers_like_plain_classic(e: &Env) {
    address_set_check(e, false).await;
}

async fn address_set_check(e: &Env, flags: bool) {
    memo_rows(e, flags);
    // Stored keys that differ from lookup keys only by case, and near misses a collation
    // would match.
    (e.raw)(
        "INSERT INTO users (email, password) VALUES ('Mixed.Case@EXAMPLE.org', 'x');
         INSERT INTO forwardings (source, destination) VALUES ('Upper@Example.ORG', 'alice@example.org');",
    );
    let extra = [
        "mixed.case@example.org",
        "Mixed.Case@example.org",
        "Mixed.Case@EXAMPLE.ORG",
        "upper@example.org",
        "Upper@example.org",
        "Bob@example.org",
        "bOB@EXAMPLE.org",
        "alíce@example.org",
        "alice @example.org",
        "upper+x@example.org",
        "Upper+x@example.org",
    ];
    let hour = Duration::from_secs(3600);
    for fold in [true, false] {
        let mut cfg = e.cfg.clone();
        cfg.address.fold_local_part = fold;
        let plain = Directory::open(&cfg).await.unwrap();
        let set = with_set(&cfg, hour, hour, 1000).await;
        let stored = if flags { 13 } else { 9 };
        assert_eq!(
            set.load_address_set().await.unwrap(),
            Some(stored),
            "fold {fold}: every users.email and forwardings.source"
        );
        for key in KEYS.iter().chain(extra.iter()) {
            for map in Map::ALL {
                let want = plain.lookup(map, key).await.unwrap();
                assert_eq!(
                    set.lookup(map, key).await.unwrap(),
                    want,
                    "fold {fold}: {map} {key:?}"
                );
            }
        }
        // Unknown users of a domain without a catch-all: nothing to read, in any map.
        let n = set.queries_sent();
        for i in 0..20 {
            let key = format!("new{i}@example.org");
            for map in [Map::Aliases, Map::Mailboxes, Map::Senders] {
                assert_eq!(ask(&set, map, &key).await, None, "{map} {key}");
            }
        }
        assert_eq!(set.queries_sent() - n, 0, "fold {fold}: unknown addresses");
        // A stored address is still read (by a directory whose memo has not seen it yet).
        let fresh = with_set(&cfg, hour, hour, 1000).await;
        assert!(fresh.load_address_set().await.unwrap().is_some());
        assert!(ask(&fresh, Map::Mailboxes, "alice+z@example.org")
            .await
            .is_some());
        assert!(fresh.queries_sent() > 0, "fold {fold}: a mailbox is read");
        // Without the set, each unknown address costs a statement (the contrast that makes
        // the zero above mean something).
        let memo_only =
            Shared::new(Directory::open(&cfg).await.unwrap()).with_memo(hour, hour, 1000);
        let n = memo_only.queries_sent();
        for i in 0..5 {
            assert_eq!(
                ask(&memo_only, Map::Aliases, &format!("new{i}@example.org")).await,
                None
            );
        }
        assert!(
            memo_only.queries_sent() - n >= 5,
            "fold {fold}: without the set"
        );
    }
}

async fn classic_rows_are_read(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    assert_eq!(
        e.q(Map::Domains, "example.com").await.as_deref(),
        Some("virtual")
    );
    assert_eq!(
        e.q(Map::Domains, "EXAMPLE.com").await.as_deref(),
        Some("virtual")
    );
    assert_eq!(e.q(Map::Domains, "example.net").await, None);
    assert_eq!(
        e.q(Map::Mailboxes, "sales@example.com").await.as_deref(),
        Some("example.com/sales/")
    );
    // Stored in mixed case by hand: still found, as MySQL's collation finds it.
    assert_eq!(
        e.q(Map::Mailboxes, "bob@example.org").await.as_deref(),
        Some("example.org/bob/")
    );
    assert_eq!(e.q(Map::Mailboxes, "nobody@example.com").await, None);
    assert_eq!(
        e.q(Map::Aliases, "info@example.com").await.as_deref(),
        Some("sales@example.com")
    );
    assert_eq!(
        e.q(Map::Aliases, "team@example.org").await.as_deref(),
        Some("alice@example.org,bob@example.org,carol@remote.test")
    );
    let u = e
        .dir
        .user("Sales@Example.COM")
        .await
        .unwrap()
        .expect("user");
    assert_eq!(u.password.as_deref(), Some("abNANd1rDfiNc"));
    assert!(u.active);
    assert_eq!(u.uid, 5000);
    assert_eq!(u.home, "/home/vmail/example.com/sales");
    assert_eq!(u.mail, "maildir:/home/vmail/example.com/sales/Maildir");
    assert!(e.dir.user("nobody@example.com").await.unwrap().is_none());
}

async fn search_order_and_extensions(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    // A mailbox maps to itself and so wins over the catch-all.
    assert_eq!(
        e.q(Map::Aliases, "sales@example.com").await.as_deref(),
        Some("sales@example.com")
    );
    // Unknown user in a catch-all domain reaches the catch-all target.
    assert_eq!(
        e.q(Map::Aliases, "whoever@example.com").await.as_deref(),
        Some("sales@example.com")
    );
    // No catch-all in example.org: unknown users are unknown.
    assert_eq!(e.q(Map::Aliases, "whoever@example.org").await, None);
    // +extension reaches the mailbox, keeping the extension for delivery.
    assert_eq!(
        e.q(Map::Aliases, "alice+news@example.org").await.as_deref(),
        Some("alice+news@example.org")
    );
    assert_eq!(
        e.q(Map::Mailboxes, "alice+news@example.org")
            .await
            .as_deref(),
        Some("example.org/alice/")
    );
    // The extension propagates through an alias found by the stripped key.
    assert_eq!(
        e.q(Map::Aliases, "info+x@example.com").await.as_deref(),
        Some("sales+x@example.com")
    );
    // A mailbox whose name contains the delimiter is matched exactly first.
    (e.raw)("INSERT INTO users (email, password) VALUES ('a+b@example.org', 'x');");
    assert_eq!(
        e.q(Map::Mailboxes, "a+b@example.org").await.as_deref(),
        Some("example.org/a+b/")
    );
    assert_eq!(
        e.q(Map::Aliases, "a+b@example.org").await.as_deref(),
        Some("a+b@example.org")
    );
    // The LDA's view: user plus extension.
    let (u, ext) = e
        .dir
        .recipient("ALICE+news@example.org")
        .await
        .unwrap()
        .expect("recipient");
    assert_eq!(u.email, "alice@example.org");
    assert_eq!(ext.as_deref(), Some("+news"));
    assert!(e
        .dir
        .recipient("nobody+x@example.org")
        .await
        .unwrap()
        .is_none());
}

async fn alias_domains_reject_unknown_users(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    assert_eq!(
        e.q(Map::Aliases, "alice@alias.test").await.as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(
        e.q(Map::Aliases, "alice+x@alias.test").await.as_deref(),
        Some("alice+x@example.org")
    );
    assert_eq!(
        e.q(Map::Aliases, "team@alias.test").await.as_deref(),
        Some("team@example.org")
    );
    // The classic setup accepts this and delivers into a phantom Maildir; we reject it.
    assert_eq!(e.q(Map::Aliases, "nobody@alias.test").await, None);
    // A loop of alias domains ends instead of recursing forever.
    (e.raw)("INSERT INTO domains (domain) VALUES ('loop1.test'), ('loop2.test');
             INSERT INTO forwardings (source, destination) VALUES ('@loop1.test', '@loop2.test'), ('@loop2.test', '@loop1.test');");
    assert_eq!(e.q(Map::Aliases, "x@loop1.test").await, None);
    // Alias domains of alias domains, and loops of them that lead to a mailbox: the answer
    // is the mailbox, never the user in another domain of the loop (Postfix would look that
    // up again, and go round the loop until its nesting limit bounced the message).
    (e.raw)("INSERT INTO domains (domain) VALUES ('chain.test');
             INSERT INTO forwardings (source, destination) VALUES ('@chain.test', '@loop1.test');
             UPDATE forwardings SET destination = '@loop1.test, @example.org' WHERE source = '@loop2.test';");
    for key in ["alice@loop1.test", "alice@loop2.test", "alice@chain.test"] {
        assert_eq!(
            e.q(Map::Aliases, key).await.as_deref(),
            Some("alice@example.org"),
            "{key}"
        );
    }
    assert_eq!(e.q(Map::Aliases, "x@chain.test").await, None);
}

/// `@old.example -> @new-provider.example`, the classic way to hand a whole domain to
/// another provider: new-provider.example is not in `domains`, so nothing here can say which
/// users exist there, and virtual(5) rewrites every address. The search used to answer only
/// for users found in the target domain, so every message for the old domain was refused as
/// "User unknown".
async fn a_domain_forwarded_to_another_server(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    (e.raw)("INSERT INTO domains (domain) VALUES ('old.example');
             INSERT INTO forwardings (source, destination) VALUES ('@old.example', '@new-provider.example');");
    assert_eq!(
        e.q(Map::Aliases, "someone@old.example").await.as_deref(),
        Some("someone@new-provider.example")
    );
    assert_eq!(
        e.q(Map::Aliases, "someone+tag@old.example")
            .await
            .as_deref(),
        Some("someone+tag@new-provider.example")
    );
    // The target address itself is not ours: Postfix routes it by transport and DNS.
    assert_eq!(
        e.q(Map::Aliases, "someone@new-provider.example").await,
        None
    );
    // An alias domain of one of our domains still rejects unknown users.
    assert_eq!(e.q(Map::Aliases, "nobody@alias.test").await, None);
}

async fn senders_map(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    assert_eq!(
        e.q(Map::Senders, "alice@example.org").await.as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(
        e.q(Map::Senders, "alice+list@example.org").await.as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(
        e.q(Map::Senders, "info@example.com").await.as_deref(),
        Some("sales@example.com")
    );
    assert_eq!(
        e.q(Map::Senders, "team@example.org").await.as_deref(),
        Some("alice@example.org,bob@example.org,carol@remote.test")
    );
    assert_eq!(
        e.q(Map::Senders, "alice@alias.test").await.as_deref(),
        Some("alice@example.org")
    );
    // The catch-all's owner may use any otherwise unowned address of the domain, as with
    // Postfix's own search order for smtpd_sender_login_maps.
    assert_eq!(
        e.q(Map::Senders, "random@example.com").await.as_deref(),
        Some("sales@example.com")
    );
    assert_eq!(e.q(Map::Senders, "random@example.org").await, None);
    assert_eq!(e.q(Map::Senders, "someone@elsewhere.test").await, None);
}

async fn transport_map(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    assert_eq!(
        e.q(Map::Transport, "example.com").await.as_deref(),
        Some("vmail:")
    );
    assert_eq!(
        e.q(Map::Transport, "Example.COM").await.as_deref(),
        Some("vmail:")
    );
    assert_eq!(
        e.q(Map::Transport, "anyone@example.com").await.as_deref(),
        Some("vmail:")
    );
    assert_eq!(e.q(Map::Transport, "example.org").await, None);
    e.dir
        .set_transport("example.org", "lmtp:unix:private/dovecot-lmtp")
        .await
        .unwrap();
    assert_eq!(
        e.q(Map::Transport, "example.org").await.as_deref(),
        Some("lmtp:unix:private/dovecot-lmtp")
    );
}

async fn hostile_keys_are_inert(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    let long = format!("{}@example.com", "a".repeat(10_000));
    let keys = [
        "' OR '1'='1",
        "x' OR 1=1 -- @example.com",
        "sales@example.com' OR 'a'='a",
        "%@example.com",
        "_ales@example.com",
        "sales@example.c_m",
        "sales@%",
        "a\0b@example.com",
        "sales@example.com\0",
        "\\@example.com",
        "\"; DROP TABLE users; --@example.com",
        "",
        "@",
        "@@",
        long.as_str(),
        "üñíçødé@exämple.com",
    ];
    for k in keys {
        for m in Map::ALL {
            let r = e.dir.lookup(m, k).await;
            // A well-formed address of example.com legitimately meets its catch-all and its
            // domain transport, whatever its odd local part.
            let in_example = k.ends_with("@example.com") && !k.contains('\0') && k.len() < 2000;
            let want = match m {
                Map::Aliases | Map::Senders if in_example => Some("sales@example.com"),
                Map::Transport if in_example => Some("vmail:"),
                _ => None,
            };
            assert_eq!(r.unwrap().as_deref(), want, "{m} {k:?}");
        }
        assert!(e.dir.user(k).await.unwrap().is_none(), "user {k:?}");
    }
    // The tables are intact.
    assert_eq!(
        e.q(Map::Mailboxes, "sales@example.com").await.as_deref(),
        Some("example.com/sales/")
    );
    assert_eq!(e.dir.list_domains().await.unwrap().len(), 3);
}

async fn admin_operations(e: &Env) {
    let d = &e.dir;
    d.add_domain("Example.NET").await.unwrap();
    assert!(matches!(
        d.add_domain("example.net").await,
        Err(Error::Exists(_))
    ));
    assert!(matches!(
        d.add_domain("not a domain").await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        d.add_user("x@unknown.test", "{PLAIN}x", None).await,
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        d.add_user("bad address", "{PLAIN}x", None).await,
        Err(Error::Invalid(_))
    ));
    let long_hash = format!("{{SHA512-CRYPT}}$6${}", "a".repeat(100));
    d.add_user("Carol@example.net", &long_hash, Some(1_000_000))
        .await
        .unwrap();
    assert!(matches!(
        d.add_user("carol@example.net", "{PLAIN}x", None).await,
        Err(Error::Exists(_))
    ));
    let u = d.user("carol@example.net").await.unwrap().unwrap();
    assert_eq!(u.password.as_deref(), Some(long_hash.as_str()));
    assert_eq!(u.quota_bytes, Some(1_000_000));
    d.set_password("carol@example.net", "{PLAIN}new")
        .await
        .unwrap();
    assert_eq!(
        d.user("carol@example.net")
            .await
            .unwrap()
            .unwrap()
            .password
            .as_deref(),
        Some("{PLAIN}new")
    );
    assert!(matches!(
        d.set_password("nobody@example.net", "{PLAIN}x").await,
        Err(Error::Missing(_))
    ));

    d.add_alias(
        "list@example.net",
        &["carol@example.net".into(), "Ext@Remote.TEST".into()],
    )
    .await
    .unwrap();
    d.add_alias(
        "list@example.net",
        &["dave@example.net".into(), "carol@example.net".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        e.q(Map::Aliases, "list@example.net").await.as_deref(),
        Some("carol@example.net,Ext@remote.test,dave@example.net")
    );
    d.del_alias("list@example.net", Some("dave@example.net"))
        .await
        .unwrap();
    assert!(matches!(
        d.del_alias("list@example.net", Some("zed@example.net"))
            .await,
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        d.add_alias("x@unknown.test", &["a@b.test".into()]).await,
        Err(Error::Missing(_))
    ));
    assert!(matches!(
        d.add_alias("x@example.net", &["a b@c.test".into()]).await,
        Err(Error::Invalid(_))
    ));
    d.add_alias("@example.net", &["carol@example.net".into()])
        .await
        .unwrap();
    let aliases = d.list_aliases(Some("example.net")).await.unwrap();
    assert_eq!(aliases.len(), 2, "{aliases:?}");

    // A domain with users is not deleted by accident.
    assert!(matches!(
        d.del_domain("example.net", false).await,
        Err(Error::Invalid(_))
    ));
    // LIKE metacharacters in a domain match only themselves. Not a host name, so it can only
    // be an old row written with plain SQL; it can still be listed and deleted.
    (e.raw)("INSERT INTO domains (domain) VALUES ('ex_mple.net');");
    assert!(d.list_users(Some("ex_mple.net")).await.unwrap().is_empty());
    d.del_domain("ex_mple.net", false).await.unwrap();
    assert_eq!(
        d.list_users(Some("example.net")).await.unwrap(),
        [("carol@example.net".to_string(), true)]
    );
    d.del_domain("example.net", true).await.unwrap();
    assert!(d.list_domains().await.unwrap().is_empty());
    assert!(d.list_users(None).await.unwrap().is_empty());
    assert!(d.list_aliases(None).await.unwrap().is_empty());
    assert!(matches!(
        d.del_user("carol@example.net").await,
        Err(Error::Missing(_))
    ));
}

async fn disabled_users_and_domains(e: &Env) {
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    d.add_user("dan@example.net", "{PLAIN}x", None)
        .await
        .unwrap();
    assert!(d.user("dan@example.net").await.unwrap().unwrap().active);
    d.set_active("dan@example.net", false).await.unwrap();
    assert!(!d.user("dan@example.net").await.unwrap().unwrap().active);
    assert_eq!(e.q(Map::Mailboxes, "dan@example.net").await, None);
    assert_eq!(e.q(Map::Aliases, "dan@example.net").await, None);
    d.set_active("dan@example.net", true).await.unwrap();
    assert!(e.q(Map::Mailboxes, "dan@example.net").await.is_some());
    (e.raw)("UPDATE domains SET active = 0 WHERE domain = 'example.net';");
    assert_eq!(e.q(Map::Domains, "example.net").await, None);
    assert!(!d.user("dan@example.net").await.unwrap().unwrap().active);
    // The user's domain must be ours exactly: MariaDB's collation also matches an accented
    // variant, which must not make a user of a foreign domain active.
    (e.raw)("INSERT INTO domains (domain) VALUES ('plain.test'); INSERT INTO users (email, password) VALUES ('eve@pläin.test', 'x'), ('fay@plain.test', 'x');");
    assert!(!d.user("eve@pläin.test").await.unwrap().unwrap().active);
    assert!(d.user("fay@plain.test").await.unwrap().unwrap().active);
    (e.raw)("UPDATE users SET services = 'imap, POP3' WHERE email = 'dan@example.net';");
    let u = d.user("dan@example.net").await.unwrap().unwrap();
    assert!(u.allows("imap") && u.allows("pop3") && !u.allows("smtp"));
}

/// The `recipient` map is what vmail-lda asks lookupd: the stored address, the mail
/// location, the quota and any extension, for disabled users too (the LDA tells them apart).
async fn recipient_records(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    let d = &e.dir;
    d.add_domain("example.net").await.unwrap();
    d.add_user("dan@example.net", "{PLAIN}x", Some(5_000_000))
        .await
        .unwrap();
    let rec = |k: &'static str| async move {
        e.q(Map::Recipient, k)
            .await
            .map(|v| RecipientRecord::decode(&v).unwrap_or_else(|err| panic!("{k}: {err}: {v}")))
    };
    let dan = rec("Dan+News@EXAMPLE.net").await.expect("dan+news");
    assert_eq!(dan.email, "dan@example.net");
    assert!(dan.active);
    assert_eq!(dan.quota_bytes, Some(5_000_000));
    // Addresses are folded to lower case, extensions too (as lookupd answers Postfix).
    assert_eq!(dan.ext.as_deref(), Some("+news"));
    let user = d.user("dan@example.net").await.unwrap().unwrap();
    assert_eq!(
        (dan.home.as_str(), dan.mail.as_str()),
        (user.home.as_str(), user.mail.as_str())
    );
    assert!(
        dan.mail.contains("example.net") && dan.mail.contains("dan"),
        "{}",
        dan.mail
    );
    assert_eq!(rec("dan@example.net").await.unwrap().ext, None);
    // Aliases and catch-alls are Postfix's business (virtual_alias_maps rewrote the address
    // before delivery); the LDA only ever sees mailboxes.
    assert_eq!(rec("nobody@example.net").await, None);
    assert_eq!(rec("info@example.com").await, None);
    assert_eq!(rec("'; DROP TABLE users; --@example.net").await, None);
    d.set_active("dan@example.net", false).await.unwrap();
    assert!(!rec("dan@example.net").await.unwrap().active);
}

async fn password_column_width_is_enforced(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    let long_hash = format!("{{SHA512-CRYPT}}$6${}", "b".repeat(100));
    let r = e.dir.add_user("new@example.org", &long_hash, None).await;
    if e.mysql {
        // varchar(20): refused with a pointer to migrate, never truncated.
        let err = r.unwrap_err();
        assert!(matches!(err, Error::TooLong { width: 20, .. }), "{err}");
        assert!(err.to_string().contains("vmailctl migrate"));
        assert!(e
            .dir
            .set_password("alice@example.org", &long_hash)
            .await
            .is_err());
        assert_eq!(
            e.dir
                .user("alice@example.org")
                .await
                .unwrap()
                .unwrap()
                .password
                .as_deref(),
            Some("abNANd1rDfiNc")
        );
        e.dir.migrate().await.unwrap();
        e.dir
            .add_user("new@example.org", &long_hash, None)
            .await
            .unwrap();
    } else {
        // SQLite keeps any length whatever the declared type.
        r.unwrap();
    }
    let u = e.dir.user("new@example.org").await.unwrap().unwrap();
    assert_eq!(u.password.as_deref(), Some(long_hash.as_str()));
}

async fn migrate_is_idempotent_and_keeps_data(e: &Env) {
    (e.raw)(CLASSIC_ROWS);
    let first = e.dir.migrate().await.unwrap();
    assert!(
        first.iter().any(|s| s.contains("users.active")),
        "{first:?}"
    );
    assert!(e.dir.migrate().await.unwrap().is_empty());
    let s = e.dir.inspect().await.unwrap();
    assert!(s.users_active && s.users_quota && s.users_services && s.domains_active);
    assert_eq!(
        e.q(Map::Aliases, "team@example.org").await.as_deref(),
        Some("alice@example.org,bob@example.org,carol@remote.test")
    );
    let u = e.dir.user("alice@example.org").await.unwrap().unwrap();
    assert!(u.active);
    assert_eq!(u.quota_bytes, None);
    assert_eq!(u.services, None);
}

/// Operators with another schema write their own SELECTs; parameters are still bound.
#[tokio::test]
async fn custom_queries_on_a_postfixadmin_like_schema() {
    let tweak = |c: &mut Config| {
        c.database.queries.domain =
            Some("SELECT 1 FROM pa_domain WHERE domain = '%d' AND active = 1".into());
        c.database.queries.user = Some(
            "SELECT username AS email, password, active, quota FROM pa_mailbox WHERE local_part = %u AND domain = %d".into(),
        );
        c.database.queries.alias =
            Some("SELECT goto FROM pa_alias WHERE address = %s AND active = 1".into());
    };
    let ddl = "CREATE TABLE pa_domain (domain varchar(255) PRIMARY KEY, active int NOT NULL);
        CREATE TABLE pa_mailbox (username varchar(255) PRIMARY KEY, password varchar(255), local_part varchar(255), domain varchar(255), active int, quota bigint);
        CREATE TABLE pa_alias (address varchar(255) PRIMARY KEY, goto text, active int);
        INSERT INTO pa_domain VALUES ('pa.test', 1);
        INSERT INTO pa_mailbox VALUES ('eve@pa.test', '{PLAIN}x', 'eve', 'pa.test', 1, 0);
        INSERT INTO pa_mailbox VALUES ('off@pa.test', '{PLAIN}x', 'off', 'pa.test', 0, 0);
        INSERT INTO pa_alias VALUES ('sales@pa.test', 'eve@pa.test', 1);";
    let mut envs = vec![Env::sqlite(true, tweak).await];
    if let Some(m) = Env::mysql("custom_queries_on_a_postfixadmin_like_schema", true, tweak).await {
        envs.push(m);
    }
    for e in &envs {
        (e.raw)(ddl);
        assert_eq!(
            e.q(Map::Domains, "pa.test").await.as_deref(),
            Some("virtual")
        );
        assert_eq!(
            e.q(Map::Mailboxes, "eve@pa.test").await.as_deref(),
            Some("pa.test/eve/")
        );
        assert_eq!(e.q(Map::Mailboxes, "off@pa.test").await, None);
        assert_eq!(
            e.q(Map::Aliases, "sales@pa.test").await.as_deref(),
            Some("eve@pa.test")
        );
        assert_eq!(e.q(Map::Aliases, "x' OR '1'='1@pa.test").await, None);
        assert!(!e.dir.user("off@pa.test").await.unwrap().unwrap().active);
    }
}

#[tokio::test]
async fn bad_custom_query_is_a_startup_error() {
    let (_g, mut cfg) = sqlite_config();
    cfg.database.queries.alias = Some("SELECT goto FROM a WHERE address = %z".into());
    let r = Directory::open(&cfg).await;
    assert!(matches!(r, Err(Error::Config(_))));
}

/// One lookup that must not fail.
async fn ask<R: Rows>(d: &R, map: Map, key: &str) -> Option<String> {
    vmail_directory::rows::lookup(d, map, key)
        .await
        .unwrap_or_else(|e| panic!("{map} {key:?}: {e}"))
}

/// A directory as lookupd opens it: a memo (found rows for an hour, at most `MEMO_TTL`;
/// "no row" for `negative`) and the address set (`ttl`, `max` rows).
async fn with_set(cfg: &Config, negative: Duration, ttl: Duration, max: usize) -> Shared {
    Shared::new(Directory::open(cfg).await.unwrap())
        .with_memo(Duration::from_secs(3600), negative, 1000)
        .with_address_set(ttl, max)
}

/// An SQLite directory with the classic tables and rows, and a way to write rows behind the
/// back of the directories a test opens on it.
async fn sqlite_with_classic_rows() -> (tempfile::TempDir, Config, impl Fn(&str)) {
    let (g, cfg) = sqlite_config();
    let path = cfg.database.sqlite_path.clone();
    let raw = move |sql: &str| {
        let c = rusqlite::Connection::open(&path).expect("open raw");
        c.execute_batch(sql).expect("raw sql");
    };
    let dir = Directory::open(&cfg).await.unwrap();
    dir.init(true).await.unwrap();
    raw(CLASSIC_ROWS);
    (g, cfg, raw)
}

/// lookupd's memo (`Shared::with_memo`): map lookups share the rows they read, for their
/// lifetime only and never longer than `memo::MEMO_TTL`; `clear_memo()` forgets them; a
/// directory without a memo reads every time.
#[tokio::test]
async fn memo_shares_rows_for_its_lifetime_only() {
    use std::time::Duration;
    let (_g, cfg, raw) = sqlite_with_classic_rows().await;
    let plain = Directory::open(&cfg).await.unwrap();
    // Long enough for a write and a lookup on a loaded CI machine.
    let ms = Duration::from_millis(1500);
    let memo = Shared::new(Directory::open(&cfg).await.unwrap()).with_memo(ms, ms, 100);
    let (new, want) = ("new@example.org", Some("example.org/new/".to_string()));

    // `aliases` of an unknown user reads the user's (missing) row and the catch-all...
    assert_eq!(ask(&memo, Map::Aliases, new).await, None);
    raw("INSERT INTO users (email, password) VALUES ('new@example.org', 'x');");
    // ...and `mailboxes` for the same address reuses that row instead of reading again,
    assert_eq!(ask(&memo, Map::Mailboxes, new).await, None);
    // while a directory without the memo sees the new row at once.
    assert_eq!(ask(&plain, Map::Mailboxes, new).await, want);
    // A flush forgets.
    memo.clear_memo();
    assert_eq!(ask(&memo, Map::Mailboxes, new).await, want);

    // Found rows are shared too, for their lifetime only.
    raw("DELETE FROM users WHERE email = 'new@example.org';");
    assert_eq!(ask(&memo, Map::Mailboxes, new).await, want);
    tokio::time::sleep(ms + Duration::from_millis(100)).await;
    assert_eq!(ask(&memo, Map::Mailboxes, new).await, None);

    // Forwardings: the catch-all row every unknown user of a domain reads.
    let sales = Some("sales@example.com".to_string());
    assert_eq!(ask(&memo, Map::Aliases, "x1@example.com").await, sales);
    raw("UPDATE forwardings SET destination = 'info@example.com' WHERE source = '@example.com';");
    assert_eq!(ask(&memo, Map::Aliases, "x2@example.com").await, sales);
    assert_eq!(
        ask(&plain, Map::Aliases, "x2@example.com").await.as_deref(),
        Some("info@example.com")
    );

    // A failed read is not kept: the next lookup reads again.
    raw("ALTER TABLE forwardings RENAME TO f_away;");
    assert!(memo.lookup(Map::Aliases, "team@example.org").await.is_err());
    raw("ALTER TABLE f_away RENAME TO forwardings;");
    assert_eq!(
        ask(&memo, Map::Aliases, "team@example.org")
            .await
            .as_deref(),
        Some("alice@example.org,bob@example.org,carol@remote.test")
    );
    // Authentication never reads from the memo.
    raw("UPDATE users SET password = 'changed' WHERE email = 'alice@example.org';");
    assert!(ask(&memo, Map::Mailboxes, "alice@example.org")
        .await
        .is_some());
    raw("UPDATE users SET password = 'again' WHERE email = 'alice@example.org';");
    let u = memo.user("alice@example.org").await.unwrap().unwrap();
    assert_eq!(u.password.as_deref(), Some("again"));

    // However long the cache TTLs, a memoized row lives at most MEMO_TTL.
    let long = Duration::from_secs(3600);
    let capped = Shared::new(Directory::open(&cfg).await.unwrap()).with_memo(long, long, 100);
    let late = "late@example.org";
    assert_eq!(ask(&capped, Map::Mailboxes, late).await, None);
    raw("INSERT INTO users (email, password) VALUES ('late@example.org', 'x');");
    assert_eq!(ask(&capped, Map::Mailboxes, late).await, None);
    tokio::time::sleep(vmail_lookupd::cache::memo::MEMO_TTL + Duration::from_millis(100)).await;
    assert_eq!(
        ask(&capped, Map::Mailboxes, late).await.as_deref(),
        Some("example.org/late/")
    );
}

/// The address set's promises (it serves the `aliases` lookup Postfix makes first for every
/// recipient; `mailboxes` then reads what that memoized): it is read in the background once
/// lookups come in; an address added with plain SQL is "not found" for at most the set's TTL;
/// `clear_memo()` (a `vmailctl` flush) makes it visible at once; a table bigger than allowed
/// is never held; a failed read answers nothing from the set (the lookups fail, temporarily).
#[tokio::test]
async fn address_set_freshness_flush_and_limits() {
    use std::time::{Duration, Instant};
    let (_g, cfg, raw) = sqlite_with_classic_rows().await;
    let hour = Duration::from_secs(3600);
    // Long enough for a write and a lookup on a loaded CI machine.
    let ttl = Duration::from_millis(1500);
    // The memo keeps what the set answered, for its negative lifetime: lookupd gives both
    // the same ([cache] negative_ttl_s; the memo at most 2 s).
    let dir = with_set(&cfg, ttl, ttl, 100).await;

    // Nobody loads it: the first lookups read the database and start a background read,
    // after which unknown addresses cost nothing.
    let n = dir.queries_sent();
    assert_eq!(ask(&dir, Map::Aliases, "u0@example.org").await, None);
    assert!(dir.queries_sent() > n, "no set yet");
    let until = Instant::now() + Duration::from_secs(5);
    let mut i = 1;
    loop {
        let n = dir.queries_sent();
        assert_eq!(
            ask(&dir, Map::Aliases, &format!("u{i}@example.org")).await,
            None
        );
        if dir.queries_sent() == n {
            break;
        }
        assert!(
            Instant::now() < until,
            "the set was never read in the background"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        i += 1;
    }

    // Added behind lookupd's back: not found while the set is fresh, found after its TTL.
    let (new, want) = ("new@example.org", Some("new@example.org".to_string()));
    dir.clear_memo();
    assert_eq!(dir.load_address_set().await.unwrap(), Some(7));
    let read_at = Instant::now();
    raw("INSERT INTO users (email, password) VALUES ('new@example.org', 'x');");
    if read_at.elapsed() < ttl / 2 {
        assert_eq!(ask(&dir, Map::Aliases, new).await, None, "within the TTL");
    }
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(ask(&dir, Map::Aliases, new).await, want, "after the TTL");

    // A flush (vmailctl changed something) forgets the set at once.
    let other = with_set(&cfg, hour, hour, 100).await;
    assert_eq!(other.load_address_set().await.unwrap(), Some(8));
    raw("INSERT INTO users (email, password) VALUES ('newer@example.org', 'x');");
    assert_eq!(ask(&other, Map::Aliases, "newer@example.org").await, None);
    assert_eq!(ask(&other, Map::Mailboxes, "newer@example.org").await, None);
    // The LDA's lookup never takes the set's word (nor what the maps memoized from it): a
    // message accepted for a brand-new user must not bounce.
    let rec = ask(&other, Map::Recipient, "newer@example.org").await;
    let rec = RecipientRecord::decode(rec.as_deref().expect("the LDA finds the new user"));
    assert_eq!(rec.map(|r| r.email).as_deref(), Ok("newer@example.org"));
    other.clear_memo();
    assert_eq!(
        ask(&other, Map::Aliases, "newer@example.org")
            .await
            .as_deref(),
        Some("newer@example.org")
    );

    // More rows than allowed: no set, each unknown address is read.
    let small = with_set(&cfg, hour, hour, 8).await;
    assert_eq!(small.load_address_set().await.unwrap(), None, "9 rows > 8");
    let n = small.queries_sent();
    assert_eq!(ask(&small, Map::Aliases, "x1@example.org").await, None);
    assert_eq!(ask(&small, Map::Aliases, "x2@example.org").await, None);
    assert!(small.queries_sent() - n >= 2, "without a set");

    // The database goes away while a set is fresh: unknown addresses are "not found" only
    // until the set's TTL (as a cached "not found" would be), stored ones are a temporary
    // failure at once.
    let ttl = Duration::from_millis(1500);
    let outage = with_set(&cfg, ttl, ttl, 100).await;
    assert!(outage.load_address_set().await.unwrap().is_some());
    let read_at = Instant::now();
    raw("ALTER TABLE users RENAME TO u_away;");
    let stored = outage.lookup(Map::Aliases, "alice@example.org").await;
    assert!(
        stored.as_ref().is_err_and(Error::is_temporary),
        "{stored:?}"
    );
    if read_at.elapsed() < ttl / 2 {
        let unknown = outage.lookup(Map::Aliases, "zed@example.org").await;
        assert!(matches!(unknown, Ok(None)), "{unknown:?}");
    }
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let unknown = outage.lookup(Map::Aliases, "zed2@example.org").await;
    assert!(
        unknown.as_ref().is_err_and(Error::is_temporary),
        "{unknown:?}"
    );
    raw("ALTER TABLE u_away RENAME TO users;");

    // Custom queries decide for themselves what matches: no set.
    let mut custom = cfg.clone();
    custom.database.queries.alias =
        Some("SELECT destination FROM forwardings WHERE source = %s".into());
    let custom = with_set(&custom, hour, hour, 100).await;
    assert_eq!(custom.load_address_set().await.unwrap(), None);
    let n = custom.queries_sent();
    assert_eq!(ask(&custom, Map::Aliases, "c1@example.org").await, None);
    assert!(custom.queries_sent() > n, "custom queries: read");

    // A failed read holds nothing; the lookups report the failure.
    let failing = with_set(&cfg, hour, hour, 100).await;
    raw("ALTER TABLE forwardings RENAME TO f_away;");
    assert!(failing.load_address_set().await.is_err());
    let e = failing.lookup(Map::Aliases, "y@example.org").await;
    assert!(e.as_ref().is_err_and(Error::is_temporary), "{e:?}");
    raw("ALTER TABLE f_away RENAME TO forwardings;");
}

/// MariaDB: concurrent lookups share `UNION ALL` statements (`[database] batch_keys`,
/// `batch_in_flight`). Every map must answer each key exactly as a directory that sends one
/// statement per key, with and without the memo and with and without vmail's optional
/// columns, while far fewer statements go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_lookups_answer_like_single_ones() {
    for flags in [true, false] {
        let tweak = |c: &mut Config| {
            c.database.batch_in_flight = 1;
            c.database.batch_keys = 8;
        };
        let Some(e) = Env::mysql("batched_lookups_answer_like_single_ones", !flags, tweak).await
        else {
            return;
        };
        (e.raw)(CLASSIC_ROWS);
        // Rows that MariaDB's collation matches for keys they are not (accents, trailing
        // space, case): a neighbour's key in the same statement brings them in.
        (e.raw)(
            "INSERT INTO domains (domain) VALUES ('example.net');
             INSERT INTO users (email, password) VALUES ('zo\u{eb}@example.net', 'x'), ('tom@example.net ', 'x'), ('Kim@EXAMPLE.net', 'x');
             INSERT INTO users (email, password) VALUES ('ann@ex\u{e4}mple.net', 'x');
             INSERT INTO forwardings (source, destination) VALUES ('zo\u{eb}-list@example.net', 'kim@example.net');",
        );
        if flags {
            (e.raw)(
                "INSERT INTO domains (domain, active) VALUES ('off.test', 0);
                 INSERT INTO users (email, password) VALUES ('dan@off.test', 'x');
                 INSERT INTO users (email, password, active, quota) VALUES ('eve@example.org', 'x', 0, 0), ('fay@example.org', 'x', 1, 5000);",
            );
        }
        let mut single_cfg = e.cfg.clone();
        single_cfg.database.batch_keys = 1;
        let single = Directory::open(&single_cfg).await.unwrap();
        // With rows that MariaDB's collation matches for other keys than their own.
        let extra = [
            "zoe@example.net",
            "zo\u{eb}@example.net",
            "tom@example.net",
            "kim@example.net",
            "ann@example.net",
            "ann@ex\u{e4}mple.net",
            "zoe-list@example.net",
            "zo\u{eb}-list@example.net",
        ];
        let keys: Vec<&str> = KEYS.iter().copied().chain(extra).collect();
        let maps = [Map::Mailboxes, Map::Aliases, Map::Senders];
        let mut want = Vec::new();
        for &key in &keys {
            for map in maps {
                want.push((map, key, ask(&single, map, key).await));
            }
        }
        for memo in [false, true] {
            let d = Directory::open(&e.cfg).await.unwrap();
            let d = std::sync::Arc::new(if memo {
                Shared::new(d).with_memo(Duration::from_secs(60), Duration::from_secs(60), 1000)
            } else {
                Shared::new(d)
            });
            // Every lookup at once, three times over, so that statements carry several keys.
            let mut set = tokio::task::JoinSet::new();
            for round in 0..3 {
                for (i, (map, key, want)) in want.iter().cloned().enumerate() {
                    let d = d.clone();
                    set.spawn(async move {
                        let got = d.lookup(map, key).await;
                        (round, i, map, key, want, got.map_err(|e| e.to_string()))
                    });
                }
            }
            while let Some(r) = set.join_next().await {
                let (round, i, map, key, want, got) = r.unwrap();
                assert_eq!(
                    got,
                    Ok(want),
                    "{map} {key:?} (#{i}, round {round}, memo {memo}, flags {flags})"
                );
            }
        }

        // Cost: 64 unknown addresses at once against one by one.
        let unknown = |i: usize| format!("new{i}@example.org");
        let n = single.queries_sent();
        for i in 0..64 {
            assert_eq!(ask(&single, Map::Mailboxes, &unknown(i)).await, None);
        }
        let one_by_one = single.queries_sent() - n;
        let d = std::sync::Arc::new(Shared::new(Directory::open(&e.cfg).await.unwrap()));
        assert_eq!(
            ask(d.as_ref(), Map::Domains, "example.org")
                .await
                .as_deref(),
            Some("virtual")
        );
        let n = d.queries_sent();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64 {
            let d = d.clone();
            set.spawn(async move {
                d.lookup(Map::Mailboxes, &unknown(i))
                    .await
                    .map_err(|e| e.to_string())
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), Ok(None));
        }
        let batched = d.queries_sent() - n;
        assert!(
            batched * 4 <= one_by_one,
            "64 concurrent lookups sent {batched} statements, one by one {one_by_one} (flags {flags})"
        );
    }
}

/// A batch that fails fails every lookup in it as temporary (TEMP, never NOTFOUND), and a
/// caller that gives up while others wait behind its statement does not strand them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_lookups_fail_temporarily_and_survive_cancellation() {
    let tweak = |c: &mut Config| {
        c.database.batch_in_flight = 1;
        c.database.batch_keys = 4;
    };
    let Some(e) = Env::mysql("batched_lookups_fail_temporarily", true, tweak).await else {
        return;
    };
    (e.raw)(CLASSIC_ROWS);
    let d = std::sync::Arc::new(Shared::new(Directory::open(&e.cfg).await.unwrap()));
    let want = Some("example.org/alice/".to_string());

    // Callers that give up at once: whatever they leave behind must still be answered for
    // the callers that wait.
    for _ in 0..20 {
        let mut quitters = Vec::new();
        let mut waiters = tokio::task::JoinSet::new();
        for i in 0..8 {
            let d2 = d.clone();
            let h =
                tokio::spawn(async move { d2.lookup(Map::Mailboxes, "alice@example.org").await });
            if i % 2 == 0 {
                quitters.push(h);
            } else {
                waiters.spawn(async move { h.await.unwrap().map_err(|e| e.to_string()) });
            }
            tokio::task::yield_now().await;
        }
        for h in quitters {
            h.abort();
        }
        // A stranded waiter would wait for ever: give up long before the test harness does.
        let all = async {
            while let Some(r) = waiters.join_next().await {
                assert_eq!(r.unwrap(), Ok(want.clone()));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("waiters left behind by callers that gave up");
    }

    // The table goes away under concurrent lookups: each one is a temporary error, for
    // both kinds of batch (a user's row; with lookupd's memo, an address's row and its
    // forwardings).
    let memo = std::sync::Arc::new(
        Shared::new(Directory::open(&e.cfg).await.unwrap()).with_memo(
            Duration::from_secs(60),
            Duration::from_secs(60),
            1000,
        ),
    );
    for dir in [&d, &memo] {
        assert_eq!(
            ask(dir.as_ref(), Map::Mailboxes, "alice@example.org").await,
            want
        );
    }
    (e.raw)("DROP TABLE users;");
    for (map, d) in [(Map::Mailboxes, &d), (Map::Aliases, &memo)] {
        let n = d.queries_sent();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..32 {
            let d = d.clone();
            set.spawn(async move { d.lookup(map, &format!("u{i}@example.org")).await });
        }
        let mut failed = 0;
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Err(e) => {
                    assert!(e.is_temporary(), "{map}: {e}");
                    failed += 1;
                }
                Ok(v) => panic!("{map} lookup without a users table answered {v:?}"),
            }
        }
        assert_eq!(failed, 32, "{map}");
        // Batched, too: a stream of failures is not a stream of statements.
        let sent = d.queries_sent() - n;
        assert!(sent < 32, "{map}: {sent} statements for 32 lookups");
    }
}
