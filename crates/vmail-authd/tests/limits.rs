//! Issue 15 for authd: clients of the dict socket cannot starve Postfix's auth socket (each
//! listener has its own connection budget), and the handshake and every line must arrive
//! whole within request_read_timeout_ms, while a connection idle between requests stays.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmail_test_support::authd::*;
use vmail_test_support::slow::{
    assert_closed_at_deadline, dribble, Latencies, SlowClients, Target,
};

/// A probe that gets no answer this fast is starved: it counts as this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn setup() -> (tempfile::TempDir, vmail_config::Config) {
    let (tmp, config) = vmail_test_support::sqlite_config();
    let config = test_config(config);
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"wonderland").unwrap();
    populate(&config, &["example.org"], &[("alice@example.org", &hash)]);
    (tmp, config)
}

/// One SMTP AUTH as a new smtpd process makes it: connect, handshake, AUTH PLAIN, answer.
/// Returns how long it took, or `PROBE_TIMEOUT` without the right answer in that time.
fn probe(d: &Daemon) -> Duration {
    let t = Instant::now();
    let attempt = || -> Option<()> {
        let s = UnixStream::connect(&d.auth_socket).ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        let mut w = s.try_clone().ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while line != "DONE\n" {
            line.clear();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
        }
        let resp = b64(b"\0alice@example.org\0wonderland");
        let req = format!(
            "VERSION\t1\t2\nCPID\t4242\nAUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.1\tresp={resp}\n"
        );
        w.write_all(req.as_bytes()).ok()?;
        line.clear();
        r.read_line(&mut line).ok()?;
        line.starts_with("OK\t1\t").then_some(())
    };
    match attempt() {
        Some(()) if t.elapsed() < PROBE_TIMEOUT => t.elapsed(),
        _ => PROBE_TIMEOUT,
    }
}

/// 1100 clients on the dict socket, each sending a byte of a hello and a lookup every half
/// second, more than the default max_connections (1024). Before the fix they held every
/// slot of the one shared limit for ever and Postfix's logins waited; now the dict
/// listener's budget is theirs alone, and the handshake deadline (default 5 s) closes them.
#[test]
fn slow_dict_clients_do_not_starve_the_postfix_auth_socket() {
    let (_t, config) = setup();
    let d = Daemon::start(config);
    assert!(probe(&d) < PROBE_TIMEOUT, "authd answers");
    let attack = SlowClients::start(
        Target::Unix(d.dict_socket.clone()),
        1100,
        b"H3\t2\t0\t\tauth\nLshared/passdb/alice@example.org\talice@example.org\n",
        Duration::from_millis(500),
    );
    attack.wait_open(1100);
    let seen = Latencies::collect(Duration::from_secs(7), || probe(&d));
    seen.assert_served("Postfix logins during 1100 slow dict clients");
    assert!(
        attack.closed_by_server() >= 1000,
        "slow clients closed by the handshake deadline: {}",
        attack.closed_by_server()
    );
}

/// A client whose reads wait 50 ms at most, as [`dribble`] wants.
fn connect(p: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(p).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

#[test]
fn clients_dribbling_a_handshake_or_a_line_are_closed_at_the_deadline() {
    let (_t, mut config) = setup();
    config.authd.idle_timeout_ms = 60_000;
    config.authd.request_read_timeout_ms = 500;
    let d = Daemon::start(config);

    // Auth: the handshake, from connecting.
    let t = Instant::now();
    let s = UnixStream::connect(&d.auth_socket).unwrap();
    assert_closed_at_deadline(
        "auth handshake",
        dribble(s, t, b"VERSION\t1\t2\nCPID\t", b'1'),
    );
    // Auth: a request line after a prompt handshake.
    let s = connect(&d.auth_socket);
    let mut w = s.try_clone().unwrap();
    w.write_all(b"VERSION\t1\t2\nCPID\t4242\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_closed_at_deadline(
        "auth line",
        dribble(
            s,
            Instant::now(),
            b"AUTH\t1\tPLAIN\tservice=smtp\tresp=",
            b'A',
        ),
    );
    // Dict: the hello, and a lookup line after it.
    let t = Instant::now();
    let s = connect(&d.dict_socket);
    assert_closed_at_deadline("dict hello", dribble(s, t, b"H3\t2\t0\t", b'a'));
    let s = connect(&d.dict_socket);
    let mut w = s.try_clone().unwrap();
    w.write_all(b"H3\t2\t0\t\tauth\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_closed_at_deadline(
        "dict line",
        dribble(s, Instant::now(), b"Lshared/passdb/", b'a'),
    );

    // Idle between requests for longer than the deadline: still served, on both.
    let mut c = AuthClient::connect(&d);
    std::thread::sleep(Duration::from_millis(900));
    let r = c.plain(1, "alice@example.org", "wonderland", "192.0.2.1");
    assert_eq!(is_ok(&r).as_deref(), Some("alice@example.org"));
    let mut dict = DictClient::connect(&d);
    std::thread::sleep(Duration::from_millis(900));
    assert!(dict
        .lookup("userdb/alice@example.org", "alice@example.org")
        .starts_with('O'));
}

/// A dict client that sends lookups and never reads the replies: once the socket's buffer
/// is full, writing the next reply blocks. Without a deadline on writes it held its slot
/// for ever (the line deadlines cover only reading). With one slot on the dict socket,
/// Dovecot's next connection must be served once request_read_timeout_ms has passed.
#[test]
fn a_dict_client_that_never_reads_its_replies_gives_its_slot_back() {
    let (_t, mut config) = setup();
    config.authd.max_connections = 1;
    config.authd.request_read_timeout_ms = 500;
    let d = Daemon::start(config);
    let mut stuck = UnixStream::connect(&d.dict_socket).unwrap();
    let mut requests = String::from("H3\t2\t0\t\tauth\n");
    for _ in 0..2000 {
        requests.push_str("Lshared/passdb/alice@example.org\talice@example.org\n");
    }
    stuck.write_all(requests.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut c = DictClient::connect(&d);
    let reply = c.lookup("passdb/alice@example.org", "alice@example.org");
    assert!(reply.starts_with('O'), "{reply}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a dict lookup waited {:?} behind a client that does not read its replies",
        t.elapsed()
    );
    drop(stuck);
}
