//! The `Scheme` enum: Dovecot's password scheme names, parsed and printed as Dovecot
//! spells them (`Authentication.PasswordSchemes` in the Dovecot wiki).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A password scheme, named as Dovecot names it.
///
/// The `CRYPT` family (`Crypt`, `DesCrypt`, `Md5Crypt`, `Sha256Crypt`, `Sha512Crypt`,
/// `BlfCrypt`) all hold crypt(3) strings; which algorithm a stored string uses is decided
/// by the string itself, as crypt(3) does, whatever the prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `CRYPT`: any crypt(3) string; the format is detected from the string.
    Crypt,
    /// `DES-CRYPT`: traditional 13-character DES crypt (only 8 characters count).
    DesCrypt,
    /// `MD5-CRYPT` (Dovecot's `MD5` is an alias): `$1$`.
    Md5Crypt,
    /// `SHA256-CRYPT`: `$5$`.
    Sha256Crypt,
    /// `SHA512-CRYPT`: `$6$`.
    Sha512Crypt,
    /// `BLF-CRYPT`: bcrypt, `$2a$`/`$2b$`/`$2y$`.
    BlfCrypt,
    /// `PLAIN`: the password itself.
    Plain,
    /// `CLEAR` (and `CLEARTEXT`): the same as `PLAIN`, under another name.
    Clear,
    /// `PLAIN-MD5` (and `LDAP-MD5`): MD5 of the password, hex or base64.
    PlainMd5,
    /// `SHA` (and `SHA1`): SHA-1 of the password, base64 or hex.
    Sha,
    /// `SSHA`: base64 of SHA-1(password || salt) || salt.
    Ssha,
    /// `SHA256`: SHA-256 of the password, base64 or hex.
    Sha256,
    /// `SSHA256`: salted SHA-256, laid out like `SSHA`.
    Ssha256,
    /// `SHA512`: SHA-512 of the password, base64 or hex.
    Sha512,
    /// `SSHA512`: salted SHA-512, laid out like `SSHA`.
    Ssha512,
    /// `ARGON2I`: a `$argon2i$` PHC string as libsodium writes it.
    Argon2i,
    /// `ARGON2ID`: a `$argon2id$` PHC string as libsodium writes it.
    Argon2id,
}

impl Scheme {
    /// Every scheme, in declaration order.
    pub const ALL: [Scheme; 17] = ALL;

    /// Where a check in this scheme ranks by CPU cost, at the parameters `hash()` writes
    /// (0 cheapest): Argon2id (64 MiB, 3 passes) > Argon2i (32 MiB, 4) > bcrypt cost 10 >
    /// SHA512-CRYPT > SHA256-CRYPT (5000 rounds each) > MD5-CRYPT (1000) > DES crypt > one
    /// digest > a comparison. `Crypt` ranks as DES, the format it means when unprefixed.
    /// For choosing the dummy check of unknown users: never cheaper than a real one.
    pub fn cost_rank(self) -> u8 {
        match self {
            Scheme::Plain | Scheme::Clear => 0,
            Scheme::PlainMd5 | Scheme::Sha | Scheme::Ssha => 1,
            Scheme::Sha256 | Scheme::Ssha256 => 2,
            Scheme::Sha512 | Scheme::Ssha512 => 3,
            Scheme::Crypt | Scheme::DesCrypt => 4,
            Scheme::Md5Crypt => 5,
            Scheme::Sha256Crypt => 6,
            Scheme::Sha512Crypt => 7,
            Scheme::BlfCrypt => 8,
            Scheme::Argon2i => 9,
            Scheme::Argon2id => 10,
        }
    }
}

const ALL: [Scheme; 17] = [
    Scheme::Crypt,
    Scheme::DesCrypt,
    Scheme::Md5Crypt,
    Scheme::Sha256Crypt,
    Scheme::Sha512Crypt,
    Scheme::BlfCrypt,
    Scheme::Plain,
    Scheme::Clear,
    Scheme::PlainMd5,
    Scheme::Sha,
    Scheme::Ssha,
    Scheme::Sha256,
    Scheme::Ssha256,
    Scheme::Sha512,
    Scheme::Ssha512,
    Scheme::Argon2i,
    Scheme::Argon2id,
];

/// How a `{NAME}` prefix was spelled, where that matters beyond the `Scheme` it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// A name that means exactly one scheme.
    Scheme(Scheme),
    /// Dovecot's `MD5`: MD5-CRYPT when the value starts with `$1$`, else PLAIN-MD5
    /// (`md5_verify()` in Dovecot's `password-scheme.c`).
    Md5,
}

/// Looks a scheme name up, case-insensitively, without any `.hex`/`.b64` suffix.
pub(crate) fn lookup(name: &str) -> Option<Named> {
    let s = match name.to_ascii_uppercase().as_str() {
        "CRYPT" => Scheme::Crypt,
        "DES-CRYPT" => Scheme::DesCrypt,
        "MD5" => return Some(Named::Md5),
        "MD5-CRYPT" => Scheme::Md5Crypt,
        "SHA256-CRYPT" => Scheme::Sha256Crypt,
        "SHA512-CRYPT" => Scheme::Sha512Crypt,
        "BLF-CRYPT" => Scheme::BlfCrypt,
        "PLAIN" => Scheme::Plain,
        "CLEAR" | "CLEARTEXT" => Scheme::Clear,
        "PLAIN-MD5" | "LDAP-MD5" => Scheme::PlainMd5,
        "SHA" | "SHA1" => Scheme::Sha,
        "SSHA" => Scheme::Ssha,
        "SHA256" => Scheme::Sha256,
        "SSHA256" => Scheme::Ssha256,
        "SHA512" => Scheme::Sha512,
        "SSHA512" => Scheme::Ssha512,
        "ARGON2I" => Scheme::Argon2i,
        "ARGON2ID" => Scheme::Argon2id,
        _ => return None,
    };
    Some(Named::Scheme(s))
}

/// A scheme name fit to put in an error message or a log line. A `{...}` prefix comes from
/// the stored hash, so anything that does not look like a scheme name is not echoed.
pub(crate) fn printable_name(name: &str) -> String {
    let looks_like_name = name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if looks_like_name {
        name.to_string()
    } else {
        "<not a scheme name>".to_string()
    }
}

impl Scheme {
    /// The name Dovecot uses, as in a `{NAME}` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Crypt => "CRYPT",
            Scheme::DesCrypt => "DES-CRYPT",
            Scheme::Md5Crypt => "MD5-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Plain => "PLAIN",
            Scheme::Clear => "CLEAR",
            Scheme::PlainMd5 => "PLAIN-MD5",
            Scheme::Sha => "SHA",
            Scheme::Ssha => "SSHA",
            Scheme::Sha256 => "SHA256",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Sha512 => "SHA512",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Argon2id => "ARGON2ID",
        }
    }
}

impl FromStr for Scheme {
    type Err = Error;

    /// Case-insensitive; accepts Dovecot's aliases (`MD5` = `MD5-CRYPT`, `CLEARTEXT` =
    /// `CLEAR`, `SHA1` = `SHA`, `LDAP-MD5` = `PLAIN-MD5`). No `.hex`/`.b64` suffix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match lookup(s) {
            Some(Named::Scheme(s)) => Ok(s),
            Some(Named::Md5) => Ok(Scheme::Md5Crypt),
            None => Err(Error::UnknownScheme(printable_name(s))),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parses_back() {
        for s in ALL {
            assert_eq!(s.to_string().parse::<Scheme>().unwrap(), s);
            assert_eq!(s.to_string().to_lowercase().parse::<Scheme>().unwrap(), s);
        }
    }

    #[test]
    fn aliases() {
        assert_eq!("md5".parse::<Scheme>().unwrap(), Scheme::Md5Crypt);
        assert_eq!("Sha1".parse::<Scheme>().unwrap(), Scheme::Sha);
        assert_eq!("CLEARTEXT".parse::<Scheme>().unwrap(), Scheme::Clear);
        assert_eq!("ldap-md5".parse::<Scheme>().unwrap(), Scheme::PlainMd5);
        assert_eq!("blf-crypt".parse::<Scheme>().unwrap(), Scheme::BlfCrypt);
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            "SHA.hex".parse::<Scheme>(),
            Err(Error::UnknownScheme("SHA.hex".into()))
        );
        assert_eq!(
            "".parse::<Scheme>(),
            Err(Error::UnknownScheme(String::new()))
        );
        // Something that is not a scheme name is not echoed back.
        assert_eq!(
            "hunter2 is my password".parse::<Scheme>(),
            Err(Error::UnknownScheme("<not a scheme name>".into()))
        );
    }
}
