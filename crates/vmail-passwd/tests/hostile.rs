//! Hostile and broken input: `verify`, `scheme_of` and `is_legacy` return `Err` or
//! `Ok(false)` and never panic, and errors never repeat the hash.

use base64::Engine;
use proptest::prelude::*;
use vmail_passwd::{is_legacy, scheme_of, verify, Error, Scheme};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Valid hashes of "secret" whose every truncation gets tried.
const VALID: [&str; 9] = [
    "abxxB7HlIeckU", // mkpasswd -m descrypt, password "a"
    "$1$XOId7MD7$JV35C2J39.oE7/581hnQC.",
    "$5$rounds=20000$n4nQWt8IoqixMITD$fX.E1ThQgnMEtLh/8yDaA/U6cs/qxLFfNraWl8Whh1/",
    "{SHA512-CRYPT}$6$I/Can1TH3J7J9Jql$N9K4pCpdp6eskUmeM3W/954E8co80fC5mCf3tBiJZqPsWmM/VZ7YU0Xvhp6kx1dbMkeyTEaf.2qDvFgXud.UK1",
    "$2b$05$lcSdMm0dVPQixYeQ1TasLumwyCKX1.RloM9N97fFhmmni26VGtdce",
    "{SSHA}3/gmZoIbdcfHCS+5ZkLf5pHcfkKvOcfS",
    "{SSHA512.HEX}1db23fae684e2a3b4912b119cf54c6f9cc7e20eff673da7bb24fb3afb2645cfdbb9aad1a7f6e2cca94c17e5e1146c0c6ad67ef7485d9a0e3d3a8567eb69626a9537fcef3",
    "{PLAIN-MD5}d43517715f4eb300c88312b4e4d7a51b",
    "{SHA512}UbNTYwIYfnRTaA2n86JbDxP1YbK3KDPAD5Y3ZTDqRPndifRGrgZuQj22gKAogYrwAav/AxPzxuIB1TVbgIhsDw==",
];

/// Err or Ok(false), and an error message that does not contain `stored`'s value.
fn assert_rejected(stored: &str, password: &[u8]) {
    match verify(stored, password, Scheme::Crypt) {
        Ok(false) => {}
        Ok(true) => panic!("{stored:?} verified"),
        Err(e) => {
            let msg = format!("{e} {e:?}");
            let value = stored.split_once('}').map_or(stored, |(_, v)| v);
            if value.len() >= 8 {
                assert!(!msg.contains(value), "error repeats the hash: {msg}");
            }
        }
    }
    let _ = scheme_of(stored, Scheme::Crypt);
    let _ = is_legacy(stored, Scheme::Crypt);
}

#[test]
fn truncated_hashes() {
    for full in VALID {
        for end in 0..full.len() {
            if full.is_char_boundary(end) {
                assert_rejected(&full[..end], b"secret");
            }
        }
    }
}

/// A cheap Argon2id string (m=64 KiB, t=1) so every truncation can be verified.
#[test]
fn truncated_argon2() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let full = format!("{{ARGON2ID}}{}", a.hash_password(b"secret", &salt).unwrap());
    assert_eq!(verify(&full, b"secret", Scheme::Crypt), Ok(true));
    for end in 0..full.len() {
        assert_rejected(&full[..end], b"secret");
    }
}

#[test]
fn garbage_encodings() {
    for stored in [
        "{SHA}!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "{SHA}k4jPuZgIyyuhMqZOekyNpm6xgUs=====",
        "{SHA}k4jPuZgIyyuhMqZOekyNpm6x gUs=",
        "{SSHA}@@@@",
        "{SSHA256}////",
        "{SHA256.hex}zz",
        "{SHA256.b64}%%%%",
        "{PLAIN-MD5}d43517715f4eb300c88312b4e4d7a51",   // 31 hex digits
        "{PLAIN-MD5}d43517715f4eb300c88312b4e4d7a51bd4", // 34 hex digits
        "{PLAIN-MD5}g43517715f4eb300c88312b4e4d7a51b",  // 32 chars, neither hex nor base64 of 16
        "{SHA512-CRYPT.b64}!!!",
        "{SHA512-CRYPT.hex}ff00ff",
        "{ARGON2ID}$6$I/Can1TH3J7J9Jql$N9K4pCpdp6eskUmeM3W/954E8co80fC5mCf3tBiJZqPsWmM/VZ7YU0Xvhp6kx1dbMkeyTEaf.2qDvFgXud.UK1",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$***$***",
    ] {
        assert!(verify(stored, b"secret", Scheme::Crypt).is_err(), "{stored}");
    }
}

#[test]
fn salted_shorter_than_digest() {
    for (scheme, len) in [("SSHA", 20), ("SSHA256", 32), ("SSHA512", 64)] {
        for n in [0, 1, len - 1, len] {
            let stored = format!("{{{scheme}}}{}", B64.encode(vec![7u8; n]));
            assert_eq!(
                verify(&stored, b"secret", Scheme::Crypt),
                Err(Error::Malformed(
                    "salted digest is not longer than the digest"
                )),
                "{stored}"
            );
        }
        // One byte of salt is enough (Dovecot: size > digest length).
        let stored = format!("{{{scheme}}}{}", B64.encode(vec![7u8; len + 1]));
        assert_eq!(verify(&stored, b"secret", Scheme::Crypt), Ok(false));
    }
}

#[test]
fn unknown_schemes() {
    for (stored, name) in [
        ("{UNKNOWN}x", "UNKNOWN"),
        ("{}x", ""),
        ("{SHA.rot13}x", "SHA.rot13"),
        ("{SCRAM-SHA-256}x", "SCRAM-SHA-256"),
        ("{sha512crypt}x", "sha512crypt"),
    ] {
        assert_eq!(
            verify(stored, b"x", Scheme::Crypt),
            Err(Error::UnknownScheme(name.into())),
            "{stored}"
        );
        assert!(!is_legacy(stored, Scheme::Crypt));
    }
    // mkpasswd's default on Debian 12 is yescrypt, which this crate does not implement.
    assert_eq!(
        verify(
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
            b"x",
            Scheme::Crypt
        ),
        Err(Error::UnknownScheme("CRYPT $y$".into()))
    );
    // A `{` without `}` is not a prefix: under a PLAIN default it is the password.
    assert_eq!(verify("{UNKNOWN", b"{UNKNOWN", Scheme::Plain), Ok(true));
    assert!(matches!(
        verify("{UNKNOWN", b"x", Scheme::Crypt),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn nul_bytes() {
    for stored in [
        "\0",
        "{\0}x",
        "{SHA\0}x",
        "abxxB7HlIec\0U",
        "$1$XOId7MD7$JV35C2J39.oE7/581hnQC\0",
        "{SHA}k4jPuZgIyyuhMqZOekyNpm6x\0Us=",
        "$6$\0",
        "{PLAIN}a\0b",
    ] {
        assert_rejected(stored, b"a\0b");
        assert_rejected(stored, b"secret");
    }
}

#[test]
fn ten_kilobyte_strings() {
    let big = "A".repeat(10 * 1024);
    let big_b64 = B64.encode(vec![0x55u8; 10 * 1024]);
    for stored in [
        big.clone(),
        format!("{{{big}"),
        format!("{{{big}}}x"),
        format!("{{SHA}}{big}"),
        format!("{{SSHA512}}{big_b64}"),
        format!("{{PLAIN}}{big}"),
        format!("{{PLAIN.b64}}{big_b64}"),
        format!("$6${big}"),
        format!("$6$rounds={big}"),
        format!("$1${big}"),
        format!("$2y$05${big}"),
        format!("$argon2id$v=19$m=65536,t=3,p=1${big}"),
        format!("{{ARGON2ID}}$argon2id$v=19$m=65536,t=3,p=1${big}${big}"),
        format!("{{CRYPT}}{big}"),
    ] {
        assert_rejected(&stored, b"secret");
        assert_rejected(&stored, big.as_bytes());
    }
    // An error never carries a long name back.
    let e = verify(&format!("{{{big}}}x"), b"x", Scheme::Crypt).unwrap_err();
    assert!(e.to_string().len() < 100, "{e}");
    // A long stored PLAIN value still matches itself (within the password limit).
    let plain = "p".repeat(4000);
    assert_eq!(
        verify(
            &format!("{{PLAIN}}{plain}"),
            plain.as_bytes(),
            Scheme::Crypt
        ),
        Ok(true)
    );
}

#[test]
fn invalid_utf8_passwords() {
    let passwords: [&[u8]; 4] = [b"\xff", b"\xc3", b"secr\xe9t", b"\xed\xa0\x80"];
    for stored in VALID {
        for pw in passwords {
            assert_eq!(verify(stored, pw, Scheme::Crypt), Ok(false), "{stored}");
        }
    }
    // Non-UTF-8 passwords verify where the hash is of those bytes.
    let stored = vmail_passwd::hash(Scheme::Sha512Crypt, b"secr\xe9t").unwrap();
    assert_eq!(verify(&stored, b"secr\xe9t", Scheme::Crypt), Ok(true));
    assert_eq!(
        verify("{PLAIN.hex}73656372e974", b"secr\xe9t", Scheme::Crypt),
        Ok(true)
    );
}

#[test]
fn cost_limits() {
    // Valid crypt(3)/PHC strings whose cost would stall a worker are refused up front.
    for stored in [
        "$6$rounds=999999999$abcdefgh$nRoI5p2iQY.LFgM97T5tsIdnRNV1j6LCm4t0GGBwNOtWq2W1xbP4IzPew6xt6qwjxz1/9PI3n/QpyrUih90eL0",
        "$2y$31$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O",
        "$argon2id$v=19$m=4194304,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
        "$argon2id$v=19$m=65536,t=1000,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
    ] {
        assert!(
            matches!(verify(stored, b"secret", Scheme::Crypt), Err(Error::Malformed(_))),
            "{stored}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary text, and text shaped like the formats' beginnings, never panics.
    #[test]
    fn arbitrary_stored_never_panics(
        stored in prop_oneof![
            ".{0,120}",
            "\\{[A-Za-z0-9.-]{0,14}\\}.{0,120}",
            "\\$(1|5|6|2a|2b|2y|y|argon2id|argon2i)\\$.{0,120}",
            "\\$[56]\\$rounds=([0-9]{0,3}|[0-9]{8,12})\\$[./0-9A-Za-z]{0,20}\\$[./0-9A-Za-z]{0,90}",
            "\\{(SHA|SSHA|SHA256|SSHA512|PLAIN-MD5|MD5)(\\.hex|\\.b64)?\\}[0-9a-fA-F+/=]{0,140}",
        ],
        password in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let r = verify(&stored, &password, Scheme::Crypt);
        prop_assert!(!matches!(r, Ok(true)) || !password.contains(&0));
        let _ = scheme_of(&stored, Scheme::Crypt);
        let _ = is_legacy(&stored, Scheme::Plain);
        let _ = verify(&stored, &password, Scheme::Ssha512);
    }
}
