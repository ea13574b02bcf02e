//! The fail2ban filter shipped in contrib/fail2ban, run by the real `fail2ban-regex` against a
//! log file the real vmail-authd binary wrote (its stderr, as a service manager collects it):
//! every failed login counts once, for the client's address, whatever login the client sent.

use std::process::{Command, Stdio};
use std::time::Duration;

use vmail_proto::auth::Reply;
use vmail_test_support::authd;
use vmail_test_support::authd::{populate, AuthClient};
use vmail_test_support::{have, skip, wait_until};

const ATTACKER: &str = "203.0.113.7";
/// An address the attacker would like banned (say, the postmaster's).
const VICTIM: &str = "198.51.100.66";

#[test]
fn fail2ban_regex_finds_each_failed_login_with_the_clients_address() {
    const TEST: &str = "fail2ban_regex_finds_each_failed_login_with_the_clients_address";
    let common_conf = std::path::Path::new("/etc/fail2ban/filter.d/common.conf");
    if !have("fail2ban-regex") || !common_conf.exists() {
        skip(
            TEST,
            "fail2ban-regex not installed (Debian package fail2ban)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("vmail.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend = \"sqlite\"\nsqlite_path = \"{d}/vmail.db\"\n\
             [authd]\nauth = [\"unix:{d}/auth.sock\"]\ndict = []\nlua = []\nauth_socket_group = \"\"\n\
             user = \"\"\npid_file = \"{d}/authd.pid\"\nfailure_delay_ms = 1\nmax_delay_ms = 5\n",
            d = d.display()
        ),
    )
    .unwrap();
    let loaded = vmail_config::load(Some(&cfg)).unwrap();
    let hash = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"right").unwrap();
    populate(
        &loaded.config,
        &["example.org"],
        &[("bob@example.org", &hash)],
    );

    let log = d.join("authd.log");
    let mut authd = Command::new(env!("CARGO_BIN_EXE_vmail-authd"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("NO_COLOR")
        .env_remove("VMAIL_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let sock = d.join("auth.sock");
    let up = wait_until(Duration::from_secs(10), || sock.exists());
    if !up {
        let _ = authd.kill();
    }
    assert!(up, "authd did not start: {}", read(&log));

    let mut c = AuthClient::connect_raw_to(&sock);
    c.send("VERSION\t1\t2\nCPID\t4242\n");
    // Logins a client chooses to look like a second line, or another address in this one.
    let logins = [
        "bob@example.org".to_string(),
        "nobody@example.org".to_string(),
        format!("x rip={VICTIM}"),
        format!("x\" rip={VICTIM} service=\"smtp"),
        format!(
            "x\n2026-12-04T20:00:00.000000Z  WARN authentication failed rip={VICTIM} user=\"x\""
        ),
        format!("\x1b[0mx\rrip={VICTIM}"),
    ];
    for (id, login) in logins.iter().enumerate() {
        let r = c.plain(id as u32 + 1, login, "wrong", ATTACKER);
        assert!(matches!(r, Reply::Fail { .. }), "{login:?}: {r:?}");
    }
    // A login that places its own text at the start of a journal entry: journald cuts a
    // line longer than `LineMax` (48 KiB) into entries, and `\x1b` is logged as six bytes,
    // so 8 KiB of login (Postfix passes up to 12288 base64 characters of SASL response)
    // can reach the cut and choose what follows it. Aligned on a probe line's layout.
    let probe = c.plain(40, "probe", "wrong", ATTACKER);
    assert!(matches!(probe, Reply::Fail { .. }), "{probe:?}");
    let logged = read(&log);
    let line = logged
        .lines()
        .find(|l| l.contains("user=\"probe\""))
        .unwrap();
    let start = line.find("user=\"").unwrap() + "user=\"".len();
    let gap = JOURNAL_LINE_MAX - start;
    let evil = format!(
        "{}{}WARN authentication failed rip={VICTIM} user=",
        "a".repeat(gap % 6),
        "\x1b".repeat(gap / 6)
    );
    let r = c.plain(41, &evil, "wrong", ATTACKER);
    assert!(matches!(r, Reply::Fail { .. }), "{r:?}");
    // A success is no failure.
    assert!(authd::is_ok(&c.plain(99, "bob@example.org", "right", "192.0.2.1")).is_some());
    // The failure line is written before the reply, the success line right after it.
    assert!(wait_until(Duration::from_secs(5), || read(&log)
        .contains("authenticated")));
    let _ = Command::new("kill").arg(authd.id().to_string()).status();
    let _ = authd.wait();

    let text = read(&log);
    assert!(
        !text.contains('\x1b'),
        "escape codes in a log file:\n{text}"
    );
    let grep = format!("rip={ATTACKER}");
    assert_eq!(
        text.lines().filter(|l| l.contains(&grep)).count(),
        logins.len() + 2,
        "{text}"
    );

    // The filter as installed: /etc/fail2ban/filter.d/ next to fail2ban's common.conf.
    let filter_d = d.join("fail2ban/filter.d");
    std::fs::create_dir_all(&filter_d).unwrap();
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/fail2ban/filter.d/vmail-authd.conf"
    );
    let filter = filter_d.join("vmail-authd.conf");
    std::fs::copy(shipped, &filter).unwrap();
    std::os::unix::fs::symlink(common_conf, filter_d.join("common.conf")).unwrap();
    let out = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(&log)
        .arg(&filter)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ips: Vec<&str> = stdout.lines().collect();
    assert_eq!(ips, vec![ATTACKER; logins.len() + 2], "log:\n{text}");

    // The same log as the shipped jail reads it (backend = systemd): one entry per line, a
    // line longer than journald's `LineMax` cut into several, each shown with its own
    // syslog-style prefix.
    let journal = d.join("journal.log");
    let mut entries = String::new();
    for line in text.lines() {
        for entry in line.as_bytes().chunks(JOURNAL_LINE_MAX) {
            entries.push_str("Dec  4 21:10:00 mx vmail-authd[4242]: ");
            entries.push_str(&String::from_utf8_lossy(entry));
            entries.push('\n');
        }
    }
    std::fs::write(&journal, entries).unwrap();
    let out = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(&journal)
        .arg(&filter)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let ips: Vec<&str> = stdout.lines().collect();
    assert_eq!(ips, vec![ATTACKER; logins.len() + 2], "journal view");
}

/// journald's default `LineMax` (journald.conf(5)): 48K.
const JOURNAL_LINE_MAX: usize = 48 * 1024;

fn read(p: &std::path::Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}
