//! The readers' side of the name rules: before lookupd, authd or the LDA hands out a mailbox,
//! the row it comes from must name paths of its own under the configured base, whoever wrote
//! the row (vmailctl, plain SQL, a custom query with `home`/`mail` columns).
//!
//! What makes a derived path the account's own: the address is path-safe (each half one
//! ordinary path component, [`rules::check_path_safe`]) and the templates separate accounts
//! (checked when the configuration is loaded), so expansion is injective. What makes it stay
//! under the base: the path is canonical (no `.`, `..` or empty components) and starts with
//! the template's fixed directory. No statement and no allocation: this runs on every row
//! lookupd reads.

use vmail_config::{fixed_base, is_canonical_path, location_fields, MailboxConfig};

use crate::address::rules;

/// What a row's mailbox is checked against; built once from `[mailbox]`.
#[derive(Debug, Clone)]
pub struct PathGuard {
    /// The home template's fixed directory (`/home/vmail/`).
    home_base: String,
    /// The mail location's: the home's when the template is relative to it (`~/Maildir`).
    mail_base: String,
}

impl PathGuard {
    pub fn new(m: &MailboxConfig) -> PathGuard {
        let home_base = fixed_base(&m.home).to_string();
        let (path, _) = location_fields(&m.mail);
        let mail_base = if path.starts_with('~') {
            home_base.clone()
        } else {
            fixed_base(path).to_string()
        };
        PathGuard {
            home_base,
            mail_base,
        }
    }

    /// The same checks below any base: for a program that is handed rows checked by another
    /// one with its own `[mailbox]` (the LDA, answered by lookupd).
    pub fn any_base() -> PathGuard {
        PathGuard {
            home_base: String::new(),
            mail_base: String::new(),
        }
    }

    /// Whether the account `local@domain` with this `home` (may be empty: none) and Dovecot
    /// mail location `mail` may be served. `Err` says why not.
    pub fn check(&self, local: &str, domain: &str, home: &str, mail: &str) -> Result<(), String> {
        rules::check_path_safe(local, domain).map_err(|e| e.to_string())?;
        self.check_paths(home, mail)
    }

    /// The path half of [`check`](Self::check), for a row whose address is not in it.
    pub fn check_paths(&self, home: &str, mail: &str) -> Result<(), String> {
        if !home.is_empty() {
            under(home, &self.home_base).map_err(|why| format!("home {home:?} {why}"))?;
        }
        let (path, options) = location_fields(mail);
        let below_home = if path == "~" {
            Some("")
        } else {
            path.strip_prefix("~/")
        };
        match below_home {
            Some(_) if home.is_empty() => {
                return Err(format!("mail {mail:?} uses ~ but there is no home"));
            }
            Some(rest) if !rest.is_empty() && !is_canonical_path(rest) => {
                return Err(format!("mail {mail:?} holds '.', '..' or empty components"));
            }
            Some(_) => {}
            None => under(path, &self.mail_base).map_err(|why| format!("mail {mail:?} {why}"))?,
        }
        // `INDEX=`, `CONTROL=`, `INBOX=`...: may lie elsewhere, but never by way of `..`.
        for value in options.filter_map(|o| o.split_once('=').map(|(_, v)| v)) {
            let rel = value.strip_prefix("~/").or_else(|| value.strip_prefix('/'));
            if rel.is_some_and(|r| !r.is_empty() && !is_canonical_path(r)) {
                return Err(format!(
                    "mail {mail:?}: option path {value:?} holds '.', '..' or empty components"
                ));
            }
        }
        Ok(())
    }
}

/// `p` is an absolute canonical path strictly below `base`.
fn under(p: &str, base: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("is not an absolute path".into());
    }
    if !is_canonical_path(p) {
        return Err("holds '.', '..' or empty components".into());
    }
    if !p.starts_with(base) || p.len() <= base.len() {
        return Err(format!("is not below {base:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(home: &str, mail: &str) -> PathGuard {
        PathGuard::new(&MailboxConfig {
            home: home.into(),
            mail: mail.into(),
            ..MailboxConfig::default()
        })
    }

    #[test]
    fn derived_and_stored_paths() {
        let g = guard("/home/vmail/%d/%n", "maildir:~/Maildir");
        let ok = |l, d, h, m| g.check(l, d, h, m);
        assert_eq!(
            ok(
                "alice",
                "example.org",
                "/home/vmail/example.org/alice",
                "maildir:~/Maildir"
            ),
            Ok(())
        );
        for (l, d, h, m) in [
            (
                "alice/.",
                "example.org",
                "/home/vmail/example.org/alice/.",
                "maildir:~/Maildir",
            ),
            (
                "x",
                "../../etc",
                "/home/vmail/../../etc/x",
                "maildir:~/Maildir",
            ),
            (
                "x",
                "example.org",
                "/home/vmail/example.org/x/..",
                "maildir:~/Maildir",
            ),
            ("x", "example.org", "/etc/x", "maildir:~/Maildir"),
            ("x", "example.org", "/home/vmail/", "maildir:~/Maildir"),
            ("x", "example.org", "/home/vmail//x", "maildir:~/Maildir"),
            ("x", "example.org", "/home/vmail/x", "maildir:~/../y"),
            ("x", "example.org", "/home/vmail/x", "maildir:/etc/x"),
            ("x", "example.org", "", "maildir:~/Maildir"),
            (
                "x",
                "example.org",
                "/home/vmail/x",
                "maildir:~/M:INDEX=/i/../../etc",
            ),
        ] {
            assert!(ok(l, d, h, m).is_err(), "{l}@{d} {h} {m}");
        }
        // Options elsewhere are fine; an absolute mail location under the base too.
        assert_eq!(
            ok(
                "x",
                "e.org",
                "/home/vmail/e.org/x",
                "maildir:~/M:INDEX=/var/idx/e.org/x"
            ),
            Ok(())
        );
        assert_eq!(
            ok(
                "x",
                "e.org",
                "/home/vmail/e.org/x",
                "maildir:/home/vmail/e.org/x/M"
            ),
            Ok(())
        );
        let abs = guard("", "maildir:/var/vmail/%d/%n/Maildir");
        assert_eq!(
            abs.check("x", "e.org", "", "maildir:/var/vmail/e.org/x/Maildir"),
            Ok(())
        );
        assert!(abs
            .check("x", "e.org", "", "maildir:/var/vmail/e.org/x/../y")
            .is_err());
        let any = PathGuard::any_base();
        assert_eq!(
            any.check("x", "e.org", "/srv/e.org/x", "maildir:~/M"),
            Ok(())
        );
        assert!(any
            .check("x", "e.org", "/srv/e.org/x/.", "maildir:~/M")
            .is_err());
        assert!(any
            .check("a/.", "e.org", "/srv/e.org/x", "maildir:~/M")
            .is_err());
    }
}
