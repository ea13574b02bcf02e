//! `[mailbox]` templates (`/home/vmail/%d/%n`) and the path syntax shared by the programs
//! that check what they expand to: a template must give every account a place of its own.

/// Expands a mailbox template (`%u` full address, `%n` local part, `%d` domain, `%%`).
pub fn expand_template(t: &str, local: &str, domain: &str) -> String {
    let mut out = String::with_capacity(t.len() + local.len() + domain.len());
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                out.push_str(local);
                out.push('@');
                out.push_str(domain);
            }
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The path field and the options of a Dovecot mail location `[format:]path[:options]`
/// (Dovecot wiki, MailLocation). A first field made only of letters and digits is the format.
pub fn location_fields(location: &str) -> (&str, std::str::Split<'_, char>) {
    let rest = match location.split_once(':') {
        Some((fmt, rest)) if !fmt.is_empty() && fmt.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            rest
        }
        _ => location,
    };
    let mut fields = rest.split(':');
    let path = fields.next().unwrap_or("");
    (path, fields)
}

/// Whether `p` is a path without `.`, `..` or empty components (one trailing '/' allowed), so
/// that the text is the place: no prefix check can be fooled by `base/x/../../etc`.
pub fn is_canonical_path(p: &str) -> bool {
    let p = p.strip_prefix('/').unwrap_or(p);
    let p = p.strip_suffix('/').unwrap_or(p);
    !p.is_empty() && p.split('/').all(|c| !matches!(c, "" | "." | ".."))
}

/// The text of a template before its first variable, up to and including its last '/': the
/// directory every expansion lies in (`/home/vmail/` for `/home/vmail/%d/%n`).
pub fn fixed_base(t: &str) -> &str {
    let fixed = match t.find(['%']) {
        Some(i) => &t[..i],
        None => t,
    };
    match fixed.rfind('/') {
        Some(i) => &fixed[..=i],
        None => "",
    }
}

/// Checks a template's variables (`%u %n %d %%` only).
pub(crate) fn check_variables(t: &str) -> Result<(), String> {
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('u' | 'n' | 'd' | '%') => {}
                other => {
                    return Err(format!(
                        "{t:?}: unknown variable %{} (use %u, %n, %d or %%)",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Checks that a template gives every account a path of its own: `%u`, or both `%d` and `%n`,
/// with a '/' or '@' between any two variables (`%d-%n` gives `a.org-b` + `c` and `a.org` +
/// `b-c` one place), and no `.`, `..` or empty component in its fixed text. Names are one path
/// component each (the directory's address rules), so such a template is injective.
pub(crate) fn check_separates(t: &str) -> Result<(), String> {
    let mut vars = Vec::new();
    // Text since the last variable; `None` before the first.
    let mut between: Option<String> = None;
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        let literal = match c {
            '%' => match chars.next() {
                Some('%') => '%',
                Some(v) => {
                    if between.as_ref().is_some_and(|b| !b.contains(['/', '@'])) {
                        return Err(format!(
                            "{t:?}: two variables need a '/' or '@' between them, or two \
                             accounts can expand to one path"
                        ));
                    }
                    vars.push(v);
                    between = Some(String::new());
                    continue;
                }
                None => '%',
            },
            c => c,
        };
        if let Some(b) = between.as_mut() {
            b.push(literal);
        }
    }
    if !(vars.contains(&'u') || vars.contains(&'d') && vars.contains(&'n')) {
        return Err(format!(
            "{t:?} cannot tell accounts apart: it needs %u, or both %d and %n"
        ));
    }
    Ok(())
}

/// Checks a path template's fixed text: the template with every variable replaced by a plain
/// name must be canonical ([`is_canonical_path`]).
pub(crate) fn check_fixed_text(t: &str) -> Result<(), String> {
    if is_canonical_path(&expand_template(t, "x", "x")) {
        Ok(())
    } else {
        Err(format!(
            "{t:?}: a path may not hold '.', '..' or empty components"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand_template("/home/vmail/%d/%n/Maildir", "alice", "example.org"),
            "/home/vmail/example.org/alice/Maildir"
        );
        assert_eq!(expand_template("%u 100%%", "a", "b.c"), "a@b.c 100%");
    }

    #[test]
    fn separation() {
        for ok in [
            "/home/vmail/%d/%n",
            "%d/%n/",
            "/srv/%u",
            "/m/%n@%d",
            "/v/%d/u-%n.x",
        ] {
            assert_eq!(check_separates(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/home/vmail/%d",
            "/home/vmail/%n",
            "/x/%d%n",
            "/x/%d-%n",
            "/x/%n.%d",
        ] {
            assert!(check_separates(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_locations() {
        assert!(is_canonical_path("/home/vmail/a/b"));
        assert!(is_canonical_path("a/b/"));
        for bad in ["/home/vmail/a/.", "/a/../b", "/a//b", "/", "", "a/./b"] {
            assert!(!is_canonical_path(bad), "{bad}");
        }
        assert_eq!(fixed_base("/home/vmail/%d/%n"), "/home/vmail/");
        assert_eq!(fixed_base("/srv/mail/u-%u"), "/srv/mail/");
        assert_eq!(fixed_base("%d/%n/"), "");
        let (path, mut opts) = location_fields("maildir:~/Maildir:LAYOUT=fs:INDEX=/i/%u");
        assert_eq!(path, "~/Maildir");
        assert_eq!(opts.next(), Some("LAYOUT=fs"));
        assert_eq!(opts.next(), Some("INDEX=/i/%u"));
        assert_eq!(location_fields("/var/mail/x").0, "/var/mail/x");
    }
}
