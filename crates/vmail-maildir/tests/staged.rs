//! Messages staged in a `tmp/` file before their mailbox is known (what vmail-lda writes
//! while lookupd answers): delivered exactly as a streamed delivery would store them, and
//! nothing left anywhere when they are not delivered.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use vmail_maildir::{deliver, deliver_staged, Delivery, Error, Quota, Stage};
use vmail_test_support::maildir::*;

const HOST: &str = "mx1.example.org";

fn prepend() -> Vec<(String, String)> {
    vec![("Return-Path".into(), "<bob@example.net>".into())]
}

/// A Maildir with its subdirectories, as the staging directory of a known user.
fn maildir(root: &Path, name: &str) -> std::path::PathBuf {
    let md = root.join(name).join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    md
}

fn staged(maildir: &Path, msg: &[u8], max_size: Option<u64>) -> vmail_maildir::Staged {
    Stage::create(maildir, HOST)
        .unwrap()
        .write(&prepend(), max_size, &mut Cursor::new(msg))
        .unwrap()
}

#[test]
fn a_staged_message_is_stored_as_a_streamed_one_would_be() {
    let root = tempfile::tempdir().unwrap();
    let inputs: [&[u8]; 6] = [
        b"Subject: lf\n\nbody\n",
        b"Subject: crlf\r\n\r\nbody\r\nmore\r\n",
        b"Subject: no final newline\n\nbody",
        // A CR before a CRLF stays a CR: the staged bytes must not be converted twice.
        b"Subject: cr\r\r\n\r\nx\r\r\ny\r",
        b"Subject: nul\n\n\0\xff\xfe\n",
        b"\n",
    ];
    for (i, msg) in inputs.iter().enumerate() {
        let streamed_md = maildir(root.path(), &format!("streamed{i}"));
        let staged_md = maildir(root.path(), &format!("staged{i}"));
        let mut d = Delivery::new(&streamed_md, HOST);
        d.prepend = prepend();
        let want = deliver(&d, &mut Cursor::new(msg)).unwrap();

        let s = staged(&staged_md, msg, None);
        assert_eq!(s.size(), want.size, "input {i}");
        // Nothing in new/ yet: only the tmp/ file.
        assert!(names(&staged_md.join("new")).is_empty());
        assert_eq!(names(&staged_md.join("tmp")).len(), 1);
        let mut d = Delivery::new(&staged_md, HOST);
        d.prepend = prepend();
        let got = deliver_staged(&d, s).unwrap();
        assert_eq!(got.size, want.size, "input {i}");
        assert_eq!(
            fs::read(&got.path).unwrap(),
            fs::read(&want.path).unwrap(),
            "input {i}"
        );
        assert_eq!(only_file(&staged_md.join("new")), got.path);
        assert_eq!(s_size(&got.path), got.size);
        assert_eq!(mode(&got.path), 0o600);
        assert!(names(&staged_md.join("tmp")).is_empty(), "input {i}");
    }
}

/// Another Maildir gets a copy (never the inode made in the first one's tmp/, which took
/// that directory's group and default ACL), byte for byte.
#[test]
fn staged_in_one_maildir_and_delivered_to_another_is_copied() {
    let root = tempfile::tempdir().unwrap();
    let guess = maildir(root.path(), "guess");
    // The real mailbox does not exist yet: it is created as for any delivery.
    let real = root.path().join("example.org/alice/Maildir");
    let msg = b"Subject: moved\r\n\r\nx\r\r\ny\r";
    let s = staged(&guess, msg, None);
    let mut d = Delivery::new(&real, HOST);
    d.prepend = prepend();
    let got = deliver_staged(&d, s).unwrap();
    assert_eq!(only_file(&real.join("new")), got.path);
    assert_eq!(
        fs::read(&got.path).unwrap(),
        b"Return-Path: <bob@example.net>\nSubject: moved\n\nx\r\ny\r"
    );
    assert_eq!(s_size(&got.path), got.size);
    assert_no_messages(&guess);
    assert!(names(&real.join("tmp")).is_empty());
}

#[test]
fn staged_on_another_file_system_is_copied_byte_for_byte() {
    let root = tempfile::tempdir().unwrap();
    let real = maildir(root.path(), "real");
    // /dev/shm is a tmpfs: another file system than the temp dir's on most machines.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let other_fs =
        fs::metadata(shm.path()).unwrap().dev() != fs::metadata(root.path()).unwrap().dev();
    let msg = b"Subject: copied\r\n\r\nx\r\r\ny\r";
    let shm_md = maildir(shm.path(), "u");
    let s = staged(&shm_md, msg, None);
    let mut d = Delivery::new(&real, HOST);
    d.prepend = prepend();
    let got = deliver_staged(&d, s).unwrap();
    let want_md = maildir(root.path(), "want");
    let mut want_d = Delivery::new(&want_md, HOST);
    want_d.prepend = prepend();
    let want = deliver(&want_d, &mut Cursor::new(msg)).unwrap();
    assert_eq!(fs::read(&got.path).unwrap(), fs::read(&want.path).unwrap());
    assert_eq!(got.size, want.size);
    assert!(names(&real.join("tmp")).is_empty());
    assert_no_messages(&shm_md);
    eprintln!("copy across file systems exercised: {other_fs}");
}

#[test]
fn a_dropped_stage_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let md = maildir(root.path(), "u");
    let s = staged(&md, b"Subject: x\n\ny\n", None);
    assert_eq!(s.size(), 45);
    assert_eq!(names(&md.join("tmp")).len(), 1);
    drop(s);
    assert_no_messages(&md);
}

#[test]
fn limits_apply_to_a_staged_message() {
    let root = tempfile::tempdir().unwrap();
    let md = maildir(root.path(), "u");
    let msg = b"Subject: big\n\n0123456789\n";

    // Size limit: while writing.
    let e = Stage::create(&md, HOST)
        .unwrap()
        .write(&prepend(), Some(20), &mut Cursor::new(msg))
        .unwrap_err();
    assert!(matches!(e, Error::TooBig { limit: 20 }), "{e:?}");
    assert_no_messages(&md);

    // Empty input.
    let e = Stage::create(&md, HOST)
        .unwrap()
        .write(&prepend(), None, &mut Cursor::new(b""))
        .unwrap_err();
    assert!(matches!(e, Error::Empty), "{e:?}");

    // Quota: on the final size, at delivery.
    let s = staged(&md, msg, None);
    let mut d = Delivery::new(&md, HOST);
    d.prepend = prepend();
    d.quota = Some(Quota {
        max_bytes: Some(s.size() - 1),
        max_messages: None,
    });
    let e = deliver_staged(&d, s).unwrap_err();
    assert!(matches!(e, Error::OverQuota(_)), "{e:?}");
    assert_no_messages(&md);

    // Within quota: delivered and counted.
    let s = staged(&md, msg, None);
    let size = s.size();
    d.quota = Some(Quota {
        max_bytes: Some(size),
        max_messages: None,
    });
    deliver_staged(&d, s).unwrap();
    assert_eq!(names(&md.join("new")).len(), 1);
    let maildirsize = fs::read_to_string(md.join("maildirsize")).unwrap();
    assert!(
        maildirsize.ends_with(&format!("\n{size} 1\n")),
        "{maildirsize}"
    );
}

#[test]
fn a_delivery_asking_for_other_headers_cannot_use_the_staged_file() {
    let root = tempfile::tempdir().unwrap();
    let md = maildir(root.path(), "u");
    for change in 0..3 {
        let s = staged(&md, b"Subject: x\n\ny\n", Some(1000));
        let mut d = Delivery::new(&md, HOST);
        d.prepend = prepend();
        d.max_size = Some(1000);
        match change {
            0 => d
                .prepend
                .push(("Delivered-To".into(), "alice@example.org".into())),
            1 => d.max_size = None,
            _ => d.loop_check = Some("alice@example.org"),
        }
        assert!(!s.fits(&d));
        let e = deliver_staged(&d, s).unwrap_err();
        assert!(e.is_temporary(), "{e:?}");
        assert_no_messages(&md);
    }
}

#[test]
fn a_staged_message_goes_to_an_existing_folder() {
    let root = tempfile::tempdir().unwrap();
    let md = maildir(root.path(), "u");
    fs::create_dir(md.join(".Lists")).unwrap();
    let s = staged(&md, b"Subject: x\n\ny\n", None);
    let mut d = Delivery::new(&md, HOST);
    d.prepend = prepend();
    d.folder = Some("Lists");
    let got = deliver_staged(&d, s).unwrap();
    assert_eq!(got.folder.as_deref(), Some("Lists"));
    assert_eq!(only_file(&md.join(".Lists/new")), got.path);
    assert!(names(&md.join("new")).is_empty());
}

/// Issue 19: a staged message handed to Dovecot's LDA is read back as stored, with the
/// fields vmail prepended (Dovecot's LDA adds no Return-Path), and the file goes when the
/// `Staged` does.
#[test]
fn a_staged_message_reads_back_as_stored() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let md = maildir(root.path(), "a");
    let msg = b"Return-Path: <x@y>\nSubject: s\n\nbody\n";
    let mut s = staged(&md, msg, None);
    for _ in 0..2 {
        let mut back = Vec::new();
        s.stored().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(
            back,
            [&b"Return-Path: <bob@example.net>\n"[..], msg].concat()
        );
    }
    drop(s);
    assert!(names(&md.join("tmp")).is_empty());
    assert!(names(&md.join("new")).is_empty());
}
