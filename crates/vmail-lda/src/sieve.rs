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
    let path = Path::new(home).join(&lda.sieve_script);
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

/// The envelope for Dovecot's LDA. `-d` is the stored address, which Dovecot's userdb knows
/// (`-d ${recipient}` may carry an extension, which it would not find: an unknown user, a
/// bounce); `-r` the recipient as addressed, so that Sieve's `envelope :detail` sees the
/// extension; `-a` the original recipient. dovecot-lda's own options that vmail-lda accepts
/// and ignores (`-c`, `-o`, `-e`, `-k`) are meant for it: they pass on.
pub fn lda_args(args: &Args, user: &str, recipient: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if let Some(conf) = &args.dovecot_config {
        v.extend(["-c".into(), conf.display().to_string()]);
    }
    for o in &args.dovecot_option {
        v.extend(["-o".into(), o.clone()]);
    }
    if args.dovecot_e {
        v.push("-e".into());
    }
    if args.dovecot_k {
        v.push("-k".into());
    }
    v.extend(["-d".into(), user.into(), "-r".into(), recipient.into()]);
    let original = args.original_recipient.as_deref().filter(|a| !a.is_empty());
    v.extend(["-a".into(), original.unwrap_or(recipient).into()]);
    if let Some(sender) = &args.sender {
        v.extend(["-f".into(), sender.clone()]);
    }
    if let Some(folder) = &args.folder {
        v.extend(["-m".into(), folder.clone()]);
    }
    v
}

/// Runs `[lda] dovecot_lda` with `argv` and `message` on its stdin. Its stdout and stderr
/// are ours (pipe(8) puts what it says into the log and the DSN). Its exit status passes
/// through when pipe(8) knows it (0, 64-78); anything else, a program that cannot be run
/// or one killed by a signal is a temporary failure, never a silent drop. A message longer
/// than `max_size` is refused as vmail-lda refuses it (`[lda] max_message_size`), the LDA
/// killed before it has seen the end.
pub fn hand_off(
    lda: &LdaConfig,
    argv: &[String],
    message: &mut dyn Read,
    max_size: Option<u64>,
    recipient: &str,
) -> Outcome {
    let program = &lda.dovecot_lda;
    let mut child = match Command::new(program)
        .args(argv)
        .env_remove(crate::EXECED_ENV)
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Outcome::LocalTrouble(format!(
                "cannot run Dovecot's LDA {program} for a recipient with a Sieve script: {e}"
            ))
        }
    };
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
        // that.
        let _ = child.kill();
        let _ = child.wait();
        return outcome;
    }
    // EOF for the LDA, which reads to the end before it delivers.
    drop(stdin);
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return Outcome::LocalTrouble(format!("waiting for {program}: {e}")),
    };
    let code = status.code();
    match code {
        Some(c) if c == sysexits::EX_OK || (64..=78).contains(&c) => Outcome::HandedOff(c),
        Some(c) => Outcome::LocalTrouble(format!("{program} exited with status {c}")),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            Outcome::LocalTrouble(format!("{program} was killed by signal {signal}"))
        }
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
