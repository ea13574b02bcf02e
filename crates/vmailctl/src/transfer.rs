//! `export` and `import`: the directory as JSON lines, one object per row with a `type`
//! (`domain`, `user`, `alias`, `transport`). The codec is here; the rows and the one
//! transaction are vmail-directory's ([`vmail_directory::Record`]).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use vmail_directory::{Directory, Record};

use crate::{data_error, Ctx};

/// One row as one line (keys in a fixed order: serde_json sorts them).
pub(crate) fn encode(r: &Record) -> String {
    match r {
        Record::Domain { domain, active } => {
            json!({ "type": "domain", "domain": domain, "active": active })
        }
        Record::User {
            email,
            password,
            active,
            quota_bytes,
            services,
        } => json!({
            "type": "user", "email": email, "password": password, "active": active,
            "quota": quota_bytes, "services": services,
        }),
        Record::Alias {
            source,
            destination,
        } => json!({ "type": "alias", "source": source, "destination": destination }),
        Record::Transport { domain, transport } => {
            json!({ "type": "transport", "domain": domain, "transport": transport })
        }
    }
    .to_string()
}

/// One line back into a row; optional fields take the schema's defaults.
pub(crate) fn decode(line: &str) -> Result<Record> {
    let v: Value = serde_json::from_str(line)?;
    let text = |k: &str| -> Result<String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("field {k:?} missing or not a string"))
    };
    let active = match v.get("active") {
        None | Some(Value::Null) => true,
        Some(a) => a
            .as_bool()
            .ok_or_else(|| anyhow!("field \"active\" is not true or false"))?,
    };
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("domain") => Record::Domain {
            domain: text("domain")?,
            active,
        },
        Some("user") => Record::User {
            email: text("email")?,
            password: text("password")?,
            active,
            quota_bytes: match v.get("quota") {
                None | Some(Value::Null) => 0,
                Some(q) => q
                    .as_u64()
                    .ok_or_else(|| anyhow!("field \"quota\" is not a number of bytes"))?,
            },
            services: match v.get("services") {
                None | Some(Value::Null) => None,
                Some(_) => Some(text("services")?),
            },
        },
        Some("alias") => Record::Alias {
            source: text("source")?,
            destination: text("destination")?,
        },
        Some("transport") => Record::Transport {
            domain: text("domain")?,
            transport: text("transport")?,
        },
        Some(t) => bail!("unknown type {t:?} (domain, user, alias or transport)"),
        None => bail!("field \"type\" missing"),
    })
}

pub(crate) async fn export(dir: &Directory) -> Result<()> {
    let rows = dir.export().await?;
    let mut out = std::io::stdout().lock();
    for r in &rows {
        writeln!(out, "{}", encode(r)).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// What an import does with a user whose hash authd cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Refuse the whole import (the default: a hand-made file's typo is caught before
    /// anything is written).
    Refuse,
    /// Import it as it is, with a warning (`--keep-unusable-hashes`: an export of a database
    /// that holds such rows, mail-only accounts, imports back).
    Keep,
}

impl Unusable {
    pub(crate) fn from_flag(keep: bool) -> Unusable {
        if keep {
            Unusable::Keep
        } else {
            Unusable::Refuse
        }
    }
}

pub(crate) async fn import(
    ctx: &Ctx,
    dir: &Directory,
    file: Option<&Path>,
    replace: bool,
    unusable: Unusable,
) -> Result<()> {
    let input: Box<dyn BufRead> = match file {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let (default, _) = ctx.schemes()?;
    let mut rows = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading the import")?;
        if line.trim().is_empty() {
            continue;
        }
        let row = decode(&line).with_context(|| format!("line {}", n + 1))?;
        // A hash authd cannot use would be a login nobody can make: refuse the whole import
        // before anything is written, as `user add --hashed` refuses it.
        if let Record::User {
            email, password, ..
        } = &row
        {
            if let Err(e) = crate::secret::check_hash(password, default) {
                let what = format!("line {}: user {email}: {e:#}", n + 1);
                match unusable {
                    Unusable::Refuse => {
                        return Err(data_error(format!(
                            "{what} (--keep-unusable-hashes imports such rows as they are)"
                        )))
                    }
                    Unusable::Keep => eprintln!(
                        "warning: {what}; imported as is: mail is delivered, no login succeeds"
                    ),
                }
            }
        }
        rows.push(row);
    }
    let how = vmail_directory::Import {
        replace,
        empty_passwords: unusable == Unusable::Keep,
    };
    let n = dir.import(&rows, how).await?;
    ctx.done(format!("imported {n} row(s)"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_defaults_apply() {
        for r in [
            Record::Domain {
                domain: "example.org".into(),
                active: false,
            },
            Record::User {
                email: "a@example.org".into(),
                password: "{PLAIN}x".into(),
                active: true,
                quota_bytes: 7,
                services: Some("imap".into()),
            },
            Record::Alias {
                source: "@example.org".into(),
                destination: "a@example.org, b@x.test".into(),
            },
            Record::Transport {
                domain: "example.org".into(),
                transport: "smtp:[relay]".into(),
            },
        ] {
            assert_eq!(decode(&encode(&r)).unwrap(), r);
        }
        assert_eq!(
            decode(r#"{"type":"user","email":"a@b.c","password":"h"}"#).unwrap(),
            Record::User {
                email: "a@b.c".into(),
                password: "h".into(),
                active: true,
                quota_bytes: 0,
                services: None,
            }
        );
        assert!(decode(r#"{"type":"mailbox"}"#).is_err());
        assert!(decode(r#"{"type":"user","email":"a@b.c"}"#).is_err());
        assert!(decode("not json").is_err());
    }
}
