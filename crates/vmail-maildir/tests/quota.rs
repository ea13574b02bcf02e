//! Maildir++ quota: `maildirsize` creation, updates and rebuilds in Dovecot's format, and
//! refusals that leave no file behind.

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, SystemTime};

use vmail_maildir::quota::{self, MAILDIRSIZE, REBUILD_SIZE};
use vmail_maildir::{deliver, Delivery, Error, OverQuota, Quota, Usage};
use vmail_test_support::maildir::*;

fn quota(bytes: Option<u64>, messages: Option<u64>) -> Quota {
    Quota {
        max_bytes: bytes,
        max_messages: messages,
    }
}

fn maildirsize(md: &Path) -> String {
    fs::read_to_string(md.join(MAILDIRSIZE)).unwrap()
}

/// Creates a message file of `len` bytes under `md/sub` with the given name.
fn put(md: &Path, sub: &str, name: &str, len: usize) {
    let dir = md.join(sub);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), vec![b'x'; len]).unwrap();
}

#[test]
fn maildirsize_is_created_then_appended_in_dovecot_format() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(10_000), None));
    let a = deliver(&d, &mut Cursor::new(b"S: a\n\nfirst\n")).unwrap();
    assert_eq!(maildirsize(md), format!("10000S\n0 0\n{} 1\n", a.size));
    assert_eq!(mode(&md.join(MAILDIRSIZE)), 0o600);
    let b = deliver(&d, &mut Cursor::new(b"S: b\r\n\r\nsecond\r\n")).unwrap();
    assert_eq!(
        maildirsize(md),
        format!("10000S\n0 0\n{} 1\n{} 1\n", a.size, b.size)
    );
    assert_eq!(
        quota::usage(md, &d.quota.unwrap(), "h").unwrap(),
        Usage {
            bytes: a.size + b.size,
            messages: 2
        }
    );
    // No temporary files left in the root.
    let extra: Vec<_> = names(md)
        .into_iter()
        .filter(|n| n.starts_with("maildirsize."))
        .collect();
    assert!(extra.is_empty(), "{extra:?}");
}

#[test]
fn limits_line_variants() {
    for (q, line) in [
        (quota(Some(5000), Some(10)), "5000S,10C"),
        (quota(None, Some(10)), "10C"),
        (quota(None, None), "0S"),
        (quota(Some(0), Some(0)), "0S"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Delivery::new(dir.path(), "h");
        d.quota = Some(q);
        let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
        assert_eq!(
            maildirsize(dir.path()),
            format!("{line}\n0 0\n{} 1\n", got.size)
        );
    }
}

#[test]
fn no_quota_leaves_maildirsize_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = Delivery::new(dir.path(), "h");
    deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert!(!dir.path().join(MAILDIRSIZE).exists());
}

#[test]
fn rebuild_counts_new_and_cur_of_every_folder_but_not_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    put(md, "new", "1.M1P1Q1.h,S=100", 100);
    put(md, "cur", "2.M2P2Q2.h,S=50:2,S", 50);
    put(md, "cur", "3.M3P3Q3.h:2,", 30); // no S=: stat()
    put(md, ".Lists/cur", "4.M4P4Q4.h,S=20,W=22:2,", 20);
    put(md, ".Lists.Sub/new", "5.M5P5Q5.h,S=7", 7);
    put(md, "tmp", "6.M6P6Q6.h", 1000);
    put(md, ".Lists/tmp", "7.M7P7Q7.h", 1000);
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(1_000_000), Some(100)));
    let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert_eq!(
        maildirsize(md),
        format!("1000000S,100C\n207 5\n{} 1\n", got.size)
    );
}

#[test]
fn over_storage_quota_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    put(md, "cur", "1.M1P1Q1.h,S=90:2,S", 90);
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(100), None));
    let e = deliver(&d, &mut Cursor::new(b"S: 12345\n\nbody\n")).unwrap_err();
    match &e {
        Error::OverQuota(OverQuota::Storage {
            used,
            message,
            limit,
        }) => {
            assert_eq!((*used, *message, *limit), (90, 15, 100));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_temporary());
    assert_eq!(e.exit_code(), 75);
    assert_eq!(e.enhanced_status(), "4.2.2");
    assert!(names(&md.join("new")).is_empty());
    assert!(names(&md.join("tmp")).is_empty());
    assert_eq!(
        maildirsize(md),
        "100S\n90 1\n",
        "no delta for a refused message"
    );

    // Exactly up to the limit fits.
    let got = deliver(&d, &mut Cursor::new(b"S: 1\n\n123\n")).unwrap();
    assert_eq!(got.size, 10);
    assert_eq!(maildirsize(md), "100S\n90 1\n10 1\n");
}

#[test]
fn over_message_quota_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    put(md, "new", "1.M1P1Q1.h,S=1", 1);
    put(md, "cur", "2.M2P2Q2.h,S=1:2,", 1);
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(None, Some(2)));
    let mut gen = GenReader::new(1000);
    let e = deliver(&d, &mut gen).unwrap_err();
    assert!(
        matches!(
            e,
            Error::OverQuota(OverQuota::Messages { used: 2, limit: 2 })
        ),
        "{e:?}"
    );
    assert_eq!(gen.reads, 0, "input not touched");
    assert!(names(&md.join("tmp")).is_empty());
    assert_eq!(names(&md.join("new")).len(), 1);
}

#[test]
fn a_big_message_over_quota_is_not_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Delivery::new(dir.path(), "h");
    d.quota = Some(quota(Some(512 * 1024), None));
    let mut gen = GenReader::new(50 * 1024 * 1024);
    let e = deliver(&d, &mut gen).unwrap_err();
    assert!(
        matches!(e, Error::OverQuota(OverQuota::Storage { .. })),
        "{e:?}"
    );
    assert!(gen.pos < 2 * 1024 * 1024, "read {}", gen.pos);
    assert_no_messages(dir.path());
    assert_eq!(maildirsize(dir.path()), "524288S\n0 0\n");
}

#[test]
fn a_grown_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    put(md, "cur", "1.M1P1Q1.h,S=300:2,", 300);
    // Wrong numbers, but big enough to force a rebuild.
    let mut content = String::from("1000S\n");
    while content.len() < REBUILD_SIZE {
        content.push_str("1 1\n");
    }
    fs::write(md.join(MAILDIRSIZE), &content).unwrap();
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(1000), None));
    let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert_eq!(maildirsize(md), format!("1000S\n300 1\n{} 1\n", got.size));

    // Just under the threshold: trusted as is.
    let mut small = String::from("1000S\n");
    while small.len() + 4 < REBUILD_SIZE {
        small.push_str("0 0\n");
    }
    fs::write(md.join(MAILDIRSIZE), &small).unwrap();
    deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert!(maildirsize(md).starts_with(&small));
}

#[test]
fn changed_limits_rewrite_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    fs::write(md.join(MAILDIRSIZE), "1000S\n5 1\n").unwrap();
    put(md, "new", "1.M1P1Q1.h,S=40", 40);
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(2000), Some(9)));
    let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert_eq!(maildirsize(md), format!("2000S,9C\n40 1\n{} 1\n", got.size));
}

#[test]
fn corrupt_files_are_rebuilt() {
    for bad in [
        "",
        "1000S",
        "1000S\n-50 -1\n",
        "1000S\nnot numbers\n",
        "1000S\n1 1\n\n2 1\n",
        "1000S\n1\u{0} 1\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path();
        put(md, "new", "1.M1P1Q1.h,S=11", 11);
        fs::write(md.join(MAILDIRSIZE), bad).unwrap();
        let mut d = Delivery::new(md, "h");
        d.quota = Some(quota(Some(1000), None));
        let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
        assert_eq!(
            maildirsize(md),
            format!("1000S\n11 1\n{} 1\n", got.size),
            "{bad:?}"
        );
    }
}

#[test]
fn over_quota_numbers_are_trusted_only_when_fresh_and_single_line() {
    // The file claims 1000 of 100 bytes used; the Maildir is really empty.
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(100), None));
    fs::create_dir_all(md.join("new")).unwrap();

    // Fresh, one usage line: believed.
    fs::write(md.join(MAILDIRSIZE), "100S\n1000 10\n").unwrap();
    assert!(matches!(
        deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")),
        Err(Error::OverQuota(_))
    ));

    // Two usage lines: recounted, delivered.
    fs::write(md.join(MAILDIRSIZE), "100S\n500 5\n500 5\n").unwrap();
    let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert_eq!(maildirsize(md), format!("100S\n0 0\n{} 1\n", got.size));
    fs::remove_file(&got.path).unwrap();

    // One line but older than 15 minutes: recounted, delivered.
    fs::write(md.join(MAILDIRSIZE), "100S\n1000 10\n").unwrap();
    fs::File::options()
        .write(true)
        .open(md.join(MAILDIRSIZE))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(16 * 60))
        .unwrap();
    let got = deliver(&d, &mut Cursor::new(b"S: a\n\nb\n")).unwrap();
    assert_eq!(maildirsize(md), format!("100S\n0 0\n{} 1\n", got.size));
}

#[test]
fn deltas_match_a_recount_after_many_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path();
    fs::create_dir(md.join(".Lists")).unwrap();
    let mut d = Delivery::new(md, "h");
    d.quota = Some(quota(Some(100_000_000), Some(1000)));
    // The first delivery creates the file; after that deliveries only append, which is
    // safe concurrently (a concurrent *rebuild* may lose or double a delta, as documented).
    deliver(&d, &mut Cursor::new(b"S: first\n\nx\n")).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let mut d = d.clone();
            s.spawn(move || {
                for i in 0..25 {
                    d.folder = if i % 2 == 0 { Some("Lists") } else { None };
                    let body = "x".repeat(i * 37 + t);
                    deliver(&d, &mut Cursor::new(format!("S: {t}\n\n{body}\n"))).unwrap();
                }
            });
        }
    });
    let text = maildirsize(md);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("100000000S,1000C"));
    let (mut b, mut c) = (0i64, 0i64);
    for l in lines {
        let (x, y) = l.split_once(' ').unwrap();
        b += x.parse::<i64>().unwrap();
        c += y.parse::<i64>().unwrap();
    }
    let real = quota::recalculate(md).unwrap();
    assert_eq!((b as u64, c as u64), (real.bytes, real.messages));
    assert_eq!(real.messages, 101);
}
