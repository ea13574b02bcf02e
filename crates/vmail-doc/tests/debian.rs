//! The Debian package's metadata against the workspace (scripts/package builds it,
//! scripts/test-package installs it): its version is the programs' version, it installs
//! every program vmail-doc writes a page for, from where scripts/build-release puts it,
//! and every unit of systemd/.

use std::path::{Path, PathBuf};

use vmail_doc::programs;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn the_changelog_names_the_workspace_version() {
    let changelog = read("debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .split_once(" (")
        .and_then(|(name, rest)| (name == "vmail").then_some(rest))
        .and_then(|rest| rest.split_once(')'))
        .map(|(v, _)| v);
    assert_eq!(
        version,
        Some(env!("CARGO_PKG_VERSION")),
        "debian/changelog's first line: {first}"
    );
}

#[test]
fn every_program_and_unit_is_installed() {
    let install = read("debian/vmail.install");
    let sources: Vec<&str> = install
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for p in programs() {
        let name = p.name().to_string();
        let bin = format!("target/release/{name}");
        assert!(
            sources.contains(&bin.as_str()),
            "{bin} not in debian/vmail.install"
        );
        // Daemons in sbin as the units' ExecStart= says, tools in bin.
        let line = install.lines().find(|l| l.starts_with(&bin)).unwrap();
        let daemon = ["vmail-lookupd", "vmail-authd", "vmail-lmtpd"].contains(&name.as_str());
        let dir = if daemon { "usr/sbin" } else { "usr/bin" };
        assert!(line.ends_with(dir), "{line}: expected {dir}");
    }
    for unit in std::fs::read_dir(root().join("systemd")).unwrap() {
        let name = unit.unwrap().file_name().into_string().unwrap();
        let ext = name.rsplit('.').next().unwrap();
        assert!(
            sources.contains(&format!("systemd/*.{ext}").as_str()),
            "systemd/{name} not in debian/vmail.install"
        );
    }
    for service in ["vmail-lookupd", "vmail-authd"] {
        let unit = read(&format!("systemd/{service}.service"));
        assert!(
            unit.contains(&format!("ExecStart=/usr/sbin/{service} ")),
            "{service}.service runs another path than the package installs"
        );
    }
}
