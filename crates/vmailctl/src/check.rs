//! `query MAP KEY` (like `postmap -q`) and `auth test USER` (like `doveadm auth test`): the
//! directory answering as the daemons will, with their exit statuses (0 found, 1 not found,
//! 75 temporary failure).

use anyhow::{anyhow, Result};
use serde_json::json;
use vmail_directory::{Directory, Map};

use crate::secret::read_secret;
use crate::{Ctx, EXIT_NOT_FOUND, EXIT_TEMPFAIL};

pub(crate) async fn query(ctx: &Ctx, dir: &Directory, map: &str, key: &str) -> Result<u8> {
    let map: Map = map.parse().map_err(|e: String| anyhow!(e))?;
    match dir.lookup(map, key).await {
        Ok(Some(v)) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "found": true, "value": v })
                );
            } else {
                println!("{v}");
            }
            Ok(0)
        }
        Ok(None) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "found": false })
                );
            }
            Ok(EXIT_NOT_FOUND)
        }
        Err(e) if e.is_temporary() => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "map": map.name(), "key": key, "temporary_failure": e.to_string() })
                );
            } else {
                eprintln!("vmailctl: temporary failure: {e}");
            }
            Ok(EXIT_TEMPFAIL)
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn auth_test(
    ctx: &Ctx,
    dir: &Directory,
    login: &str,
    service: &str,
) -> Result<u8> {
    let (default, _) = ctx.schemes()?;
    let pw = read_secret("Password: ")?;
    let outcome = match dir.user(login).await {
        Err(e) if e.is_temporary() => {
            let what = format!("temporary failure: {e}");
            crate::report_error(ctx.json, &what, EXIT_TEMPFAIL);
            return Ok(EXIT_TEMPFAIL);
        }
        Err(e) => return Err(e.into()),
        Ok(None) => {
            // Same cost as a real check, as authd does.
            vmail_passwd::dummy_verify(default, pw.as_bytes());
            Err("unknown user or wrong password")
        }
        Ok(Some(u)) => match u.password.as_deref() {
            None => Err("user has no password"),
            Some(stored) => match vmail_passwd::verify(stored, pw.as_bytes(), default) {
                Ok(true) if !u.active => Err("user is disabled"),
                Ok(true) if !u.allows(service) => Err("service not allowed for this user"),
                Ok(true) => Ok(u),
                Ok(false) => Err("unknown user or wrong password"),
                Err(e) => {
                    // Under --json the reason below is the whole answer: nothing on stderr.
                    if !ctx.json {
                        eprintln!("vmailctl: stored hash of {login} cannot be used: {e}");
                    }
                    Err("stored password hash is invalid")
                }
            },
        },
    };
    match outcome {
        Ok(u) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "user": u.email, "ok": true, "uid": u.uid, "gid": u.gid, "home": u.home, "mail": u.mail })
                );
            } else {
                println!("passdb: {login} auth succeeded");
                println!(
                    "extra fields:\n  user={}\n  uid={}\n  gid={}\n  home={}\n  mail={}",
                    u.email, u.uid, u.gid, u.home, u.mail
                );
            }
            Ok(0)
        }
        Err(reason) => {
            if ctx.json {
                println!(
                    "{}",
                    json!({ "user": login, "ok": false, "reason": reason })
                );
            } else {
                println!("passdb: {login} auth failed ({reason})");
            }
            Ok(EXIT_NOT_FOUND)
        }
    }
}
