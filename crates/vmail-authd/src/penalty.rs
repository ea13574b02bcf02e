//! Brute-force protection in the spirit of Dovecot's auth penalty: failures are counted per
//! remote network (IPv4 address, IPv6 prefix) and per login within a window; each counted
//! failure doubles the wait before the next attempt is even checked, and a network past
//! the block threshold fails without any password check (no CPU spent on it). The same
//! wrong password repeated (a client retrying with a stale saved password) counts once.
//! Trusted networks (a webmail host logging in for many users) are neither delayed nor
//! counted.

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
    table: Mutex<HashMap<Key, Entry>>,
    /// Keyed (random per process) hash for password fingerprints: repeats are recognised
    /// without keeping anything a password could be recovered from.
    hasher: RandomState,
}

impl Penalty {
    pub fn new(cfg: PenaltyConfig) -> Penalty {
        Penalty {
            cfg,
            table: Mutex::new(HashMap::new()),
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
    /// password).
    pub fn record_failure(&self, ip: Option<IpAddr>, login: &str, password: &[u8], now: Instant) {
        if self.is_trusted(ip) {
            return;
        }
        let fp = self.hasher.hash_one(password) | 1; // 0 marks an empty slot
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        if table.len() >= MAX_ENTRIES {
            let window = self.cfg.window;
            table.retain(|_, e| now.duration_since(e.last) < window);
            if table.len() >= MAX_ENTRIES {
                // Still full of live entries: forget the weakest evidence first.
                table.retain(|_, e| e.failures > 1);
            }
            if table.len() >= MAX_ENTRIES {
                table.clear();
            }
        }
        for key in [
            Key::Net(self.net_of(ip)),
            Key::Login(login.to_ascii_lowercase()),
        ] {
            let e = table.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
                recent: [0; RECENT],
                next: 0,
            });
            if now.duration_since(e.last) >= self.cfg.window {
                *e = Entry {
                    failures: 0,
                    last: now,
                    recent: [0; RECENT],
                    next: 0,
                };
            }
            e.last = now;
            if !e.recent.contains(&fp) {
                e.failures = e.failures.saturating_add(1);
                e.recent[e.next] = fp;
                e.next = (e.next + 1) % RECENT;
            }
        }
    }

    /// A successful login clears the penalty of its network and login, as Dovecot's does.
    pub fn record_success(&self, ip: Option<IpAddr>, login: &str) {
        if let Ok(mut table) = self.table.lock() {
            table.remove(&Key::Net(self.net_of(ip)));
            table.remove(&Key::Login(login.to_ascii_lowercase()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut table) = self.table.lock() {
            table.clear();
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
        p.record_success(ip("192.0.2.1"), "a@x");
        assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 0);
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
        assert!(p.table.lock().unwrap().len() <= MAX_ENTRIES + 2);
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
