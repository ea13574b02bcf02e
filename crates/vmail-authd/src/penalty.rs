//! Brute-force protection in the spirit of Dovecot's auth penalty: failures are counted per
//! remote network (IPv4 address, IPv6 prefix) and per login within a window; each counted
//! failure doubles the wait before the next attempt is even checked, and a network past
//! the block threshold fails without any password check (no CPU spent on it). The same
//! wrong password repeated for the same login (a client retrying with a stale saved
//! password) counts once.
//! Trusted networks (a webmail host logging in for many users) are neither delayed nor
//! counted. Right before a check, [`Penalty::admit`] blocks, counting the network's checks
//! in flight (`penalty/admission.rs`, which also says why the Lua channel has no per-login
//! throttle).
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

mod admission;
pub use admission::{Admission, InFlight, Pacing};

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
    /// Checks running, per network (see [`admission`]).
    in_flight: HashMap<IpAddr, u32>,
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
        Assessment {
            delay: self.delay_for(n),
            blocked: net >= self.cfg.block_after,
            failures: n,
        }
    }

    /// The penalty delay after `n` counted failures: the failure delay, doubled with each
    /// failure after the first.
    fn delay_for(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let doubled = self
            .cfg
            .failure_delay
            .saturating_mul(1u32 << (n - 1).min(16));
        // The failure delay still follows a failed check: keep the sum under the cap.
        doubled.min(self.cfg.max_delay.saturating_sub(self.cfg.failure_delay))
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
mod tests;
