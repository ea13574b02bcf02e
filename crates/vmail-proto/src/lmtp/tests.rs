//! Examples for each rule in the module documentation: replies here, command lines in
//! `tests/command.rs`, message data in `tests/data.rs`, the state machine in
//! `tests/session.rs`.

use super::*;

mod command;
mod data;

fn wire(reply: &Reply) -> String {
    String::from_utf8(reply.to_bytes()).unwrap()
}

#[test]
fn single_line_reply_with_status() {
    assert_eq!(
        wire(&Reply::unknown_user("no such user")),
        "550 5.1.1 no such user\r\n"
    );
    assert_eq!(wire(&Reply::over_quota("full")), "552 5.2.2 full\r\n");
    assert_eq!(
        wire(&Reply::over_quota_temporary("full")),
        "452 4.2.2 full\r\n"
    );
    assert_eq!(wire(&Reply::temporary_failure("db")), "451 4.3.0 db\r\n");
    assert_eq!(wire(&Reply::mail_loop("loop")), "554 5.4.6 loop\r\n");
    assert_eq!(wire(&Reply::new(354, None, "go")), "354 go\r\n");
    assert_eq!(wire(&Reply::new(250, None, "")), "250\r\n");
    assert_eq!(wire(&Reply::ok("")), "250 2.0.0\r\n");
}

#[test]
fn multi_line_reply_marks_all_but_the_last() {
    let r = Reply::multi(250, None, ["host", "PIPELINING", "SIZE 10"]);
    assert_eq!(wire(&r), "250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    let r = Reply::multi(451, Some(Status::new(4, 3, 0)), ["a", "b"]);
    assert_eq!(wire(&r), "451-4.3.0 a\r\n451 4.3.0 b\r\n");
    let none: [&str; 0] = [];
    assert_eq!(wire(&Reply::multi(250, None, none)), "250\r\n");
}

#[test]
fn reply_text_cannot_break_the_framing() {
    let r = Reply::temporary_failure("db down\r\n250 2.0.0 forged\0\x1b[31mé");
    let w = wire(&r);
    assert_eq!(w.matches("\r\n").count(), 1);
    assert!(w.ends_with("\r\n"));
    assert!(!w[..w.len() - 2].bytes().any(|b| !(32..127).contains(&b)));
    let long = "x".repeat(5000);
    assert!(wire(&Reply::ok(&long)).len() <= 512);
}

#[test]
fn reply_code_and_status_are_kept_consistent() {
    let r = Reply::new(999, None, "x");
    assert_eq!((r.code(), r.status()), (451, Some(Status::new(4, 3, 0))));
    let r = Reply::new(42, None, "x");
    assert_eq!(r.code(), 451);
    // A 2.x.x status on a 550 is dropped rather than sent contradicting the code.
    let r = Reply::new(550, Some(Status::new(2, 0, 0)), "x");
    assert_eq!(wire(&r), "550 x\r\n");
    assert!(Reply::ok("").is_positive() && !Reply::too_big().is_positive());
}
mod session;
