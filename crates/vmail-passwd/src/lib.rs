//! Password schemes for vmail, compatible with Dovecot's: verify a password against a
//! stored hash (`{SCHEME}` prefix or a configured default, as in Dovecot's
//! `default_pass_scheme`) and produce new hashes that Dovecot reads as they are.
//!
//! Hashing and verifying are blocking CPU work (bcrypt cost 10 and Argon2id take tens of
//! milliseconds, Argon2id also 64 MiB of memory): async callers run them on a bounded
//! blocking pool (`tokio::task::spawn_blocking` behind a semaphore), never on the reactor.
//! The crate does no I/O and keeps no state.
//!
//! Supported: CRYPT (DES, `$1$`, `$5$`, `$6$`, `$2a$`/`$2b$`/`$2y$` and, as an extension,
//! `$argon2i$`/`$argon2id$`), DES-CRYPT, MD5-CRYPT (alias MD5), SHA256-CRYPT,
//! SHA512-CRYPT, BLF-CRYPT, PLAIN/CLEAR, PLAIN-MD5, SHA, SSHA, SHA256, SSHA256, SHA512,
//! SSHA512, ARGON2I, ARGON2ID, with Dovecot's `.hex`/`.b64` suffixes
//! (`Authentication.PasswordSchemes` in the Dovecot wiki; `password-scheme.c`).
//!
//! Secrets are compared in constant time (`subtle`). Errors and `Debug` output never
//! contain a password or a stored hash. Passwords are bytes; one containing a NUL byte
//! never verifies and is never hashed, since no Dovecot protocol can carry it, and neither
//! does one longer than [`MAX_PASSWORD_LEN`] (SHA-crypt's cost grows with the square of
//! the password length).
//! Stored hashes whose cost parameters would stall a worker (SHA-crypt `rounds=` above
//! 1,000,000, bcrypt cost above 16, Argon2 memory above 1 GiB, passes above 32 or lanes
//! above 16) are refused as malformed.
//!
//! ```
//! use vmail_passwd::{hash, is_legacy, verify, Scheme};
//!
//! // The classic setup: bare DES crypt from MySQL's ENCRYPT(), default scheme CRYPT.
//! let old = "abxxB7HlIeckU";
//! assert_eq!(verify(old, b"a", Scheme::Crypt), Ok(true));
//! if is_legacy(old, Scheme::Crypt) {
//!     let new = hash(Scheme::Sha512Crypt, b"a")?; // "{SHA512-CRYPT}$6$..."
//!     assert_eq!(verify(&new, b"a", Scheme::Crypt), Ok(true));
//! }
//! # Ok::<(), vmail_passwd::Error>(())
//! ```

mod argon;
mod crypt;
mod digest;
mod scheme;
mod stored;

pub use scheme::Scheme;

use digest::Alg;

/// Longest password, in bytes, that `verify` checks (longer ones never match) and `hash`
/// accepts: far beyond any real password, and it bounds SHA-crypt's cost, which grows
/// with the square of the password length.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Passwords no Dovecot client could send: with a NUL byte, or absurdly long.
fn unusable_password(password: &[u8]) -> bool {
    password.len() > MAX_PASSWORD_LEN || password.contains(&0)
}

/// Why a stored hash could not be used, or a password not hashed. Never carries the
/// password or the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `{SCHEME}` prefix, scheme name or crypt(3) format this crate does not implement.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// The stored value does not have the shape its scheme requires.
    #[error("malformed password hash: {0}")]
    Malformed(&'static str),
    /// Hashing failed or the scheme cannot be a hash target.
    #[error("cannot hash password: {0}")]
    Hash(String),
}

/// Verifies `password` against `stored`, which may carry a `{SCHEME}` prefix; `default`
/// applies to values without one (the classic setup stores bare DES crypt → `Crypt`).
///
/// `Ok(true)`/`Ok(false)` for match/mismatch; `Err` only when the stored value cannot be
/// interpreted (unknown scheme, malformed), which callers treat as a failed login plus a
/// configuration problem to log. Blocking CPU work: see the crate documentation.
///
/// As in Dovecot: a `{` without a closing `}` is no prefix; a bare `$1$salt$hash` is
/// MD5-CRYPT whatever `default` says; `{MD5}` is MD5-CRYPT or PLAIN-MD5 by content; any
/// crypt-family prefix accepts any crypt(3) format, the string deciding.
pub fn verify(stored: &str, password: &[u8], default: Scheme) -> Result<bool, Error> {
    let parsed = stored::parse(stored, default)?;
    if unusable_password(password) {
        return Ok(false);
    }
    parsed.check.verify(password)
}

/// Hashes `password` with a fresh random salt and returns the string to store, with its
/// `{SCHEME}` prefix (e.g. `{SHA512-CRYPT}$6$...`) so Dovecot reads it as it is.
///
/// Parameters: SHA512-CRYPT/SHA256-CRYPT `$6$`/`$5$` with a 16-character salt and the
/// default 5000 rounds, MD5-CRYPT an 8-character salt, DES-CRYPT 2 (like `doveadm pw`);
/// BLF-CRYPT `$2y$` cost 10; ARGON2ID m=65536,t=3,p=1 and ARGON2I m=32768,t=4,p=1
/// (Dovecot's defaults); SSHA* an 8-byte salt; SHA*/PLAIN-MD5 base64/hex like Dovecot;
/// PLAIN/CLEAR the password itself (which must then be UTF-8).
///
/// `Scheme::Crypt` is refused (`Error::Hash`): it names no format (Dovecot 2.3 writes
/// bcrypt cost 5 for it, older versions DES), so callers must pick a concrete one.
/// Blocking CPU work: see the crate documentation.
pub fn hash(scheme: Scheme, password: &[u8]) -> Result<String, Error> {
    if password.contains(&0) {
        return Err(Error::Hash("password contains a NUL byte".into()));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::Hash(format!(
            "password longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let value = match scheme {
        Scheme::Crypt => {
            return Err(Error::Hash(
                "CRYPT names no format; hash with SHA512-CRYPT, BLF-CRYPT, ARGON2ID, \
                 or DES-CRYPT/MD5-CRYPT/SHA256-CRYPT explicitly"
                    .into(),
            ))
        }
        Scheme::DesCrypt
        | Scheme::Md5Crypt
        | Scheme::Sha256Crypt
        | Scheme::Sha512Crypt
        | Scheme::BlfCrypt => crypt::hash(scheme, password)?,
        Scheme::Plain | Scheme::Clear => std::str::from_utf8(password)
            .map_err(|_| Error::Hash(format!("{scheme} needs a UTF-8 password")))?
            .to_string(),
        Scheme::PlainMd5 => hex::encode(Alg::Md5.digest2(password, b"")),
        Scheme::Sha => unsalted(Alg::Sha1, password),
        Scheme::Sha256 => unsalted(Alg::Sha256, password),
        Scheme::Sha512 => unsalted(Alg::Sha512, password),
        Scheme::Ssha => salted(Alg::Sha1, password)?,
        Scheme::Ssha256 => salted(Alg::Sha256, password)?,
        Scheme::Ssha512 => salted(Alg::Sha512, password)?,
        Scheme::Argon2i | Scheme::Argon2id => argon::hash(scheme, password)?,
    };
    Ok(format!("{{{scheme}}}{value}"))
}

/// `{SHA}`-style value: base64 of the digest.
fn unsalted(alg: Alg, password: &[u8]) -> String {
    base64::Engine::encode(&stored::B64_OUT, alg.digest2(password, b""))
}

/// `{SSHA}`-style value: base64 of digest(password || salt) || salt, with an 8-byte salt
/// (Dovecot writes 4 and reads any length).
fn salted(alg: Alg, password: &[u8]) -> Result<String, Error> {
    use rand::RngCore;
    let mut salt = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| Error::Hash(format!("no random salt: {e}")))?;
    let mut raw = alg.digest2(password, &salt);
    raw.extend_from_slice(&salt);
    Ok(base64::Engine::encode(&stored::B64_OUT, raw))
}

/// True if `stored` uses a scheme considered legacy or weak — DES-CRYPT, MD5-CRYPT,
/// PLAIN/CLEAR, PLAIN-MD5, SHA, SSHA, unsalted SHA256/SHA512 — so a caller can re-hash
/// the password after a successful login. False for anything that cannot be interpreted
/// (`verify` reports those).
pub fn is_legacy(stored: &str, default: Scheme) -> bool {
    matches!(
        scheme_of(stored, default),
        Ok(Scheme::DesCrypt
            | Scheme::Md5Crypt
            | Scheme::Plain
            | Scheme::Clear
            | Scheme::PlainMd5
            | Scheme::Sha
            | Scheme::Ssha
            | Scheme::Sha256
            | Scheme::Sha512)
    )
}

/// True if a match of `password` against `stored` proves that `password` is the password
/// the hash was made from, so a hash of it may replace `stored` (re-hash on login).
///
/// Traditional DES crypt keys on the first 8 bytes only, 7 bits of each, NUL-padded: a
/// hash of `rabbit-hole` matches `rabbit-hXY` and `rabbit-h` too. Only a match of an
/// ASCII password shorter than 8 bytes is unambiguous (its padding could not have been
/// another character). bcrypt keys on at most 72 bytes of the password and its NUL, so
/// the same holds below 72. Storing a new hash after an ambiguous match would store the
/// hash of whatever the client typed beyond the part that was checked, and lock the real
/// password out. False for anything `verify` cannot interpret.
pub fn verifies_whole(stored: &str, password: &[u8], default: Scheme) -> bool {
    match scheme_of(stored, default) {
        Ok(Scheme::Crypt | Scheme::DesCrypt) => {
            password.len() < 8 && password.iter().all(u8::is_ascii)
        }
        Ok(Scheme::BlfCrypt) => password.len() < 72,
        Ok(_) => true,
        Err(_) => false,
    }
}

/// The scheme `stored` uses: its prefix, or `default` without one. A crypt-family value
/// is reported as the format it really has (`{CRYPT}$6$...` → `Sha512Crypt`, a bare
/// 13-character string → `DesCrypt`, `$argon2id$` → `Argon2id`); Dovecot's `{MD5}` as
/// `Md5Crypt` or `PlainMd5` by content. The value is checked as `verify` would, without
/// hashing anything, so `Err` means `verify` would fail the same way.
pub fn scheme_of(stored: &str, default: Scheme) -> Result<Scheme, Error> {
    stored::parse(stored, default).map(|p| p.scheme)
}

/// A verification costing about what a real one in `scheme` costs, for unknown users, so
/// that timing does not tell whether a user exists. The result is thrown away.
///
/// Pass the scheme the existing users' hashes actually use (e.g. `scheme_of` of a
/// representative hash); `Scheme::Crypt` costs like DES crypt, the classic bare format.
pub fn dummy_verify(scheme: Scheme, password: &[u8]) {
    let stored = dummy_hash(scheme);
    let _ = std::hint::black_box(verify(stored, std::hint::black_box(password), scheme));
}

/// Hashes of "vmail-passwd dummy" made by the real tools (`doveadm -O pw -s SCHEME`,
/// `mkpasswd -m descrypt`, `doveadm -O pw -s BLF-CRYPT -r 10`), one per scheme, at the
/// cost `hash()` produces.
fn dummy_hash(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Crypt | Scheme::DesCrypt => "duZMs8aQ8ohKg",
        Scheme::Md5Crypt => "{MD5-CRYPT}$1$g26l4CSS$GRNp.Qxwl4M7qQ8ouAI8b/",
        Scheme::Sha256Crypt => {
            "{SHA256-CRYPT}$5$vGWMVAL76ixZwphI$g2fWZkAYejPjiJkAzBTM4eeCzpUDOet06wVCIiQ4XP."
        }
        Scheme::Sha512Crypt => {
            "{SHA512-CRYPT}$6$bMwoHIpY3GKyZ8Pp$EHR6WBV7o3AEcwfZW.8RzvEcgiBVpGUlm2oGq.nEa/iW38poj1kndv/4JGQ5pvEuSjpPun6nANICt9cqmlz4p1"
        }
        Scheme::BlfCrypt => {
            "{BLF-CRYPT}$2y$10$FcO3pqOSUGUISHSs4i6L9eWQCGxXe83B.bSWlEJOGF4cippQwaEqS"
        }
        Scheme::Plain => "{PLAIN}vmail-passwd dummy",
        Scheme::Clear => "{CLEAR}vmail-passwd dummy",
        Scheme::PlainMd5 => "{PLAIN-MD5}3cfed4c7c33097c822103b141df5aaef",
        Scheme::Sha => "{SHA}iH0yo6Ha5bX3Y7Q7t0EdSgSzx9s=",
        Scheme::Ssha => "{SSHA}6/ipLwYpzZF2yycLK++b5rQUIBKufgiW",
        Scheme::Sha256 => "{SHA256}pr/SisCy2W3ZCYMHJuoaji7SrwcBUVs54DiQ9XW/Drw=",
        Scheme::Ssha256 => "{SSHA256}82zWntcjWT3gASqSxP+QHqMtIuK+LPAMgb/vUGvmsgWIAZ05",
        Scheme::Sha512 => "{SHA512}HB0BSaXYFeBujsRJ2DnCwCaSYlmy+dQ7jzJ9Sk3Gwna1K6I/NgjKdGeuhwMRDEzSEnRqusYpjVg7xXWJjHh/eg==",
        Scheme::Ssha512 => "{SSHA512}r7J3MvRgTlXFN90xkOjEaidhPu7u28ZUqLOKzdMv6PwIPq4RuJH7zaunP6JsbIaE2BRzTpBLgd1F4TFDKyZ7OyrLnsE=",
        Scheme::Argon2i => "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$KUkyDOE2SxsNLgtOqAx0fg$RKBxCbJtTmR6fGcDHkR3hV2/hJ8xKbycucNZK6OmFBE",
        Scheme::Argon2id => "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMMY_PASSWORD: &[u8] = b"vmail-passwd dummy";

    #[test]
    fn dummy_hashes_are_real_and_match_their_scheme() {
        for s in Scheme::ALL {
            let stored = dummy_hash(s);
            let expect = if s == Scheme::Crypt {
                Scheme::DesCrypt
            } else {
                s
            };
            assert_eq!(scheme_of(stored, s), Ok(expect), "{s}");
            // Argon2 is checked once each; the rest are cheap.
            assert_eq!(verify(stored, DUMMY_PASSWORD, s), Ok(true), "{s}");
            dummy_verify(s, b"whatever");
        }
    }

    #[test]
    fn scheme_of_prefixes_and_detection() {
        use Scheme::*;
        let c = Crypt;
        assert_eq!(scheme_of("abmF1QH4PEr.E", c), Ok(DesCrypt));
        assert_eq!(scheme_of("{CRYPT}abmF1QH4PEr.E", Sha512Crypt), Ok(DesCrypt));
        assert_eq!(
            scheme_of("$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.", c),
            Ok(Md5Crypt)
        );
        // Dovecot: a bare $1$ string is MD5-CRYPT whatever the default.
        assert_eq!(
            scheme_of("$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.", Sha),
            Ok(Md5Crypt)
        );
        assert_eq!(
            scheme_of("{MD5}$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.", c),
            Ok(Md5Crypt)
        );
        assert_eq!(
            scheme_of("{MD5}9dd4e461268c8034f5c8564e155c67a6", c),
            Ok(PlainMd5)
        );
        assert_eq!(
            scheme_of(
                "{crypt}$2y$05$4M9N.W3jvT1Y6uv6rFKbxugw2GSGLvb3SbXO6VqYbFjR8jDtwtMNC",
                c
            ),
            Ok(BlfCrypt)
        );
        assert_eq!(
            scheme_of("$argon2id$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig", c),
            Ok(Argon2id)
        );
        assert_eq!(
            scheme_of("{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$KUkyDOE2SxsNLgtOqAx0fg$RKBxCbJtTmR6fGcDHkR3hV2/hJ8xKbycucNZK6OmFBE", c),
            Ok(Argon2i)
        );
        assert_eq!(scheme_of("{PLAIN}x", c), Ok(Plain));
        assert_eq!(scheme_of("{CLEARTEXT}x", c), Ok(Clear));
        assert_eq!(scheme_of("{SHA1}EfatjsUqKYSrqv18O1FlA3hcIHI=", c), Ok(Sha));
        assert_eq!(
            scheme_of("{SSHA}3/gmZoIbdcfHCS+5ZkLf5pHcfkKvOcfS", c),
            Ok(Ssha)
        );
        // Unprefixed values take the default.
        assert_eq!(scheme_of("secret", Plain), Ok(Plain));
        assert_eq!(scheme_of("EfatjsUqKYSrqv18O1FlA3hcIHI=", Sha), Ok(Sha));
        // `{` without `}` is no prefix: here a (malformed) bare crypt string.
        assert_eq!(scheme_of("{SHA", Plain), Ok(Plain));
        assert!(matches!(scheme_of("{SHA", c), Err(Error::Malformed(_))));
        assert_eq!(
            scheme_of("{FOO}bar", c),
            Err(Error::UnknownScheme("FOO".into()))
        );
        assert_eq!(
            scheme_of("{}bar", c),
            Err(Error::UnknownScheme(String::new()))
        );
        assert!(matches!(scheme_of("", Plain), Err(Error::Malformed(_))));
    }

    #[test]
    fn legacy() {
        let c = Scheme::Crypt;
        for (stored, legacy) in [
            ("abmF1QH4PEr.E", true),
            ("{DES-CRYPT}J96gEY8sZ8.1I", true),
            ("$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.", true),
            ("{MD5}9dd4e461268c8034f5c8564e155c67a6", true),
            ("{PLAIN}x", true),
            ("{CLEAR}x", true),
            ("{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=", true),
            ("{SSHA}3/gmZoIbdcfHCS+5ZkLf5pHcfkKvOcfS", true),
            ("{SHA256}Fr4DfzWedeNa8FwLBIAJbitO0oaNxJ6n35k00LeI0bg=", true),
            ("{SHA512}UbNTYwIYfnRTaA2n86JbDxP1YbK3KDPAD5Y3ZTDqRPndifRGrgZuQj22gKAogYrwAav/AxPzxuIB1TVbgIhsDw==", true),
            ("{SSHA256}/zQDKvJyQ8Y9qvTPT6TEHwHl++ArBdw0lXxM9L8Z6nSTeEjz", false),
            ("{SSHA512}Tx2zttzNXzVFv3H+bj5JJZ40227SrO/zTpRKNqu3M9P+7FBn1WJzYnWoctb+bQjdwyDZFyFS7BwpH64JfFMqQhs4mMU=", false),
            ("{SHA512-CRYPT}$6$58HdNdTIgEFIIC04$JseTkNeg1faM/4nIPbsSfqEdNNjvQ6WEZyr164qBLM/2pDPsitk54erbGIu3sx4934WeGYrP02Yw0O8V3aGkg1", false),
            ("$5$83SVL4EW6aFpNyAV$ofw7rqH7B8WlIzw2.2OHNM03Wf2W3tXz48p1hJHs7F0", false),
            ("{CRYPT}$2y$05$4M9N.W3jvT1Y6uv6rFKbxugw2GSGLvb3SbXO6VqYbFjR8jDtwtMNC", false),
            ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig", false),
            // Uninterpretable: not legacy (verify reports it).
            ("{FOO}x", false),
            ("garbage", false),
        ] {
            assert_eq!(is_legacy(stored, c), legacy, "{stored}");
        }
        // The default decides for unprefixed values.
        assert!(is_legacy("secret", Scheme::Plain));
    }

    /// Issue 15.6: DES matches a longer password on its first 8 characters; only a
    /// password the scheme checked in full may be re-hashed.
    #[test]
    fn only_fully_checked_passwords_are_whole() {
        let des = hash(Scheme::DesCrypt, b"rabbit-hole").unwrap();
        assert_eq!(verify(&des, b"rabbit-hXY", Scheme::Crypt), Ok(true));
        assert!(!verifies_whole(&des, b"rabbit-hXY", Scheme::Crypt));
        assert!(!verifies_whole(&des, b"rabbit-hole", Scheme::Crypt));
        let bare = des.trim_start_matches("{DES-CRYPT}");
        assert!(!verifies_whole(bare, b"rabbit-hXY", Scheme::Crypt));
        // Exactly 8: the real password may be longer.
        assert_eq!(verify(bare, b"rabbit-h", Scheme::Crypt), Ok(true));
        assert!(!verifies_whole(bare, b"rabbit-h", Scheme::Crypt));
        assert!(verifies_whole(bare, b"secret", Scheme::Crypt));
        // 7 bits per character: a non-ASCII byte was not fully checked either.
        assert!(!verifies_whole(
            bare,
            "s\u{e9}cret".as_bytes(),
            Scheme::Crypt
        ));
        let bcrypt = "{BLF-CRYPT}$2y$05$4M9N.W3jvT1Y6uv6rFKbxugw2GSGLvb3SbXO6VqYbFjR8jDtwtMNC";
        assert!(verifies_whole(bcrypt, &[b'a'; 71], Scheme::Crypt));
        assert!(!verifies_whole(bcrypt, &[b'a'; 72], Scheme::Crypt));
        let md5 = "$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.";
        assert!(verifies_whole(md5, &[b'a'; 100], Scheme::Crypt));
        assert!(verifies_whole(
            "{PLAIN}x",
            b"long enough password",
            Scheme::Crypt
        ));
        assert!(!verifies_whole("{FOO}x", b"x", Scheme::Crypt));
    }

    #[test]
    fn hash_refuses_crypt_and_nul() {
        assert!(matches!(hash(Scheme::Crypt, b"x"), Err(Error::Hash(_))));
        assert!(matches!(
            hash(Scheme::Sha512Crypt, b"a\0b"),
            Err(Error::Hash(_))
        ));
        assert!(matches!(hash(Scheme::Plain, b"\xff"), Err(Error::Hash(_))));
    }

    #[test]
    fn nul_in_password_never_verifies() {
        let stored = hash(Scheme::Ssha512, b"ab").unwrap();
        assert_eq!(verify(&stored, b"ab", Scheme::Crypt), Ok(true));
        assert_eq!(verify(&stored, b"ab\0", Scheme::Crypt), Ok(false));
        assert_eq!(
            verify("{PLAIN.hex}610062", b"a\0b", Scheme::Crypt),
            Ok(false)
        );
    }

    #[test]
    fn password_length_limit() {
        let max = vec![b'x'; MAX_PASSWORD_LEN];
        let stored = hash(Scheme::Plain, &max).unwrap();
        assert_eq!(verify(&stored, &max, Scheme::Crypt), Ok(true));
        let long = vec![b'x'; MAX_PASSWORD_LEN + 1];
        assert!(matches!(hash(Scheme::Plain, &long), Err(Error::Hash(_))));
        let stored = format!("{{PLAIN}}{}", "x".repeat(MAX_PASSWORD_LEN + 1));
        assert_eq!(verify(&stored, &long, Scheme::Crypt), Ok(false));
    }

    #[test]
    fn errors_do_not_echo_secrets() {
        let secret = "hunter2hunter2";
        for stored in [
            format!("{{SHA}}{secret}"),
            format!("{{SSHA512}}{secret}"),
            format!("{{{secret} and more}}x"),
            format!("$6${secret}"),
            secret.to_string(),
        ] {
            let e = verify(&stored, secret.as_bytes(), Scheme::Crypt).unwrap_err();
            assert!(!e.to_string().contains(secret), "{e}");
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
    }
}
