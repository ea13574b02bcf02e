//! pipe(8)'s command line without clap. Postfix starts one vmail-lda per message, and clap's
//! first parse in a fresh process (building the command, touching its code for the first
//! time) costs ~0.1 ms of a ~4 ms delivery. The argument vectors master.cf produces
//! (`-f SENDER -a ADDRESS -d ADDRESS`, maybe `--config PATH` and dovecot-lda's options) are
//! taken here; anything else — help, version, errors, joined or unusual forms — goes to clap,
//! which stays the definition of the command line. A test checks that this parser never
//! disagrees with clap.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Args;

/// `Some` only for argument vectors whose meaning is plain; `None` means "ask clap".
pub(crate) fn parse(argv: &[OsString]) -> Option<Args> {
    let mut args = Args::default();
    let mut it = argv.iter().skip(1);
    while let Some(opt) = it.next() {
        match opt.to_str()? {
            "-e" if !args.dovecot_e => args.dovecot_e = true,
            "-k" if !args.dovecot_k => args.dovecot_k = true,
            "--config" => set(&mut args.config, path(it.next()?)?)?,
            "-c" => set(&mut args.dovecot_config, path(it.next()?)?)?,
            "-o" => args.dovecot_option.push(text(it.next()?)?),
            "-d" => set(&mut args.recipient, text(it.next()?)?)?,
            "-f" => set(&mut args.sender, text(it.next()?)?)?,
            "-a" => set(&mut args.original_recipient, text(it.next()?)?)?,
            "-m" => set(&mut args.folder, text(it.next()?)?)?,
            _ => return None,
        }
    }
    Some(args)
}

/// An option's value: anything clap might read as an option itself is left to clap.
fn value(v: &OsString) -> Option<OsString> {
    let s = v.as_encoded_bytes();
    (s.first() != Some(&b'-')).then(|| v.clone())
}

/// clap refuses an empty path (but not an empty address: the null sender).
fn path(v: &OsString) -> Option<PathBuf> {
    value(v).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn text(v: &OsString) -> Option<String> {
    value(v)?.into_string().ok()
}

/// An option given twice is clap's to report.
fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    fn argv(v: &[&str]) -> Vec<OsString> {
        std::iter::once("vmail-lda")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn master_cf_lines_take_the_fast_path() {
        let a = parse(&argv(&[
            "-f",
            "bob@remote.test",
            "-a",
            "Alice+x@example.org",
            "-d",
            "alice+x@example.org",
        ]))
        .expect("fast path");
        assert_eq!(a.sender.as_deref(), Some("bob@remote.test"));
        assert_eq!(a.original_recipient.as_deref(), Some("Alice+x@example.org"));
        assert_eq!(a.recipient.as_deref(), Some("alice+x@example.org"));
        // The null sender of a bounce: pipe(8) passes an empty ${sender}.
        let a = parse(&argv(&["--config", "/etc/v.toml", "-f", "", "-d", "a@b"])).unwrap();
        assert_eq!(a.sender.as_deref(), Some(""));
        assert_eq!(a.config, Some(PathBuf::from("/etc/v.toml")));
        let a = parse(&argv(&["-e", "-k", "-o", "x=1", "-o", "y=2", "-d", "a@b"])).unwrap();
        assert_eq!(a.dovecot_option, ["x=1", "y=2"]);
        assert!(a.dovecot_e && a.dovecot_k);
    }

    #[test]
    fn unusual_forms_go_to_clap() {
        for v in [
            &["--help"][..],
            &["-V"],
            &["-d"],
            &["-d", "a@b", "-d", "c@d"],
            &["-da@b"],
            &["--config=/x"],
            &["--config", ""],
            &["-d", "-f"],
            &["-d", "--", "x"],
            &["-x"],
            &["-e", "-e"],
            &["stray"],
        ] {
            assert!(parse(&argv(v)).is_none(), "{v:?}");
        }
        // Not UTF-8: clap reports it (or takes it, for the path).
        use std::os::unix::ffi::OsStringExt;
        let mut bad = argv(&["-d"]);
        bad.push(OsString::from_vec(vec![b'a', 0xff]));
        assert!(parse(&bad).is_none());
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("-d".to_string()),
            Just("-f".to_string()),
            Just("-a".to_string()),
            Just("-m".to_string()),
            Just("-c".to_string()),
            Just("-o".to_string()),
            Just("-e".to_string()),
            Just("-k".to_string()),
            Just("--config".to_string()),
            Just("--config=x".to_string()),
            Just("--".to_string()),
            Just("-".to_string()),
            Just("".to_string()),
            Just("-dx".to_string()),
            Just("--help".to_string()),
            "[a-z@.+ ]{1,12}",
        ]
    }

    proptest! {
        /// Whenever the fast path answers, clap gives the same arguments.
        #[test]
        fn never_disagrees_with_clap(tokens in proptest::collection::vec(token(), 0..9)) {
            let v: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let argv = argv(&v);
            if let Some(fast) = parse(&argv) {
                let clap = Args::try_parse_from(&argv);
                prop_assert!(clap.is_ok(), "{v:?}: clap says {:?}", clap.err().map(|e| e.to_string()));
                prop_assert_eq!(fast, clap.unwrap());
            }
        }
    }
}
