//! The RCPT ceiling's map server: the bench's directory as in-memory tables, and a trivial
//! Postfix socketmap server (`man 5 socketmap_table`) answering from them. No database, no
//! cache, no limits, no logging: the fastest any server behind vmail's `socketmap:` lines
//! can be. The same tables also fill the `texthash:` reference instance.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use vmail_proto::netstring;
use vmail_proto::socketmap::{self, Reply};

use super::{alias, login, DOMAIN};

/// The maps contrib's `main.cf.vmail` queries (`socketmap:...:NAME`), with the answers
/// vmail-lookupd gives for the data `populate` writes: one domain, `users` mailboxes,
/// `aliases` forwardings `aliasK -> userK`, no transport rows, no disabled mailbox (so
/// `recipient_access` finds nothing).
pub struct Tables {
    maps: HashMap<&'static str, HashMap<String, String>>,
}

/// What a table lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Found(&'a str),
    NotFound,
    /// A map name the tables do not have (lookupd answers it `PERM`, a configuration error).
    UnknownMap,
}

impl Tables {
    pub fn bench(users: usize, aliases: usize) -> Tables {
        let mut domains = HashMap::new();
        let mut mailboxes = HashMap::new();
        let mut alias_map = HashMap::new();
        let mut senders = HashMap::new();
        domains.insert(DOMAIN.to_string(), "virtual".to_string());
        for n in 0..users {
            // lookupd's default `[mailbox] map_template = "%d/%n/"`.
            mailboxes.insert(login(n), format!("{DOMAIN}/user{n}/"));
            // Every mailbox maps to itself (the classic email2email map).
            alias_map.insert(login(n), login(n));
            senders.insert(login(n), login(n));
        }
        for k in 0..aliases {
            alias_map.insert(alias(k), login(k));
            // The owners of an alias are its destinations.
            senders.insert(alias(k), login(k));
        }
        let maps = HashMap::from([
            ("domains", domains),
            ("mailboxes", mailboxes),
            ("aliases", alias_map),
            ("senders", senders),
            ("transport", HashMap::new()),
            ("recipient_access", HashMap::new()),
        ]);
        Tables { maps }
    }

    pub fn get(&self, map: &str, key: &str) -> Lookup<'_> {
        match self.maps.get(map) {
            None => Lookup::UnknownMap,
            Some(t) => t.get(key).map_or(Lookup::NotFound, |v| Lookup::Found(v)),
        }
    }

    /// One map as a `texthash:` file (`key value` lines, sorted); empty for an unknown map.
    pub fn texthash(&self, map: &str) -> String {
        let mut rows: Vec<(&String, &String)> = self
            .maps
            .get(map)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        rows.sort();
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "{k} {v}");
        }
        s
    }
}

/// Accepts connections on `listener` forever, one task per connection.
pub async fn serve(listener: UnixListener, tables: Arc<Tables>) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(conn(s, tables.clone()));
    }
}

/// Answers requests in order until the client leaves or breaks the framing. Replies as
/// vmail-lookupd gives them (crates/vmail-lookupd/src/conn.rs): a malformed request in an
/// intact frame is answered `PERM` and the connection goes on; a broken frame gets a
/// `PERM` and the connection is closed.
async fn conn(mut s: UnixStream, tables: Arc<Tables>) {
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    loop {
        out.clear();
        let mut used = 0;
        let mut broken = false;
        // Every complete request already buffered (Postfix sends one at a time).
        loop {
            match netstring::parse(&buf[used..], socketmap::MAX_REQUEST) {
                Ok(Some((payload, n))) => {
                    socketmap::encode_reply(&answer(&tables, payload), &mut out);
                    used += n;
                }
                Ok(None) => break,
                Err(e) => {
                    socketmap::encode_reply(&Reply::Perm(e.to_string()), &mut out);
                    broken = true;
                    break;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
        if broken {
            let _ = s.shutdown().await;
            return;
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn answer(tables: &Tables, payload: &[u8]) -> Reply {
    let req = match socketmap::parse_request(payload) {
        Ok(r) => r,
        Err(e) => return Reply::Perm(e.to_string()),
    };
    // A key that cannot name anything (empty, not UTF-8, NUL) is not found, as in lookupd.
    let Some(key) = req.lookup_key() else {
        return Reply::NotFound;
    };
    match tables.get(req.map, key) {
        Lookup::Found(v) => Reply::Ok(v.to_string()),
        Lookup::NotFound => Reply::NotFound,
        Lookup::UnknownMap => Reply::Perm(format!("unknown map {:?}", req.map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_the_bench_data() {
        let t = Tables::bench(3, 2);
        assert_eq!(t.get("domains", DOMAIN), Lookup::Found("virtual"));
        assert_eq!(t.get("domains", "remote.test"), Lookup::NotFound);
        assert_eq!(
            t.get("mailboxes", &login(2)),
            Lookup::Found("example.org/user2/")
        );
        assert_eq!(t.get("mailboxes", &alias(0)), Lookup::NotFound);
        assert_eq!(t.get("aliases", &login(1)), Lookup::Found(&login(1)));
        assert_eq!(t.get("aliases", &alias(1)), Lookup::Found(&login(1)));
        assert_eq!(t.get("aliases", &alias(2)), Lookup::NotFound);
        assert_eq!(t.get("senders", &alias(0)), Lookup::Found(&login(0)));
        assert_eq!(t.get("transport", DOMAIN), Lookup::NotFound);
        assert_eq!(t.get("virtual", DOMAIN), Lookup::UnknownMap);
    }

    /// Every map the shipped main.cf asks lookupd for is one the ceiling serves: a map it
    /// lacks makes smtpd answer 451 4.3.5 to every RCPT, and the ceiling measures nothing.
    #[test]
    fn tables_serve_every_map_of_contrib_main_cf() {
        let t = Tables::bench(1, 1);
        let marker = "socketmap:unix:private/vmail-lookupd:";
        let names: Vec<&str> = vmail_test_support::contrib::CONTRIB_MAIN_CF
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(marker).skip(1))
            .map(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == ',')
                    .next()
                    .unwrap_or("")
            })
            .collect();
        assert!(names.contains(&"recipient_access"), "{names:?}");
        for name in names {
            assert_ne!(t.get(name, DOMAIN), Lookup::UnknownMap, "map {name}");
        }
    }

    #[test]
    fn texthash_files_are_the_old_ceiling_tables() {
        let t = Tables::bench(2, 1);
        assert_eq!(t.texthash("domains"), "example.org virtual\n");
        assert_eq!(
            t.texthash("mailboxes"),
            "user0@example.org example.org/user0/\nuser1@example.org example.org/user1/\n"
        );
        assert_eq!(
            t.texthash("aliases"),
            "alias0@example.org user0@example.org\n\
             user0@example.org user0@example.org\n\
             user1@example.org user1@example.org\n"
        );
        assert_eq!(t.texthash("transport"), "");
    }

    /// Postfix's own socketmap client (`postmap -q`) against the server, as smtpd asks it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postmap_reads_the_answers() {
        use vmail_test_support::postfix::{postmap_query, PostmapResult};
        if !std::path::Path::new("/usr/sbin/postmap").exists() {
            eprintln!("skipped: no postmap (run scripts/test-deps)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(serve(listener, Arc::new(Tables::bench(10, 5))));
        let table = |map: &str| format!("socketmap:unix:{}:{map}", path.display());
        let q = |key: &'static str, map: &'static str| {
            let t = table(map);
            tokio::task::spawn_blocking(move || postmap_query(key, &t))
        };
        assert_eq!(
            q("example.org", "domains").await.unwrap(),
            PostmapResult::Found("virtual".into())
        );
        assert_eq!(
            q("alias3@example.org", "aliases").await.unwrap(),
            PostmapResult::Found("user3@example.org".into())
        );
        assert_eq!(
            q("user9@example.org", "mailboxes").await.unwrap(),
            PostmapResult::Found("example.org/user9/".into())
        );
        assert_eq!(
            q("nobody1@example.org", "aliases").await.unwrap(),
            PostmapResult::NotFound
        );
        assert_eq!(
            q("example.org", "transport").await.unwrap(),
            PostmapResult::NotFound
        );
    }

    /// Sends `req` (raw bytes) and reads replies until `n` complete ones have arrived.
    async fn exchange(s: &mut UnixStream, req: &[u8], n: usize) -> Vec<Reply> {
        s.write_all(req).await.unwrap();
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        while replies.len() < n {
            while let Some((r, used)) = socketmap::parse_reply_frame(&buf).unwrap() {
                replies.push(r);
                buf.drain(..used);
            }
            if replies.len() == n {
                break;
            }
            let got = s.read_buf(&mut buf).await.unwrap();
            assert!(got > 0, "server closed after {} replies", replies.len());
        }
        replies
    }

    fn request(map: &str, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        socketmap::encode_request(
            &socketmap::Request {
                map,
                key: key.as_bytes(),
            },
            &mut out,
        );
        out
    }

    #[tokio::test]
    async fn serves_postfix_requests_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(serve(listener, Arc::new(Tables::bench(10, 5))));
        let mut s = UnixStream::connect(&path).await.unwrap();

        // One at a time, as Postfix asks.
        assert_eq!(
            exchange(&mut s, &request("domains", DOMAIN), 1).await,
            [Reply::Ok("virtual".into())]
        );
        assert_eq!(
            exchange(&mut s, &request("mailboxes", &login(7)), 1).await,
            [Reply::Ok("example.org/user7/".into())]
        );
        assert_eq!(
            exchange(&mut s, &request("aliases", "nobody3@example.org"), 1).await,
            [Reply::NotFound]
        );
        // Pipelined, split across writes, and the wire bytes of NOTFOUND exactly.
        let mut two = request("aliases", &alias(4));
        two.extend(request("transport", DOMAIN));
        let (a, b) = two.split_at(7);
        s.write_all(a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            exchange(&mut s, b, 2).await,
            [Reply::Ok(login(4)), Reply::NotFound]
        );
        s.write_all(&request("senders", "x@remote.test"))
            .await
            .unwrap();
        let mut raw = [0u8; 64];
        let n = s.read(&mut raw).await.unwrap();
        assert_eq!(&raw[..n], b"9:NOTFOUND ,");

        // Malformed but well framed: PERM, and the connection goes on.
        let r = exchange(&mut s, b"7:nospace,", 1).await;
        assert!(matches!(&r[..], [Reply::Perm(_)]), "{r:?}");
        let r = exchange(&mut s, &request("virtual", DOMAIN), 1).await;
        assert!(
            matches!(&r[..], [Reply::Perm(m)] if m.contains("unknown map")),
            "{r:?}"
        );
        // An empty key cannot name anything.
        assert_eq!(
            exchange(&mut s, &request("aliases", ""), 1).await,
            [Reply::NotFound]
        );
        assert_eq!(
            exchange(&mut s, &request("aliases", &login(0)), 1).await,
            [Reply::Ok(login(0))]
        );

        // Broken framing: one PERM, then the server closes.
        let r = exchange(&mut s, b"x3:abc,", 1).await;
        assert!(matches!(&r[..], [Reply::Perm(_)]), "{r:?}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        // Other connections are unaffected.
        let mut s2 = UnixStream::connect(&path).await.unwrap();
        assert_eq!(
            exchange(&mut s2, &request("domains", DOMAIN), 1).await,
            [Reply::Ok("virtual".into())]
        );
    }
}
