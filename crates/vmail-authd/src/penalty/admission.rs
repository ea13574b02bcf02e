//! The decision taken right before a password check: block, throttle, or check, with the
//! check counted in flight until it ends.
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
//! Throttle (review 1, [`Pacing::Caller`] only): authd does not sleep there, so the
//! doubling delay, the only thing a login's counter did, would never apply, and one login
//! could be guessed from many addresses as fast as hashes are computed (600 guesses in
//! 1.19 s). Instead, while the login's penalty delay (the delay its own failures give, as
//! [`Penalty::assess`] computes it) has not passed since its last counted failure, an
//! attempt fails at once, unchecked but counted as a failure of its network (without a
//! hash: a repeat of a recent wrong password still counts once), so an address hammering a
//! throttled login still reaches the block; not of its login, whose throttle a counted
//! failure would restart, so that refusals from many addresses cannot keep its real user
//! out for as long as they come: a login gets about one real check per current delay. The check let through takes the login's turn, so concurrent attempts
//! do not all pass at the moment the delay runs out. Only a login's first guesses, those
//! arriving at once before its first failure is counted, are all checked (as many as the
//! client runs at once: Dovecot's auth workers); a login without failures is not
//! throttled, so that a mail client opening several connections at once logs in on all. The price: during an attack the real
//! user is refused too (as with the block, which costs the real user behind the address).
//! A refusal is answered before the directory is asked, so its timing tells only "you are
//! being throttled", not whether the login exists or the password was right. A success
//! still clears the login's counter, and so its throttle. One typo does not throttle the
//! next try: Dovecot's `auth_failure_delay` (keep it equal to `failure_delay_ms`, the first
//! delay) has passed before the client gets its answer.
//!
//! The network's counter does not throttle: the block caps a network's checks per window
//! already (strictly, with the checks in flight), Dovecot delays each client address
//! itself (its auth penalty), and a throttled network would refuse the right passwords of
//! everybody behind it (a NAT) where SMTP AUTH only delays them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Key, Penalty, MAX_ENTRIES};

/// Who makes a failing client wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// authd sleeps the failure and penalty delays before answering (SMTP AUTH: Postfix
    /// has no delay of its own).
    Server,
    /// The caller delays (Dovecot's `auth_failure_delay`, Lua channel): a sleep here would
    /// hold a Dovecot auth worker per failing login. Penalties still count and block, and
    /// a login's penalty delay becomes a refusal (see the module comment).
    Caller,
}

/// What to do with an attempt right before its check.
pub enum Admission<'a> {
    /// Fail unchecked: the network's failures and its checks in flight reach
    /// `block_after`.
    Blocked { failures: u32, in_flight: u32 },
    /// Fail unchecked, counted as a failure ([`Pacing::Caller`]): the login's penalty delay,
    /// beyond the caller's own failure delay, has not passed since its turn (the last check
    /// let through).
    Throttled { failures: u32, wait: Duration },
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
    /// Blocks, throttles or admits an attempt from `ip` for `login`, decided at `now`
    /// (after any penalty sleep).
    pub fn admit(
        &self,
        ip: Option<IpAddr>,
        login: &str,
        now: Instant,
        pacing: Pacing,
    ) -> Admission<'_> {
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
        if pacing == Pacing::Caller {
            let user = table
                .counters
                .get_mut(&Key::Login(login.to_ascii_lowercase()))
                .filter(|e| e.failures > 0 && now.saturating_duration_since(e.last) < window);
            if let Some(e) = user {
                // The caller's own failure delay (Dovecot's `auth_failure_delay`, equal to
                // `failure_delay_ms`) has already passed before its client could try again:
                // only what the penalty asks beyond it throttles, so one typo never does and
                // a retry after two waits no longer than SMTP AUTH would make it wait.
                let delay = self
                    .delay_for(e.failures)
                    .saturating_sub(self.cfg.failure_delay);
                let since = now.saturating_duration_since(e.turn);
                if since < delay {
                    return Admission::Throttled {
                        failures: e.failures,
                        wait: delay - since,
                    };
                }
                // This check takes the login's turn.
                e.turn = now;
            }
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
