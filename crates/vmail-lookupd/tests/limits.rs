//! Issue 15: no client of one listener can starve Postfix's lookups on another. Each
//! listener has its own connection budget, and a request has a deadline from its first byte
//! to its last, so clients that dribble bytes (or scrape nothing) cannot hold slots for ever.

use std::time::{Duration, Instant};

use vmail_test_support::lookupd::{prepare_sqlite, probe, Daemon, Raw, ROWS};
use vmail_test_support::slow::{
    assert_closed_at_deadline, dribble, Latencies, SlowClients, Target,
};
use vmail_test_support::{free_port, http_get, metric};

/// A probe that gets no answer this fast is starved: it counts as this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// New socketmap connections asking a question, one every 50 ms, for `span`.
fn probe_for(d: &Daemon, span: Duration) -> Latencies {
    Latencies::collect(span, || {
        probe(
            &d.socket,
            b"aliases info@example.com",
            "OK sales@example.com",
            PROBE_TIMEOUT,
        )
    })
}

/// 1100 local clients on a loopback tcp_table port, each sending a byte of a request every
/// half second, more than the default max_connections (1024). Before the fix they held
/// every slot of the one shared limit for ever and each new socketmap connection waited
/// (seen: 15 s); now that listener's budget is theirs alone, and the request deadline
/// (default 5 s) closes them, again and again.
#[test]
fn slow_tcp_table_clients_do_not_starve_the_socketmap_socket() {
    let (_g, cfg) = prepare_sqlite(ROWS);
    let d = Daemon::start(cfg);
    let aliases = d
        .tcp
        .iter()
        .find(|(n, _)| n == "aliases")
        .unwrap()
        .1
        .clone();
    let mut request = b"get ".to_vec();
    request.extend_from_slice(&[b'a'; 200]);
    let attack = SlowClients::start(
        Target::Tcp(aliases),
        1100,
        &request,
        Duration::from_millis(500),
    );
    attack.wait_open(1100);
    // Long enough for the slow clients' deadline (5 s) to pass once: lookups go on while
    // they are closed and reconnect.
    let seen = probe_for(&d, Duration::from_secs(7));
    seen.assert_served("socketmap lookups during 1100 slow tcp_table clients");
    assert!(
        attack.closed_by_server() >= 1000,
        "slow clients closed by the request deadline: {}",
        attack.closed_by_server()
    );
}

/// 1030 clients connecting to the metrics port and sending nothing (as seen in issue 15)
/// take only the metrics listener's own small budget; the saturation is counted.
#[test]
fn idle_metrics_connections_do_not_starve_the_socketmap_socket() {
    let (_g, mut cfg) = prepare_sqlite(ROWS);
    let port = free_port();
    cfg.lookupd.metrics = format!("inet:127.0.0.1:{port}");
    let d = Daemon::start(cfg);
    let attack = SlowClients::start(
        Target::Tcp(format!("127.0.0.1:{port}")),
        1030,
        b"",
        Duration::from_millis(200),
    );
    // Before the fix all of them got in (a slot each of the shared 1024); now only the
    // listener's 8 and its backlog's 128 can, the rest are refused by the kernel.
    attack.wait_open(136);
    std::thread::sleep(Duration::from_millis(500));
    let seen = probe_for(&d, Duration::from_secs(5));
    seen.assert_served("socketmap lookups during 1030 idle metrics connections");
    drop(attack);
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    let series = format!(
        "vmail_lookupd_connection_limit_reached_total{{listener=\"inet:127.0.0.1:{port}\"}}"
    );
    let hits = metric(&body, &series).unwrap_or_else(|| panic!("{series} missing:\n{body}"));
    assert!(hits >= 1.0, "{series} {hits}");
    let socketmap = format!(
        "vmail_lookupd_connection_limit_reached_total{{listener=\"unix:{}\"}}",
        d.socket.display()
    );
    assert_eq!(metric(&body, &socketmap), Some(0.0), "{body}");
}

/// Every byte used to restart the idle timer: one byte a minute held a slot for weeks. A
/// request now has request_read_timeout_ms from its first byte to its last, on both
/// protocols, while idle time between requests is still idle_timeout_ms.
#[test]
fn a_client_dribbling_a_request_is_closed_at_the_request_deadline() {
    let (_g, mut cfg) = prepare_sqlite(ROWS);
    cfg.lookupd.idle_timeout_ms = 60_000;
    cfg.lookupd.request_read_timeout_ms = 500;
    let d = Daemon::start(cfg);
    let read_timeout = Some(Duration::from_millis(50));

    let s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(read_timeout).unwrap();
    assert_closed_at_deadline(
        "socketmap",
        dribble(s, Instant::now(), b"1000:aliases ", b'a'),
    );

    let aliases = &d.tcp.iter().find(|(n, _)| n == "aliases").unwrap().1;
    let s = std::net::TcpStream::connect(aliases).unwrap();
    s.set_read_timeout(read_timeout).unwrap();
    assert_closed_at_deadline("tcp_table", dribble(s, Instant::now(), b"get ", b'a'));

    // Quiet between requests for longer than the request deadline: still served.
    let mut c = Raw::connect(&d.socket);
    assert_eq!(c.ask(b"domains example.com"), "OK virtual");
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(c.ask(b"domains example.com"), "OK virtual");
    // A request split over two writes inside the deadline is answered.
    c.send(b"19:domains exa");
    std::thread::sleep(Duration::from_millis(200));
    c.send(b"mple.com,");
    assert_eq!(c.reply().as_deref(), Some("OK virtual"));
}

/// A client that sends requests but never reads the replies: once the socket's buffer is
/// full, writing the next reply blocks. Without a deadline on writes that connection held
/// its slot for ever (the request deadline covers only reading), a way around the fix
/// above for any local user of a tcp_table port. Here the socketmap socket has one slot:
/// a Postfix lookup behind the stuck client must still be answered once the reply deadline
/// (request_read_timeout_ms) has passed.
#[test]
fn a_client_that_never_reads_its_replies_gives_its_slot_back() {
    let (_g, mut cfg) = prepare_sqlite(ROWS);
    cfg.lookupd.max_connections = 1;
    cfg.lookupd.idle_timeout_ms = 60_000;
    cfg.lookupd.request_read_timeout_ms = 500;
    // An alias with 1000 destinations: a reply of about 25 kB.
    let dests: Vec<String> = (0..1000)
        .map(|i| format!("user{i:04}@remote.test"))
        .collect();
    rusqlite::Connection::open(&cfg.database.sqlite_path)
        .unwrap()
        .execute(
            "INSERT INTO forwardings (source, destination) VALUES ('big@example.com', ?1)",
            [dests.join(",")],
        )
        .unwrap();
    let d = Daemon::start(cfg);
    // 40 requests (1 MB of replies, far more than a socket buffer), never a read.
    let mut stuck = Raw::connect(&d.socket);
    let mut requests = Vec::new();
    for _ in 0..40 {
        vmail_proto::netstring::encode(b"aliases big@example.com", &mut requests);
    }
    stuck.send(&requests);
    std::thread::sleep(Duration::from_millis(300));
    let took = probe(
        &d.socket,
        b"aliases info@example.com",
        "OK sales@example.com",
        Duration::from_secs(6),
    );
    assert!(
        took < Duration::from_secs(3),
        "a lookup waited {took:?} behind a client that does not read its replies"
    );
    drop(stuck);
}
