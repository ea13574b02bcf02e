//! Brute-force protection in the spirit of Dovecot's auth penalty: failures are counted per
//! remote network (IPv4 address, IPv6 prefix) and per login within a window; each counted
//! failure doubles the wait before the next attempt is even checked, and a network past
//! the block threshold fails without any password check (no CPU spent on it). The same
//! wrong password repeated for the same login (a client retrying with a stale saved
//! password) counts once.
//! Trusted networks (a webmail host logging in for many users) are neither delayed nor
//! counted.
//!
//! What a success forgives, and why (issue 15.4): a network's counter is evidence against
//! everybody behind it, so one account's success must not clear it, or an attacker who owns
//! one account washes it after every 99 guesses at other accounts. Each failure is therefore
//! also booked to its (network, login) pair, with exactly what it added to the network's
//! counter; a success takes back only its own pair's share (a user who mistyped and then
//! got it right leaves no trace) and clears the login's counter (only someone who knows
//! that login's password can do that, and the counter protects only that login). What
//! other logins cost the network stays until the window passes. A share is what the
//! network's counter really got, after the repeat check, and is tied to the instance of
//! the counter it went into: it never takes back more than it put in, nor from a counter
//! that has been reset since. The tables live as long as the process: a cache flush
//! (`vmailctl` changes, SIGHUP) leaves them alone.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Table size bound: an attacker cycling through addresses or logins must not grow memory
/// without limit.
const MAX_ENTRIES: usize = 65_536;
/// Distinct wrong passwords remembered per entry, to count repeats once.
const RECENT: usize = 4;

#[derive(Debug, Clone)]
pub struct PenaltyConfig {
    pub window: Duration,
    pub block_after: u32,
    pub ipv6_prefix: u8,
    pub trusted: Vec<(IpAddr, u8)>,
    /// The delay every failure gets anyway; the penalty before a check is a multiple.
    pub failure_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Net(IpAddr),
    Login(String),
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last: Instant,
    recent: [u64; RECENT],
    next: usize,
    /// Which instance of the counter this is (a new one after a reset): a pair's share
    /// applies only to the instance it was added to.
    id: u64,
}

/// What the failures of one (network, login) pair added to the network's counter.
#[derive(Debug, Clone, Copy)]
struct Share {
    last: Instant,
    /// The counter instance they went into.
    id: u64,
    added: u32,
}

#[derive(Default)]
struct Tables {
    counters: HashMap<Key, Entry>,
    shares: HashMap<(IpAddr, String), Share>,
    next_id: u64,
}

/// What to do with an attempt, decided before any password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    /// Wait this long before checking.
    pub delay: Duration,
    /// Fail without checking: the remote network is past the block threshold.
    pub blocked: bool,
    /// Failures counted against the remote network and the login (for the log).
    pub failures: u32,
}

pub struct Penalty {
    cfg: PenaltyConfig,
    table: Mutex<Tables>,
    /// Keyed (random per process) hash for password fingerprints: repeats are recognised
    /// without keeping anything a password could be recovered from.
    hasher: RandomState,
}

impl Penalty {
    pub fn new(cfg: PenaltyConfig) -> Penalty {
        Penalty {
            cfg,
            table: Mutex::new(Tables::default()),
            hasher: RandomState::new(),
        }
    }

    pub fn is_trusted(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| {
            self.cfg
                .trusted
                .iter()
                .any(|&(net, len)| in_net(ip, net, len))
        })
    }

    /// The delay before (and whether to skip) the check of an attempt from `ip` for
    /// `login`.
    pub fn assess(&self, ip: Option<IpAddr>, login: &str, now: Instant) -> Assessment {
        if self.is_trusted(ip) {
            return Assessment {
                delay: Duration::ZERO,
                blocked: false,
                failures: 0,
            };
        }
        let Ok(table) = self.table.lock() else {
            return Assessment {
                delay: Duration::ZERO,
                blocked: false,
                failures: 0,
            };
        };
        let live = |k: &Key| {
            table
                .counters
                .get(k)
                .filter(|e| now.duration_since(e.last) < self.cfg.window)
                .map_or(0, |e| e.failures)
        };
        // Requests without a usable rip= share one bucket, as in Dovecot.
        let net = live(&Key::Net(self.net_of(ip)));
        let user = live(&Key::Login(login.to_ascii_lowercase()));
        let n = net.max(user);
        let delay = if n == 0 {
            Duration::ZERO
        } else {
            let doubled = self
                .cfg
                .failure_delay
                .saturating_mul(1u32 << (n - 1).min(16));
            // The failure delay still follows a failed check: keep the sum under the cap.
            doubled.min(self.cfg.max_delay.saturating_sub(self.cfg.failure_delay))
        };
        Assessment {
            delay,
            blocked: net >= self.cfg.block_after,
            failures: n,
        }
    }

    /// Counts a failed attempt (unless from a trusted network or a repeat of a recent wrong
    /// password), and books it to its (network, login) pair.
    pub fn record_failure(&self, ip: Option<IpAddr>, login: &str, password: &[u8], now: Instant) {
        if self.is_trusted(ip) {
            return;
        }
        let (net, login) = (self.net_of(ip), login.to_ascii_lowercase());
        // A repeat is the same password for the same login (a client retrying a stale saved
        // password). Not the same password alone: the network's counter would then count
        // one password tried against every login once, and spraying a common password
        // over all accounts would never reach the block.
        let fp = self.hasher.hash_one((login.as_str(), password)) | 1; // 0 marks an empty slot
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let window = self.cfg.window;
        make_room(&mut table, now, window);
        let mut to_net = (0, 0);
        for key in [Key::Login(login.clone()), Key::Net(net)] {
            let Tables {
                counters, next_id, ..
            } = &mut *table;
            let e = counters.entry(key).or_insert_with(|| fresh(next_id, now));
            if now.duration_since(e.last) >= window {
                *e = fresh(next_id, now);
            }
            e.last = now;
            let counted = !e.recent.contains(&fp);
            if counted {
                e.failures = e.failures.saturating_add(1);
                e.recent[e.next] = fp;
                e.next = (e.next + 1) % RECENT;
            }
            // The network's counter comes last: this is its instance and what it got.
            to_net = (e.id, u32::from(counted));
        }
        let (id, n) = to_net;
        let share = table.shares.entry((net, login)).or_insert(Share {
            last: now,
            id,
            added: 0,
        });
        if now.duration_since(share.last) >= window || share.id != id {
            // Expired, or the counter was reset since: the old share went with it.
            *share = Share {
                last: now,
                id,
                added: 0,
            };
        }
        share.last = now;
        share.added = share.added.saturating_add(n);
    }

    /// A successful login takes back what its own failures from this network added to
    /// the network's counter, and clears its login's counter (see the module comment).
    pub fn record_success(&self, ip: Option<IpAddr>, login: &str, now: Instant) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let (net, login) = (self.net_of(ip), login.to_ascii_lowercase());
        let share = table.shares.remove(&(net, login.clone()));
        table.counters.remove(&Key::Login(login));
        let Some(share) = share.filter(|s| now.duration_since(s.last) < self.cfg.window) else {
            return;
        };
        if let Some(e) = table.counters.get_mut(&Key::Net(net)) {
            if e.id == share.id {
                e.failures = e.failures.saturating_sub(share.added);
            }
        }
    }

    /// The penalty bucket of an address: IPv4 as is, IPv6 by prefix (one host owns a /64),
    /// an IPv4-mapped IPv6 address as its IPv4 address, and "no address" as one bucket.
    fn net_of(&self, ip: Option<IpAddr>) -> IpAddr {
        match ip {
            None => IpAddr::from([0u8; 16]),
            Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(mask_v6(v6.octets(), self.cfg.ipv6_prefix).into()),
            },
        }
    }
}

/// A new counter instance.
fn fresh(next_id: &mut u64, now: Instant) -> Entry {
    *next_id += 1;
    Entry {
        failures: 0,
        last: now,
        recent: [0; RECENT],
        next: 0,
        id: *next_id,
    }
}

/// Keeps both tables within `MAX_ENTRIES` before an insert: expired entries go first, then
/// the weakest evidence, counters with the fewest failures (the oldest of equals), down to
/// 7/8 of the bound. Never all of them: an attacker who fills the table with a few failures
/// each must not wipe the counter of a network that has guessed nearly up to the block (it
/// would take entries with more failures than that counter, each of them counted). Dropping
/// shares errs on the safe side: a success then takes back nothing, and the network's
/// counter simply runs out with its window.
fn make_room(t: &mut Tables, now: Instant, window: Duration) {
    if t.counters.len() >= MAX_ENTRIES {
        t.counters
            .retain(|_, e| now.duration_since(e.last) < window);
        if t.counters.len() >= MAX_ENTRIES {
            let mut weakest: Vec<((u32, Instant), Key)> = t
                .counters
                .iter()
                .map(|(k, e)| ((e.failures, e.last), k.clone()))
                .collect();
            weakest.sort_unstable_by_key(|(rank, _)| *rank);
            let drop = t.counters.len() - (MAX_ENTRIES - MAX_ENTRIES / 8);
            for (_, k) in weakest.into_iter().take(drop) {
                t.counters.remove(&k);
            }
        }
    }
    if t.shares.len() >= MAX_ENTRIES {
        t.shares.retain(|_, s| now.duration_since(s.last) < window);
        if t.shares.len() >= MAX_ENTRIES {
            t.shares.clear();
        }
    }
}

fn mask_v6(mut o: [u8; 16], len: u8) -> [u8; 16] {
    for (i, b) in o.iter_mut().enumerate() {
        let bits = (len as usize).saturating_sub(i * 8).min(8);
        *b &= (0xffu16 << (8 - bits)) as u8;
    }
    o
}

/// Whether `ip` lies in `net/len` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => mask_v6(a.octets(), len) == mask_v6(n.octets(), len),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PenaltyConfig {
        PenaltyConfig {
            window: Duration::from_secs(60),
            block_after: 5,
            ipv6_prefix: 64,
            trusted: vec![("10.0.0.0".parse().unwrap(), 8)],
            failure_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn delay_doubles_and_is_capped_below_the_maximum() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).delay, Duration::ZERO);
        let mut seen = Vec::new();
        for i in 0..5u8 {
            p.record_failure(ip("192.0.2.1"), "a@x", &[i], t);
            seen.push(p.assess(ip("192.0.2.1"), "b@x", t).delay.as_millis());
        }
        // 100, 200, 400, then capped at max - failure delay = 600.
        assert_eq!(seen, vec![100, 200, 400, 600, 600]);
        assert!(p.assess(ip("192.0.2.1"), "b@x", t).blocked);
        assert!(!p.assess(ip("192.0.2.2"), "b@x", t).blocked);
    }

    #[test]
    fn same_wrong_password_counts_once() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for _ in 0..10 {
            p.record_failure(ip("192.0.2.1"), "a@x", b"stale", t);
        }
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 1);
        p.record_failure(ip("192.0.2.1"), "a@x", b"other", t);
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 2);
    }

    /// One password tried against many logins (password spraying) is one failure per
    /// login for the network, not one in all.
    #[test]
    fn one_password_sprayed_over_logins_counts_for_each() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for i in 0..5 {
            p.record_failure(ip("192.0.2.1"), &format!("user{i}@x"), b"Summer2026!", t);
        }
        let a = p.assess(ip("192.0.2.1"), "user9@x", t);
        assert_eq!((a.failures, a.blocked), (5, true));
        // A retry for the same login (a stale saved password) still counts once.
        p.record_failure(ip("192.0.2.2"), "a@x", b"stale", t);
        p.record_failure(ip("192.0.2.2"), "A@x", b"stale", t);
        assert_eq!(p.assess(ip("192.0.2.2"), "b@x", t).failures, 1);
    }

    #[test]
    fn per_login_counter_follows_the_user_across_addresses() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for i in 0..3u8 {
            p.record_failure(ip(&format!("198.51.100.{i}")), "Victim@x", &[i], t);
        }
        let a = p.assess(ip("203.0.113.9"), "victim@X", t);
        assert_eq!(a.failures, 3);
        assert!(!a.blocked, "a login is delayed, never locked out");
    }

    #[test]
    fn ipv6_shares_a_prefix_and_mapped_v4_is_v4() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        p.record_failure(ip("2001:db8:1:2::1"), "a@x", b"1", t);
        assert_eq!(p.assess(ip("2001:db8:1:2:ffff::9"), "z@x", t).failures, 1);
        assert_eq!(p.assess(ip("2001:db8:1:3::1"), "z@x", t).failures, 0);
        p.record_failure(ip("192.0.2.7"), "b@x", b"1", t);
        assert_eq!(p.assess(ip("::ffff:192.0.2.7"), "z@x", t).failures, 1);
    }

    #[test]
    fn trusted_networks_are_exempt_and_not_counted() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for i in 0..10u8 {
            p.record_failure(ip("10.1.2.3"), "a@x", &[i], t);
        }
        let a = p.assess(ip("10.1.2.3"), "a@x", t);
        assert_eq!((a.delay, a.blocked), (Duration::ZERO, false));
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 0);
    }

    #[test]
    fn window_expiry_and_success_reset() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for i in 0..5u8 {
            p.record_failure(ip("192.0.2.1"), "a@x", &[i], t);
        }
        assert!(p.assess(ip("192.0.2.1"), "a@x", t).blocked);
        assert!(
            !p.assess(ip("192.0.2.1"), "a@x", t + Duration::from_secs(61))
                .blocked
        );
        p.record_success(ip("192.0.2.1"), "a@x", t);
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 0);
    }

    /// Issue 15.4: one account's success does not wash what guesses at others cost the
    /// network; the user's own typos are forgiven.
    #[test]
    fn a_success_forgives_only_its_own_failures() {
        let p = Penalty::new(PenaltyConfig {
            block_after: 100,
            ..cfg()
        });
        let t = Instant::now();
        let me = ip("192.0.2.1");
        let mut guess = 0u32;
        for _ in 0..3 {
            for _ in 0..33 {
                guess += 1;
                p.record_failure(me, "carol@x", &guess.to_le_bytes(), t);
            }
            // The attacker's own account: a typo, then its right password.
            p.record_failure(me, "bob@x", b"typo", t);
            p.record_success(me, "bob@x", t);
        }
        let a = p.assess(me, "carol@x", t);
        assert_eq!((a.failures, a.blocked), (99, false));
        p.record_failure(me, "carol@x", b"one more", t);
        assert!(p.assess(me, "carol@x", t).blocked);
        assert!(p.assess(me, "bob@x", t).blocked, "the network is blocked");
        // A legitimate typo elsewhere, then success: no trace left.
        let other = ip("198.51.100.1");
        p.record_failure(other, "dave@x", b"typo", t);
        p.record_success(other, "dave@x", t);
        assert_eq!(p.assess(other, "dave@x", t).failures, 0);
    }

    /// A failure the network already counted (a repeated password) adds nothing to the
    /// pair's share, so a success cannot take back more than its pair put in.
    #[test]
    fn repeats_cannot_be_used_to_take_back_others_failures() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        let me = ip("192.0.2.1");
        for pw in [b"p1", b"p2", b"p3", b"p4"] {
            p.record_failure(me, "carol@x", pw, t);
        }
        for _ in 0..3 {
            // Passwords the network has just seen: not counted again, no share.
            for pw in [b"p3", b"p4"] {
                p.record_failure(me, "bob@x", pw, t);
            }
            p.record_success(me, "bob@x", t);
        }
        assert_eq!(p.assess(me, "nobody@x", t).failures, 4);
        // A share from before a reset takes nothing from the new counter.
        let later = t + Duration::from_secs(61);
        p.record_failure(me, "bob@x", b"q", t);
        p.record_failure(me, "carol@x", b"r", later);
        p.record_success(me, "bob@x", later);
        assert_eq!(p.assess(me, "nobody@x", later).failures, 1);
    }

    #[test]
    fn no_rip_is_one_bucket() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        p.record_failure(None, "a@x", b"1", t);
        assert_eq!(p.assess(None, "b@x", t).failures, 1);
    }

    #[test]
    fn table_stays_bounded() {
        let p = Penalty::new(cfg());
        let t = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            p.record_failure(
                Some(IpAddr::from(i.to_be_bytes())),
                &format!("{i}@x"),
                b"p",
                t,
            );
        }
        let t = p.table.lock().unwrap();
        assert!(t.counters.len() <= MAX_ENTRIES + 2);
        assert!(t.shares.len() <= MAX_ENTRIES + 1);
    }

    /// A full table of live counters does not lose the strongest evidence: filling it with
    /// a few failures per entry does not reset a network that has nearly reached the block.
    #[test]
    fn filling_the_table_does_not_wash_a_guessing_network() {
        let p = Penalty::new(PenaltyConfig {
            block_after: 100,
            ..cfg()
        });
        let t = Instant::now();
        let guesser = ip("192.0.2.1");
        for i in 0..99u32 {
            p.record_failure(guesser, "carol@x", &i.to_le_bytes(), t);
        }
        // Other logins from many addresses, two failures each: more than the table holds.
        for i in 0..(MAX_ENTRIES as u32) {
            let from = Some(IpAddr::from((0xac10_0000u32 + i / 256).to_be_bytes()));
            for pw in [b"a", b"b"] {
                p.record_failure(from, &format!("filler{i}@x"), pw, t);
            }
        }
        let a = p.assess(guesser, "someone@x", t);
        assert_eq!(a.failures, 99);
        assert_eq!(p.assess(ip("198.51.100.1"), "carol@x", t).failures, 99);
        assert!(p.table.lock().unwrap().counters.len() <= MAX_ENTRIES);
    }

    #[test]
    fn networks() {
        let n = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_net(n("10.9.8.7"), n("10.0.0.0"), 8));
        assert!(!in_net(n("11.0.0.1"), n("10.0.0.0"), 8));
        assert!(in_net(n("::ffff:10.0.0.1"), n("10.0.0.0"), 8));
        assert!(in_net(n("2001:db8::5"), n("2001:db8::"), 32));
        assert!(!in_net(n("2001:db9::5"), n("2001:db8::"), 32));
        assert!(in_net(n("1.2.3.4"), n("0.0.0.0"), 0));
        assert!(!in_net(n("1.2.3.4"), n("::"), 0));
    }
}
