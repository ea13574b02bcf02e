//! Reading a stored password field: the optional `{SCHEME[.ENC]}` prefix, the encoding of
//! the value, and what has to be computed to check a password against it. Follows
//! `password_get_scheme()`/`password_decode()` in Dovecot's `src/auth/password-scheme.c`.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::digest::{self, Alg};
use crate::scheme::{self, Named};
use crate::{argon, crypt, Error, Scheme};

/// Standard base64, lenient about `=` padding and trailing bits like Dovecot's decoder.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Strict standard base64 with padding, as Dovecot writes it.
pub(crate) const B64_OUT: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An encoding named by a `.b64`/`.base64`/`.hex` suffix on the scheme name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    Hex,
}

/// A stored value, understood: the scheme it really uses and what to compute.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// The scheme in use; for the crypt family the format the string actually has.
    pub(crate) scheme: Scheme,
    pub(crate) check: Check<'a>,
}

/// What a password is checked against. No derived `Debug` for the secrets inside.
pub(crate) enum Check<'a> {
    /// A validated crypt(3) string.
    Crypt(Cow<'a, str>),
    Argon2(argon::Phc),
    Plain(Cow<'a, [u8]>),
    /// Unsalted digest; exactly `alg.len()` bytes.
    Digest(Alg, Vec<u8>),
    /// Digest || salt; longer than `alg.len()`.
    Salted(Alg, Vec<u8>),
}

impl std::fmt::Debug for Check<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Crypt(_) => "Crypt(..)",
            Check::Argon2(_) => "Argon2(..)",
            Check::Plain(_) => "Plain(..)",
            Check::Digest(..) => "Digest(..)",
            Check::Salted(..) => "Salted(..)",
        })
    }
}

impl Check<'_> {
    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, Error> {
        match self {
            Check::Crypt(s) => crypt::verify(s, password),
            Check::Argon2(phc) => argon::verify(phc, password),
            Check::Plain(raw) => Ok(digest::verify_plain(raw, password)),
            Check::Digest(alg, raw) => Ok(digest::verify_plain_digest(*alg, raw, password)),
            Check::Salted(alg, raw) => Ok(digest::verify_salted(*alg, raw, password)),
        }
    }
}

/// Splits `{NAME}value`. A `{` without a closing `}` is no prefix (Dovecot does the same).
fn split_prefix(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix('{')?;
    let end = rest.find('}')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Dovecot reads an unprefixed `$1$salt$hash` as MD5-CRYPT whatever the default scheme,
/// cutting anything after a further `$` (`password_get_scheme()`).
fn bare_md5_crypt(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix("$1$")?;
    let salt_end = 3 + rest.find('$')?;
    match stored[salt_end + 1..].find('$') {
        Some(i) => Some(&stored[..salt_end + 1 + i]),
        None => Some(stored),
    }
}

fn decode(value: &str, enc: Encoding) -> Result<Vec<u8>, Error> {
    match enc {
        Encoding::Base64 => B64
            .decode(value)
            .map_err(|_| Error::Malformed("value is not valid base64")),
        Encoding::Hex => hex::decode(value).map_err(|_| Error::Malformed("value is not valid hex")),
    }
}

fn utf8(raw: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(raw).map_err(|_| Error::Malformed("decoded value is not UTF-8"))
}

/// Parses `stored`; `default` is the scheme of a value without `{SCHEME}` prefix.
pub(crate) fn parse(stored: &str, default: Scheme) -> Result<Parsed<'_>, Error> {
    if stored.is_empty() {
        return Err(Error::Malformed("empty stored password"));
    }
    let (named, enc, value) = match split_prefix(stored) {
        Some((name, value)) => {
            let unknown = || Error::UnknownScheme(scheme::printable_name(name));
            let (base, suffix) = match name.split_once('.') {
                Some((base, suffix)) => (base, Some(suffix)),
                None => (name, None),
            };
            let named = scheme::lookup(base).ok_or_else(unknown)?;
            let enc = match suffix.map(str::to_ascii_lowercase).as_deref() {
                None => None,
                Some("b64" | "base64") => Some(Encoding::Base64),
                Some("hex") => Some(Encoding::Hex),
                // Dovecot: "unknown encoding. treat as invalid scheme."
                Some(_) => return Err(unknown()),
            };
            (named, enc, value)
        }
        None => match bare_md5_crypt(stored) {
            Some(value) => (Named::Scheme(Scheme::Md5Crypt), None, value),
            None => (Named::Scheme(default), None, stored),
        },
    };
    resolve(named, enc, Cow::Borrowed(value))
}

fn resolve<'a>(
    named: Named,
    enc: Option<Encoding>,
    value: Cow<'a, str>,
) -> Result<Parsed<'a>, Error> {
    let scheme = match named {
        Named::Md5 => {
            // Dovecot's MD5: decode any explicit encoding first, then MD5-CRYPT if the
            // value is a `$1$` string, PLAIN-MD5 (hex or base64) otherwise.
            let value = match enc {
                Some(e) => Cow::Owned(utf8(decode(&value, e)?)?),
                None => value,
            };
            let scheme = if value.starts_with("$1$") {
                Scheme::Md5Crypt
            } else {
                Scheme::PlainMd5
            };
            return resolve(Named::Scheme(scheme), None, value);
        }
        Named::Scheme(s) => s,
    };
    match scheme {
        Scheme::PlainMd5 | Scheme::Sha | Scheme::Sha256 | Scheme::Sha512 => {
            let alg = match scheme {
                Scheme::PlainMd5 => Alg::Md5,
                Scheme::Sha => Alg::Sha1,
                Scheme::Sha256 => Alg::Sha256,
                _ => Alg::Sha512,
            };
            let raw = match enc {
                Some(e) => decode(&value, e)?,
                // No explicit encoding: hex if the length says so, else base64; a hex
                // guess that does not decode falls back to base64 (`password_decode()`).
                None if value.len() == alg.len() * 2 => match hex::decode(value.as_bytes()) {
                    Ok(raw) => raw,
                    Err(_) => decode(&value, Encoding::Base64)?,
                },
                None => decode(&value, Encoding::Base64)?,
            };
            if raw.len() != alg.len() {
                return Err(Error::Malformed("digest has the wrong length"));
            }
            Ok(Parsed {
                scheme,
                check: Check::Digest(alg, raw),
            })
        }
        Scheme::Ssha | Scheme::Ssha256 | Scheme::Ssha512 => {
            let alg = match scheme {
                Scheme::Ssha => Alg::Sha1,
                Scheme::Ssha256 => Alg::Sha256,
                _ => Alg::Sha512,
            };
            let raw = decode(&value, enc.unwrap_or(Encoding::Base64))?;
            if raw.len() <= alg.len() {
                return Err(Error::Malformed(
                    "salted digest is not longer than the digest",
                ));
            }
            Ok(Parsed {
                scheme,
                check: Check::Salted(alg, raw),
            })
        }
        Scheme::Plain | Scheme::Clear => {
            let raw = match enc {
                Some(e) => Cow::Owned(decode(&value, e)?),
                None => match value {
                    Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                },
            };
            Ok(Parsed {
                scheme,
                check: Check::Plain(raw),
            })
        }
        Scheme::Argon2i | Scheme::Argon2id => {
            let value = match enc {
                Some(e) => Cow::Owned(utf8(decode(&value, e)?)?),
                None => value,
            };
            if !(value.starts_with("$argon2i$") || value.starts_with("$argon2id$")) {
                return Err(Error::Malformed(
                    "ARGON2 value is not an argon2i/argon2id PHC string",
                ));
            }
            let phc = argon::parse(&value)?;
            Ok(Parsed {
                scheme: phc.scheme,
                check: Check::Argon2(phc),
            })
        }
        Scheme::Crypt
        | Scheme::DesCrypt
        | Scheme::Md5Crypt
        | Scheme::Sha256Crypt
        | Scheme::Sha512Crypt
        | Scheme::BlfCrypt => {
            let value = match enc {
                Some(e) => Cow::Owned(utf8(decode(&value, e)?)?),
                None => value,
            };
            // Like crypt(3) under Dovecot's crypt_verify(): the string decides the
            // algorithm, whichever crypt-family name the prefix used.
            match crypt::classify(&value)? {
                crypt::Kind::Unix(scheme) => Ok(Parsed {
                    scheme,
                    check: Check::Crypt(value),
                }),
                crypt::Kind::Argon2 => {
                    let phc = argon::parse(&value)?;
                    Ok(Parsed {
                        scheme: phc.scheme,
                        check: Check::Argon2(phc),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_split() {
        assert_eq!(split_prefix("{SHA}abc"), Some(("SHA", "abc")));
        assert_eq!(split_prefix("{}abc"), Some(("", "abc")));
        assert_eq!(split_prefix("{SHAabc"), None);
        assert_eq!(split_prefix("x{SHA}abc"), None);
        assert_eq!(split_prefix("{SHA}{x}"), Some(("SHA", "{x}")));
    }

    #[test]
    fn dovecot_bare_md5_quirk() {
        let h = "$1$WDjEBOf4$aPDJeQnE4KE73948IKLNc.";
        assert_eq!(bare_md5_crypt(h), Some(h));
        assert_eq!(bare_md5_crypt(&format!("{h}$extra")), Some(h));
        assert_eq!(bare_md5_crypt("$1$nosalt"), None);
        assert_eq!(bare_md5_crypt("$6$x$y"), None);
    }

    #[test]
    fn suffix_encodings() {
        let p = parse("{PLAIN.b64}c2VjIHJldA==", Scheme::Crypt).unwrap();
        assert!(p.check.verify(b"sec ret").unwrap());
        let p = parse("{plain.HEX}736563", Scheme::Crypt).unwrap();
        assert!(p.check.verify(b"sec").unwrap());
        assert_eq!(
            parse("{PLAIN.rot13}x", Scheme::Crypt).unwrap_err(),
            Error::UnknownScheme("PLAIN.rot13".into())
        );
        assert!(parse("{PLAIN.hex}zz", Scheme::Crypt).is_err());
    }

    #[test]
    fn hex_or_base64_by_length() {
        // doveadm pw -s SHA -p 'sec ret', then the same digest hex-encoded
        let b64 = parse("{SHA}k4jPuZgIyyuhMqZOekyNpm6xgUs=", Scheme::Crypt).unwrap();
        let hex = parse(
            "{SHA}9388cfb99808cb2ba132a64e7a4c8da66eb1814b",
            Scheme::Crypt,
        )
        .unwrap();
        assert!(b64.check.verify(b"sec ret").unwrap());
        assert!(hex.check.verify(b"sec ret").unwrap());
        // Unpadded base64 is fine too.
        let nopad = parse("{SHA}k4jPuZgIyyuhMqZOekyNpm6xgUs", Scheme::Crypt).unwrap();
        assert!(nopad.check.verify(b"sec ret").unwrap());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let p = parse("{PLAIN}hunter2", Scheme::Crypt).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
