//! The generator's output as an admin meets it: every page renders through man(1) without
//! a warning, lists every option and subcommand of its binary, and has the sections a
//! Postfix or Dovecot page has; vmail.toml(5) names every key the programs read; bash
//! completes `vmailctl us<Tab>` to `user`, and so does fish; every zsh and fish script parses.
//! Needs man-db, groff, zsh and fish (scripts/test-deps).

use std::path::{Path, PathBuf};
use std::process::Command;

use vmail_doc::{programs, write_all, Written};

fn generate() -> (tempfile::TempDir, Written) {
    let dir = tempfile::tempdir().unwrap();
    let written = write_all(&dir.path().join("man"), &dir.path().join("completions")).unwrap();
    (dir, written)
}

/// The roff source as text: escapes of `-` and font changes removed.
fn plain(roff: &str) -> String {
    let mut s = roff.replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        s = s.replace(font, "");
    }
    s
}

/// man's output without a terminal: bold as `X\bX`; keep the letters.
fn no_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
            continue;
        }
        out.push(c);
    }
    out.into_iter().collect()
}

fn page_of(written: &Written, name: &str) -> PathBuf {
    written
        .pages
        .iter()
        .find(|p| p.file_stem().and_then(|s| s.to_str()) == Some(name))
        .unwrap_or_else(|| panic!("no page for {name}: {:?}", written.pages))
        .clone()
}

#[test]
fn man_renders_every_page_without_warnings() {
    let (_dir, written) = generate();
    // Six programs and vmail.toml(5).
    assert_eq!(written.pages.len(), 7, "{:?}", written.pages);
    for page in &written.pages {
        // The page alone decides: no options or pagers from the environment, and no
        // seccomp sandbox (some container runtimes kill groff under it).
        let mut man = Command::new("man");
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("MAN") || k.starts_with("GROFF") {
                man.env_remove(&*k);
            }
        }
        let out = man
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MAN_DISABLE_SECCOMP", "1")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man(1) runs (scripts/test-deps installs man-db)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", page.display());
        assert!(stderr.trim().is_empty(), "{}: {stderr}", page.display());
        let text = no_overstrike(&String::from_utf8_lossy(&out.stdout));
        assert!(text.contains("NAME"), "{}: {text}", page.display());
        assert!(text.contains("SEE ALSO"), "{}: {text}", page.display());
    }
}

/// Every visible argument of `cmd` and its subcommands, as a page shows it.
fn visible_args(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let shown = match (arg.get_long(), arg.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => arg
                .get_value_names()
                .and_then(|v| v.first().map(|n| n.to_string()))
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase()),
        };
        out.push((path.to_string(), shown));
    }
    for sub in cmd.get_subcommands() {
        let path = format!("{path} {}", sub.get_name()).trim().to_string();
        out.push((path.clone(), path.clone()));
        visible_args(sub, &path, out);
    }
}

#[test]
fn each_page_lists_every_option_and_subcommand_of_its_binary() {
    let (_dir, written) = generate();
    for p in programs() {
        let page = plain(&std::fs::read_to_string(page_of(&written, p.name())).unwrap());
        let mut cmd = p.command.clone().disable_help_subcommand(true);
        cmd.build();
        let mut args = Vec::new();
        visible_args(&cmd, "", &mut args);
        assert!(args.len() >= 3, "{}: {args:?}", p.name());
        for (path, shown) in args {
            assert!(
                page.contains(&shown),
                "{} page lacks {shown:?} (of {path:?})",
                p.name()
            );
        }
    }
}

#[test]
fn vmailctl_page_lists_its_subcommands_with_their_help() {
    let (_dir, written) = generate();
    let page = plain(&std::fs::read_to_string(page_of(&written, "vmailctl")).unwrap());
    for line in [
        "user add EMAIL",
        "[--quota QUOTA]",
        "domain del DOMAIN",
        "[--force]",
        "query MAP KEY",
        "Quota in bytes",
    ] {
        assert!(page.contains(line), "{line:?} missing:\n{page}");
    }
}

#[test]
fn pages_have_the_sections_of_a_postfix_page() {
    let (_dir, written) = generate();
    for p in programs() {
        let page = std::fs::read_to_string(page_of(&written, p.name())).unwrap();
        let mut wanted = vec!["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES"];
        if p.name() == "vmail-lookupd" || p.name() == "vmail-authd" {
            wanted.push("SIGNALS");
        }
        wanted.extend(["\"EXIT STATUS\"", "\"SEE ALSO\""]);
        let mut at = 0;
        for section in wanted {
            let needle = format!("\n.SH {section}\n");
            let found = page[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{}: no {section} after byte {at}:\n{page}", p.name()));
            at += found + needle.len();
        }
        assert!(page.contains("/etc/vmail/vmail.toml"), "{}", p.name());
        assert_eq!(p.section, "8", "{}", p.name());
    }
}

#[test]
fn lda_pages_give_postfix_exit_statuses() {
    use vmail_lda::outcome::sysexits::*;
    let (_dir, written) = generate();
    for name in ["vmail-lda", "vmail-lda-direct"] {
        let page = std::fs::read_to_string(page_of(&written, name)).unwrap();
        let section = &page[page.find(".SH \"EXIT STATUS\"").unwrap()..];
        for status in [EX_OK, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, EX_TEMPFAIL] {
            assert!(
                section.contains(&format!(".TP\n\\fB{status}\\fR\n")),
                "{name}: {status} missing:\n{section}"
            );
        }
    }
}

#[test]
fn config_page_names_every_key_of_the_configuration_in_its_section() {
    let (_dir, written) = generate();
    let page = std::fs::read_to_string(page_of(&written, "vmail.toml")).unwrap();
    assert!(page.contains(".TH VMAIL.TOML 5 "), "{page}");
    let defaults = vmail_doc::config_defaults();
    assert!(defaults.contains_key("database") && defaults.contains_key("lda"));
    for (section, keys) in defaults {
        let head = format!(".SS [{section}]\n");
        let start = page
            .find(&head)
            .unwrap_or_else(|| panic!("no [{section}] in the page"));
        let body = &page[start + head.len()..];
        let body = &body[..body.find("\n.S").unwrap_or(body.len())];
        for (key, _) in keys {
            assert!(
                body.contains(&format!(".TP\n\\fB{key}\\fR")),
                "[{section}] {key} missing:\n{body}"
            );
        }
    }
}

#[test]
fn every_key_of_the_reference_is_one_the_programs_accept() {
    let (_, sections) = vmail_doc::parse_reference(vmail_doc::REFERENCE);
    assert!(sections.len() >= 7, "{sections:?}");
    let mut n = 0;
    let mut set = 0;
    for s in sections {
        for item in s.items {
            if let vmail_doc::Item::Key {
                key,
                value,
                example,
                ..
            } = item
            {
                set += usize::from(!example);
                let one = format!("[{}]\n{key} = {value}\n", s.name);
                if let Err(e) = toml::from_str::<vmail_config::Config>(&one) {
                    panic!("{one}: {e}");
                }
                n += 1;
            }
        }
    }
    assert!(n > 50, "{n} keys");
    // No key line of the file is missed (a name with a digit once was).
    let lines = vmail_doc::REFERENCE
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains('='))
        .count();
    assert_eq!(set, lines);
    // And the whole file, as the programs read it.
    toml::from_str::<vmail_config::Config>(vmail_doc::REFERENCE).unwrap();
}

fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let line = words.join(" ");
    let program = format!(
        "source {script}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; _vmailctl vmailctl '{cur}' '{prev}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        words = words.join(" "),
        cur = words[cword],
        prev = if cword > 0 { words[cword - 1] } else { "" },
    );
    // No startup files, whatever the environment names: only the generated script counts.
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(program)
        .env_remove("BASH_ENV")
        .env_remove("ENV")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_vmailctl_subcommands() {
    let (_dir, written) = generate();
    let script = written
        .completions
        .iter()
        .find(|p| p.ends_with("bash/vmailctl"))
        .unwrap();
    assert_eq!(bash_complete(script, &["vmailctl", "us"]), ["user"]);
    let adds = bash_complete(script, &["vmailctl", "user", "a"]);
    assert_eq!(adds, ["add"]);
    // Every program has a script for each shell.
    assert_eq!(written.completions.len(), programs().len() * 3);
}

fn completion_script(written: &Written, suffix: &str) -> PathBuf {
    written
        .completions
        .iter()
        .find(|p| p.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {:?}", written.completions))
        .clone()
}

/// Every zsh script parses (`zsh -n`); zsh's completion system cannot run without a
/// terminal, so the words themselves are checked through bash and fish.
#[test]
fn zsh_scripts_parse() {
    let (_dir, written) = generate();
    for p in programs() {
        let script = completion_script(&written, &format!("zsh/_{}", p.name()));
        let out = Command::new("zsh")
            .args(["--no-rcs", "-n"])
            .arg(&script)
            .output()
            .expect("zsh runs (scripts/test-deps installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// fish loads each script and completes `vmailctl us` to `user` from it.
#[test]
fn fish_completes_vmailctl_subcommands() {
    let (dir, written) = generate();
    for p in programs() {
        let script = completion_script(&written, &format!("fish/{}.fish", p.name()));
        let out = Command::new("fish")
            .arg("--no-config")
            .arg("--no-execute")
            .arg(&script)
            .output()
            .expect("fish runs (scripts/test-deps installs it)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let script = completion_script(&written, "fish/vmailctl.fish");
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source {}; complete --do-complete 'vmailctl us'",
            script.display()
        ))
        // fish keeps history and universal variables under HOME.
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        words,
        ["user"],
        "fish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
