//! What checking each kind of stored hash costs, so that an unknown user's dummy check can
//! cost as much as the costliest check in use (issue 15.5; see
//! `Authenticator::dummy_check`, which says why CPU time, why the least seen, and why the
//! choice is never the client's).

use std::sync::Mutex;
use std::time::Duration;

use vmail_passwd::Scheme;

/// CPU time of the calling thread: a check's cost without the time it waited for a core,
/// which load (a client's own, too) would add to a wall-clock measurement.
pub fn thread_cpu_time() -> Option<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::from(t))
}

/// At most this many kinds of stored hash are told apart for the dummy check.
const MAX_KINDS: usize = 32;

/// One kind of stored hash: what a check of it costs depends on its scheme and cost
/// parameters only, not on the salt or the password.
struct HashKind {
    /// The scheme and parameters (see [`kind_of`]).
    key: String,
    scheme: Scheme,
    /// What a dummy check of this kind checks against.
    against: Against,
    /// The least CPU time a check of this kind took.
    cpu: Duration,
}

enum Against {
    /// A stored value of this kind.
    Stored(String),
    /// `vmail_passwd::dummy_verify` in a configured scheme at `hash()`'s parameters, until
    /// a stored hash of that scheme shows the parameters really in use.
    Seed,
}

/// A configured scheme as a kind to start with, measured once.
fn seed(scheme: Scheme) -> HashKind {
    // Unprefixed CRYPT is checked, and stored, as DES.
    let scheme = if scheme == Scheme::Crypt {
        Scheme::DesCrypt
    } else {
        scheme
    };
    let cpu = (0..2)
        .filter_map(|_| {
            let start = thread_cpu_time()?;
            vmail_passwd::dummy_verify(scheme, b"seed");
            Some(thread_cpu_time()?.saturating_sub(start))
        })
        .min()
        .unwrap_or_default();
    HashKind {
        key: format!("seed {}", scheme.name()),
        scheme,
        against: Against::Seed,
        cpu,
    }
}

/// The scheme of `stored` and its kind: the scheme's name, and for the modular crypt
/// formats the fields before the salt (`$2y$05`, `$6$rounds=10000`,
/// `$argon2id$v=19$m=65536,t=3,p=1`).
fn kind_of(stored: &str, default: Scheme) -> Option<(Scheme, String)> {
    let scheme = vmail_passwd::scheme_of(stored, default).ok()?;
    let value = match stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        Some((_, rest)) => rest,
        None => stored,
    };
    if !value.starts_with('$') {
        return Some((scheme, scheme.name().to_string()));
    }
    let fields: Vec<&str> = value.split('$').collect();
    // bcrypt keeps salt and hash in one field; the others have a salt field, then the hash.
    let params = if scheme == Scheme::BlfCrypt { 1 } else { 2 };
    let keep = fields.len().checked_sub(params)?;
    Some((
        scheme,
        format!("{} {}", scheme.name(), fields[..keep].join("$")),
    ))
}

/// The kinds of hash a dummy check chooses from: `passwords.default_scheme` and
/// `hash_scheme` to start with, then every kind of stored hash checked since start-up, with
/// their measured cost.
pub struct HashCosts {
    kinds: Mutex<Vec<HashKind>>,
    /// For hashes without a `{SCHEME}` prefix.
    default_scheme: Scheme,
    /// The answer when the table cannot be read.
    hash_scheme: Scheme,
}

impl HashCosts {
    /// From the start: what unprefixed hashes and what vmailctl and re-hashing write cost,
    /// whichever is more.
    pub fn new(default_scheme: Scheme, hash_scheme: Scheme) -> HashCosts {
        HashCosts {
            kinds: Mutex::new(if default_scheme == hash_scheme {
                vec![seed(hash_scheme)]
            } else {
                vec![seed(default_scheme), seed(hash_scheme)]
            }),
            default_scheme,
            hash_scheme,
        }
    }

    /// Notes what a check of `stored` took, under its kind (`HashKind`). The first
    /// stored hash of a configured scheme replaces its seed: the parameters really in use
    /// are known from then on.
    pub fn observe(&self, stored: &str, took: Duration) {
        let Some((scheme, key)) = kind_of(stored, self.default_scheme) else {
            return;
        };
        let Ok(mut kinds) = self.kinds.lock() else {
            return;
        };
        if let Some(k) = kinds.iter_mut().find(|k| k.key == key) {
            k.cpu = k.cpu.min(took);
        } else if kinds.len() < MAX_KINDS {
            // Bounded: a database has a handful of kinds; more are not worth following.
            kinds.retain(|k| !(matches!(k.against, Against::Seed) && k.scheme == scheme));
            kinds.push(HashKind {
                key,
                scheme,
                against: Against::Stored(stored.to_string()),
                cpu: took,
            });
        }
    }

    /// The costliest kind: its scheme, and the stored value to check against (`None`: the
    /// built-in dummy hash of the scheme).
    pub fn choice(&self) -> (Scheme, Option<String>) {
        let Ok(kinds) = self.kinds.lock() else {
            return (self.hash_scheme, None);
        };
        match kinds.iter().max_by_key(|k| k.cpu) {
            Some(k) => match &k.against {
                Against::Stored(v) => (k.scheme, Some(v.clone())),
                Against::Seed => (k.scheme, None),
            },
            None => (self.hash_scheme, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_kinds_are_scheme_and_parameters_never_the_salt() {
        let k = |s: &str| kind_of(s, Scheme::Crypt).unwrap_or_else(|| panic!("{s}")).1;
        let a = vmail_passwd::hash(Scheme::Sha512Crypt, b"a").unwrap();
        let b = vmail_passwd::hash(Scheme::Sha512Crypt, b"b").unwrap();
        assert_eq!(k(&a), k(&b));
        assert_eq!(k(&a), "SHA512-CRYPT $6");
        assert_eq!(
            k("$6$rounds=10000$saltsalt$BlEC2vxHYlhrhUhfBHpvxx2lBHwNhJYtpcY7g2BtmgXPJpcFuRAtNBYnQkhLjexkrGu2o.yzQgw/8.eBHd63.1"),
            "SHA512-CRYPT $6$rounds=10000"
        );
        assert_eq!(
            k("{BLF-CRYPT}$2y$05$IKNXv1goiDCrvjUQMD36g.F7GLnAb7FT0ja7v8Uxhtd5yUw5K1UPa"),
            "BLF-CRYPT $2y$05"
        );
        assert_ne!(
            k(&vmail_passwd::hash(Scheme::BlfCrypt, b"a").unwrap()),
            "BLF-CRYPT $2y$05"
        );
        let argon = k(&vmail_passwd::hash(Scheme::Argon2id, b"a").unwrap());
        assert!(argon.starts_with("ARGON2ID $argon2id$v=19$m="), "{argon}");
        assert_eq!(argon.matches('$').count(), 3, "{argon}");
        assert_eq!(k("abNANd1rDfiNc"), "DES-CRYPT");
        assert_eq!(
            k(&vmail_passwd::hash(Scheme::Ssha512, b"a").unwrap()),
            "SSHA512"
        );
    }
}
