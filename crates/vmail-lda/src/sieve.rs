//! Recipients with an active Sieve script keep Pigeonhole (issue 19): `dovecot deliver`
//! ran their filters, vacation replies and `fileinto`s, and an admin who replaced it with
//! vmail-lda must not lose them silently. Such a message goes to Dovecot's LDA with the
//! same envelope; everybody else's is written by vmail-lda as before, at the cost of one
//! stat per delivery.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vmail_config::LdaConfig;

use crate::outcome::{sysexits, Outcome};
use crate::Args;

/// The recipient's active Sieve script (`[lda] sieve_script` under `home`), if there is one.
/// A symlink counts by what it points to (ManageSieve links `~/.dovecot.sieve` into
/// `~/sieve/`); a dangling one is no script, as for Pigeonhole. `Err` when the stat fails
/// for any other reason: whether filters apply is unknown, so the delivery is retried.
pub fn active_script(lda: &LdaConfig, home: &str) -> Result<Option<PathBuf>, String> {
    if lda.sieve_script.is_empty() || home.is_empty() {
        return Ok(None);
    }
    // Dovecot's own spelling, `~/.dovecot.sieve`, is relative to the home too.
    let script = lda
        .sieve_script
        .strip_prefix("~/")
        .unwrap_or(&lda.sieve_script);
    let path = Path::new(home).join(script);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(Some(path)),
        Ok(_) => Ok(None),
        // A link in a circle is as broken as a dangling one: Pigeonhole delivers to INBOX.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "looking for the Sieve script {}: {e}",
            path.display()
        )),
    }
}

/// The message for Dovecot's LDA as far as vmail-lda has taken it.
pub enum Message<'a> {
    /// Written into `tmp/` while lookupd answered (or the error of writing it).
    Staged(Result<vmail_maildir::Staged, vmail_maildir::Error>),
    /// The header section read; the rest is still on stdin.
    Stream(Vec<u8>, &'a mut dyn Read),
}

/// Hands the message for `recipient` (stored as `user`) to Dovecot's LDA. vmail's own checks
/// come first, as for a message it writes itself: the quota (`d.quota`: `[lda] over_quota`
/// decides, before Dovecot's LDA has seen anything; with the size for a staged message) and
/// `[lda] max_message_size` (while it is fed). Dovecot's LDA gets the message with the
/// fields vmail would have prepended (`d.prepend`; a staged file has them already):
/// it adds neither `Return-Path:` nor `Delivered-To:` itself, and without the latter the
/// loop check would not see a message a Sieve `redirect` sends back. A staged file goes
/// when it drops, whatever the outcome.
pub fn deliver(
    lda: &LdaConfig,
    args: &Args,
    d: &vmail_maildir::Delivery<'_>,
    message: Message<'_>,
    recipient: &str,
    user: &str,
) -> Outcome {
    let argv = lda_args(args, user, recipient, d.folder);
    let hand_off = |input: &mut dyn Read, max_size| {
        hand_off(
            lda,
            &argv,
            input,
            max_size,
            args.reject_reason,
            recipient,
            user,
        )
    };
    let refused = |e| Outcome::of_delivery_error(e, recipient, &lda.over_quota);
    match message {
        Message::Staged(Ok(mut staged)) => {
            if let Err(e) = vmail_maildir::precheck_size(d, staged.size()) {
                return refused(e);
            }
            match staged.stored() {
                // Its size was checked when it was written.
                Ok(mut input) => hand_off(&mut input, None),
                Err(e) => refused(e),
            }
        }
        // The input is spent: a full mailbox comes first, as in a delivery of vmail's own.
        Message::Staged(Err(e)) => refused(vmail_maildir::precheck(d).err().unwrap_or(e)),
        Message::Stream(head, input) => {
            if let Err(e) = vmail_maildir::precheck(d) {
                return refused(e);
            }
            let fields = match vmail_maildir::format_prepend(&d.prepend) {
                Ok(f) => f,
                Err(e) => return refused(e),
            };
            let mut input = std::io::Cursor::new(fields)
                .chain(std::io::Cursor::new(head))
                .chain(input);
            hand_off(&mut input, d.max_size)
        }
    }
}

/// The envelope for Dovecot's LDA, with `folder`, the one vmail-lda would deliver into
/// (`-m`, or the extension with `[lda] folder_from_extension`), as `-m`. `-d` is the stored address, which Dovecot's userdb knows
/// (`-d ${recipient}` may carry an extension, which it would not find: an unknown user, a
/// bounce); `-r` the recipient as addressed, so that Sieve's `envelope :detail` sees the
/// extension; `-a` the original recipient. dovecot-lda's own options that vmail-lda accepts
/// and ignores (`-c`, `-o`, `-e`, `-k`) are meant for it: they pass on; `-e` also when the
/// caller wants a rejection's reason ([`Args::reject_reason`]).
pub fn lda_args(args: &Args, user: &str, recipient: &str, folder: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if let Some(conf) = &args.dovecot_config {
        v.extend(["-c".into(), conf.display().to_string()]);
    }
    for o in &args.dovecot_option {
        v.extend(["-o".into(), o.clone()]);
    }
    if args.dovecot_e || args.reject_reason {
        v.push("-e".into());
    }
    if args.dovecot_k {
        v.push("-k".into());
    }
    v.extend(["-d".into(), user.into()]);
    // dovecot-lda exits 64 ("Invalid -a parameter") for an address it cannot parse
    // (`jürgen@`, `john smith@`, `a(b@`), which pipe(8) would bounce: such an address is
    // left out (Dovecot then uses -d), as vmail-lda without a script only logs -a.
    if plain_address(recipient) {
        v.extend(["-r".into(), recipient.into()]);
    } else {
        skipped("-r", recipient);
    }
    let original = args.original_recipient.as_deref().filter(|a| !a.is_empty());
    match original.unwrap_or(recipient) {
        a if plain_address(a) => v.extend(["-a".into(), a.into()]),
        a => skipped("-a", a),
    }
    if let Some(sender) = &args.sender {
        v.extend(["-f".into(), sender.clone()]);
    }
    if let Some(folder) = folder {
        v.extend(["-m".into(), folder.into()]);
    }
    v
}

/// A note for the mail log (pipe(8) puts stderr into a DSN only when the delivery fails).
fn skipped(option: &str, address: &str) {
    eprintln!("vmail-lda: {address:?} is no address Dovecot's LDA accepts: not passed as {option}");
}

/// Whether dovecot-lda 2.3/2.4 parses `addr` as a path (`-a`, `-r`): a local part that is an
/// ASCII dot-atom or a quoted string of printable ASCII, `@`, and a domain of letters,
/// digits, `-` and `_` labels. Stricter than Dovecot (which takes `a..b@`, say): an address
/// left out costs Sieve's `envelope` test a detail, one passed that Dovecot refuses costs
/// the message.
fn plain_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    let local_ok = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(quoted) => quoted_ok(quoted),
        None => {
            !local.is_empty()
                && local
                    .split('.')
                    .all(|w| !w.is_empty() && w.bytes().all(atext))
        }
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    local_ok && domain.split('.').all(label)
}

/// The inside of a quoted local part: printable ASCII, `"` and `\` only escaped.
fn quoted_ok(q: &str) -> bool {
    let mut bytes = q.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                if !bytes.next().is_some_and(|e| (b' '..=b'~').contains(&e)) {
                    return false;
                }
            }
            b'"' => return false,
            b' '..=b'~' => {}
            _ => return false,
        }
    }
    true
}

/// What dovecot-lda's exit status `code` means for pipe(8). vmail has just found the
/// recipient active, so a status that can only mean a local problem defers (75, with the
/// reason) instead of bouncing: 64 (an argument it refuses), 66 (no input: it has our pipe),
/// 67 (Dovecot's userdb disagrees with vmail's directory), 68 (a host name), 70 (internal
/// error), 72-74 (OS files, output files, I/O), 76 (a protocol it speaks only locally) and
/// 78 (its configuration). Verdicts on the message pass through, said by Dovecot itself: 0,
/// 65 (data), 69 (unavailable), 77 (refused: over quota or a Sieve `reject` with -e), and
/// the temporary 71 and 75.
fn verdict(program: &str, code: i32, user: &str) -> Outcome {
    let why = match code {
        64 => "refused its arguments",
        66 => "could not read its input",
        67 => "does not know the user (Dovecot's userdb disagrees with vmail's directory)",
        68 => "could not find a host name",
        70 => "had an internal error",
        72 => "missed an OS file",
        73 => "could not create an output file",
        74 => "had an I/O error",
        76 => "had a protocol error",
        78 => "found its configuration wrong",
        c if c == sysexits::EX_OK || (64..=78).contains(&c) => return Outcome::HandedOff(c),
        c => return Outcome::LocalTrouble(format!("{program} exited with status {c}")),
    };
    let why = format!("{program} exited with status {code} for {user}: it {why}");
    if matches!(code, 64 | 67 | 78) {
        Outcome::Misconfigured(why)
    } else {
        Outcome::LocalTrouble(why)
    }
}

/// Runs `[lda] dovecot_lda` with `argv` and `message` on its stdin. Its stdout and stderr
/// are ours (pipe(8) puts what it says into the log and the DSN). Its exit status passes
/// through when it is a verdict on the message (see `verdict`); anything else, a program
/// that cannot be run or one killed by a signal is a temporary failure, never a silent drop. A message longer
/// than `max_size` is refused as vmail-lda refuses it (`[lda] max_message_size`), the LDA
/// killed before it has seen the end.
pub fn hand_off(
    lda: &LdaConfig,
    argv: &[String],
    message: &mut dyn Read,
    max_size: Option<u64>,
    reject_reason: bool,
    recipient: &str,
    user: &str,
) -> Outcome {
    use std::os::unix::process::CommandExt;
    let program = &lda.dovecot_lda;
    let mut command = Command::new(program);
    command
        .args(argv)
        .env_remove(crate::EXECED_ENV)
        .stdin(Stdio::piped())
        // Its own process group, so that a deadline kills what it started too (sendmail for
        // a vacation reply), which would otherwise hold pipe(8)'s pipe open.
        .process_group(0);
    if reject_reason {
        command.stderr(Stdio::piped());
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::LocalTrouble(format!(
                "cannot run Dovecot's LDA {program} for a recipient with a Sieve script: {e}"
            ))
        }
    };
    let said = child.stderr.take().map(Stderr::read);
    let timeout = std::time::Duration::from_millis(lda.dovecot_lda_timeout_ms);
    let watchdog = Watchdog::start(child.id(), timeout);
    let mut stdin = child.stdin.take();
    let fed = match stdin.as_mut() {
        Some(pipe) => feed(message, pipe, max_size),
        None => Ok(()),
    };
    let refused = match fed {
        Err(Fed::Input(e)) => Some(Outcome::LocalTrouble(format!("reading the message: {e}"))),
        Err(Fed::TooBig) => Some(Outcome::TooBig(recipient.into())),
        Ok(()) | Err(Fed::Output) => None,
    };
    if let Some(outcome) = refused {
        // It has only part of the message: killed before its stdin ends, it cannot deliver
        // that. Its whole group (what it started too), while the group still exists (before
        // the wait reaps it); then the watchdog is stopped, so that it can never signal a
        // later group that got the same number (a long-running caller outlives its timeout).
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        watchdog.stop();
        return outcome;
    }
    // EOF for the LDA, which reads to the end before it delivers.
    drop(stdin);
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return Outcome::LocalTrouble(format!("waiting for {program}: {e}")),
    };
    let expired = watchdog.stop();
    let said = said.map(Stderr::text).unwrap_or_default();
    match status.code() {
        Some(sysexits::EX_NOPERM) if !said.is_empty() => Outcome::Rejected(said),
        Some(c) => verdict(program, c, user),
        None if expired => Outcome::LocalTrouble(format!(
            "{program} did not finish within {} ms ([lda] dovecot_lda_timeout_ms) and was killed",
            lda.dovecot_lda_timeout_ms
        )),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            Outcome::LocalTrouble(format!("{program} was killed by signal {signal}"))
        }
    }
}

/// What Dovecot's LDA writes to stderr, read by a thread while it runs (so that it never
/// blocks on a full pipe), for [`Args::reject_reason`]: with `-e` it writes the reason of a
/// refusal there, one line, and exits 77 (its `lda_do_deliver`); its logging goes to its own
/// log. The last [`Stderr::KEPT`] bytes are kept.
struct Stderr(std::sync::mpsc::Receiver<Vec<u8>>);

impl Stderr {
    const KEPT: usize = 4096;

    fn read(mut pipe: std::process::ChildStderr) -> Stderr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    // The reason comes last: keep the end (the third review: with a
                    // chatty log on stderr the first 4 KiB held only logging).
                    Ok(n) => {
                        kept.extend_from_slice(&buf[..n]);
                        if kept.len() > Self::KEPT {
                            kept.drain(..kept.len() - Self::KEPT);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(kept);
        });
        Stderr(rx)
    }

    /// Its reason: the last line it said (every line is copied to our log). Read
    /// once it has exited; a process it started that still holds the pipe (a vacation's
    /// sendmail) is not waited for longer than a second.
    fn text(self) -> String {
        let bytes = self
            .0
            .recv_timeout(std::time::Duration::from_secs(1))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for l in &lines {
            eprintln!("dovecot-lda: {l}");
        }
        // The reason is the last line it writes before exiting; anything before it is
        // logging (a `log_path = /dev/stderr`: user names, paths), which must not reach the
        // reply and from there a bounce to an outside sender.
        lines.last().map(|l| l.to_string()).unwrap_or_default()
    }
}

/// Kills a process group (SIGKILL) when its deadline passes first. A thread, because both
/// the copy to the LDA's stdin and the wait for it can block on a hung LDA.
struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    expired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(pgid: u32, timeout: std::time::Duration) -> Watchdog {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let expired = std::sync::Arc::new(AtomicBool::new(false));
        let flag = expired.clone();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                let pgid = nix::unistd::Pid::from_raw(pgid as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        Watchdog {
            done,
            expired,
            thread,
        }
    }

    /// Stops it (the LDA has been waited for); whether it had fired.
    fn stop(self) -> bool {
        drop(self.done);
        let _ = self.thread.join();
        self.expired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Which side of the copy failed.
enum Fed {
    /// Reading the message: the LDA must not keep what it got.
    Input(std::io::Error),
    /// More than `max_size` bytes.
    TooBig,
    /// Writing to the LDA (it exited early): its exit status says what happened.
    Output,
}

fn feed(message: &mut dyn Read, to: &mut dyn Write, max_size: Option<u64>) -> Result<(), Fed> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = match message.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fed::Input(e)),
        };
        size += n as u64;
        if max_size.is_some_and(|max| size > max) {
            return Err(Fed::TooBig);
        }
        if to.write_all(&buf[..n]).is_err() {
            return Err(Fed::Output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19 review: what dovecot-lda 2.3.19 takes as -a/-r (checked with the real one)
    /// passes; what it refuses with status 64 does not.
    #[test]
    fn only_addresses_dovecot_lda_parses_are_passed() {
        for good in [
            "a@example.org",
            "alice+lists@example.org",
            "\"john smith\"@example.org",
            "\"a(b\"@example.org",
            "\"a\\\"b\"@example.org",
            "a!#$%&'*+-/=?^_`{|}~@x.org",
            "a@xn--jrgen-kva.de",
            "a@j_x.de",
        ] {
            assert!(plain_address(good), "{good}");
        }
        for bad in [
            "jürgen@example.org",
            "john smith@example.org",
            "a(b@example.org",
            "\"jürgen\"@example.org",
            "a@",
            "a@x..org",
            "@x.org",
            "a",
            "\"a\"b\"@x.org",
            "a@jürgen.de",
        ] {
            assert!(!plain_address(bad), "{bad}");
        }
    }

    /// 64 and 67 from Dovecot's LDA for a user vmail found active are local problems:
    /// deferred with 4.3.5, never bounced; verdicts on the message pass through.
    #[test]
    fn local_problems_defer_and_verdicts_pass_through() {
        for code in [64, 66, 67, 68, 70, 72, 73, 74, 76, 78] {
            let o = verdict("/x/dovecot-lda", code, "a@b");
            assert_eq!(o.exit_code(), 75, "{code}");
            assert!(o.message().starts_with("4.3."), "{code}: {}", o.message());
            assert!(o.message().contains("a@b"), "{code}: {}", o.message());
        }
        for code in [64, 67, 78] {
            let m = verdict("/x/dovecot-lda", code, "a@b").message();
            assert!(m.starts_with("4.3.5 "), "{code}: {m}");
        }
        for code in [0, 65, 69, 71, 75, 77] {
            assert_eq!(verdict("/x", code, "a@b"), Outcome::HandedOff(code));
        }
        assert_eq!(verdict("/x", 1, "a@b").exit_code(), 75);
    }
}
