//! systemd socket activation: vmail-authd serves the auth, dict and Lua sockets it inherits.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;
use vmail_test_support::authd;

#[test]
fn serves_inherited_sockets_from_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.sock");
    let dict = dir.path().join("dict.sock");
    let lua = dir.path().join("lua.sock");
    let auth_l = UnixListener::bind(&auth).unwrap();
    let dict_l = UnixListener::bind(&dict).unwrap();
    let lua_l = UnixListener::bind(&lua).unwrap();
    let cfg = dir.path().join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"sqlite\"\nsqlite_path = \"{d}/vmail.db\"\n\
             [authd]\nauth = [\"unix:{}\"]\ndict = [\"unix:{}\"]\nlua = [\"unix:{}\"]\nlua_peers = [\"{uid}\"]\n\
             auth_socket_group = \"\"\ndict_socket_group = \"\"\nlua_socket_group = \"\"\nuser = \"\"\npid_file = \"{d}/authd.pid\"\n",
            auth.display(),
            dict.display(),
            lua.display(),
            uid = authd::nix_uid(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let config = vmail_config::load(Some(&cfg)).unwrap().config;
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"pw").unwrap();
    authd::populate(&config, &["example.org"], &[("alice@example.org", &hash)]);
    let mut child = vmail_test_support::spawn_socket_activated(
        std::path::Path::new(env!("CARGO_BIN_EXE_vmail-authd")),
        &["--config", cfg.to_str().unwrap()],
        &[auth_l.as_raw_fd(), dict_l.as_raw_fd(), lua_l.as_raw_fd()],
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| {
        // Auth protocol: handshake, then a successful PLAIN.
        let s = UnixStream::connect(&auth).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut line = String::new();
        while line.trim_end() != "DONE" {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "no handshake");
        }
        let resp = authd::b64(b"\0alice@example.org\0pw");
        w.write_all(
            format!("VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp={resp}\n")
                .as_bytes(),
        )
        .unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("OK\t1\tuser=alice@example.org"),
            "{line:?}"
        );
        // Dict protocol on the second inherited socket.
        let s = UnixStream::connect(&dict).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        w.write_all(b"H3\t2\t0\t\tauth\nLshared/userdb/alice@example.org\talice@example.org\n")
            .unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("O{"), "{line:?}");
        // The Lua channel on the third, matched by its path.
        let mut c = authd::LuaClient::connect_raw(&lua);
        c.send("VERSION\t1\n");
        let l = c.ask("USER\t1\talice@example.org");
        assert!(l.starts_with("OK\t1\talice@example.org\tuid="), "{l:?}");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
