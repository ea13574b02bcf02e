//! Staging: a message written and fsynced into `tmp/` before vmail-lda knows the mailbox
//! it goes to, then delivered with the same steps as [`deliver`].

use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use crate::{commit, delivered, escape_hostname, format_prepend, prepare, quota, write_message};
use crate::{Delivered, Delivery, Error, TmpFile};

// Only for the links in the comments, which name the one-step delivery.
#[cfg(doc)]
use crate::deliver;

/// A message written and fsynced into a `tmp/` file before the mailbox it goes to is
/// known: vmail-lda writes it while lookupd answers, so that the two waits (the lookup, the
/// fsync) overlap. Made by [`Stage::write`]. Nothing is in any `new/` until
/// [`deliver_staged`]; dropping a `Staged` (unknown user, a temporary error) removes the
/// file, and a killed process leaves at most the `tmp/` file, as any delivery can.
#[derive(Debug)]
pub struct Staged {
    tmp: TmpFile,
    /// The Maildir whose `tmp/` holds it.
    maildir: PathBuf,
    size: u64,
    prepend: Vec<(String, String)>,
    max_size: Option<u64>,
}

impl Staged {
    /// The message as stored, the fields [`Stage::write`] prepended included (with LF line
    /// ends, as written): for a caller that hands it to another delivery agent instead of
    /// [`deliver_staged`] (vmail-lda, for a recipient with a Sieve script: Dovecot's LDA
    /// adds no `Return-Path:` of its own). The file is still removed when the `Staged` drops.
    pub fn stored(&mut self) -> Result<impl Read + '_, Error> {
        let file = &mut self.tmp.file;
        file.seek(io::SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", &self.tmp.path, e))?;
        Ok(&*file)
    }

    /// Its size as stored (the prepended headers included).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether `d` asks for exactly what was written: the same prepended headers and size
    /// limit, and no loop check (the caller checks the header section itself before
    /// staging). A delivery that asks for anything else cannot use this file.
    pub fn fits(&self, d: &Delivery<'_>) -> bool {
        d.prepend == self.prepend && d.max_size == self.max_size && d.loop_check.is_none()
    }
}

/// An empty file created in a Maildir's `tmp/`, ready for [`Stage::write`]. Nothing has been
/// read yet when it exists, so a caller that cannot create it still delivers the usual way.
#[derive(Debug)]
pub struct Stage {
    tmp: TmpFile,
    maildir: PathBuf,
}

impl Stage {
    /// Creates it in `maildir`'s existing `tmp/` (named as [`deliver`] names its files).
    pub fn create(maildir: &Path, hostname: &str) -> Result<Stage, Error> {
        let tmp = TmpFile::create(&maildir.join("tmp"), &escape_hostname(hostname))?;
        Ok(Stage {
            tmp,
            maildir: maildir.to_path_buf(),
        })
    }

    /// Writes `prepend` and `input` (LF line ends, at most `max_size` bytes) and fsyncs;
    /// see [`Staged`].
    pub fn write(
        mut self,
        prepend: &[(String, String)],
        max_size: Option<u64>,
        input: &mut dyn Read,
    ) -> Result<Staged, Error> {
        let head = format_prepend(prepend)?;
        let mut limits = Delivery::new(&self.maildir, "");
        limits.max_size = max_size;
        let size = write_message(&mut self.tmp, &head, input, &limits, None)?;
        self.tmp
            .file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.tmp.path, e))?;
        Ok(Staged {
            tmp: self.tmp,
            maildir: self.maildir,
            size,
            prepend: prepend.to_vec(),
            max_size,
        })
    }
}

/// Delivers a [`Staged`] message as [`deliver`] would have delivered its input: the same
/// folder choice, quota check (on the final size), names, links and fsyncs. Into the
/// Maildir it was staged in, the `tmp/` file is linked into place (a folder's `new/`
/// included); another Maildir gets a byte-for-byte copy (a file made in another user's
/// `tmp/` took that directory's group and default ACL).
///
/// A `d` that does not [`Staged::fits`] is refused with [`Error::InvalidHeader`]
/// (temporary: the caller's mistake must not bounce mail).
pub fn deliver_staged(d: &Delivery<'_>, mut staged: Staged) -> Result<Delivered, Error> {
    if !staged.fits(d) {
        return Err(Error::InvalidHeader(
            "the staged message was written for other headers or limits".into(),
        ));
    }
    let host = escape_hostname(d.hostname);
    let mut warnings = Vec::new();
    let (mailbox, folder, quota_before) = prepare(d, &host, &mut warnings)?;
    let size = staged.size;
    if let Some((q, usage)) = quota_before {
        quota::check(q, usage, size).map_err(Error::OverQuota)?;
    }
    let new_dir = mailbox.join("new");
    let path = if staged.maildir == d.maildir {
        commit(&mut staged.tmp, &new_dir, size, &host, &mut warnings)?
    } else {
        // Copied byte for byte: the staged bytes are the message as stored already.
        let mut tmp = TmpFile::create(&mailbox.join("tmp"), &host)?;
        let from = &mut staged.tmp;
        from.file
            .seek(io::SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", &from.path, e))?;
        let mut reader = (&from.file).take(size + 1);
        let copied = io::copy(&mut reader, &mut tmp.file)
            .map_err(|e| Error::io("copy into", &tmp.path, e))?;
        if copied != size {
            return Err(Error::io(
                "copy into",
                &tmp.path,
                io::Error::other(format!("copied {copied} of {size} bytes")),
            ));
        }
        tmp.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &tmp.path, e))?;
        commit(&mut tmp, &new_dir, size, &host, &mut warnings)?
        // The staged file is removed when `staged` drops.
    };
    Ok(delivered(d, path, size, folder, warnings))
}
