//! `vmailctl init` run by root on the embedded SQLite directory: the file it creates is
//! root's, yet the daemons (after their privilege drop) and vmail-lda (run by pipe(8) as the
//! mail user) open it read-write as `[lookupd] user`. Left to root, lookupd's reload fails
//! ("cannot open the new directory") and vmail-lda-direct defers every message ("unable to
//! open database file"), so init gives the files to that user, as docs/INSTALL.md told the
//! admin to do by hand.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vmail_config::{Backend, Config};

/// Gives the SQLite database and its `-wal`/`-shm` files that root owns to `[lookupd] user`
/// (and that user's group) when running as root; says what it did, or `None`.
pub fn give_sqlite_files(config: &Config) -> Result<Option<String>> {
    if config.database.backend != Backend::Sqlite || !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let name = &config.lookupd.user;
    if name.is_empty() {
        return Ok(None);
    }
    let Some(user) = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up lookupd.user {name:?}"))?
    else {
        return Ok(None);
    };
    let db = &config.database.sqlite_path;
    let mut given = Vec::new();
    for path in [db.clone(), suffixed(db, "-wal"), suffixed(db, "-shm")] {
        if give(&path, user.uid.as_raw(), user.gid.as_raw())? {
            given.push(path.display().to_string());
        }
    }
    Ok((!given.is_empty()).then(|| format!("gave {} to user {name}", given.join(", "))))
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// fchown on a descriptor opened without following a link: the directory belongs to the
/// mail user, who could otherwise swap the file for a link to /etc/shadow between a check
/// and a chown by path. Only a plain file root owns, with no other name, is given away.
fn give(path: &Path, uid: u32, gid: u32) -> Result<bool> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        // A link: not ours to give away (SQLite follows it; whoever made it owns the rest).
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let meta = file.metadata()?;
    // One name only, as vmail-daemon's pid file insists: a hard link to a root file
    // elsewhere (fs.protected_hardlinks off) must not be given away through this name.
    if !meta.file_type().is_file() || meta.uid() != 0 || meta.nlink() != 1 {
        return Ok(false);
    }
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
        .with_context(|| format!("giving {} to uid {uid}", path.display()))?;
    Ok(true)
}
