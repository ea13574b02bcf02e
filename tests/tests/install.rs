//! What docs/INSTALL.md tells an admin to do loads on the lane's stock Postfix and Dovecot
//! (issue 16 item 4: Debian 13 word for word, Postfix 3.10 with the same `contrib/postfix`
//! lines). The lanes' other tests run the same contrib files through real mail; these check
//! the edits themselves: INSTALL.md's `sed` line on the distribution's own `10-auth.conf`,
//! and the contrib Postfix lines appended to the distribution's own main.cf/master.cf, with
//! no warning from Postfix.

use std::path::Path;
use std::process::Command;

use vmail_test_support::e2e::Lane;

const INSTALL: &str = include_str!("../../docs/INSTALL.md");
use vmail_test_support::contrib::{
    CONTRIB_LUA_23 as LUA_CONF_23, CONTRIB_LUA_24 as LUA_CONF_24, CONTRIB_MAIN_CF as MAIN_CF,
    CONTRIB_MASTER_CF as MASTER_CF, CONTRIB_SIEVE_23, CONTRIB_SIEVE_24,
};

/// The one command INSTALL.md gives for `10-auth.conf`.
fn install_sed_line() -> &'static str {
    let lines: Vec<&str> = INSTALL
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("sed -i") && l.ends_with("/etc/dovecot/conf.d/10-auth.conf"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "docs/INSTALL.md: expected one `sed -i ... /etc/dovecot/conf.d/10-auth.conf` line"
    );
    lines[0]
}

/// The file INSTALL.md tells this release to install into conf.d (of `v23` for Dovecot 2.3,
/// `v24` for 2.4, as (path in the tree, text)), checked to be named there.
fn conf_for(lane: &Lane, v23: (&str, &'static str), v24: (&str, &'static str)) -> &'static str {
    let (path, text) = if lane.is_debian13() { v24 } else { v23 };
    assert!(
        INSTALL.contains(&format!("install -m 0644 {path} /etc/dovecot/conf.d/")),
        "docs/INSTALL.md does not install {path}"
    );
    text
}

/// contrib's Lua passdb/userdb configuration for the lane's Dovecot.
fn lua_conf_for(lane: &Lane) -> &'static str {
    conf_for(
        lane,
        (
            "contrib/dovecot/conf.d/auth-vmail-lua.conf.ext",
            LUA_CONF_23,
        ),
        (
            "contrib/dovecot/2.4/conf.d/auth-vmail-lua.conf.ext",
            LUA_CONF_24,
        ),
    )
}

fn run(cmd: &mut Command, what: &str) -> (String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a {}: {out:?}", from.display());
}

#[test]
fn install_md_dovecot_step_loads_on_the_stock_configuration() {
    let Some(lane) = Lane::from_env("install: Dovecot step") else {
        return;
    };
    let dir = lane.tempdir("vmail-install-dovecot");
    // The distribution's own /etc/dovecot, as a fresh install leaves it.
    let stock = lane.root.host_path(Path::new("/etc/dovecot"));
    copy_tree(&stock, dir.path());
    let etc = dir.path().join("dovecot");
    std::fs::write(
        etc.join("conf.d/auth-vmail-lua.conf.ext"),
        lua_conf_for(&lane),
    )
    .expect("install the conf");
    let sed = install_sed_line().replace(
        "/etc/dovecot/conf.d/10-auth.conf",
        &etc.join("conf.d/10-auth.conf").display().to_string(),
    );
    run(
        Command::new("sh").arg("-c").arg(&sed),
        "INSTALL.md's sed line",
    );
    let auth = std::fs::read_to_string(etc.join("conf.d/10-auth.conf")).expect("10-auth.conf");
    let includes: Vec<&str> = auth.lines().filter(|l| l.starts_with("!include")).collect();
    assert_eq!(
        includes,
        ["!include auth-vmail-lua.conf.ext"],
        "10-auth.conf after INSTALL.md's sed line"
    );
    let conf = etc.join("dovecot.conf");
    let (out, err) = run(
        lane.root.command("doveconf").arg("-c").arg(&conf).arg("-n"),
        "doveconf -n",
    );
    assert!(!err.to_lowercase().contains("warning"), "doveconf: {err}");
    // What Dovecot will use: the Lua passdb and userdbs, and nothing of the system users.
    let lua = out.matches("vmail-auth.lua").count();
    assert_eq!(lua, 2, "doveconf -n: the lua passdb and userdb:\n{out}");
    assert!(
        !out.contains("pam"),
        "the PAM passdb is still there:\n{out}"
    );
    assert!(
        !out.contains("driver = passwd") && !out.contains("userdb passwd"),
        "the passwd userdb is still there:\n{out}"
    );
}

/// Issue 19: the Sieve file INSTALL.md installs loads beside the distribution's own
/// `90-sieve.conf` (package dovecot-sieve) with no warning, and gives Dovecot's LDA the sieve
/// plugin and the active script vmail-lda looks for.
#[test]
fn install_md_sieve_step_loads_on_the_stock_configuration() {
    let Some(lane) = Lane::from_env("install: Sieve step") else {
        return;
    };
    let text = conf_for(
        &lane,
        (
            "contrib/dovecot/conf.d/90-vmail-sieve.conf",
            CONTRIB_SIEVE_23,
        ),
        (
            "contrib/dovecot/2.4/conf.d/90-vmail-sieve.conf",
            CONTRIB_SIEVE_24,
        ),
    );
    let dir = lane.tempdir("vmail-install-sieve");
    copy_tree(&lane.root.host_path(Path::new("/etc/dovecot")), dir.path());
    let etc = dir.path().join("dovecot");
    assert!(
        etc.join("conf.d/90-sieve.conf").exists(),
        "dovecot-sieve is not installed on lane {} (run scripts/test-deps)",
        lane.name
    );
    std::fs::write(etc.join("conf.d/90-vmail-sieve.conf"), text).expect("install the conf");
    let (out, err) = run(
        lane.root
            .command("doveconf")
            .arg("-c")
            .arg(etc.join("dovecot.conf"))
            .arg("-n"),
        "doveconf -n",
    );
    assert!(!err.to_lowercase().contains("warning"), "doveconf: {err}");
    let lda = &out[out.find("protocol lda {").expect("a protocol lda section")..];
    let lda = &lda[..lda.find("\n}").unwrap_or(lda.len())];
    assert!(lda.contains("sieve"), "no sieve plugin for the LDA:\n{out}");
    assert!(lda.contains("stats_writer_socket_path"), "{out}");
    // Global: it would let any sender's `-m ${extension}` create folders (and hold for LMTP).
    assert!(!out.contains("lda_mailbox_autocreate"), "{out}");
    let active = if lane.is_debian13() {
        "active_path = ~/.dovecot.sieve"
    } else {
        "active=~/.dovecot.sieve"
    };
    assert!(out.contains(active), "no {active}:\n{out}");
    assert_eq!(
        vmail_config::LdaConfig::default().sieve_script,
        ".dovecot.sieve",
        "the script vmail-lda looks for by default"
    );
}

#[test]
fn contrib_postfix_lines_load_without_warnings_on_the_stock_configuration() {
    let Some(lane) = Lane::from_env("install: Postfix step") else {
        return;
    };
    let dir = lane.tempdir("vmail-install-postfix");
    let stock = lane.root.host_path(Path::new("/etc/postfix"));
    copy_tree(&stock, dir.path());
    let etc = dir.path().join("postfix");
    // A Postfix installed with "No configuration" (as scripts/test-deps does) has no
    // main.cf: start from Debian's template, as such an admin would.
    if !etc.join("main.cf").exists() {
        let dist = lane
            .root
            .host_path(Path::new("/usr/share/postfix/main.cf.dist"));
        std::fs::copy(&dist, etc.join("main.cf"))
            .unwrap_or_else(|e| panic!("{}: {e}", dist.display()));
    }
    for (file, add) in [("main.cf", MAIN_CF), ("master.cf", MASTER_CF)] {
        let path = etc.join(file);
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push('\n');
        text.push_str(add);
        std::fs::write(&path, text).expect("append the contrib lines");
    }
    let (version, _) = run(
        lane.root
            .command("postconf")
            .arg("-c")
            .arg(&etc)
            .args(["-h", "mail_version"]),
        "postconf mail_version",
    );
    let want = if lane.is_debian13() { "3.10." } else { "3.7." };
    assert!(
        version.starts_with(want),
        "Postfix {version} on {}",
        lane.name
    );
    for flag in ["-n", "-M", "-P"] {
        let (out, err) = run(
            lane.root.command("postconf").arg("-c").arg(&etc).arg(flag),
            &format!("postconf {flag}"),
        );
        assert!(
            !err.contains("warning"),
            "Postfix {} warns about the contrib lines (postconf {flag}):\n{err}",
            version.trim()
        );
        if flag == "-M" {
            assert!(
                out.contains("argv=/usr/bin/vmail-lda"),
                "the vmail transport: {out}"
            );
        }
    }
}
