//! `{ARGON2I}`/`{ARGON2ID}`: PHC strings as Dovecot writes them through libsodium
//! (`$argon2id$v=19$m=65536,t=3,p=1$<b64 salt>$<b64 hash>`), computed with the `argon2`
//! crate and compared in constant time.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::{Error, Scheme};

/// Largest memory cost accepted, in KiB (1 GiB, libsodium's "sensitive" level). A stored
/// string could otherwise make every verification allocate gigabytes.
pub(crate) const MAX_M_COST_KIB: u32 = 1 << 20;
/// Largest time cost (passes) accepted.
pub(crate) const MAX_T_COST: u32 = 32;
/// Largest parallelism accepted (libsodium always writes p=1).
pub(crate) const MAX_P_COST: u32 = 16;

/// A parsed, bounds-checked Argon2 PHC string.
#[derive(Clone)]
pub(crate) struct Phc {
    pub(crate) scheme: Scheme,
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

// Deliberately no derived Debug: the salt and hash are part of the stored secret.
impl std::fmt::Debug for Phc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phc")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse(s: &str) -> Result<Phc, Error> {
    let ph = PasswordHash::new(s).map_err(|_| Error::Malformed("not an Argon2 PHC string"))?;
    let (algorithm, scheme) = match ph.algorithm.as_str() {
        "argon2i" => (Algorithm::Argon2i, Scheme::Argon2i),
        "argon2id" => (Algorithm::Argon2id, Scheme::Argon2id),
        // argon2d is not a password scheme in Dovecot (libsodium lacks it).
        "argon2d" => return Err(Error::UnknownScheme("ARGON2D".into())),
        _ => return Err(Error::Malformed("not an Argon2 PHC string")),
    };
    // A PHC string without v= is version 0x10 (the PHC format spec).
    let version = match ph.version {
        None => Version::V0x10,
        Some(v) => Version::try_from(v).map_err(|_| Error::Malformed("unknown Argon2 version"))?,
    };
    let params =
        Params::try_from(&ph).map_err(|_| Error::Malformed("invalid Argon2 parameters"))?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(Error::Malformed(
            "Argon2 cost above the limits vmail-passwd accepts",
        ));
    }
    let salt = ph
        .salt
        .ok_or(Error::Malformed("Argon2 string without salt"))?;
    let mut buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut buf)
        .map_err(|_| Error::Malformed("Argon2 salt is not base64"))?
        .to_vec();
    if salt.len() < argon2::MIN_SALT_LEN {
        return Err(Error::Malformed("Argon2 salt shorter than 8 bytes"));
    }
    let hash = ph
        .hash
        .ok_or(Error::Malformed("Argon2 string without hash"))?
        .as_bytes()
        .to_vec();
    Ok(Phc {
        scheme,
        algorithm,
        version,
        params,
        salt,
        hash,
    })
}

pub(crate) fn verify(phc: &Phc, password: &[u8]) -> Result<bool, Error> {
    let mut out = vec![0u8; phc.hash.len()];
    Argon2::new(phc.algorithm, phc.version, phc.params.clone())
        .hash_password_into(password, &phc.salt, &mut out)
        .map_err(|_| Error::Malformed("Argon2 parameters rejected by the hash function"))?;
    Ok(out.ct_eq(&phc.hash).into())
}

/// A fresh PHC string with the parameters `doveadm pw` 2.3 uses by default:
/// ARGON2I m=32768,t=4,p=1 and ARGON2ID m=65536,t=3,p=1; 16-byte salt, 32-byte hash.
pub(crate) fn hash(scheme: Scheme, password: &[u8]) -> Result<String, Error> {
    let (algorithm, m, t) = match scheme {
        Scheme::Argon2i => (Algorithm::Argon2i, 32 * 1024, 4),
        Scheme::Argon2id => (Algorithm::Argon2id, 64 * 1024, 3),
        _ => return Err(Error::Hash(format!("{scheme} is not an Argon2 scheme"))),
    };
    let err = |e: argon2::password_hash::Error| Error::Hash(format!("{scheme}: {e}"));
    let mut salt = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| Error::Hash(format!("no random salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(err)?;
    let params = Params::new(m, t, 1, Some(32)).map_err(|e| Error::Hash(format!("{e}")))?;
    let phc = Argon2::new(algorithm, Version::V0x13, params)
        .hash_password(password, &salt)
        .map_err(err)?;
    Ok(phc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libsodium_strings() {
        let p = parse("$argon2id$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig").unwrap();
        assert_eq!(p.scheme, Scheme::Argon2id);
        assert_eq!(p.salt.len(), 16);
        assert_eq!(p.hash.len(), 32);
        let p = parse("$argon2i$v=19$m=32768,t=4,p=1$KUkyDOE2SxsNLgtOqAx0fg$RKBxCbJtTmR6fGcDHkR3hV2/hJ8xKbycucNZK6OmFBE").unwrap();
        assert_eq!(p.scheme, Scheme::Argon2i);
        assert!(!format!("{p:?}").contains("KUky"));
    }

    #[test]
    fn rejects_bad_strings() {
        for bad in [
            "$argon2id$",
            "$argon2id$v=19$m=65536,t=3,p=1$",
            "$argon2id$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw",
            "$argon2id$v=19$m=65536,t=3,p=1$!!!!$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=18$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=4294967295,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=65536,t=4294967295,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=65536,t=3,p=255$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=1,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=65536,t=3,p=1$Dk8H$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2id$v=19$m=65536,t=3,p=1,x=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
            "$argon2x$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("$argon2d$v=19$m=65536,t=3,p=1$Dk8HhOhi1Kvbvbv5cx0ivw$v9xWhg4szZGE5u06K00PtUQhd6t/zo+50cWx3Bly+Ig").unwrap_err(),
            Error::UnknownScheme("ARGON2D".into())
        );
    }
}
