//! The vmail-authd binary as an init system runs it: its exit status on a configuration
//! error, which the unit's `RestartPreventExitStatus=` names.

use std::process::{Command, Output};

fn run(args: &[&std::ffi::OsStr]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmail-authd"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// A configuration that cannot be used exits with EX_CONFIG (78), so systemd does not
/// restart a daemon that can only fail again until the admin edits the file; a usage error
/// stays clap's 2.
#[test]
fn bad_config_exits_with_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vmail.toml");
    // Invalid value, named in the message.
    std::fs::write(&cfg, "[authd]\nauth_socket_mode = \"0666\"\n").unwrap();
    let (out, err) = run(&["--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("authd.auth_socket_mode"), "{err}");
    // Not TOML.
    std::fs::write(&cfg, "[authd\n").unwrap();
    let (out, err) = run(&["--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.starts_with("Error: "), "{err}");
    // Not there.
    let missing = dir.path().join("missing.toml");
    let (out, err) = run(&["--config".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(78), "{err}");
    // A database password file every local user may read.
    let (_, database) = vmail_test_support::world_readable_password_database(dir.path());
    std::fs::write(
        &cfg,
        format!(
            "{database}[authd]\nauth = [\"unix:{d}/auth.sock\"]\ndict = []\nlua = []\nauth_socket_group = \"\"\nuser = \"\"\npid_file = \"{d}/authd.pid\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let (out, err) = run(&["--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    // `--check` finds it too (the unit's comment sends the admin there).
    let (out, err) = run(&["--check".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    // Dovecot's group on a host without Dovecot: named by its key, before anything is bound
    // (the auth socket's group exists, the Lua socket's does not).
    std::fs::write(
        &cfg,
        format!(
            "[authd]\nauth = [\"unix:{d}/auth.sock\"]\ndict = []\nlua = [\"unix:{d}/lua.sock\"]\n\
             auth_socket_group = \"root\"\nlua_socket_group = \"no-such-group-vmail\"\n\
             user = \"\"\npid_file = \"{d}/authd.pid\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    for check in [true, false] {
        let mut args = vec!["--config".as_ref(), cfg.as_os_str()];
        if check {
            args.push("--check".as_ref());
        }
        let (out, err) = run(&args);
        assert_eq!(out.status.code(), Some(78), "check {check}: {err}");
        assert!(
            err.contains("authd.lua_socket_group: no such group \"no-such-group-vmail\""),
            "{err}"
        );
        assert!(
            !dir.path().join("auth.sock").exists(),
            "bound before the check"
        );
    }
    let (out, _) = run(&["--no-such-option".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
}
