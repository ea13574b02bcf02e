//! Delivery into a real directory: layout, names, sizes, line endings, limits, folders,
//! loop detection and input failures.

use std::fs;
use std::io::Cursor;

use vmail_maildir::{deliver, Delivery, Error, BUFFER_SIZE};
use vmail_test_support::maildir::*;

fn deliver_bytes(d: &Delivery<'_>, msg: &[u8]) -> Result<vmail_maildir::Delivered, Error> {
    deliver(d, &mut Cursor::new(msg))
}

#[test]
fn delivers_into_new_with_real_size_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    // Missing parents are created too.
    let md = dir.path().join("example.org/alice/Maildir");
    let d = Delivery::new(&md, "mx1.example.org");
    let msg = b"Subject: hi\n\nbody\n";
    let got = deliver_bytes(&d, msg).unwrap();

    let file = only_file(&md.join("new"));
    assert_eq!(got.path, file);
    assert_eq!(got.size, msg.len() as u64);
    assert_eq!(got.folder, None);
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(s_size(&file), fs::metadata(&file).unwrap().len());
    assert_eq!(fs::read(&file).unwrap(), msg);
    assert!(names(&md.join("tmp")).is_empty());
    assert!(names(&md.join("cur")).is_empty());

    // <secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>, no ":2," in new/.
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(!name.contains(':'), "{name}");
    let (secs, rest) = name.split_once(".M").unwrap();
    assert!(secs.parse::<u64>().unwrap() > 1_600_000_000);
    let (usecs, rest) = rest.split_once('P').unwrap();
    assert!(usecs.parse::<u32>().unwrap() < 1_000_000);
    let (pid, rest) = rest.split_once('Q').unwrap();
    assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
    let (q, rest) = rest.split_once('.').unwrap();
    q.parse::<u64>().unwrap();
    assert_eq!(rest, format!("mx1.example.org,S={}", msg.len()));

    assert_eq!(mode(&file), 0o600);
    for sub in ["", "tmp", "new", "cur"] {
        assert_eq!(mode(&md.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&dir.path().join("example.org")), 0o700);
}

#[test]
fn host_is_escaped_in_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "evil/host:name");
    let got = deliver_bytes(&d, b"X: y\n\nz\n").unwrap();
    let name = got.path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.ends_with(".evil\\057host\\072name,S=8"), "{name}");
    assert_eq!(got.path.parent().unwrap(), dir.path().join("new"));
}

#[test]
fn crlf_is_stored_as_lf_and_s_counts_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    let msg = b"Subject: crlf\r\nX: y\r\n\r\nline 1\r\nline 2\r\nlone\rcr\r\n";
    let got = deliver_bytes(&d, msg).unwrap();
    let stored = fs::read(&got.path).unwrap();
    assert_eq!(stored, b"Subject: crlf\nX: y\n\nline 1\nline 2\nlone\rcr\n");
    assert_eq!(got.size, stored.len() as u64);
    assert_eq!(s_size(&got.path), stored.len() as u64);
    assert!(got.size < msg.len() as u64);
}

#[test]
fn message_without_final_newline_is_stored_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    for msg in [
        &b"Subject: x\n\nno newline"[..],
        b"Subject: x\r\n\r\nends in CR\r",
    ] {
        let got = deliver_bytes(&d, msg).unwrap();
        assert_eq!(fs::read(&got.path).unwrap(), lf_reference(msg));
        assert_eq!(s_size(&got.path), got.size);
    }
}

#[test]
fn empty_input_is_a_data_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.prepend.push(("Return-Path".into(), "<a@b>".into()));
    let e = deliver_bytes(&d, b"").unwrap_err();
    assert!(matches!(e, Error::Empty), "{e:?}");
    assert_eq!(e.exit_code(), 65);
    assert!(!e.is_temporary());
    assert_no_messages(dir.path());
}

#[test]
fn prepended_headers_come_first_and_count_in_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.prepend
        .push(("Return-Path".into(), "<bob@example.net>".into()));
    d.prepend
        .push(("Delivered-To".into(), "alice@example.org".into()));
    let msg = b"Received: from x\r\nSubject: s\r\n\r\nbody\r\n";
    let got = deliver_bytes(&d, msg).unwrap();
    let stored = fs::read(&got.path).unwrap();
    let expected = [
        &b"Return-Path: <bob@example.net>\nDelivered-To: alice@example.org\n"[..],
        &lf_reference(msg),
    ]
    .concat();
    assert_eq!(stored, expected);
    assert_eq!(s_size(&got.path), expected.len() as u64);
}

#[test]
fn invalid_prepend_is_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    let mut d = Delivery::new(&md, "h");
    d.prepend.push(("X".into(), "a\nInjected: yes".into()));
    let e = deliver_bytes(&d, b"S: x\n\nb\n").unwrap_err();
    assert!(matches!(e, Error::InvalidHeader(_)), "{e:?}");
    assert_eq!(e.exit_code(), 75);
    assert!(!md.exists());
}

#[test]
fn many_deliveries_get_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    for i in 0..300 {
        deliver_bytes(&d, format!("Subject: {i}\n\n{i}\n").as_bytes()).unwrap();
    }
    // And concurrently from several threads into the same Maildir.
    std::thread::scope(|s| {
        for t in 0..4 {
            let d = &d;
            s.spawn(move || {
                for i in 0..50 {
                    deliver_bytes(d, format!("Subject: {t}/{i}\n\nx\n").as_bytes()).unwrap();
                }
            });
        }
    });
    assert_eq!(names(&dir.path().join("new")).len(), 500);
    assert!(names(&dir.path().join("tmp")).is_empty());
}

#[test]
fn big_message_is_streamed_through_the_fixed_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    let total = 20 * 1024 * 1024 + 7;
    let mut gen = GenReader::new(total);
    let got = deliver(&d, &mut gen).unwrap();
    assert_eq!(gen.pos, total, "all input read");
    assert!(gen.max_buf <= BUFFER_SIZE, "read buffer {}", gen.max_buf);
    assert!(gen.reads as u64 >= total / BUFFER_SIZE as u64);
    let expected = GenReader::expected(total);
    assert_eq!(got.size, expected.len() as u64);
    assert_eq!(s_size(&got.path), expected.len() as u64);
    assert!(fs::read(&got.path).unwrap() == expected, "content differs");
}

#[test]
fn too_big_stops_reading_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.max_size = Some(1024 * 1024);
    let mut gen = GenReader::new(10 * 1024 * 1024);
    let e = deliver(&d, &mut gen).unwrap_err();
    assert!(
        matches!(e, Error::TooBig { limit } if limit == 1024 * 1024),
        "{e:?}"
    );
    assert!(!e.is_temporary());
    assert_eq!(e.exit_code(), 73);
    assert_eq!(e.enhanced_status(), "5.2.3");
    assert!(gen.pos < 2 * 1024 * 1024, "read {} bytes", gen.pos);
    assert_no_messages(dir.path());
}

#[test]
fn size_limit_is_inclusive_and_counts_prepended_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.prepend.push(("A".into(), "b".into())); // "A: b\n" = 5 bytes
    let msg = b"S: x\r\n\r\nbody\r\n"; // stored: "S: x\n\nbody\n" = 11 bytes
    d.max_size = Some(16);
    assert_eq!(deliver_bytes(&d, msg).unwrap().size, 16);
    d.max_size = Some(15);
    assert!(matches!(
        deliver_bytes(&d, msg),
        Err(Error::TooBig { limit: 15 })
    ));
    assert_eq!(names(&dir.path().join("new")).len(), 1);
    assert!(names(&dir.path().join("tmp")).is_empty());
}

#[test]
fn existing_folder_is_used_with_its_own_subdirs() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    fs::create_dir(md.join(".Lists")).unwrap();
    fs::create_dir(md.join(".Lists.Work")).unwrap();
    let mut d = Delivery::new(md, "h");
    d.folder = Some("Lists");
    let got = deliver_bytes(&d, b"S: 1\n\nb\n").unwrap();
    assert_eq!(got.folder.as_deref(), Some("Lists"));
    assert_eq!(got.path.parent().unwrap(), md.join(".Lists/new"));
    for sub in ["tmp", "new", "cur"] {
        assert_eq!(mode(&md.join(".Lists").join(sub)), 0o700);
    }
    assert!(names(&md.join("new")).is_empty());

    d.folder = Some("Lists.Work");
    let got = deliver_bytes(&d, b"S: 2\n\nb\n").unwrap();
    assert_eq!(got.path.parent().unwrap(), md.join(".Lists.Work/new"));
}

#[test]
fn missing_or_invalid_folder_falls_back_to_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    fs::create_dir_all(md.join(".Lists")).unwrap();
    fs::write(md.join(".NotADir"), b"").unwrap();
    let mut d = Delivery::new(&md, "h");
    for f in [
        "Nope", "../Lists", ".Lists", "a/b", "Li..sts", "NotADir", "INBOX", "inbox",
    ] {
        d.folder = Some(f);
        let got = deliver_bytes(&d, b"S: x\n\nb\n").unwrap();
        assert_eq!(got.folder, None, "{f}");
        assert_eq!(got.path.parent().unwrap(), md.join("new"), "{f}");
        if !f.eq_ignore_ascii_case("inbox") {
            assert_eq!(got.warnings.len(), 1, "{f}: {:?}", got.warnings);
        }
    }
    assert!(!md.join("Nope").exists() && !md.join(".Nope").exists());
    assert!(
        names(&md.join(".Lists")).is_empty(),
        "fallbacks never touch .Lists"
    );
    assert!(!dir.path().join("Lists").exists());
}

#[test]
fn loop_is_detected_in_the_header_section_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.loop_check = Some("alice@example.org");

    let folded = b"Received: x\r\nDelivered-To:\r\n  Alice@Example.ORG\r\nSubject: s\r\n\r\nb\r\n";
    let e = deliver_bytes(&d, folded).unwrap_err();
    assert!(
        matches!(&e, Error::Loop { address } if address == "alice@example.org"),
        "{e:?}"
    );
    assert!(!e.is_temporary());
    assert_eq!(e.exit_code(), 65);
    assert_eq!(e.enhanced_status(), "5.4.6");
    assert_no_messages(dir.path());

    let lower = b"delivered-to: alice@example.org\n\nb\n";
    assert!(matches!(deliver_bytes(&d, lower), Err(Error::Loop { .. })));

    // In the body, for someone else, or only in what we prepend: not a loop.
    let in_body = b"Subject: s\n\nDelivered-To: alice@example.org\n";
    let other = b"Delivered-To: bob@example.org\n\nb\n";
    deliver_bytes(&d, in_body).unwrap();
    deliver_bytes(&d, other).unwrap();
    d.prepend
        .push(("Delivered-To".into(), "alice@example.org".into()));
    deliver_bytes(&d, b"Subject: s\n\nb\n").unwrap();
    assert_eq!(names(&dir.path().join("new")).len(), 3);
}

#[test]
fn loop_found_in_a_later_chunk_still_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.loop_check = Some("a@b");
    let mut msg = Vec::new();
    for i in 0..5000 {
        msg.extend_from_slice(format!("X-Filler-{i}: some header text here\r\n").as_bytes());
    }
    msg.extend_from_slice(b"Delivered-To: a@b\r\n\r\nbody\r\n");
    assert!(msg.len() > 2 * BUFFER_SIZE);
    let mut r = ChunkReader {
        data: &msg,
        sizes: vec![1, 7, 4096, 65536],
        i: 0,
    };
    assert!(matches!(deliver(&d, &mut r), Err(Error::Loop { .. })));
    assert_no_messages(dir.path());
}

#[test]
fn input_failure_is_temporary_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    let mut r = FailingReader {
        ok_bytes: 3 * BUFFER_SIZE + 5,
    };
    let e = deliver(&d, &mut r).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert!(e.is_temporary());
    assert_eq!(e.exit_code(), 75);
    assert_no_messages(dir.path());
}

#[test]
fn maildir_path_that_is_a_file_is_a_temporary_error() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    fs::write(&md, b"not a dir").unwrap();
    let d = Delivery::new(&md, "h");
    let e = deliver_bytes(&d, b"S: x\n\nb\n").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 75);

    // A new/ that is a file: same, and the tmp/ file is cleaned up.
    let md2 = dir.path().join("Maildir2");
    fs::create_dir_all(md2.join("tmp")).unwrap();
    fs::create_dir_all(md2.join("cur")).unwrap();
    fs::write(md2.join("new"), b"").unwrap();
    let d = Delivery::new(&md2, "h");
    let e = deliver_bytes(&d, b"S: x\n\nb\n").unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert!(names(&md2.join("tmp")).is_empty());
}

#[test]
fn a_fixed_buffer_not_the_message_size_bounds_reads() {
    // Whatever the message size, deliver() asks the reader for at most BUFFER_SIZE bytes.
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    for total in [1u64, 100, BUFFER_SIZE as u64 + 1, 3 * 1024 * 1024] {
        let mut gen = GenReader::new(total);
        deliver(&d, &mut gen).unwrap();
        assert!(gen.max_buf <= BUFFER_SIZE);
        assert_eq!(gen.pos, total);
    }
}
