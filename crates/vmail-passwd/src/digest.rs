//! The plain-digest schemes (`PLAIN-MD5`, `SHA`, `SHA256`, `SHA512`), their salted forms
//! (`SSHA`, `SSHA256`, `SSHA512`: digest(password || salt) || salt) and `PLAIN`, all
//! compared in constant time.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// A digest algorithm behind one of the digest schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Alg {
    /// Output length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Alg::Md5 => 16,
            Alg::Sha1 => 20,
            Alg::Sha256 => 32,
            Alg::Sha512 => 64,
        }
    }

    /// Digest of `a || b`.
    pub(crate) fn digest2(self, a: &[u8], b: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(a: &[u8], b: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(a);
            d.update(b);
            d.finalize().to_vec()
        }
        match self {
            Alg::Md5 => run::<Md5>(a, b),
            Alg::Sha1 => run::<Sha1>(a, b),
            Alg::Sha256 => run::<Sha256>(a, b),
            Alg::Sha512 => run::<Sha512>(a, b),
        }
    }
}

/// Unsalted: `raw` is exactly `alg.len()` bytes (the caller checked).
pub(crate) fn verify_plain_digest(alg: Alg, raw: &[u8], password: &[u8]) -> bool {
    alg.digest2(password, b"").ct_eq(raw).into()
}

/// Salted: `raw` is digest || salt, longer than the digest (the caller checked).
pub(crate) fn verify_salted(alg: Alg, raw: &[u8], password: &[u8]) -> bool {
    let (sum, salt) = raw.split_at(alg.len());
    alg.digest2(password, salt).ct_eq(sum).into()
}

/// PLAIN: comparing SHA-256 digests of both sides keeps the comparison constant-time in
/// the length too (a plain slice comparison returns early on a length mismatch).
pub(crate) fn verify_plain(stored: &[u8], password: &[u8]) -> bool {
    let a = Alg::Sha256.digest2(stored, b"");
    let b = Alg::Sha256.digest2(password, b"");
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // doveadm pw -s SHA -p '' -> {SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=
        assert_eq!(
            hex::encode(Alg::Sha1.digest2(b"", b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(Alg::Md5.digest2(b"ab", b"c"), Alg::Md5.digest2(b"abc", b""));
        for alg in [Alg::Md5, Alg::Sha1, Alg::Sha256, Alg::Sha512] {
            assert_eq!(alg.digest2(b"x", b"").len(), alg.len());
        }
    }

    #[test]
    fn plain_compare() {
        assert!(verify_plain(b"secret", b"secret"));
        assert!(!verify_plain(b"secret", b"secret "));
        assert!(!verify_plain(b"secret", b""));
        assert!(verify_plain(b"", b""));
    }

    #[test]
    fn salted() {
        let mut raw = Alg::Sha512.digest2(b"pw", b"salt");
        raw.extend_from_slice(b"salt");
        assert!(verify_salted(Alg::Sha512, &raw, b"pw"));
        assert!(!verify_salted(Alg::Sha512, &raw, b"pW"));
    }
}
