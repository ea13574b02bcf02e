//! Creating Maildir directories (mode 0700) durably, and fsyncing directories.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::Error;

/// fsync(2) on a directory, so entries created, linked or removed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes sure `dir` is a directory, creating it and missing parents with mode 0700 (minus
/// the umask). Each directory created is made durable by fsyncing its parent: a message
/// fsynced into a `new/` whose own entry was lost in a crash would be lost with it.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::io(
                "mkdir",
                dir,
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", dir, e)),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Another delivery created it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = parent else {
                return Err(Error::io("mkdir", dir, e));
            };
            ensure_dir(parent)?;
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
                Err(e) => return Err(Error::io("mkdir", dir, e)),
            }
        }
        Err(e) => return Err(Error::io("mkdir", dir, e)),
    }
    let parent = parent.unwrap_or(Path::new("."));
    fsync_dir(parent).map_err(|e| Error::io("fsync", parent, e))
}

/// Makes sure `dir` has `tmp/`, `new/` and `cur/` (Dovecot's `create_maildir()` also fixes
/// a mailbox missing some of them).
pub(crate) fn ensure_maildir(dir: &Path) -> Result<(), Error> {
    ensure_dir(dir)?;
    for sub in ["tmp", "new", "cur"] {
        ensure_dir(&dir.join(sub))?;
    }
    Ok(())
}
