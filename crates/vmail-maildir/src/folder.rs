//! Maildir++ folder names: `Lists` lives in `<maildir>/.Lists`, `Lists.Work` (a subfolder)
//! in `<maildir>/.Lists.Work` — Dovecot's default `LAYOUT=maildir++`.

/// Why a folder name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFolder {
    Empty,
    TooLong,
    /// `/`, a control byte, or a byte outside ASCII.
    BadByte,
    /// Starts or ends with `.`, or contains `..` (an empty hierarchy level).
    BadDot,
}

impl std::fmt::Display for InvalidFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidFolder::Empty => "empty folder name",
            InvalidFolder::TooLong => "folder name too long",
            InvalidFolder::BadByte => "folder name has '/', a control byte or non-ASCII",
            InvalidFolder::BadDot => "folder name starts or ends with '.' or contains '..'",
        })
    }
}

/// Where a folder name points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `INBOX` (any case): the Maildir root itself.
    Inbox,
    /// The directory name inside the Maildir root, with its leading dot (`.Lists`).
    Folder(String),
}

/// The longest accepted name; with the dot it stays far below NAME_MAX (255) on every
/// common file system.
pub const MAX_FOLDER_LEN: usize = 200;

/// Maps a folder name as stored on disk to its directory.
///
/// The name uses `.` as hierarchy separator (Maildir++ on-disk form; a caller whose IMAP
/// separator is `/` translates first) and must be ASCII: Dovecot stores non-ASCII names in
/// modified UTF-7 (RFC 3501 5.1.3), which the caller passes already encoded. Names that
/// could escape the Maildir (`/`, leading `.`, `..`) are refused.
pub fn folder_target(name: &str) -> Result<Target, InvalidFolder> {
    if name.is_empty() {
        return Err(InvalidFolder::Empty);
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(Target::Inbox);
    }
    if name.len() > MAX_FOLDER_LEN {
        return Err(InvalidFolder::TooLong);
    }
    if name
        .bytes()
        .any(|b| b == b'/' || !(0x20..0x7f).contains(&b))
    {
        return Err(InvalidFolder::BadByte);
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(InvalidFolder::BadDot);
    }
    Ok(Target::Folder(format!(".{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        assert_eq!(folder_target("Lists"), Ok(Target::Folder(".Lists".into())));
        assert_eq!(
            folder_target("Lists.Work"),
            Ok(Target::Folder(".Lists.Work".into()))
        );
        assert_eq!(
            folder_target("Entw&APw-rfe"),
            Ok(Target::Folder(".Entw&APw-rfe".into()))
        );
        assert_eq!(folder_target("INBOX"), Ok(Target::Inbox));
        assert_eq!(folder_target("inbox"), Ok(Target::Inbox));
        assert_eq!(folder_target("new"), Ok(Target::Folder(".new".into())));
    }

    #[test]
    fn refused_names() {
        assert_eq!(folder_target(""), Err(InvalidFolder::Empty));
        assert_eq!(folder_target("a/b"), Err(InvalidFolder::BadByte));
        assert_eq!(folder_target("../etc"), Err(InvalidFolder::BadByte));
        assert_eq!(folder_target(".."), Err(InvalidFolder::BadDot));
        assert_eq!(folder_target(".hidden"), Err(InvalidFolder::BadDot));
        assert_eq!(folder_target("a..b"), Err(InvalidFolder::BadDot));
        assert_eq!(folder_target("a."), Err(InvalidFolder::BadDot));
        assert_eq!(folder_target("a\nb"), Err(InvalidFolder::BadByte));
        assert_eq!(folder_target("a\0b"), Err(InvalidFolder::BadByte));
        assert_eq!(folder_target("Entwürfe"), Err(InvalidFolder::BadByte));
        assert_eq!(
            folder_target(&"x".repeat(MAX_FOLDER_LEN + 1)),
            Err(InvalidFolder::TooLong)
        );
    }
}
