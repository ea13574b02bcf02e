//! A TCP proxy in front of MariaDB that loses the reply to one write (issue 18): it passes
//! the write on, waits until the server has answered it (so the write did take effect), and
//! then cuts the client's connection instead of passing the answer back. The client sees a
//! connection lost after the write was sent, with the outcome unknown to it. Only the first
//! write that matches is cut; later ones, and every later connection, pass through.
//!
//! It reads the client's side of the MySQL protocol as packets (3-byte length, sequence
//! number, payload; no TLS, no compression, as vmail's client connects to a test server).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// Which write's reply is lost.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// The first `COMMIT` (a transaction's).
    Commit,
    /// The first execution of a statement whose SQL starts with this text (prepared, as
    /// mysql_async runs statements with parameters, or a plain query): an autocommitted
    /// write such as `INSERT`.
    Statement(&'static str),
}

const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;

/// The running proxy; it stops with the test process.
pub struct LostReply {
    /// The port on 127.0.0.1 to give the client instead of the server's.
    pub port: u16,
    cuts: Arc<AtomicUsize>,
}

impl LostReply {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str, cut: Cut) -> LostReply {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let used = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let counted = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (used, counted) = (used.clone(), counted.clone());
                std::thread::spawn(move || relay(client, server, cut, &used, &counted));
            }
        });
        LostReply { port, cuts }
    }

    /// How many replies were lost so far (0 or 1).
    pub fn cuts(&self) -> usize {
        self.cuts.load(SeqCst)
    }
}

/// Whether `payload` (one client packet) is the write to cut; `armed` remembers that the
/// statement prepared last on this connection is the one named.
fn matches(cut: Cut, payload: &[u8], armed: &mut bool) -> bool {
    let starts = |sql: &[u8], text: &str| {
        sql.len() >= text.len() && sql[..text.len()].eq_ignore_ascii_case(text.as_bytes())
    };
    match (cut, payload.split_first()) {
        (Cut::Commit, Some((&COM_QUERY, sql))) => sql.eq_ignore_ascii_case(b"COMMIT"),
        (Cut::Statement(text), Some((&COM_QUERY, sql))) => starts(sql, text),
        (Cut::Statement(text), Some((&COM_STMT_PREPARE, sql))) => {
            *armed = starts(sql, text);
            false
        }
        (Cut::Statement(_), Some((&COM_STMT_EXECUTE, _))) => *armed,
        _ => false,
    }
}

fn relay(
    mut client: TcpStream,
    server: TcpStream,
    cut: Cut,
    used: &AtomicBool,
    cuts: &AtomicUsize,
) {
    let cutting = Arc::new(AtomicBool::new(false));
    let (Ok(mut to_client), Ok(mut from_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let flag = cutting.clone();
    let back = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from_server.read(&mut buf) {
            // The client waits for each reply before it sends on, so what arrives once the
            // cut write went out is that write's reply: dropped, and the client cut off.
            if n == 0 || flag.load(SeqCst) {
                break;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
        let _ = from_server.shutdown(Shutdown::Both);
    });
    let mut to_server = server;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16384];
    let mut armed = false;
    'read: while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 4 {
            let len = usize::from(pending[0])
                | usize::from(pending[1]) << 8
                | usize::from(pending[2]) << 16;
            if pending.len() < 4 + len {
                break;
            }
            let packet: Vec<u8> = pending.drain(..4 + len).collect();
            if matches(cut, &packet[4..], &mut armed) && !used.swap(true, SeqCst) {
                cutting.store(true, SeqCst);
                cuts.fetch_add(1, SeqCst);
            }
            if to_server.write_all(&packet).is_err() {
                break 'read;
            }
        }
    }
    if !cutting.load(SeqCst) {
        let _ = to_server.shutdown(Shutdown::Both);
    }
    let _ = back.join();
}
