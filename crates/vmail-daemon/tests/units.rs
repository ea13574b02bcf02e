//! The shipped systemd units (`systemd/`), read as they are installed: hardened alike, no
//! restart after a configuration error ([`vmail_daemon::EX_CONFIG`]), each socket unit
//! naming the paths and group of the listeners the shipped configuration binds (the daemon
//! takes an inherited socket by its path), and `systemd-analyze verify` clean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SERVICES: [&str; 3] = [
    "vmail-lookupd.service",
    "vmail-authd.service",
    "vmail-lmtpd.service",
];
const SOCKETS: [&str; 4] = [
    "vmail-lookupd.socket",
    "vmail-authd.socket",
    "vmail-authd-dovecot.socket",
    "vmail-lmtpd.socket",
];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systemd")
}

/// A unit file as `Section.Key` -> every value given (comments and blank lines left out).
/// The shipped units never continue a line with `\`, so that is not handled.
fn unit(name: &str) -> BTreeMap<String, Vec<String>> {
    let path = systemd_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: not key=value: {line:?}"));
        keys.entry(format!("{section}.{k}"))
            .or_default()
            .push(v.to_string());
    }
    keys
}

fn one<'a>(u: &'a BTreeMap<String, Vec<String>>, name: &str, key: &str) -> &'a str {
    match u.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{name}: {key}: expected one value, got {other:?}"),
    }
}

/// Every space-separated word of every `key=` line.
fn words(u: &BTreeMap<String, Vec<String>>, key: &str) -> Vec<String> {
    u.get(key)
        .into_iter()
        .flatten()
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

#[test]
fn services_are_hardened_alike_and_stop_on_a_configuration_error() {
    let wanted = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("UMask", "0027"),
        ("SyslogFacility", "mail"),
        ("Restart", "on-failure"),
    ];
    for name in SERVICES {
        let u = unit(name);
        // vmail-lmtpd writes the Maildirs under /home/vmail: the rest of /home is an empty
        // tmpfs and only that directory is bound in.
        let home = if name == "vmail-lmtpd.service" {
            assert_eq!(words(&u, "Service.BindPaths"), ["-/home/vmail"], "{name}");
            "tmpfs"
        } else {
            "yes"
        };
        assert_eq!(one(&u, name, "Service.ProtectHome"), home, "{name}");
        for (key, value) in wanted {
            assert_eq!(
                one(&u, name, &format!("Service.{key}")),
                value,
                "{name}: {key}"
            );
        }
        assert_eq!(
            one(&u, name, "Service.RestartPreventExitStatus"),
            vmail_daemon::EX_CONFIG.to_string(),
            "{name}"
        );
        // Until the privilege drop, root needs DAC_OVERRIDE to enter /var/lib/vmail (0750
        // vmail) and Postfix's private/ (0700 postfix); nothing more than the drop itself.
        let mut caps = words(&u, "Service.CapabilityBoundingSet");
        caps.sort();
        assert_eq!(
            caps,
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETGID", "CAP_SETUID"],
            "{name}"
        );
        // A host without Postfix's spool or a state directory must still start the unit.
        for path in words(&u, "Service.ReadWritePaths") {
            assert!(path.starts_with('-'), "{name}: ReadWritePaths {path}");
        }
        // journalctl -t and mail.log name the program (fail2ban matches the unit instead).
        let program = name.trim_end_matches(".service");
        assert_eq!(one(&u, name, "Service.SyslogIdentifier"), program);
        assert!(
            one(&u, name, "Service.ExecStart").starts_with(&format!("/usr/sbin/{program} ")),
            "{name}"
        );
    }
}

/// The configurations that become /etc/vmail/vmail.toml: the Debian package's conffile
/// (`debian/vmail.toml`, SQLite) and the example for classic MySQL tables that docs/INSTALL.md
/// installs by hand. The units serve both unchanged.
fn shipped_configs() -> Vec<(&'static str, vmail_config::Config)> {
    ["debian/vmail.toml", "contrib/vmail/vmail.toml"]
        .into_iter()
        .map(|rel| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(rel);
            (rel, vmail_config::load(Some(&path)).unwrap().config)
        })
        .collect()
}

/// `ListenStream=` paths as listener specs (`unix:/path`), and the one `SocketGroup=`.
fn socket(name: &str) -> (Vec<String>, String) {
    let u = unit(name);
    let listen = words(&u, "Socket.ListenStream")
        .into_iter()
        .map(|p| format!("unix:{p}"))
        .collect();
    (listen, one(&u, name, "Socket.SocketGroup").to_string())
}

#[test]
fn each_socket_unit_matches_the_listeners_and_groups_of_the_shipped_configuration() {
    for (file, c) in shipped_configs() {
        assert_eq!(
            socket("vmail-lookupd.socket"),
            (c.lookupd.socketmap.clone(), c.lookupd.socket_group.clone()),
            "{file}"
        );
        assert_eq!(
            socket("vmail-lmtpd.socket"),
            (c.lmtpd.listen.clone(), c.lmtpd.socket_group.clone()),
            "{file}"
        );
        // authd's sockets belong to two groups, so to two socket units of one service.
        assert_eq!(
            socket("vmail-authd.socket"),
            (c.authd.auth.clone(), c.authd.auth_socket_group.clone()),
            "{file}"
        );
        assert_ne!(c.authd.auth_socket_group, c.authd.dict_socket_group);
        assert_eq!(c.authd.dict_socket_group, c.authd.lua_socket_group);
        let dovecot: Vec<String> = c.authd.dict.iter().chain(&c.authd.lua).cloned().collect();
        assert_eq!(
            socket("vmail-authd-dovecot.socket"),
            (dovecot, c.authd.dict_socket_group.clone()),
            "{file}"
        );
        // Both units create /run/vmail, where lookupd's LDA socket and authd's Dovecot
        // sockets live.
        for l in c
            .lookupd
            .lda
            .iter()
            .chain(&c.authd.dict)
            .chain(&c.authd.lua)
        {
            assert!(l.starts_with("unix:/run/vmail/"), "{file}: {l}");
        }
    }
    let d = unit("vmail-authd-dovecot.socket");
    assert_eq!(
        one(&d, "vmail-authd-dovecot.socket", "Socket.Service"),
        "vmail-authd.service"
    );
    // The service is ordered after both sockets but does not pull them in (socket
    // activation stays optional); each socket unit wants the other, so whichever starts
    // the daemon, it is passed every socket.
    let s = unit("vmail-authd.service");
    let after = words(&s, "Unit.After");
    for sock in ["vmail-authd.socket", "vmail-authd-dovecot.socket"] {
        assert!(
            after.iter().any(|x| x == sock),
            "vmail-authd.service After: {after:?}"
        );
    }
    assert!(
        words(&s, "Unit.Wants").is_empty(),
        "vmail-authd.service pulls sockets in"
    );
    for (sock, other) in [
        ("vmail-authd.socket", "vmail-authd-dovecot.socket"),
        ("vmail-authd-dovecot.socket", "vmail-authd.socket"),
    ] {
        let w = words(&unit(sock), "Unit.Wants");
        assert!(w.iter().any(|x| x == other), "{sock} Wants: {w:?}");
    }
}

/// `systemd-analyze verify` needs no running systemd, only the units and the programs they
/// run: ExecStart= is pointed at /bin/true in a copy (the daemons are not installed here).
/// Unknown keys and bad values are only warnings to it (status 0), so any output fails.
#[test]
fn systemd_analyze_verify_is_clean() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        let msg = "SKIPPED systemd_analyze_verify_is_clean: systemd-analyze is not installed (package systemd)";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{msg} (CI=true: skips are failures; run scripts/test-deps)");
        }
        eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in SERVICES.iter().chain(&SOCKETS) {
        let text = std::fs::read_to_string(systemd_dir().join(name)).unwrap();
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("ExecStart=") {
                Some(cmd) => format!(
                    "ExecStart=/bin/true {}\n",
                    cmd.split_once(' ').map_or("", |(_, args)| args)
                ),
                None => format!("{l}\n"),
            })
            .collect();
        let copy = dir.path().join(name);
        std::fs::write(&copy, text).unwrap();
        files.push(copy);
    }
    // Every file in systemd/ is checked: a new unit must be added to the lists above.
    let shipped = std::fs::read_dir(systemd_dir()).unwrap().count();
    assert_eq!(
        shipped,
        files.len(),
        "systemd/ holds units this test does not know"
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
}
