//! Alias domains that all point at each other (issue 20, item 2): every `@dI` forwards to
//! `@d1, ..., @dN`. A lookup must cost a bounded amount of work, log at most one line, and
//! never hold up the lookups of other clients on lookupd's one event loop. Its own test
//! binary: the log is counted for the whole process.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vmail_test_support::lookupd::{have_postmap, mysql_tables, Daemon, Raw};
use vmail_test_support::postfix::{postmap_query, PostmapResult};

/// Log lines written by every thread of this test process.
static LOG_LINES: AtomicUsize = AtomicUsize::new(0);

struct CountingWriter;

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let lines = buf.iter().filter(|b| **b == b'\n').count();
        // Counted, not shown: the code before the fix wrote millions of lines.
        LOG_LINES.fetch_add(lines, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `@{prefix}I.test -> @{prefix}1.test, ..., @{prefix}N.test` for I in 1..=N.
fn mesh_sql(prefix: &str, n: usize) -> String {
    let domains: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}.test")).collect();
    let all = domains
        .iter()
        .map(|d| format!("@{d}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = String::new();
    for d in &domains {
        sql.push_str(&format!(
            "INSERT INTO domains (domain) VALUES ('{d}');\n\
             INSERT INTO forwardings (source, destination) VALUES ('@{d}', '{all}');\n"
        ));
    }
    sql
}

#[test]
fn alias_domain_mesh_is_bounded_quiet_and_blocks_no_one() {
    let test = "alias_domain_mesh_is_bounded_quiet_and_blocks_no_one";
    if !have_postmap(test) {
        return;
    }
    let Some((db, cfg)) = mysql_tables(test, true) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(|| CountingWriter)
        .try_init();
    db.sql(&mesh_sql("m", 12));
    db.sql(&mesh_sql("d", 20));
    // More domains than one lookup may visit.
    db.sql(&mesh_sql("e", 40));
    // One real mailbox, in the middle of the big mesh.
    db.sql(
        "INSERT INTO domains (domain) VALUES ('example.org');
         INSERT INTO users (email, password) VALUES ('alice@d5.test', 'x'), ('bob@example.org', 'x');",
    );
    // lookupd as shipped: one event loop, answer cache, memo and address set on.
    assert_eq!(cfg.lookupd.threads, 1);
    let d = Daemon::start(cfg);
    let aliases = d.socketmap_table("aliases");
    let mut other = Raw::connect(&d.socket);
    assert_eq!(
        other.ask(b"mailboxes bob@example.org"),
        "OK example.org/bob/"
    );

    let logged_before = LOG_LINES.load(Ordering::Relaxed);
    let mut lookups = 0;
    // Another client keeps asking a cached key while the mesh lookups run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let socket = d.socket.clone();
    let stop2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut c = Raw::connect(&socket);
        let mut worst = Duration::ZERO;
        while !stop2.load(Ordering::Relaxed) {
            let t = Instant::now();
            assert_eq!(c.ask(b"mailboxes bob@example.org"), "OK example.org/bob/");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        worst
    });
    for (prefix, n) in [("m", 12), ("d", 20)] {
        let mut times = Vec::new();
        for i in 0..5 {
            // A new key each time: the answer cache must not hide the work.
            let key = format!("nx{i}@{prefix}1.test");
            let t = Instant::now();
            let got = postmap_query(&key, &aliases);
            times.push(t.elapsed());
            lookups += 1;
            assert_eq!(
                got,
                PostmapResult::NotFound,
                "postmap -q {key} (mesh of {n})"
            );
        }
        eprintln!("mesh of {n} domains: postmap -q nx@{prefix}1.test aliases took {times:?}");
        let worst = times.iter().max().copied().unwrap_or_default();
        assert!(
            worst < Duration::from_millis(300),
            "an unknown user of a mesh of {n} alias domains took {worst:?}"
        );
    }
    // A user that exists somewhere in the mesh is found, and named by its final address
    // (an answer naming another mesh address would make Postfix's own recursion loop).
    let t = Instant::now();
    assert_eq!(
        postmap_query("alice@d1.test", &aliases),
        PostmapResult::Found("alice@d5.test".into())
    );
    lookups += 1;
    eprintln!("mesh of 20 domains: alice@d1.test took {:?}", t.elapsed());
    // Past the limit: bounded work, a temporary failure (Postfix defers, as it does an
    // "unreasonable" expansion of its own; "not found" would bounce a user who may exist past
    // the limit), and one warning for all these lookups together.
    // (Asked over a raw socketmap connection: postmap pauses a second after a TEMP.)
    let logged_mid = LOG_LINES.load(Ordering::Relaxed);
    let mut client = Raw::connect(&d.socket);
    for i in 0..5 {
        let key = format!("nx{i}@e1.test");
        let t = Instant::now();
        let got = client.ask(format!("aliases {key}").as_bytes());
        assert!(got.starts_with("TEMP "), "{key}: {got}");
        lookups += 1;
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{key}: {:?}",
            t.elapsed()
        );
    }
    let limit_lines = LOG_LINES.load(Ordering::Relaxed) - logged_mid;
    eprintln!("{limit_lines} log line(s) for 5 lookups over the limit");
    assert!(
        limit_lines <= 1,
        "{limit_lines} warnings for 5 lookups over the limit"
    );
    stop.store(true, Ordering::Relaxed);
    let worst = watcher.join().unwrap();
    eprintln!("a cached lookup of another client waited at most {worst:?} meanwhile");
    assert!(
        worst < Duration::from_millis(100),
        "a cached lookup waited {worst:?} behind the mesh lookups"
    );
    let logged = LOG_LINES.load(Ordering::Relaxed) - logged_before;
    assert!(
        logged <= lookups,
        "{logged} log lines for {lookups} lookups"
    );
}
