//! The decision taken right before a password check: block, or check, with the check
//! counted in flight until it ends.
//!
//! In flight (review 3): a check counts against its network's block threshold from its
//! admission until it ends ([`InFlight`], released on drop: success, failure, temporary
//! failure or a dropped request alike). Counted only once a failure was recorded, 30
//! connections × 10 wrong passwords from one address got 128 checks past a threshold of
//! 100; counted in flight, failures plus checks running never pass it. A check that will
//! succeed counts too while it runs: a network with `f` failures has at most
//! `block_after - f` checks running at once. The table of checks in flight holds one entry
//! per network with a check running, so it is as big as the checks running; past
//! `MAX_ENTRIES` networks at once a new one is checked untracked (the behaviour before).
//!
//! No throttle on the Lua channel ([`Pacing::Caller`]), deliberately. authd does not sleep
//! there (a sleep would hold a Dovecot auth worker per failing login), so a login's
//! doubling delay does not apply, and one login can be guessed from many addresses as fast
//! as Dovecot hands the guesses over. A throttle that refuses a login's attempts unchecked
//! until its delay has passed was tried (this session) and reviewed: whoever asks first
//! when the delay runs out gets the check, so one outside address polling with one wrong
//! password kept the real user out of IMAP for as long as it polled (19 of 19 logins
//! refused in 20 minutes, while SMTP AUTH let each in after its delay), and counting its
//! refusals blocked whole NATs through their own users' right passwords. Refusing a
//! stranger cannot be told from refusing the owner without a check, so the Lua channel
//! keeps what does not lock anybody out: the network's block (checks in flight included),
//! shared with SMTP AUTH, and Dovecot's own per-address delays (`auth_failure_delay`, its
//! auth penalty). Guessing one login from very many addresses stays as fast as the
//! addresses can go; that is the gap this leaves (docs/ARCHITECTURE.md).

use std::net::IpAddr;
use std::time::Instant;

use super::{Key, Penalty, MAX_ENTRIES};

/// Who makes a failing client wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// authd sleeps the failure and penalty delays before answering (SMTP AUTH: Postfix
    /// has no delay of its own).
    Server,
    /// The caller delays (Dovecot's `auth_failure_delay`, Lua channel): a sleep here would
    /// hold a Dovecot auth worker per failing login. Penalties still count and block (see
    /// the module comment for why a login's delay does not become a refusal here).
    Caller,
}

/// What to do with an attempt right before its check.
pub enum Admission<'a> {
    /// Fail unchecked: the network's failures and its checks in flight reach
    /// `block_after`.
    Blocked { failures: u32, in_flight: u32 },
    /// Check; the guard counts the check in flight until dropped.
    Check(InFlight<'a>),
}

/// A check in flight against its network's block threshold, until dropped.
pub struct InFlight<'a> {
    penalty: &'a Penalty,
    net: Option<IpAddr>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Some(net) = self.net else {
            return;
        };
        let Ok(mut table) = self.penalty.table.lock() else {
            return;
        };
        if let Some(n) = table.in_flight.get_mut(&net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.in_flight.remove(&net);
            }
        }
    }
}

impl Penalty {
    /// Blocks or admits an attempt from `ip`, decided at `now` (after any penalty sleep).
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Admission<'_> {
        let untracked = || {
            Admission::Check(InFlight {
                penalty: self,
                net: None,
            })
        };
        if self.is_trusted(ip) {
            return untracked();
        }
        let Ok(mut table) = self.table.lock() else {
            return untracked();
        };
        let window = self.cfg.window;
        let net = self.net_of(ip);
        let failures = table
            .counters
            .get(&Key::Net(net))
            .filter(|e| now.saturating_duration_since(e.last) < window)
            .map_or(0, |e| e.failures);
        let in_flight = table.in_flight.get(&net).copied().unwrap_or(0);
        if failures.saturating_add(in_flight) >= self.cfg.block_after {
            return Admission::Blocked {
                failures,
                in_flight,
            };
        }
        if table.in_flight.len() >= MAX_ENTRIES && !table.in_flight.contains_key(&net) {
            return untracked();
        }
        *table.in_flight.entry(net).or_insert(0) += 1;
        Admission::Check(InFlight {
            penalty: self,
            net: Some(net),
        })
    }
}
