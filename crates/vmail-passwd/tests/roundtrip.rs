//! `hash()` output verifies with `verify()` and with the real `doveadm pw -t`.

use std::process::Command;

use proptest::prelude::*;
use vmail_passwd::{hash, is_legacy, scheme_of, verify, Scheme};

/// Every scheme `hash()` accepts (all but CRYPT, which names no format).
fn hashable() -> impl Iterator<Item = Scheme> {
    Scheme::ALL.into_iter().filter(|s| *s != Scheme::Crypt)
}

const PASSWORDS: [&str; 3] = ["", "correct horse", "Pässwörd \"quoted\" 'single' \\ €"];

#[test]
fn hash_then_verify_every_scheme() {
    for scheme in hashable() {
        // Argon2 and bcrypt are expensive in a debug build: one password each.
        let passwords: &[&str] = match scheme {
            Scheme::Argon2i | Scheme::Argon2id | Scheme::BlfCrypt => &PASSWORDS[2..],
            _ => &PASSWORDS,
        };
        for pw in passwords {
            let stored = hash(scheme, pw.as_bytes()).unwrap();
            assert!(
                stored.starts_with(&format!("{{{scheme}}}")),
                "{scheme}: {stored}"
            );
            assert_eq!(scheme_of(&stored, Scheme::Plain), Ok(scheme));
            assert_eq!(
                verify(&stored, pw.as_bytes(), Scheme::Plain),
                Ok(true),
                "{scheme}"
            );
            let mut wrong = pw.as_bytes().to_vec();
            wrong.push(b'!');
            if !(scheme == Scheme::DesCrypt && pw.len() >= 8) {
                assert_eq!(
                    verify(&stored, &wrong, Scheme::Plain),
                    Ok(false),
                    "{scheme}"
                );
            }
            assert_eq!(verify(&stored, b"x", Scheme::Plain), Ok(false), "{scheme}");
        }
    }
}

#[test]
fn hash_output_shapes() {
    let s = hash(Scheme::Sha512Crypt, b"pw").unwrap();
    let rest = s.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
    let (salt, sum) = rest.split_once('$').unwrap();
    assert_eq!((salt.len(), sum.len()), (16, 86), "{s}");
    assert!(hash(Scheme::BlfCrypt, b"pw")
        .unwrap()
        .starts_with("{BLF-CRYPT}$2y$10$"));
    assert!(hash(Scheme::Argon2id, b"pw")
        .unwrap()
        .starts_with("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"));
    assert_eq!(hash(Scheme::Plain, b"p w").unwrap(), "{PLAIN}p w");
    assert_eq!(
        hash(Scheme::PlainMd5, b"x").unwrap(),
        "{PLAIN-MD5}9dd4e461268c8034f5c8564e155c67a6" // doveadm pw -s PLAIN-MD5 -p x
    );
    assert_eq!(
        hash(Scheme::Sha, b"sec ret").unwrap(),
        "{SHA}k4jPuZgIyyuhMqZOekyNpm6xgUs=" // doveadm pw -s SHA -p 'sec ret'
    );
    // Fresh salt every time.
    assert_ne!(
        hash(Scheme::Ssha512, b"pw").unwrap(),
        hash(Scheme::Ssha512, b"pw").unwrap()
    );
    // What we write for new passwords is not legacy; what we can write for old ones is.
    for s in [Scheme::Sha512Crypt, Scheme::BlfCrypt, Scheme::Ssha512] {
        assert!(!is_legacy(&hash(s, b"pw").unwrap(), Scheme::Crypt), "{s}");
    }
    assert!(is_legacy(
        &hash(Scheme::DesCrypt, b"pw").unwrap(),
        Scheme::Crypt
    ));
}

/// Runs `doveadm -O pw -t STORED -p PASSWORD`; None when doveadm is not installed.
fn doveadm_accepts(stored: &str, password: &str) -> Option<bool> {
    // -O: read no dovecot.conf; the built-in defaults are all `pw -t` needs.
    match Command::new("doveadm")
        .args(["-O", "pw", "-t", stored, "-p", password])
        .output()
    {
        Ok(out) => {
            let ok =
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("(verified)");
            Some(ok)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running doveadm: {e}"),
    }
}

#[test]
fn doveadm_accepts_our_hashes() {
    let pw = "Pässwörd \"quoted\" 'single' \\ € $HOME";
    if doveadm_accepts("{PLAIN}x", "x").is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("doveadm is not installed, and CI=true: scripts/test-deps installs it");
        }
        eprintln!("SKIPPED doveadm_accepts_our_hashes: doveadm not installed (dovecot-core)");
        return;
    }
    for scheme in hashable() {
        let stored = hash(scheme, pw.as_bytes()).unwrap();
        assert_eq!(
            doveadm_accepts(&stored, pw),
            Some(true),
            "doveadm rejects {scheme}"
        );
    }
    // doveadm really checks: a wrong password fails.
    for scheme in [Scheme::Sha512Crypt, Scheme::BlfCrypt, Scheme::Argon2id] {
        let stored = hash(scheme, pw.as_bytes()).unwrap();
        assert_eq!(doveadm_accepts(&stored, "wrong"), Some(false), "{scheme}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any password without NUL (which no Dovecot protocol can carry) round-trips
    /// through SSHA512, and a different one fails.
    #[test]
    fn ssha512_round_trip(
        pw in proptest::collection::vec(1u8..=255, 0..200),
        other in proptest::collection::vec(1u8..=255, 0..200),
    ) {
        let stored = hash(Scheme::Ssha512, &pw).unwrap();
        prop_assert_eq!(verify(&stored, &pw, Scheme::Crypt), Ok(true));
        prop_assert_eq!(verify(&stored, &other, Scheme::Crypt), Ok(pw == other));
    }

    #[test]
    fn plain_round_trip(pw in "[^\u{0}]{0,64}", other in "[^\u{0}]{0,64}") {
        let stored = hash(Scheme::Plain, pw.as_bytes()).unwrap();
        prop_assert_eq!(&stored, &format!("{{PLAIN}}{pw}"));
        prop_assert_eq!(verify(&stored, pw.as_bytes(), Scheme::Crypt), Ok(true));
        prop_assert_eq!(verify(&stored, other.as_bytes(), Scheme::Crypt), Ok(pw == other));
        // The same password stored bare under a PLAIN default (unless it looks like a
        // prefix or a $1$ string, which Dovecot reads differently).
        if !pw.is_empty() && !pw.starts_with('{') && !pw.starts_with("$1$") {
            prop_assert_eq!(verify(&pw, pw.as_bytes(), Scheme::Plain), Ok(true));
        }
    }

    /// A password with a NUL byte never verifies, even against its own bytes.
    #[test]
    fn nul_passwords_never_verify(a in "[a-z]{0,8}", b in "[a-z]{0,8}") {
        let pw = format!("{a}\0{b}");
        let stored = format!("{{PLAIN.hex}}{}", hex::encode(&pw));
        prop_assert_eq!(verify(&stored, pw.as_bytes(), Scheme::Crypt), Ok(false));
        prop_assert!(hash(Scheme::Ssha512, pw.as_bytes()).is_err());
    }
}
