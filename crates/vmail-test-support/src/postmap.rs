//! `postmap -q` as the tests use it: one key of one table, with no Postfix instance running,
//! and what each kind of answer looks like.

use std::process::{Command, Output, Stdio};

use crate::postfix::backdate;

/// What `postmap -q` said about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostmapResult {
    /// Exit 0; the value printed on stdout, without the trailing newline.
    Found(String),
    /// Exit 1 with no `fatal:` message.
    NotFound,
    /// Anything else: the table could not be queried.
    Failed { status: Option<i32>, stderr: String },
}

/// Runs `postmap -c CONF -q KEY TABLE` with a throwaway minimal config dir (no Postfix instance
/// needed; `mysql:` etc. still load via `/etc/postfix/dynamicmaps.cf`) and returns its output.
pub fn postmap_query_output(key: &str, table: &str) -> Output {
    let conf = tempfile::Builder::new()
        .prefix("vmail-postmap")
        .tempdir()
        .expect("tempdir");
    // postmap insists on CONF/main.cf (`fatal: open CONF/main.cf`); an explicit level keeps it
    // from running in backwards-compatibility mode. Backdated, or postmap would wait up to 2 s
    // for the fresh file to "cool down" (see `backdate`).
    let main_cf = conf.path().join("main.cf");
    std::fs::write(&main_cf, "compatibility_level = 3.6\n").expect("write main.cf");
    backdate(&main_cf);
    Command::new("postmap")
        .arg("-c")
        .arg(conf.path())
        .arg("-q")
        .arg(key)
        .arg(table)
        .stdin(Stdio::null())
        .output()
        .expect("run postmap")
}

/// `postmap -q KEY TABLE`, classified. What Postfix 3.7 does, checked against a socketmap
/// server (`socketmap:unix:/path:NAME`; `tcp:` and `mysql:` below):
///
/// - `OK value`: exit 0, stdout `value\n`, stderr empty.
/// - `NOTFOUND `: exit 1, stdout and stderr empty.
/// - `TEMP reason`: exit 1, stderr
///   `postmap: warning: socketmap:unix:/p:NAME socketmap server temporary error: reason` and
///   `postmap: fatal: table socketmap:unix:/p:NAME: query error: Application error`.
/// - `TIMEOUT reason`: exit 1, `... socketmap server timeout error: reason` and the same
///   `fatal:` line.
/// - `PERM reason`: exit 1, `... socketmap server permanent error: reason` and
///   `postmap: fatal: table socketmap:unix:/p:NAME: query error` (without `: Application error`).
/// - `OK ` (empty data): exit 0, stdout `\n` (so `Found("")`), stderr `warning: table ...: key
///   KEY: empty string result is not allowed` and `warning: table ... should return NO RESULT
///   in case of NOT FOUND`.
/// - a reply that is not a netstring: exit 1, `warning: table ... lookup error: input format
///   error` and `fatal: table ...: query error: Application error`.
/// - no server at the path: exit 1, `warning: connect to /p: No such file or directory`,
///   `warning: table ... lookup error: No such file or directory` and `fatal: table ...: query
///   error: No such file or directory`.
///
/// So `Found`/`NotFound` are told apart by the exit status, and `NotFound` from an error by the
/// `fatal:` line. Every `fatal:` exit costs 1 s (Postfix sleeps before exiting on a fatal
/// error), so each `Failed` query takes a second.
///
/// `tcp:host:port` (tcp_table(5)): `200 value` is found (value %XX-decoded), `500 text` is
/// not found (exit 1, nothing on stderr), `400 text` is exit 1 with only `postmap: fatal: table
/// tcp:HOST:PORT: query error: ...` (the text after `query error:` is a stale errno message such
/// as `Operation now in progress`; the server's text is not shown). A refused connection is
/// retried 10 times one second apart (10 s) before `fatal: ... query error: Connection refused`.
/// `mysql:FILE` with a failing login: `warning: connect to mysql server HOST: Access denied
/// ...` and `fatal: table mysql:FILE: query error: Resource temporarily unavailable`.
pub fn postmap_query(key: &str, table: &str) -> PostmapResult {
    classify_postmap(&postmap_query_output(key, table))
}

fn classify_postmap(out: &Output) -> PostmapResult {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => {
            let v = String::from_utf8_lossy(&out.stdout).into_owned();
            PostmapResult::Found(v.strip_suffix('\n').unwrap_or(&v).to_string())
        }
        Some(1) if !stderr.contains("fatal:") => PostmapResult::NotFound,
        status => PostmapResult::Failed { status, stderr },
    }
}
