use super::*;
use std::path::Path;

fn p() -> &'static Path {
    Path::new("test.toml")
}

#[test]
fn empty_file_is_the_embedded_default() {
    let c = parse("", p()).unwrap();
    assert_eq!(c.database.backend, Backend::Sqlite);
    assert!(c.database.sqlite_path.ends_with("vmail.db"));
    assert_eq!(c.address.recipient_delimiter, "+");
    assert_eq!(c.passwords.default_scheme, "CRYPT");
}

#[test]
fn unknown_key_names_key_and_file() {
    let e = parse("[database]\nbakend = \"mysql\"\n", p())
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.toml"), "{e}");
    assert!(e.contains("bakend"), "{e}");
}

#[test]
fn bad_value_names_key() {
    let e = parse("[database]\nbackend = \"oracle\"\n", p())
        .unwrap_err()
        .to_string();
    assert!(e.contains("backend") && e.contains("oracle"), "{e}");
    let e = parse("[address]\nrecipient_delimiter = \"a\"\n", p())
        .unwrap_err()
        .to_string();
    assert!(e.contains("address.recipient_delimiter"), "{e}");
    let e = parse("[mailbox]\nhome = \"/x/%z\"\n", p())
        .unwrap_err()
        .to_string();
    assert!(e.contains("mailbox.home"), "{e}");
    let e = parse("[database]\npool_max = 0\n", p())
        .unwrap_err()
        .to_string();
    assert!(e.contains("pool_max"), "{e}");
    for (text, key) in [
        ("[database]\nbatch_keys = 0\n", "database.batch_keys"),
        ("[database]\nbatch_keys = 5000\n", "database.batch_keys"),
        (
            "[database]\nbatch_in_flight = 0\n",
            "database.batch_in_flight",
        ),
        ("[lda]\nlookupd = \"/run/vmail/lookupd\"\n", "lda.lookupd"),
        ("[lda]\nlookupd = \"unix:relative\"\n", "lda.lookupd"),
        ("[lda]\nlookupd = \"inet:127.0.0.1\"\n", "lda.lookupd"),
        ("[lda]\nlookupd_timeout_ms = 0\n", "lda.lookupd_timeout_ms"),
        // Issue 19: the Sieve script stays under the recipient's home.
        ("[lda]\nsieve_script = \"../x\"\n", "lda.sieve_script"),
        (
            "[lda]\nsieve_script = \"sieve/../../x\"\n",
            "lda.sieve_script",
        ),
        ("[lda]\nsieve_script = \"/etc/x\"\n", "lda.sieve_script"),
        ("[lda]\nsieve_script = \"~/../x\"\n", "lda.sieve_script"),
        ("[lda]\nsieve_script = \".\"\n", "lda.sieve_script"),
        ("[lda]\nsieve_script = \"~/\"\n", "lda.sieve_script"),
        ("[lda]\nsieve_script = \"~/~/x\"\n", "lda.sieve_script"),
        ("[lda]\nsieve_script = \"~alice/x\"\n", "lda.sieve_script"),
        ("[lda]\ndovecot_lda = \"dovecot-lda\"\n", "lda.dovecot_lda"),
        (
            "[lda]\ndovecot_lda_timeout_ms = 0\n",
            "lda.dovecot_lda_timeout_ms",
        ),
        (
            "[lda]\ndovecot_lda_timeout_ms = 1000000\n",
            "lda.dovecot_lda_timeout_ms",
        ),
        (
            "[lookupd]\nlda_socket_mode = \"0666\"\n",
            "lookupd.lda_socket_mode",
        ),
    ] {
        let e = parse(text, p()).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    for good in [
        "[lda]\nlookupd = \"unix:/run/vmail/lookupd\"\n",
        "[lda]\nlookupd = \"inet:127.0.0.1:7010\"\n",
        "[lda]\nsieve_script = \"\"\n",
        "[lda]\nsieve_script = \"sieve/active.sieve\"\n",
        // Dovecot's spelling of the default.
        "[lda]\nsieve_script = \"~/.dovecot.sieve\"\n",
        "[lda]\ndovecot_lda_timeout_ms = 999999\n",
    ] {
        assert!(parse(good, p()).is_ok(), "{good}");
    }
}

/// Files written before issue 15 load unchanged: `max_connections` now applies to each
/// listener, and the new deadlines and metrics budget take their defaults.
#[test]
fn connection_limits_are_per_listener_and_old_files_load() {
    let c = parse(
        "[lookupd]\nmax_connections = 50\nidle_timeout_ms = 2000\n[authd]\nmax_connections = 60\n",
        p(),
    )
    .unwrap();
    assert_eq!(c.lookupd.max_connections, 50);
    assert_eq!(c.lookupd.request_read_timeout_ms, 5_000);
    assert_eq!(c.lookupd.metrics_max_connections, 8);
    assert_eq!(c.authd.max_connections, 60);
    assert_eq!(c.authd.request_read_timeout_ms, 5_000);
    assert_eq!(c.authd.metrics_max_connections, 8);
    for text in [
        "[lookupd]\nrequest_read_timeout_ms = 0\n",
        "[lookupd]\nmetrics_max_connections = 0\n",
        "[authd]\nrequest_read_timeout_ms = 0\n",
        "[authd]\nmetrics_max_connections = 0\n",
    ] {
        let e = parse(text, p()).unwrap_err().to_string();
        assert!(e.contains("max_connections"), "{text}: {e}");
    }
}

#[test]
fn authd_limits_are_checked() {
    for (text, key) in [
        ("[authd]\nmax_delay_ms = 10000\n", "authd.max_delay_ms"),
        (
            "[authd]\nfailure_delay_ms = 9000\nmax_delay_ms = 8000\n",
            "authd.max_delay_ms",
        ),
        (
            "[authd]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
            "authd.trusted_networks",
        ),
        (
            "[authd]\ntrusted_networks = [\"example.org\"]\n",
            "authd.trusted_networks",
        ),
        (
            "[authd]\nauth_socket_mode = \"0666\"\n",
            "authd.auth_socket_mode",
        ),
        ("[authd]\nipv6_prefix = 0\n", "authd.ipv6_prefix"),
        ("[authd]\nlua = [\"inet:127.0.0.1:9000\"]\n", "authd.lua"),
        ("[authd]\nlua = [\"auth-lua\"]\n", "authd.lua"),
        ("[authd]\nlua_peers = []\n", "authd.lua_peers"),
        (
            "[authd]\nlua_socket_mode = \"0662\"\n",
            "authd.lua_socket_mode",
        ),
        ("[authd]\nrehash = true\n", "rehash"),
    ] {
        let e = parse(text, p()).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
    let c = parse(
        "[authd]\ntrusted_networks = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
        p(),
    )
    .unwrap();
    assert_eq!(c.authd.trusted_networks.len(), 2);
    assert_eq!(parse_cidr("2001:db8::1").unwrap().1, 128);
    assert!(c.authd.pid_file.ends_with("authd.pid"));
}

#[test]
fn check_masks_the_password() {
    let c = parse(
        "[database]\nbackend = \"mysql\"\npassword = \"hunter2\"\n",
        p(),
    )
    .unwrap();
    let shown = c.to_toml_masked();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("********"));
    assert!(!format!("{c:?}").contains("hunter2"));
    // The masked rendering is itself a valid config.
    parse(&shown, p()).unwrap();
}

#[test]
fn password_file_is_read_first_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pw");
    std::fs::write(&f, "s3cret\nignored\n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "[database]\nbackend = \"mysql\"\npassword_file = \"{}\"\n",
        f.display()
    );
    let c = parse(&text, p()).unwrap();
    assert_eq!(c.database_password().unwrap().unwrap().expose(), "s3cret");
    let both = format!("{text}password = \"x\"\n");
    assert!(parse(&both, p()).is_err());
}

#[test]
fn password_file_others_may_read_or_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("db-password");
    std::fs::write(&f, "s3cret\n").unwrap();
    let text = format!(
        "[database]\nbackend = \"mysql\"\npassword_file = \"{}\"\n",
        f.display()
    );
    let c = parse(&text, p()).unwrap();
    for (mode, what) in [
        (0o644, "read"),
        (0o602, "replace"),
        (0o666, "read and replace"),
    ] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = c.database_password().unwrap_err().to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
        assert!(e.contains(&format!("every local user {what} the")), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
    // Group-readable is how the LDA (group vmail) gets it: root:vmail 0640.
    for mode in [0o640, 0o600, 0o400] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(c.database_password().unwrap().unwrap().expose(), "s3cret");
    }
}

#[test]
fn explicit_missing_file_is_an_error() {
    let e = load(Some(Path::new("/nonexistent/vmail.toml"))).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/vmail.toml"));
}

#[test]
fn mailbox_templates_must_separate_accounts() {
    for (text, key) in [
        ("[mailbox]\nhome = \"/home/vmail/%d\"\n", "mailbox.home"),
        ("[mailbox]\nhome = \"/home/vmail/%d%n\"\n", "mailbox.home"),
        ("[mailbox]\nhome = \"vmail/%d/%n\"\n", "mailbox.home"),
        ("[mailbox]\nhome = \"/home/../%d/%n\"\n", "mailbox.home"),
        (
            "[mailbox]\nmail = \"maildir:/var/mail/%n\"\n",
            "mailbox.mail",
        ),
        ("[mailbox]\nmail = \"maildir:Maildir\"\n", "mailbox.mail"),
        ("[mailbox]\nmail = \"maildir:~/../x\"\n", "mailbox.mail"),
        (
            "[mailbox]\nhome = \"\"\nmail = \"maildir:~/Maildir\"\n",
            "mailbox.mail",
        ),
        (
            "[mailbox]\nmap_template = \"%d/\"\n",
            "mailbox.map_template",
        ),
    ] {
        let e = parse(text, p()).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    for ok in [
        "[mailbox]\nhome = \"/srv/mail/%u\"\nmail = \"maildir:~/Maildir:LAYOUT=fs\"\n",
        "[mailbox]\nhome = \"\"\nmail = \"maildir:/var/vmail/%d/%n/Maildir\"\n",
        "[mailbox]\nhome = \"/tmp/.tmpXY/%d/%n\"\n",
    ] {
        parse(ok, p()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// `to_toml_changed` (vmailctl --check): only what differs from the defaults, secrets
/// masked, nothing for a default configuration, and it parses back to the same config.
#[test]
fn toml_changed_lists_only_differences() {
    assert_eq!(parse("", p()).unwrap().to_toml_changed(), "");
    let c = parse(
        "[database]\nbackend = \"mysql\"\npassword = \"hunter2\"\n[address]\nfold_local_part = false\n",
        p(),
    )
    .unwrap();
    let out = c.to_toml_changed();
    assert!(out.contains("backend = \"mysql\""), "{out}");
    assert!(out.contains("fold_local_part = false"), "{out}");
    assert!(
        out.contains("********") && !out.contains("hunter2"),
        "{out}"
    );
    assert!(!out.contains("sqlite_path"), "defaults left out: {out}");
    assert!(
        !out.contains("[lookupd]"),
        "untouched sections left out: {out}"
    );
    let back = parse(&out, p()).unwrap();
    assert_eq!(back.to_toml_changed(), out);
}

/// Issue 19: `[lmtpd]` defaults fit Postfix's lmtp client, and bad values name their key.
#[test]
fn lmtpd_defaults_and_checks() {
    let c = parse("", p()).unwrap();
    let l = &c.lmtpd;
    assert_eq!(l.listen, ["unix:/var/spool/postfix/private/vmail-lmtp"]);
    assert_eq!(l.socket_group, "postfix");
    assert_eq!(l.user, "vmail");
    // Postfix's lmtp_data_xfer_timeout.
    assert_eq!(l.request_read_timeout_ms, 180_000);
    assert_eq!(l.size_limit(), u64::MAX);
    assert!(l.spool.ends_with("lmtp"), "{:?}", l.spool);
    assert!(l.pid_file.ends_with("lmtpd.pid"), "{:?}", l.pid_file);
    let c = parse("[lmtpd]\nmax_message_size = 1000\n", p()).unwrap();
    assert_eq!(c.lmtpd.size_limit(), 1000);
    for (text, key) in [
        ("[lmtpd]\nlisten = []\n", "lmtpd.listen"),
        (
            "[lmtpd]\nlisten = [\"private/vmail-lmtp\"]\n",
            "lmtpd.listen",
        ),
        ("[lmtpd]\nlisten = [\"inet:127.0.0.1\"]\n", "lmtpd.listen"),
        ("[lmtpd]\nsocket_mode = \"0666\"\n", "lmtpd.socket_mode"),
        ("[lmtpd]\nmax_connections = 0\n", "lmtpd.max_connections"),
        (
            "[lmtpd]\nrequest_read_timeout_ms = 0\n",
            "lmtpd.max_connections",
        ),
        ("[lmtpd]\nmax_recipients = 0\n", "lmtpd.max_recipients"),
        ("[lmtpd]\nspool = \"lmtp\"\n", "lmtpd.spool"),
        ("[lmtpd]\nno_such_key = 1\n", "no_such_key"),
    ] {
        let e = parse(text, p()).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
