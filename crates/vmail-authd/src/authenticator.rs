//! What an authentication attempt becomes, whatever protocol carried it: penalty first
//! (before any hashing: the penalty sleep, except on the Lua channel, then the block with
//! the checks in flight counted; see `penalty/admission.rs`),
//! then the user's row under a deadline, then the password check on a bounded blocking
//! pool (never on the reactor), then the account's flags. A backend failure is always
//! [`Verdict::Temp`] (the auth connection is closed: Postfix answers 454 and the client
//! retries), never a failure the client would take as "wrong password".

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use vmail_config::Config;
use vmail_directory::{Directory, User};
use vmail_passwd::Scheme;

use crate::cache::VerifiedCache;
use crate::hash_costs::HashCosts;
pub use crate::penalty::Pacing;
use crate::penalty::{Admission, Penalty, PenaltyConfig};
pub use crate::stats::AuthStats;

mod hashing;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated: the user's row as the check read it (or, within `cache_recheck_s`,
    /// as the cache remembered it), so that a caller needing its fields (the Lua channel's
    /// `userdb_*`) does not read it again. `user.email` is the canonical login.
    Ok { user: User },
    /// Wrong password, unknown user, blocked: all look the same to the client.
    Fail,
    /// Right password, but the account, its domain or this service is disabled. For the
    /// log and the statistics only: the client gets exactly what [`Verdict::Fail`] gets,
    /// after the same delay, and the penalty counts it as a failure, so that guessing
    /// cannot tell the right password of a refused account from a wrong one (issue 20.4).
    Disabled { reason: &'static str },
    /// The directory is unreachable or too slow: try again later.
    Temp(String),
}

/// The verdict for a user whose password matched: disabled accounts and services the
/// account may not use are refused.
fn admit(user: User, service: &str) -> Verdict {
    if !user.active {
        return Verdict::Disabled {
            reason: "account disabled",
        };
    }
    if !service.is_empty() && !user.allows(service) {
        return Verdict::Disabled {
            reason: "service not allowed for this account",
        };
    }
    Verdict::Ok { user }
}

pub struct Authenticator {
    dir: RwLock<Arc<Directory>>,
    penalty: Penalty,
    cache: Option<VerifiedCache>,
    verify_slots: Arc<Semaphore>,
    /// What the kinds of hash in use cost: an unknown user's dummy check takes the
    /// costliest (see `dummy_check`).
    costs: HashCosts,
    /// For hashes without a `{SCHEME}` prefix (`passwords.default_scheme`).
    default_scheme: Scheme,
    /// The scheme new hashes get (re-hash).
    hash_scheme: Scheme,
    failure_delay: Duration,
    timeout: Duration,
    rehash: bool,
    pub stats: AuthStats,
}

impl Authenticator {
    pub fn new(dir: Directory, config: &Config) -> anyhow::Result<Authenticator> {
        let a = &config.authd;
        let default_scheme: Scheme = config
            .passwords
            .default_scheme
            .parse()
            .map_err(|e| anyhow::anyhow!("passwords.default_scheme: {e}"))?;
        let hash_scheme: Scheme = config
            .passwords
            .hash_scheme
            .parse()
            .map_err(|e| anyhow::anyhow!("passwords.hash_scheme: {e}"))?;
        let trusted = a
            .trusted_networks
            .iter()
            .map(|n| {
                vmail_config::parse_cidr(n)
                    .map_err(|m| anyhow::anyhow!("authd.trusted_networks: {m}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Two per CPU: a check finishing hands its core over only after a few thread
        // wake-ups, and one per CPU left 15-25 % of the cores idle under load (measured).
        let verify_concurrency = match a.verify_concurrency {
            0 => 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Ok(Authenticator {
            dir: RwLock::new(Arc::new(dir)),
            penalty: Penalty::new(PenaltyConfig {
                window: Duration::from_secs(a.penalty_window_s),
                block_after: a.penalty_block_after,
                ipv6_prefix: a.ipv6_prefix,
                trusted,
                failure_delay: Duration::from_millis(a.failure_delay_ms),
                max_delay: Duration::from_millis(a.max_delay_ms),
            }),
            cache: a.cache_enabled.then(|| {
                VerifiedCache::new(
                    Duration::from_secs(a.cache_ttl_s),
                    Duration::from_secs(a.cache_recheck_s),
                    a.cache_max_entries,
                )
            }),
            verify_slots: Arc::new(Semaphore::new(verify_concurrency)),
            costs: HashCosts::new(default_scheme, hash_scheme),
            default_scheme,
            hash_scheme,
            failure_delay: Duration::from_millis(a.failure_delay_ms),
            timeout: Duration::from_millis(a.request_timeout_ms),
            rehash: a.rehash_legacy,
            stats: AuthStats::default(),
        })
    }

    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.dir.read().ok().map(|d| d.clone())
    }

    pub fn replace_directory(&self, dir: Directory) {
        if let Ok(mut d) = self.dir.write() {
            *d = Arc::new(dir);
        }
    }

    /// The user for a dict lookup of `login` (Dovecot checks the password): with the cache
    /// on, a row found within `cache_recheck_s` is answered from memory.
    pub async fn dict_user(
        &self,
        login: &str,
    ) -> vmail_directory::Result<Option<vmail_directory::User>> {
        let unavailable = || vmail_directory::Error::Unavailable("directory unavailable".into());
        let Some(c) = &self.cache else {
            let dir = self.directory().ok_or_else(unavailable)?;
            return dir.user(login).await;
        };
        if let Some(u) = c.row(login, Instant::now()) {
            AuthStats::bump(&self.stats.dict_cache_hits);
            return Ok(Some(u));
        }
        // The generation before the directory: a reload (new directory, then a flush)
        // between the two must not leave a row read through the old one behind.
        let generation = c.generation();
        let dir = self.directory().ok_or_else(unavailable)?;
        let user = dir.user(login).await?;
        if let Some(u) = &user {
            c.remember_row(login, u, generation, Instant::now());
        }
        Ok(user)
    }

    /// SIGHUP / `vmailctl flush`: forget verified credentials. The failure penalty stays:
    /// every `vmailctl` change flushes, and a guesser must not get a clean slate from it.
    pub fn flush(&self) {
        if let Some(c) = &self.cache {
            c.clear();
        }
    }

    /// Dovecot's name of the scheme of unprefixed hashes.
    pub fn default_scheme_name(&self) -> &'static str {
        self.default_scheme.name()
    }

    pub fn failure_delay(&self) -> Duration {
        self.failure_delay
    }

    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks `password` for `login` on behalf of `service` for a client at `rip`.
    /// Failures return after the failure delay; temporary failures at once.
    pub async fn authenticate(
        &self,
        login: &[u8],
        password: &[u8],
        service: &str,
        rip: Option<IpAddr>,
    ) -> Verdict {
        self.authenticate_paced(login, password, service, rip, Pacing::Server)
            .await
    }

    /// [`Authenticator::authenticate`]; with [`Pacing::Caller`], without sleeping.
    pub async fn authenticate_paced(
        &self,
        login: &[u8],
        password: &[u8],
        service: &str,
        rip: Option<IpAddr>,
        pacing: Pacing,
    ) -> Verdict {
        let started = Instant::now();
        // A login that is not UTF-8 cannot name a user; it still costs a check.
        let login_str = String::from_utf8_lossy(login);
        let login_str = login_str.trim();
        let verdict = self
            .decide(login_str, login, password, service, rip, pacing)
            .await;
        // tokio rounds even a zero sleep up to its 1 ms tick.
        let delay = match pacing {
            Pacing::Server if !self.failure_delay.is_zero() => Some(self.failure_delay),
            _ => None,
        };
        self.stats.latency.observe(started.elapsed());
        let rip_s = rip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        match &verdict {
            Verdict::Ok { user } => {
                AuthStats::bump(&self.stats.ok);
                tracing::info!(user = %user.email, rip = %rip_s, service, elapsed_ms = started.elapsed().as_millis() as u64, "authenticated");
            }
            Verdict::Disabled { reason } => {
                AuthStats::bump(&self.stats.disabled);
                tracing::warn!(rip = %rip_s, user = ?login_str, service, reason, "authentication refused");
                // The delay of a wrong password: an earlier answer would tell the right one.
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
            Verdict::Temp(why) => {
                AuthStats::bump(&self.stats.temp);
                tracing::error!(rip = %rip_s, user = ?login_str, service, error = %why, "authentication temporarily failed");
            }
            Verdict::Fail => {
                AuthStats::bump(&self.stats.failed);
                // The line fail2ban matches (contrib/fail2ban): `rip=` comes right after the
                // fixed text, before the login the client chose, and the login is quoted, so
                // no login can put another address where the filter looks.
                tracing::warn!(rip = %rip_s, user = ?login_str, service, "authentication failed");
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
        }
        verdict
    }

    async fn decide(
        &self,
        login: &str,
        raw_login: &[u8],
        password: &[u8],
        service: &str,
        rip: Option<IpAddr>,
        pacing: Pacing,
    ) -> Verdict {
        let key = self.penalty_key(login);
        if pacing == Pacing::Server {
            let delay = self.penalty.assess(rip, &key, Instant::now()).delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        // Decided after the sleep, and counted in flight until this attempt ends.
        let _in_flight = match self.penalty.admit(rip, Instant::now()) {
            Admission::Check(guard) => guard,
            Admission::Blocked {
                failures,
                in_flight,
            } => {
                AuthStats::bump(&self.stats.blocked);
                tracing::warn!(rip = %rip.map_or_else(|| "-".into(), |i| i.to_string()), failures, in_flight, "remote address blocked by the failure penalty; not checking");
                return Verdict::Fail;
            }
        };
        let utf8_login = std::str::from_utf8(raw_login).is_ok() && !login.is_empty();
        if let (true, Some(c)) = (utf8_login, &self.cache) {
            if let Some(r) = c.recent(login, password, Instant::now()) {
                let verdict = admit(r.user, service);
                if matches!(verdict, Verdict::Ok { .. }) {
                    AuthStats::bump(&self.stats.cache_hits);
                    return self.conclude(verdict, rip, &key, password);
                }
                // Refused (a service the account may not use, a disabled account): answered
                // by the full path below, row and check included, at a wrong password's
                // cost. Refused at once here, it told a guesser the password was right
                // (0.16 ms against a hash's 7.49 ms).
            }
        }
        let Some(dir) = self.directory() else {
            return Verdict::Temp("directory unavailable".into());
        };
        let generation = self.cache.as_ref().map_or(0, |c| c.generation());
        let user = if utf8_login {
            match tokio::time::timeout(self.timeout, dir.user(login)).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) if e.is_temporary() => return Verdict::Temp(e.to_string()),
                Ok(Err(e)) => {
                    // A login the directory refuses as malformed is simply unknown.
                    tracing::debug!(error = %e, "login not usable as an address");
                    None
                }
                Err(_) => {
                    return Verdict::Temp(format!(
                        "directory lookup slower than {} ms",
                        self.timeout.as_millis()
                    ))
                }
            }
        } else {
            None
        };
        let stored = user.as_ref().and_then(|u| u.password.clone());
        let (Some(user), Some(stored)) = (user, stored) else {
            // Unknown user (or one without a password): spend what a real check costs, so
            // timing does not tell which logins exist.
            self.dummy_check(password).await;
            self.penalty
                .record_failure(rip, &key, password, Instant::now());
            return Verdict::Fail;
        };
        let cached = self
            .cache
            .as_ref()
            .is_some_and(|c| c.contains(&user.email, &stored, password, Instant::now()));
        let ok = if cached {
            AuthStats::bump(&self.stats.cache_hits);
            true
        } else {
            match self.check(&stored, password).await {
                Ok(ok) => ok,
                Err(why) => {
                    // Not the client's fault, and not going away by retrying: the hash is
                    // unusable. Logged for the postmaster; the client sees a failure.
                    tracing::error!(user = %user.email, error = %why, "stored password hash cannot be checked");
                    false
                }
            }
        };
        if !ok {
            self.penalty
                .record_failure(rip, &key, password, Instant::now());
            return Verdict::Fail;
        }
        let verdict = admit(user.clone(), service);
        if !matches!(verdict, Verdict::Ok { .. }) {
            // Refused: nothing is cached (a later hit would answer faster) and it counts as
            // a failure (see `conclude`). A hit from before the account was disabled still
            // pays for the check a wrong password costs.
            if cached {
                let _ = self.check(&stored, password).await;
            }
            return self.conclude(verdict, rip, &key, password);
        }
        if let Some(c) = &self.cache {
            if !cached {
                c.insert(&user.email, &stored, password, generation, Instant::now());
            }
            c.remember(login, password, &user, generation, Instant::now());
        }
        if self.rehash && vmail_passwd::is_legacy(&stored, self.default_scheme) {
            if vmail_passwd::verifies_whole(&stored, password, self.default_scheme) {
                self.rehash(dir, user.email.clone(), stored, password.to_vec());
            } else {
                // DES checked only the first 8 characters: what follows may be anything,
                // and a hash of it would lock the real password out (issue 15.6).
                tracing::info!(user = %user.email, "not upgrading the legacy hash: the scheme did not check the whole password");
            }
        }
        self.conclude(verdict, rip, &key, password)
    }

    /// The login as the directory reads it (case folded per `[address]`, a domain's
    /// trailing dot dropped): the penalty's key, so that every spelling of a login that
    /// names the same user counts against the same counter. Told apart, they gave a
    /// distributed guesser a fresh delay per spelling (`mi\u{212a}e@` is `mike@`: the
    /// Kelvin sign folds to `k`).
    fn penalty_key(&self, login: &str) -> String {
        self.directory()
            .and_then(|d| d.policy().parse(login))
            .map_or_else(|| login.to_string(), |a| a.to_string())
    }

    /// The penalty's side of a verdict on a matching password: a success forgives this
    /// login's failures; a refusal (disabled account, domain or service) counts as a
    /// failure, exactly like a wrong password. Otherwise the penalty delay of the next
    /// attempts would still tell a guesser which password was right.
    fn conclude(
        &self,
        verdict: Verdict,
        rip: Option<IpAddr>,
        login: &str,
        password: &[u8],
    ) -> Verdict {
        match verdict {
            Verdict::Ok { .. } => self.penalty.record_success(rip, login, Instant::now()),
            _ => self
                .penalty
                .record_failure(rip, login, password, Instant::now()),
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An authenticator without delays on an SQLite directory in `dir` holding
    /// `example.org` and `users` (address, stored hash).
    async fn on_sqlite(dir: &std::path::Path, users: &[(&str, &str)]) -> Authenticator {
        let mut config = Config::default();
        config.database.backend = vmail_config::Backend::Sqlite;
        config.database.sqlite_path = dir.join("vmail.db");
        config.authd.failure_delay_ms = 0;
        config.authd.max_delay_ms = 0;
        let d = Directory::open(&config).await.unwrap();
        d.init(true).await.unwrap();
        d.add_domain("example.org").await.unwrap();
        for (email, stored) in users {
            d.add_user(email, stored, None).await.unwrap();
        }
        Authenticator::new(d, &config).unwrap()
    }

    /// Spellings of one login share its penalty counter.
    #[tokio::test]
    async fn spellings_of_a_login_share_its_penalty() {
        let dir = tempfile::tempdir().unwrap();
        let a = on_sqlite(dir.path(), &[("mike@example.org", "abNANd1rDfiNc")]).await;
        for (i, login) in [
            "mike@example.org",
            "mike@example.org.",
            "mi\u{212a}e@Example.ORG",
        ]
        .into_iter()
        .enumerate()
        {
            let rip = Some(IpAddr::from([192, 0, 2, i as u8 + 1]));
            // Different passwords: a repeat for the same login would count once anyway.
            let v = a
                .authenticate(login.as_bytes(), &[b'w', i as u8], "smtp", rip)
                .await;
            assert_eq!(v, Verdict::Fail, "{login}");
        }
        let elsewhere = Some(IpAddr::from([198, 51, 100, 1]));
        let n = a
            .penalty
            .assess(
                elsewhere,
                &a.penalty_key("MIKE@example.org"),
                Instant::now(),
            )
            .failures;
        assert_eq!(n, 3);
    }

    /// The dummy check of an unknown user costs what the costliest scheme in use costs,
    /// whatever the client made us check last.
    #[tokio::test]
    async fn dummy_check_follows_the_costliest_scheme_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let blf = vmail_passwd::hash(Scheme::BlfCrypt, b"x").unwrap();
        let a = on_sqlite(
            dir.path(),
            &[
                ("bob@example.org", "abNANd1rDfiNc"),
                ("carol@example.org", &blf),
            ],
        )
        .await;
        assert_eq!(
            a.costs.choice().0,
            Scheme::Sha512Crypt,
            "before any check: hash_scheme"
        );
        let v = a
            .authenticate(b"bob@example.org", b"wrong", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
        assert_eq!(a.costs.choice().0, Scheme::Sha512Crypt, "never lowered");
        let v = a
            .authenticate(b"carol@example.org", b"wrong", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
        assert_eq!(a.costs.choice().0, Scheme::BlfCrypt, "raised");
        let v = a
            .authenticate(b"bob@example.org", b"wrong", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
        assert_eq!(a.costs.choice().0, Scheme::BlfCrypt);
        let v = a
            .authenticate(b"nobody@example.org", b"x", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
    }
}
