//! Dovecot mail locations (`maildir:~/Maildir:LAYOUT=fs`) to the Maildir path the LDA writes.
//! See Dovecot's MailLocation wiki page: the first field is the path, `:`-separated options
//! follow, `~/` is the user's home.

use std::path::PathBuf;

pub fn maildir_path(mail: &str, home: &str) -> Result<PathBuf, String> {
    let rest = match mail.split_once(':') {
        Some((fmt, rest)) if fmt.eq_ignore_ascii_case("maildir") => rest,
        Some((fmt, _)) => {
            return Err(format!(
                "mail location {mail:?}: only maildir is supported, not {fmt}"
            ))
        }
        // A bare path is a Maildir, as Dovecot's autodetection would take it here.
        None => mail,
    };
    let path = rest.split(':').next().unwrap_or("");
    let path = match path
        .strip_prefix("~/")
        .or(if path == "~" { Some("") } else { None })
    {
        Some(sub) if !home.is_empty() => PathBuf::from(home).join(sub),
        Some(_) => {
            return Err(format!(
                "mail location {mail:?} uses ~ but the user has no home"
            ))
        }
        None => PathBuf::from(path),
    };
    if !path.is_absolute() {
        return Err(format!("mail location {mail:?} is not an absolute path"));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("mail location {mail:?} contains '..'"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            maildir_path("maildir:/home/vmail/x.org/a/Maildir", "").unwrap(),
            PathBuf::from("/home/vmail/x.org/a/Maildir")
        );
        assert_eq!(
            maildir_path(
                "maildir:~/Maildir:LAYOUT=fs:INBOX=~/in",
                "/home/vmail/x.org/a"
            )
            .unwrap(),
            PathBuf::from("/home/vmail/x.org/a/Maildir")
        );
        assert_eq!(
            maildir_path("/var/mail/x", "").unwrap(),
            PathBuf::from("/var/mail/x")
        );
        assert!(maildir_path("mbox:~/mail", "/h").is_err());
        assert!(maildir_path("maildir:~/Maildir", "").is_err());
        assert!(maildir_path("maildir:relative/x", "").is_err());
        assert!(maildir_path("maildir:/home/../etc", "").is_err());
    }
}
