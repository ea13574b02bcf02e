//! The cache of verified credentials. Checking a SHA512-CRYPT hash costs about a millisecond
//! of CPU, bcrypt and Argon2 tens; a mail client that logs in every few minutes should not
//! pay that each time. An entry is a keyed digest of (login, the stored hash it was checked
//! against, the password): the user's row is still read on every attempt, so a password
//! change (a new stored hash) or a disabled account takes effect at once, and nothing in
//! the cache can be turned back into a password without the per-process key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct VerifiedCache {
    ttl: Duration,
    max_entries: usize,
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    pub fn new(ttl: Duration, max_entries: usize) -> VerifiedCache {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        VerifiedCache {
            ttl,
            max_entries: max_entries.max(1),
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, login: &str, stored: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        // Length prefixes keep the fields from sliding into each other.
        for part in [login.as_bytes(), stored.as_bytes(), password] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Whether `password` was verified against exactly `stored` for `login` within the TTL.
    /// The map is keyed by a secret-keyed digest, so lookup timing reveals nothing an
    /// attacker can steer.
    pub fn contains(&self, login: &str, stored: &str, password: &[u8], now: Instant) -> bool {
        let d = self.digest(login, stored, password);
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        match entries.get(&d) {
            Some(&expires) if now < expires => true,
            Some(_) => {
                entries.remove(&d);
                false
            }
            None => false,
        }
    }

    pub fn insert(&self, login: &str, stored: &str, password: &[u8], now: Instant) {
        let d = self.digest(login, stored, password);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.max_entries && !entries.contains_key(&d) {
            entries.retain(|_, &mut e| now < e);
            if entries.len() >= self.max_entries {
                // Full of live entries: drop about half; they are re-verified on next use.
                let mut keep = false;
                entries.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        entries.insert(d, now + self.ttl);
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_only_for_the_same_login_hash_and_password() {
        let c = VerifiedCache::new(Duration::from_secs(60), 10);
        let t = Instant::now();
        c.insert("a@x", "$6$old", b"pw", t);
        assert!(c.contains("a@x", "$6$old", b"pw", t));
        assert!(!c.contains("a@x", "$6$new", b"pw", t), "password changed");
        assert!(!c.contains("a@x", "$6$old", b"pw2", t));
        assert!(!c.contains("b@x", "$6$old", b"pw", t));
        // Field boundaries matter.
        assert!(!c.contains("a@x$6", "$old", b"pw", t));
    }

    #[test]
    fn entries_expire_and_flush() {
        let c = VerifiedCache::new(Duration::from_secs(60), 10);
        let t = Instant::now();
        c.insert("a@x", "h", b"pw", t);
        assert!(!c.contains("a@x", "h", b"pw", t + Duration::from_secs(61)));
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        c.insert("a@x", "h", b"pw", t);
        c.clear();
        assert!(!c.contains("a@x", "h", b"pw", t));
    }

    #[test]
    fn bounded() {
        let c = VerifiedCache::new(Duration::from_secs(60), 100);
        let t = Instant::now();
        for i in 0..1000 {
            c.insert(&format!("{i}@x"), "h", b"pw", t);
        }
        assert!(c.len() <= 100);
        assert!(
            c.contains("999@x", "h", b"pw", t),
            "the newest entry is kept"
        );
    }
}
