//! What authd remembers between authentications (`[authd] cache_enabled`), so that a mail
//! client that logs in every few minutes does not pay a hash check each time (about a
//! millisecond of CPU for SHA512-CRYPT, tens for bcrypt and Argon2) nor, within a short
//! window, a database round trip. Three maps, each bounded by `cache_max_entries` and all
//! emptied by the flush that `vmailctl` sends with every change:
//!
//! - Verified passwords, for `cache_ttl_s` ([`VerifiedCache::contains`]): a keyed digest of
//!   (the user's address, the stored hash it was checked against, the password). The row
//!   is read before this map is asked, so it saves only the hash check, and a password
//!   change (a new stored hash) or a disabled account takes effect at once.
//! - Recent logins, for `cache_recheck_s` after a check that read the row ([`Recent`]):
//!   the same login with the same password is answered from memory with the row as read
//!   then, without reading it again: no database round trip for a client opening several
//!   connections or sending a burst, and known logins keep working through a short
//!   database outage (as with Dovecot's auth cache or saslauthd -c). A hit that the row
//!   as read then refuses (disabled, service not allowed) takes the full path again. So a
//!   change made in SQL directly, past `vmailctl`, applies after at most
//!   `cache_recheck_s`; 0 reads the row at every attempt.
//! - Dict rows, for the same `cache_recheck_s` ([`rows`]): Dovecot's dict passdb/userdb
//!   lookups carry no password (Dovecot checks the hash itself), so the row a lookup found
//!   is kept, by the login as Dovecot sent it, and a user's next logins within the window
//!   cost Dovecot no database round trip either. Only rows that exist are kept: a user
//!   created a moment ago can log in at once.
//!
//! The first two maps are keyed by digests under a per-process random key, so nothing in
//! them can be turned back into a password, and recent logins keep the row without its
//! hash; the dict rows do hold hashes, as read from the database, and are never logged. A
//! result is stored only if no flush came in between reading the row and storing it (see
//! `generation`).
//!
//! [`rows`]: VerifiedCache::row

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct VerifiedCache {
    ttl: Duration,
    recheck: Duration,
    max_entries: usize,
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Instant>>,
    recent: Mutex<HashMap<[u8; 32], Recent>>,
    /// Rows found for dict lookups, by login as Dovecot sent it, with their expiry.
    rows: Mutex<HashMap<String, (vmail_directory::User, Instant)>>,
    /// Bumped by every flush. A check reads it before reading the user's row and stores
    /// its result only if no flush came in between: a row read before `vmailctl user
    /// passwd` must not be remembered after the flush that follows it.
    generation: AtomicU64,
}

/// A login recently verified against the user's row, with the row as read then (its
/// password hash dropped).
#[derive(Clone)]
pub struct Recent {
    pub user: vmail_directory::User,
    expires: Instant,
}

/// Keeps `map` within `max` entries before an insert of a new key: expired ones go first,
/// then about half of the live ones (re-verified on next use).
fn make_room<K, Q, V>(map: &mut HashMap<K, V>, key: &Q, max: usize, live: impl Fn(&V) -> bool)
where
    K: Eq + Hash + Borrow<Q>,
    Q: Eq + Hash + ?Sized,
{
    if map.len() >= max && !map.contains_key(key) {
        map.retain(|_, v| live(v));
        if map.len() >= max {
            let mut keep = false;
            map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }
}

impl VerifiedCache {
    /// `recheck`: how long a verified login is answered without reading the row (zero:
    /// never).
    pub fn new(ttl: Duration, recheck: Duration, max_entries: usize) -> VerifiedCache {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        VerifiedCache {
            ttl,
            recheck,
            max_entries: max_entries.max(1),
            key,
            entries: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            rows: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Read before reading the row a result will be stored for (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The row `login` had when `password` was last verified for it, if that was less than
    /// `recheck` ago. Keyed like [`VerifiedCache::contains`], with an empty stored hash.
    pub fn recent(&self, login: &str, password: &[u8], now: Instant) -> Option<Recent> {
        if self.recheck.is_zero() {
            return None;
        }
        let d = self.digest(login, "", password);
        let mut recent = self.recent.lock().ok()?;
        match recent.get(&d) {
            Some(r) if now < r.expires => Some(r.clone()),
            Some(_) => {
                recent.remove(&d);
                None
            }
            None => None,
        }
    }

    /// Records that `password` was just verified for `login` against `user`'s row, read
    /// when the cache was at `generation`.
    pub fn remember(
        &self,
        login: &str,
        password: &[u8],
        user: &vmail_directory::User,
        generation: u64,
        now: Instant,
    ) {
        if self.recheck.is_zero() {
            return;
        }
        let d = self.digest(login, "", password);
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        // Checked under the lock: clear() bumps the generation before taking it.
        if self.generation() != generation {
            return;
        }
        make_room(&mut recent, &d, self.max_entries, |r| now < r.expires);
        recent.insert(
            d,
            Recent {
                user: vmail_directory::User {
                    password: None,
                    ..user.clone()
                },
                expires: now + self.recheck,
            },
        );
    }

    /// The row a dict lookup of `login` found less than `recheck` ago.
    pub fn row(&self, login: &str, now: Instant) -> Option<vmail_directory::User> {
        if self.recheck.is_zero() {
            return None;
        }
        let mut rows = self.rows.lock().ok()?;
        match rows.get(login) {
            Some((u, expires)) if now < *expires => Some(u.clone()),
            Some(_) => {
                rows.remove(login);
                None
            }
            None => None,
        }
    }

    /// Keeps the row a dict lookup of `login` just found, read when the cache was at
    /// `generation`.
    pub fn remember_row(
        &self,
        login: &str,
        user: &vmail_directory::User,
        generation: u64,
        now: Instant,
    ) {
        if self.recheck.is_zero() {
            return;
        }
        let Ok(mut rows) = self.rows.lock() else {
            return;
        };
        if self.generation() != generation {
            return;
        }
        make_room(&mut rows, login, self.max_entries, |(_, e)| now < *e);
        rows.insert(login.to_string(), (user.clone(), now + self.recheck));
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

    pub fn insert(
        &self,
        login: &str,
        stored: &str,
        password: &[u8],
        generation: u64,
        now: Instant,
    ) {
        let d = self.digest(login, stored, password);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation() != generation {
            return;
        }
        make_room(&mut entries, &d, self.max_entries, |&e| now < e);
        entries.insert(d, now + self.ttl);
    }

    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
        if let Ok(mut recent) = self.recent.lock() {
            recent.clear();
        }
        if let Ok(mut rows) = self.rows.lock() {
            rows.clear();
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
        let c = VerifiedCache::new(Duration::from_secs(60), Duration::ZERO, 10);
        let t = Instant::now();
        c.insert("a@x", "$6$old", b"pw", 0, t);
        assert!(c.contains("a@x", "$6$old", b"pw", t));
        assert!(!c.contains("a@x", "$6$new", b"pw", t), "password changed");
        assert!(!c.contains("a@x", "$6$old", b"pw2", t));
        assert!(!c.contains("b@x", "$6$old", b"pw", t));
        // Field boundaries matter.
        assert!(!c.contains("a@x$6", "$old", b"pw", t));
    }

    #[test]
    fn entries_expire_and_flush() {
        let c = VerifiedCache::new(Duration::from_secs(60), Duration::ZERO, 10);
        let t = Instant::now();
        c.insert("a@x", "h", b"pw", 0, t);
        assert!(!c.contains("a@x", "h", b"pw", t + Duration::from_secs(61)));
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        c.insert("a@x", "h", b"pw", 0, t);
        c.clear();
        assert!(!c.contains("a@x", "h", b"pw", t));
    }

    #[test]
    fn bounded() {
        let c = VerifiedCache::new(Duration::from_secs(60), Duration::ZERO, 100);
        let t = Instant::now();
        for i in 0..1000 {
            c.insert(&format!("{i}@x"), "h", b"pw", 0, t);
        }
        assert!(c.len() <= 100);
        assert!(
            c.contains("999@x", "h", b"pw", t),
            "the newest entry is kept"
        );
    }

    fn user(email: &str, active: bool) -> vmail_directory::User {
        vmail_directory::User {
            email: email.into(),
            password: Some("$6$secret-hash".into()),
            active,
            quota_bytes: None,
            services: Some(vec!["imap".into()]),
            uid: 5000,
            gid: 5000,
            home: String::new(),
            mail: String::new(),
        }
    }

    #[test]
    fn dict_rows_for_the_recheck_window_bounded_and_flushed() {
        let c = VerifiedCache::new(Duration::from_secs(300), Duration::from_secs(30), 2);
        let t = Instant::now();
        assert!(c.row("alice@x", t).is_none());
        c.remember_row("alice@x", &user("alice@x", true), 0, t);
        let r = c.row("alice@x", t + Duration::from_secs(29)).unwrap();
        assert_eq!(
            r.password.as_deref(),
            Some("$6$secret-hash"),
            "Dovecot needs the hash"
        );
        assert!(
            c.row("alice@x", t + Duration::from_secs(30)).is_none(),
            "expired"
        );
        assert!(c.row("Alice@x", t).is_none(), "other login text");
        // A row read before a flush is not kept after it.
        let g = c.generation();
        c.clear();
        c.remember_row("alice@x", &user("alice@x", true), g, t);
        assert!(c.row("alice@x", t).is_none());
        // Bounded.
        for i in 0..10 {
            c.remember_row(&format!("u{i}@x"), &user("u@x", true), c.generation(), t);
        }
        assert!(c.rows.lock().unwrap().len() <= 2);
        assert!(c.row("u9@x", t).is_some(), "the newest row is kept");
        c.clear();
        assert!(c.row("u9@x", t).is_none(), "flushed");
        // recheck 0: nothing kept.
        let c = VerifiedCache::new(Duration::from_secs(300), Duration::ZERO, 2);
        c.remember_row("alice@x", &user("alice@x", true), 0, t);
        assert!(c.row("alice@x", t).is_none());
    }

    #[test]
    fn recent_logins_for_the_recheck_window_only() {
        let c = VerifiedCache::new(Duration::from_secs(300), Duration::from_secs(30), 10);
        let t = Instant::now();
        assert!(c.recent("Alice@x", b"pw", t).is_none());
        c.remember("Alice@x", b"pw", &user("alice@x", true), 0, t);
        let r = c
            .recent("Alice@x", b"pw", t + Duration::from_secs(29))
            .unwrap()
            .user;
        assert_eq!(r.email, "alice@x");
        assert!(r.active);
        assert_eq!(r.services, Some(vec!["imap".to_string()]));
        assert_eq!(r.password, None, "no hash kept");
        assert!(c.recent("Alice@x", b"pw2", t).is_none(), "other password");
        assert!(c.recent("alice@x", b"pw", t).is_none(), "other login text");
        assert!(c
            .recent("Alice@x", b"pw", t + Duration::from_secs(31))
            .is_none());
        c.remember("Alice@x", b"pw", &user("alice@x", false), 0, t);
        assert!(!c.recent("Alice@x", b"pw", t).unwrap().user.active);
        c.clear();
        assert!(c.recent("Alice@x", b"pw", t).is_none(), "flushed");
        // Off: nothing is kept.
        let off = VerifiedCache::new(Duration::from_secs(300), Duration::ZERO, 10);
        off.remember("a@x", b"pw", &user("a@x", true), 0, t);
        assert!(off.recent("a@x", b"pw", t).is_none());
        // Bounded like the verified entries.
        let g = c.generation();
        for i in 0..100 {
            c.remember(&format!("{i}@x"), b"pw", &user("u@x", true), g, t);
        }
        assert!(c.recent.lock().unwrap().len() <= 10);
        assert!(
            c.recent("99@x", b"pw", t).is_some(),
            "the newest entry is kept"
        );
    }

    #[test]
    fn a_result_read_before_a_flush_is_not_stored_after_it() {
        let c = VerifiedCache::new(Duration::from_secs(300), Duration::from_secs(30), 10);
        let t = Instant::now();
        let before = c.generation();
        c.clear(); // vmailctl changed the password while the check was running
        c.remember("a@x", b"pw", &user("a@x", true), before, t);
        c.insert("a@x", "$6$old", b"pw", before, t);
        assert!(c.recent("a@x", b"pw", t).is_none());
        assert!(!c.contains("a@x", "$6$old", b"pw", t));
        let now = c.generation();
        c.remember("a@x", b"pw", &user("a@x", true), now, t);
        c.insert("a@x", "$6$old", b"pw", now, t);
        assert!(c.recent("a@x", b"pw", t).is_some());
        assert!(c.contains("a@x", "$6$old", b"pw", t));
    }
}
