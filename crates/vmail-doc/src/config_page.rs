//! vmail.toml(5), made from the shipped reference `contrib/vmail/vmail.toml` and from the
//! code. The reference file is where every key is explained for the admin who edits it
//! (its comments are the page's text, its values the examples); `vmail_config::Config`'s
//! defaults give each key's built-in default and add any key the reference leaves out. So
//! the page cannot drift from either: a new key appears in it with its default, and tests
//! check that every key of the reference is one `Config` accepts. (The fields' doc comments
//! in vmail-config are written for developers and are not reachable at run time.)

use std::collections::BTreeMap;

use clap_mangen::roff::{bold, roman, Roff};
use vmail_config::{Config, DEFAULT_CONFIG_PATH};

use crate::page::{self, keep_tables, paragraph};

/// The shipped reference configuration.
pub const REFERENCE: &str = include_str!("../../../contrib/vmail/vmail.toml");

/// The reference configuration as the programs read it.
pub fn reference() -> Config {
    // Compiled in, not read at run time; `reference_parses` checks it.
    toml::from_str(REFERENCE).unwrap_or_default()
}

/// One `[section]` of the reference: its text and keys, in the file's order.
#[derive(Debug, Default)]
pub struct Section {
    pub name: String,
    pub items: Vec<Item>,
}

#[derive(Debug)]
pub enum Item {
    /// Comment lines not followed by a key.
    Text(String),
    /// A key (commented out in the file when `example` is true) with its value, the
    /// comment above it and the one after it on its line.
    Key {
        key: String,
        value: String,
        example: bool,
        comment: String,
        trailing: Option<String>,
    },
}

/// The reference file's opening comment and its sections.
pub fn parse_reference(text: &str) -> (String, Vec<Section>) {
    let mut intro = String::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let flush = |pending: &mut Vec<String>, sections: &mut Vec<Section>| {
        if !pending.is_empty() {
            if let Some(s) = sections.last_mut() {
                s.items.push(Item::Text(pending.join("\n")));
            }
            pending.clear();
        }
    };
    for line in text.lines() {
        let (body, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest.strip_prefix(' ').unwrap_or(rest), true),
            None => (line, false),
        };
        if let Some(name) = section_header(body) {
            if sections.is_empty() {
                intro = pending.join("\n");
                pending.clear();
            }
            flush(&mut pending, &mut sections);
            sections.push(Section {
                name: name.to_string(),
                items: Vec::new(),
            });
        } else if line.trim().is_empty() {
            if sections.is_empty() {
                pending.push(String::new());
            } else {
                flush(&mut pending, &mut sections);
            }
        } else if let Some((key, value, trailing)) = key_line(body).filter(|_| !sections.is_empty())
        {
            let comment = std::mem::take(&mut pending).join("\n");
            if let Some(s) = sections.last_mut() {
                s.items.push(Item::Key {
                    key,
                    value,
                    example: commented,
                    comment,
                    trailing,
                });
            }
        } else if commented {
            pending.push(body.to_string());
        }
    }
    if sections.is_empty() {
        intro = pending.join("\n");
    } else {
        flush(&mut pending, &mut sections);
    }
    (intro.trim().to_string(), sections)
}

/// `[name]` → `name`.
fn section_header(line: &str) -> Option<&str> {
    let name = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        .then_some(name)
}

/// `key = value  # comment` → key, value, comment.
fn key_line(line: &str) -> Option<(String, String, Option<String>)> {
    let (key, rest) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    // A `#` outside a string starts the trailing comment.
    let mut quoted = false;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let trailing = rest[end..].strip_prefix('#').map(|t| t.trim().to_string());
    Some((key.to_string(), rest[..end].trim().to_string(), trailing))
}

/// Every key of `Config::default()` serialized, by dotted section: what the programs take
/// when the file leaves a key out.
pub fn defaults() -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(Config::default()) {
        for (name, value) in t {
            if let toml::Value::Table(section) = value {
                collect(&name, section, &mut out);
            }
        }
    }
    out
}

fn collect(name: &str, table: toml::Table, out: &mut BTreeMap<String, Vec<(String, String)>>) {
    let mut keys = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(sub) => collect(&format!("{name}.{k}"), sub, out),
            v => keys.push((k, v.to_string())),
        }
    }
    out.insert(name.to_string(), keys);
}

/// The roff text of vmail.toml(5).
pub fn config_page() -> String {
    let (_, sections) = parse_reference(REFERENCE);
    let mut defaults = defaults();
    let mut roff = Roff::new();
    let date = page::date();
    roff.control(
        "TH",
        ["VMAIL.TOML", "5", date.as_str(), page::SOURCE, page::MANUAL],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "vmail.toml - configuration of vmail-lookupd, vmail-authd, vmail-lda, vmail-lmtpd and vmailctl",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold(DEFAULT_CONFIG_PATH)]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "One TOML file for every vmail program; each reads the sections it needs. A key left out takes its built-in default, given below after each key; the value shown beside a key is the reference configuration's, for a classic \"virtual users in MySQL\" server. \"vmail-lookupd --check\" and \"vmailctl --check\" print the effective configuration, secrets masked. Unknown keys are errors.",
    )]);
    roff.control("SH", ["KEYS"]);
    for s in &sections {
        let mut left = defaults.remove(&s.name).unwrap_or_default();
        roff.control("SS", [format!("[{}]", s.name).as_str()]);
        for item in &s.items {
            match item {
                Item::Text(t) => paragraph(&mut roff, t),
                Item::Key {
                    key,
                    value,
                    example,
                    comment,
                    trailing,
                } => {
                    let default = left
                        .iter()
                        .position(|(k, _)| k == key)
                        .map(|i| left.remove(i).1);
                    let text = [comment.as_str(), trailing.as_deref().unwrap_or("")];
                    key_entry(&mut roff, key, value, *example, &text, default);
                }
            }
        }
        for (key, default) in left {
            absent_entry(&mut roff, &key, default);
        }
    }
    for (name, keys) in defaults {
        roff.control("SS", [format!("[{name}]").as_str()]);
        for (key, default) in keys {
            absent_entry(&mut roff, &key, default);
        }
    }
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([bold(DEFAULT_CONFIG_PATH)]);
    roff.text([roman(
        "read when neither --config nor $VMAIL_CONFIG names another file; 0640 root:vmail, as it may hold the database password",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("vmail-lookupd"),
        roman("(8), "),
        bold("vmail-authd"),
        roman("(8), "),
        bold("vmail-lda"),
        roman("(8), "),
        bold("vmail-lmtpd"),
        roman("(8), "),
        bold("vmailctl"),
        roman("(8)"),
    ]);
    roff.render()
}

/// A key the reference file leaves out: its name and built-in default.
fn absent_entry(roff: &mut Roff, key: &str, default: String) {
    roff.control("TP", []);
    roff.text([bold(key)]);
    roff.text([roman(format!(
        "Not in the reference file. {}",
        default_text(Some(default))
    ))]);
}

fn default_text(default: Option<String>) -> String {
    match default {
        Some(d) if d == "\"\"" || d == "[]" => {
            format!("Default: {d} (off, or chosen at run time).")
        }
        Some(d) => format!("Default: {d}."),
        None => "No default: unset unless given.".to_string(),
    }
}

fn key_entry(
    roff: &mut Roff,
    key: &str,
    value: &str,
    example: bool,
    comments: &[&str],
    default: Option<String>,
) {
    roff.control("TP", []);
    roff.text([bold(key), roman(format!(" = {value}"))]);
    for comment in comments.iter().filter(|c| !c.is_empty()) {
        keep_tables(roff, comment);
        roff.control("br", []);
    }
    let default = default_text(default);
    if example {
        roff.text([roman(format!(
            "Commented out in the reference file. {default}"
        ))]);
    } else {
        roff.text([roman(default)]);
    }
}
