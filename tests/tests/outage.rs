//! MariaDB killed, with everything wired exactly as `contrib/` documents
//! (`vmail_test_support::e2e::stack`; here on a private `mariadbd` each test may kill), on
//! both lanes (`VMAIL_TEST_LANE`).
//!
//! In the middle of a burst of mail: nothing is bounced, `postqueue -p` holds the undelivered
//! messages as deferred, and once the database is back and the queue flushed, every message
//! is delivered exactly once.
//!
//! smtpd keeps accepting mail for addresses lookupd has answered recently (contrib's
//! `[cache] positive_ttl_s = 60`). vmail-lda asks lookupd too (contrib's `[lda] lookupd`), so
//! a recipient whose delivery record lookupd has cached is still delivered during the
//! outage; one whose record it must fetch is deferred by vmail-lda (exit 75); an address not
//! in the cache at all gets a temporary 451 at RCPT.
//!
//! Logins: IMAP, POP3, SMTP AUTH and `doveadm user` fail temporarily while the database is
//! down, and work again within seconds of its return.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vmail_test_support::dovecot::{imap_login, pop3_login};
use vmail_test_support::e2e::*;
use vmail_test_support::{wait_until, PrivateMariaDb};

const ALICE: &str = "alice@example.org";
/// Never looked up before the outage, so not in lookupd's cache.
const BOB: &str = "bob@example.org";
/// Checked at RCPT before the outage (cached in lookupd's Postfix maps) but never delivered
/// to, so its delivery record is not cached: its mail waits for the database.
const CAROL: &str = "carol@example.org";
/// Messages to carol during the outage.
const CAROL_MESSAGES: usize = 4;
/// A local sender: a bounce would land in this mailbox.
const SENDER: &str = "sender@example.org";
const BURST: usize = 20;
/// The database is killed before this message of the burst.
const KILL_AT: usize = 8;

/// One message in `postqueue -p`.
#[derive(Debug)]
struct Queued {
    id: String,
    /// `*`: being delivered now; `!`: on hold.
    active: bool,
    sender: String,
    /// The `(...)` line of a deferred message.
    reason: Option<String>,
}

fn parse_mailq(listing: &str) -> Vec<Queued> {
    let mut out = Vec::new();
    for block in listing.split("\n\n") {
        // The column header sits right above the first entry; the summary is `-- ...`.
        let mut lines = block.lines().filter(|l| !l.starts_with('-'));
        let Some(first) = lines.next() else { continue };
        if !first.starts_with(|c: char| c.is_ascii_alphanumeric())
            || first.starts_with("Mail queue")
        {
            continue;
        }
        let mut f = first.split_whitespace();
        let id = f.next().unwrap_or("");
        out.push(Queued {
            id: id.trim_end_matches(['*', '!']).to_string(),
            active: id.ends_with('*'),
            sender: f.last().unwrap_or("").to_string(),
            reason: lines
                .map(str::trim)
                .find(|l| l.starts_with('('))
                .map(str::to_string),
        });
    }
    out
}

/// What both tests start with: the lane, a private MariaDB the test may kill with contrib's
/// database user (its password in a file), and the stack on it, its directory holding
/// example.org and `users` as (email, password).
fn start_outage_stack(test: &str, users: &[(&str, &str)]) -> Option<(PrivateMariaDb, Stack)> {
    let lane = Lane::from_env(test)?;
    let db = PrivateMariaDb::start(test)?;
    db.sql(
        "CREATE USER 'mail_admin'@'localhost' IDENTIFIED BY 'e2e-db-pw';\n\
         GRANT ALL ON mail.* TO 'mail_admin'@'localhost';",
    );
    let db_socket = db.socket();
    let access = DbAccess {
        socket: &db_socket,
        user: "mail_admin",
        password: "e2e-db-pw",
        name: "mail",
    };
    let stack = Stack::start(test, lane, e2e_binaries!(), &access, |config| {
        with_directory(config, async |d| {
            d.init(false).await.unwrap();
            d.migrate().await.unwrap();
            d.add_domain("example.org").await.unwrap();
            for (u, p) in users {
                d.add_user(u, &format!("{{PLAIN}}{p}"), None).await.unwrap();
            }
        });
    })?;
    Some((db, stack))
}

#[test]
fn a_database_outage_during_a_burst_bounces_nothing_and_delivers_everything_exactly_once() {
    let test = "a_database_outage_during_a_burst_defers_and_then_delivers_everything_exactly_once";
    let began = Instant::now();
    let users = [ALICE, BOB, CAROL, SENDER].map(|u| (u, "unused"));
    let Some((mut db, stack)) = start_outage_stack(test, &users) else {
        return;
    };
    let pf = &stack.postfix;
    let logs = || {
        format!(
            "--- postqueue -p:\n{}\n--- maillog:\n{}\n--- vmail-lookupd:\n{}\n--- vmail-authd:\n{}",
            pf.mailq(),
            pf.maillog(),
            stack.lookupd.log(),
            stack.authd.log()
        )
    };
    let maildir = |email: &str| stack.maildir(email);
    let send = |to: &str, token: &str| pf.send(SENDER, &[to], &message(SENDER, to, token));
    eprintln!("outage setup ready in {:?}", began.elapsed());

    // The path works; lookupd now has alice's answers cached, as on a server with traffic.
    let out = send(ALICE, "warm-up");
    assert!(out.accepted(), "{}\n{}", out.transcript, logs());
    assert_eq!(
        wait_for_message(&maildir(ALICE), "warm-up", Duration::from_secs(30)).len(),
        1,
        "{}",
        logs()
    );
    // carol only passes smtpd's checks (domains, aliases, mailboxes), no delivery.
    let probe = Swaks::run(&[
        "--server",
        &format!("127.0.0.1:{}", pf.smtp_port),
        "--from",
        SENDER,
        "--to",
        CAROL,
        "--quit-after",
        "RCPT",
    ]);
    assert_eq!(probe.code_after("RCPT TO"), 250, "{}", probe.transcript);
    // lookupd's map lookups share the rows they read for a moment (vmail_lookupd::cache::memo):
    // let carol's row age out of that, so only the RCPT-time map answers are cached for her.
    std::thread::sleep(vmail_lookupd::cache::memo::MEMO_TTL + Duration::from_millis(300));

    // The burst to alice, with the database killed part-way through, then carol's mail.
    let tokens: Vec<String> = (0..BURST)
        .map(|i| format!("burst-message-{i:02}"))
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        if i == KILL_AT {
            db.kill();
        }
        let out = send(ALICE, token);
        assert!(
            out.accepted(),
            "{token} (database {}): {}\n{}",
            if i < KILL_AT { "up" } else { "down" },
            out.transcript,
            logs()
        );
    }
    let carol_tokens: Vec<String> = (0..CAROL_MESSAGES)
        .map(|i| format!("carol-during-outage-{i}"))
        .collect();
    for token in &carol_tokens {
        let out = send(CAROL, token);
        assert!(out.accepted(), "{token}: {}\n{}", out.transcript, logs());
    }
    let delivered_to = |who: &str, token: &str| messages_with(&maildir(who), token).len();
    let delivered = |token: &str| delivered_to(ALICE, token);

    // A recipient lookupd has not cached cannot be checked now: a temporary refusal (the
    // client retries), never "user unknown".
    let out = send(BOB, "uncached-during-outage");
    let (_, reply) = &out.rcpt[0];
    assert_eq!(reply.code, 451, "{}", out.transcript);
    assert!(reply.text.starts_with("4.3.0"), "{}", out.transcript);

    // alice's whole burst is delivered from lookupd's cache, database or not; carol's mail
    // is deferred in the queue: nothing active any more, nothing bounced.
    let mut queue = Vec::new();
    let settled = wait_until(Duration::from_secs(40), || {
        queue = parse_mailq(&pf.mailq());
        tokens.iter().all(|t| delivered(t) == 1)
            && !queue.iter().any(|q| q.active)
            && queue.iter().all(|q| q.reason.is_some())
            && queue.len() == CAROL_MESSAGES
    });
    assert!(
        settled,
        "the mail did not settle into alice's delivered + carol's deferred: {queue:?}\n{}",
        logs()
    );
    let listing = pf.mailq();
    eprintln!("postqueue -p during the outage:\n{listing}");
    let log = pf.maillog();
    for q in &queue {
        assert_eq!(q.sender, SENDER, "not one of ours (a bounce?): {q:?}");
        // pipe(8) logged vmail-lda's temporary status (exit 75) for it.
        let attempt = format!("{}: to=<{CAROL}>, relay=vmail,", q.id);
        assert!(
            log.lines().any(|l| l.contains(&attempt)
                && l.contains(", dsn=4.4.3")
                && l.contains(", status=deferred (")),
            "no temporary failure logged for {q:?}:\n{log}"
        );
    }
    for t in &carol_tokens {
        assert_eq!(
            delivered_to(CAROL, t),
            0,
            "{t} delivered while the database was down"
        );
    }
    assert!(
        !log.contains("status=bounced"),
        "bounced during the outage:\n{log}"
    );

    // The database comes back; the queue is flushed until it is empty.
    db.resume();
    let back = Instant::now();
    pf.flush();
    let all = wait_until(Duration::from_secs(60), || {
        if carol_tokens.iter().all(|t| delivered_to(CAROL, t) >= 1) && pf.queue_ids().is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
        pf.flush();
        false
    });
    assert!(
        all,
        "not everything delivered after the database came back:\n{}",
        logs()
    );
    eprintln!(
        "queue drained {:?} after the database came back",
        back.elapsed()
    );
    // A moment for a duplicate to show, then: each exactly once, nothing else, no bounce.
    std::thread::sleep(Duration::from_millis(500));
    let counts: BTreeMap<&str, usize> = tokens
        .iter()
        .map(|t| (t.as_str(), delivered(t)))
        .chain(
            carol_tokens
                .iter()
                .map(|t| (t.as_str(), delivered_to(CAROL, t))),
        )
        .collect();
    assert!(
        counts.values().all(|&n| n == 1),
        "not exactly once: {counts:?}"
    );
    assert_eq!(
        maildir_files(&maildir(ALICE)).len(),
        BURST + 1,
        "alice's Maildir holds the warm-up and the burst, nothing else"
    );
    assert_eq!(
        maildir_files(&maildir(CAROL)).len(),
        CAROL_MESSAGES,
        "carol's Maildir holds her messages, nothing else"
    );
    assert!(
        maildir_files(&maildir(SENDER)).is_empty(),
        "the sender got mail (a bounce or delay notice)"
    );
    let log = pf.maillog();
    assert!(!log.contains("status=bounced"), "{log}");
    assert!(!log.contains("sender non-delivery notification"), "{log}");
    assert!(pf.queue_ids().is_empty(), "{}", pf.mailq());
    eprintln!("outage test done in {:?}", began.elapsed());
}

/// Logs in before the outage: proves the path works (and is then in authd's cache).
const ERIN: (&str, &str) = ("erin@example.org", "erin-pw");
/// Never logs in before the outage, so authd must ask the database for her.
const FRANK: (&str, &str) = ("frank@example.org", "frank-pw");

/// With the database down, a login authd has not verified recently cannot be checked: IMAP
/// says `[UNAVAILABLE]`, POP3 `[SYS/TEMP]`, SMTP AUTH 454 and `doveadm user` exits 75
/// (EX_TEMPFAIL), never "wrong password" or "unknown user"; within seconds of the
/// database's return the same logins work (a failed connection pool is thrown away at once).
#[test]
fn logins_fail_temporarily_while_the_database_is_down_and_work_again_within_seconds() {
    let test = "logins_fail_temporarily_while_the_database_is_down_and_work_again_within_seconds";
    let Some((mut db, stack)) = start_outage_stack(test, &[ERIN, FRANK]) else {
        return;
    };
    let imap = |(u, p): (&str, &str)| imap_login(stack.dovecot.imap_port, u, p);
    let pop3 = |(u, p): (&str, &str)| pop3_login(stack.dovecot.pop3_port, u, p);
    let smtp = |(user, password): (&str, &str)| {
        Submitter {
            port: stack.submission_port(),
            mech: "PLAIN",
            user,
            password,
        }
        .auth_only()
    };
    imap(ERIN).unwrap_or_else(|e| panic!("IMAP before the outage: {e}\n{}", stack.logs()));

    db.kill();
    let e = imap(FRANK).err().unwrap_or_default();
    assert!(
        e.contains("[UNAVAILABLE]"),
        "IMAP login during the outage: {e:?}\n{}",
        stack.logs()
    );
    let e = pop3(FRANK).err().unwrap_or_default();
    assert!(
        e.starts_with("-ERR [SYS/TEMP]"),
        "POP3 login during the outage: {e:?}\n{}",
        stack.logs()
    );
    let r = smtp(FRANK);
    let reply = r.reply_after("AUTH");
    assert_eq!(
        reply.as_ref().map(|(c, _)| *c),
        Some(454),
        "SMTP AUTH during the outage: {reply:?}\n{}\n{}",
        r.transcript,
        stack.logs()
    );
    let out = stack.dovecot.doveadm(&["user", FRANK.0]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "doveadm user during the outage: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    db.resume();
    let back = Instant::now();
    let again = wait_until(Duration::from_secs(10), || imap(FRANK).is_ok());
    assert!(
        again,
        "IMAP login still failing 10 s after the database came back: {:?}\n{}",
        imap(FRANK).err(),
        stack.logs()
    );
    eprintln!(
        "IMAP login works {:?} after the database came back",
        back.elapsed()
    );
    pop3(FRANK).unwrap_or_else(|e| panic!("POP3 after the outage: {e}\n{}", stack.logs()));
    let r = smtp(FRANK);
    assert_eq!(
        r.code_after("AUTH"),
        235,
        "{}\n{}",
        r.transcript,
        stack.logs()
    );
    let out = stack.dovecot.doveadm(&["user", FRANK.0]);
    assert!(out.status.success(), "doveadm user after the outage");
}
