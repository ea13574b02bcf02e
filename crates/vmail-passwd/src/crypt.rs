//! crypt(3) strings: DES, `$1$` MD5, `$5$`/`$6$` SHA-crypt and `$2a$/$2b$/$2y$` bcrypt,
//! recognised by their shape, computed with the `pwhash` crate, compared in constant time.
//!
//! Every string is validated completely before it reaches `pwhash`: `pwhash` 1.0 panics
//! on some characters (control characters and U+0080 in a salt) and accepts cost
//! parameters that would keep a worker busy for hours.

use std::borrow::Cow;

use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::{Error, Scheme};

/// Highest `rounds=` accepted in a `$5$`/`$6$` string. glibc allows 999,999,999 (minutes of
/// CPU per login); passlib's defaults (535,000 and 656,000) are the largest seen in use.
pub(crate) const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;
/// Lowest `rounds=` glibc honours; it would rewrite a lower value, so the string could
/// never have come out of crypt(3).
const MIN_SHA_CRYPT_ROUNDS: u32 = 1_000;
/// Highest bcrypt cost accepted (cost 10 is about 50 ms; 16 is 64 times that).
pub(crate) const MAX_BCRYPT_COST: u32 = 16;
const MIN_BCRYPT_COST: u32 = 4;
/// Cost of the bcrypt hashes `hash()` writes (`$2y$10$`).
pub(crate) const BCRYPT_COST: u32 = 10;

/// The crypt(3) alphabet, in Dovecot's `salt_chars` order.
const H64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_h64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

fn all_h64(s: &str) -> bool {
    s.bytes().all(is_h64)
}

/// What a crypt-family value turned out to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A crypt(3) string `pwhash` computes; the scheme it is.
    Unix(Scheme),
    /// A `$argon2i$`/`$argon2id$` PHC string (accepted under CRYPT as well).
    Argon2,
}

/// Recognises and validates a crypt(3) string.
pub(crate) fn classify(s: &str) -> Result<Kind, Error> {
    if s.starts_with("$argon2") {
        return Ok(Kind::Argon2);
    }
    if let Some(rest) = s.strip_prefix("$1$") {
        check_md5(rest)?;
        return Ok(Kind::Unix(Scheme::Md5Crypt));
    }
    if let Some(rest) = s.strip_prefix("$5$") {
        check_sha(rest, 43)?;
        return Ok(Kind::Unix(Scheme::Sha256Crypt));
    }
    if let Some(rest) = s.strip_prefix("$6$") {
        check_sha(rest, 86)?;
        return Ok(Kind::Unix(Scheme::Sha512Crypt));
    }
    if let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|magic| s.strip_prefix(magic))
    {
        check_bcrypt(rest)?;
        return Ok(Kind::Unix(Scheme::BlfCrypt));
    }
    if s.starts_with('$') || s.starts_with('_') {
        // yescrypt ($y$, Debian 12's default for /etc/shadow), scrypt ($7$), $2x$,
        // sha1crypt, BSDi (_) ...: real formats this crate does not implement.
        let id: String = s
            .get(1..)
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        return Err(Error::UnknownScheme(format!("CRYPT ${id}$")));
    }
    if s.is_empty() {
        return Err(Error::Malformed("empty crypt(3) string"));
    }
    if s.len() == 13 && all_h64(s) {
        return Ok(Kind::Unix(Scheme::DesCrypt));
    }
    Err(Error::Malformed("not a crypt(3) string this crate knows"))
}

/// `$1$<salt 0..8>$<22 chars>` (the `$1$` already stripped).
fn check_md5(rest: &str) -> Result<(), Error> {
    let (salt, sum) = rest
        .split_once('$')
        .ok_or(Error::Malformed("MD5-CRYPT string without checksum"))?;
    if salt.len() > 8 || !all_h64(salt) {
        return Err(Error::Malformed(
            "MD5-CRYPT salt is not 0-8 crypt characters",
        ));
    }
    if sum.len() != 22 || !all_h64(sum) {
        return Err(Error::Malformed(
            "MD5-CRYPT checksum is not 22 crypt characters",
        ));
    }
    Ok(())
}

/// `[rounds=N$]<salt 0..16>$<checksum>` (the `$5$`/`$6$` already stripped).
fn check_sha(rest: &str, sum_len: usize) -> Result<(), Error> {
    let rest = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, after) = r
                .split_once('$')
                .ok_or(Error::Malformed("SHA-crypt string truncated after rounds="))?;
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Malformed("SHA-crypt rounds= is not a number"));
            }
            let n: u32 = n
                .parse()
                .map_err(|_| Error::Malformed("SHA-crypt rounds= is not a number"))?;
            if n < MIN_SHA_CRYPT_ROUNDS {
                return Err(Error::Malformed("SHA-crypt rounds= below 1000"));
            }
            if n > MAX_SHA_CRYPT_ROUNDS {
                return Err(Error::Malformed(
                    "SHA-crypt rounds= above the limit vmail-passwd accepts",
                ));
            }
            after
        }
        None => rest,
    };
    let (salt, sum) = rest
        .split_once('$')
        .ok_or(Error::Malformed("SHA-crypt string without checksum"))?;
    if salt.len() > 16 || !all_h64(salt) {
        return Err(Error::Malformed(
            "SHA-crypt salt is not 0-16 crypt characters",
        ));
    }
    if sum.len() != sum_len || !all_h64(sum) {
        return Err(Error::Malformed(
            "SHA-crypt checksum has the wrong length or characters",
        ));
    }
    Ok(())
}

/// `NN$<53 chars>` (the `$2?$` already stripped).
fn check_bcrypt(rest: &str) -> Result<(), Error> {
    let (cost, tail) = rest
        .split_once('$')
        .ok_or(Error::Malformed("bcrypt string without cost"))?;
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("bcrypt cost is not two digits"));
    }
    let cost: u32 = cost
        .parse()
        .map_err(|_| Error::Malformed("bcrypt cost is not two digits"))?;
    if cost < MIN_BCRYPT_COST {
        return Err(Error::Malformed("bcrypt cost below 4"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(Error::Malformed(
            "bcrypt cost above the limit vmail-passwd accepts",
        ));
    }
    if tail.len() != 53 || !all_h64(tail) {
        return Err(Error::Malformed(
            "bcrypt salt+checksum is not 53 characters",
        ));
    }
    Ok(())
}

/// Recomputes a validated crypt(3) string for `password` and compares in constant time.
///
/// `pwhash`'s own `verify` compares with a hand-rolled XOR fold; `subtle` is used here so
/// the comparison is not at the optimiser's mercy.
pub(crate) fn verify(stored: &str, password: &[u8]) -> Result<bool, Error> {
    let computed = pwhash::unix::crypt(password, stored)
        .map_err(|_| Error::Malformed("crypt(3) string rejected by the hash function"))?;
    Ok(computed.as_bytes().ct_eq(stored.as_bytes()).into())
}

/// `n` random characters from the crypt(3) alphabet (64 characters: a byte's low 6 bits
/// pick one without bias).
fn salt(n: usize) -> Result<String, Error> {
    let mut bytes = vec![0u8; n];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Hash(format!("no random salt: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(H64[usize::from(b & 63)]))
        .collect())
}

/// A fresh crypt(3) string (without `{SCHEME}` prefix) in the format `scheme` names.
/// Salt sizes and defaults follow `doveadm pw` (`password-scheme-crypt.c`), except bcrypt,
/// which gets cost 10 instead of Dovecot's 5.
pub(crate) fn hash(scheme: Scheme, password: &[u8]) -> Result<String, Error> {
    let setting: Cow<'static, str> = match scheme {
        Scheme::DesCrypt => salt(2)?.into(),
        Scheme::Md5Crypt => format!("$1${}$", salt(8)?).into(),
        Scheme::Sha256Crypt => format!("$5${}$", salt(16)?).into(),
        Scheme::Sha512Crypt => format!("$6${}$", salt(16)?).into(),
        Scheme::BlfCrypt => {
            let setup = pwhash::bcrypt::BcryptSetup {
                salt: None,
                cost: Some(BCRYPT_COST),
                variant: Some(pwhash::bcrypt::BcryptVariant::V2y),
            };
            return pwhash::bcrypt::hash_with(setup, password)
                .map_err(|e| Error::Hash(format!("bcrypt: {e}")));
        }
        _ => return Err(Error::Hash(format!("{scheme} is not a crypt(3) format"))),
    };
    pwhash::unix::crypt(password, &setting).map_err(|e| Error::Hash(format!("{scheme}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DES: &str = "abmF1QH4PEr.E"; // mkpasswd -m descrypt '' ab
    const SHA512: &str = "$6$abcdefgh$nRoI5p2iQY.LFgM97T5tsIdnRNV1j6LCm4t0GGBwNOtWq2W1xbP4IzPew6xt6qwjxz1/9PI3n/QpyrUih90eL0";

    #[test]
    fn classifies() {
        assert_eq!(classify(DES), Ok(Kind::Unix(Scheme::DesCrypt)));
        assert_eq!(classify(SHA512), Ok(Kind::Unix(Scheme::Sha512Crypt)));
        assert_eq!(
            classify("$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc."),
            Ok(Kind::Unix(Scheme::Md5Crypt))
        );
        assert_eq!(
            classify(
                "$5$rounds=20000$n4nQWt8IoqixMITD$fX.E1ThQgnMEtLh/8yDaA/U6cs/qxLFfNraWl8Whh1/"
            ),
            Ok(Kind::Unix(Scheme::Sha256Crypt))
        );
        for magic in ["2a", "2b", "2y"] {
            let s = format!("${magic}$05$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O");
            assert_eq!(classify(&s), Ok(Kind::Unix(Scheme::BlfCrypt)));
        }
        assert_eq!(classify("$argon2id$v=19$..."), Ok(Kind::Argon2));
    }

    #[test]
    fn unsupported_formats_are_unknown_schemes() {
        let yescrypt = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";
        assert_eq!(
            classify(yescrypt),
            Err(Error::UnknownScheme("CRYPT $y$".into()))
        );
        assert!(matches!(
            classify("$2x$05$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O"),
            Err(Error::UnknownScheme(_))
        ));
        assert!(matches!(
            classify("_J9..CCCCXBrJUJV154M"),
            Err(Error::UnknownScheme(_))
        ));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "abmF1QH4PEr.",    // 12 chars
            "abmF1QH4PEr.E1",  // 14 chars
            "abmF1QH4PEr\u{80}", // the character that makes pwhash index out of bounds
            "ab\0F1QH4PEr.E",
            "$1$",
            "$1$saltsalt",
            "$1$saltsaltx$aPDJeQnE4KE73948IKLNc.", // 9-char salt
            "$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc",   // checksum too short
            "$6$",
            "$6$abcdefgh",
            "$6$abcdefgh$short",
            "$6$rounds=$abcdefgh$x",
            "$6$rounds=abc$abcdefgh$x",
            "$6$rounds=999$abcdefgh$nRoI5p2iQY.LFgM97T5tsIdnRNV1j6LCm4t0GGBwNOtWq2W1xbP4IzPew6xt6qwjxz1/9PI3n/QpyrUih90eL0",
            "$6$rounds=999999999$abcdefgh$nRoI5p2iQY.LFgM97T5tsIdnRNV1j6LCm4t0GGBwNOtWq2W1xbP4IzPew6xt6qwjxz1/9PI3n/QpyrUih90eL0",
            "$6$rounds=99999999999$abcdefgh$x",
            "$6$ab\u{1}defgh$nRoI5p2iQY.LFgM97T5tsIdnRNV1j6LCm4t0GGBwNOtWq2W1xbP4IzPew6xt6qwjxz1/9PI3n/QpyrUih90eL0",
            "$2y$",
            "$2y$5$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O",
            "$2y$03$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O",
            "$2y$31$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1O",
            "$2y$05$wP1tAduwiPEE4828D3AXqOPBpnIwKQi1WYGh70HNezGlR3SzVSU1",
            "$2y$05$wP1tAduwiPEE4828D3AX\u{80}PBpnIwKQi1WYGh70HNezGlR3SzVSU",
            "*",
            "!",
        ] {
            assert!(classify(bad).is_err(), "{bad:?} classified");
        }
    }

    #[test]
    fn verifies_and_hashes() {
        assert_eq!(verify(DES, b""), Ok(true));
        assert_eq!(verify(DES, b"x"), Ok(false));
        assert_eq!(verify(SHA512, br#"it's "q" \ $x"#), Ok(true));
        for scheme in [
            Scheme::DesCrypt,
            Scheme::Md5Crypt,
            Scheme::Sha256Crypt,
            Scheme::Sha512Crypt,
        ] {
            let h = hash(scheme, b"pw").unwrap();
            assert_eq!(classify(&h), Ok(Kind::Unix(scheme)), "{h}");
            assert_eq!(verify(&h, b"pw"), Ok(true));
            assert_eq!(verify(&h, b"pW"), Ok(false));
        }
        assert!(hash(Scheme::Sha512Crypt, b"pw").unwrap().len() == 3 + 16 + 1 + 86);
        assert!(hash(Scheme::Plain, b"pw").is_err());
    }
}
