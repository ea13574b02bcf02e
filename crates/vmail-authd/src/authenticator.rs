//! What an authentication attempt becomes, whatever protocol carried it: penalty first
//! (before any hashing), then the user's row under a deadline, then the password check on
//! a bounded blocking pool (never on the reactor), then the account's flags. A backend
//! failure is always [`Verdict::Temp`] (the auth connection is closed: Postfix answers 454 and the client retries), never a
//! failure the client would take as "wrong password".

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use vmail_config::Config;
use vmail_directory::Directory;
use vmail_passwd::Scheme;

use crate::cache::VerifiedCache;
use crate::penalty::{Penalty, PenaltyConfig};

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated; the canonical login (the address as stored).
    Ok { user: String },
    /// Wrong password, unknown user, blocked: all look the same to the client.
    Fail,
    /// Right password, but the account, its domain or this service is disabled.
    Disabled { reason: &'static str },
    /// The directory is unreachable or too slow: try again later.
    Temp(String),
}

/// Counters logged with the daemon's statistics.
#[derive(Default)]
pub struct AuthStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub disabled: AtomicU64,
    pub temp: AtomicU64,
    pub blocked: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Dict lookups answered with a row read within `cache_recheck_s`.
    pub dict_cache_hits: AtomicU64,
    /// Time from request to verdict (failure delay excluded).
    pub latency: vmail_daemon::metrics::Histogram,
    pub dict_found: AtomicU64,
    pub dict_not_found: AtomicU64,
    pub dict_failed: AtomicU64,
    /// Dict connections accepted: Dovecot reconnecting for every lookup (its dict client's
    /// default) shows up as this growing with every login.
    pub dict_connections: AtomicU64,
}

impl AuthStats {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use vmail_daemon::metrics::{header, sample};
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let n = "vmail_authd_authentications_total";
        header(&mut out, n, "counter", "Authentication attempts over the auth protocol, by result (blocked attempts are also failed).");
        for (r, c) in [
            ("ok", &self.ok),
            ("failed", &self.failed),
            ("disabled", &self.disabled),
            ("temp", &self.temp),
        ] {
            sample(&mut out, n, &format!("result=\"{r}\""), g(c));
        }
        for (n, help, c) in [
            (
                "vmail_authd_penalty_blocked_total",
                "Attempts failed unchecked because the remote address is past the block threshold.",
                &self.blocked,
            ),
            (
                "vmail_authd_cache_hits_total",
                "Successful checks answered from the verified-credentials cache.",
                &self.cache_hits,
            ),
            (
                "vmail_authd_dict_cache_hits_total",
                "Dict lookups answered with a row read within cache_recheck_s.",
                &self.dict_cache_hits,
            ),
            (
                "vmail_authd_backend_errors_total",
                "Attempts that failed temporarily because the directory failed.",
                &self.temp,
            ),
        ] {
            header(&mut out, n, "counter", help);
            sample(&mut out, n, "", g(c));
        }
        let n = "vmail_authd_authentication_duration_seconds";
        header(
            &mut out,
            n,
            "histogram",
            "Time to decide an authentication (failure delay excluded).",
        );
        self.latency.render(n, "", &mut out);
        let n = "vmail_authd_dict_requests_total";
        header(
            &mut out,
            n,
            "counter",
            "Dict lookups from Dovecot, by outcome.",
        );
        for (o, c) in [
            ("found", &self.dict_found),
            ("notfound", &self.dict_not_found),
            ("failed", &self.dict_failed),
        ] {
            sample(&mut out, n, &format!("outcome=\"{o}\""), g(c));
        }
        let n = "vmail_authd_dict_connections_total";
        header(
            &mut out,
            n,
            "counter",
            "Dict connections accepted (Dovecot's dict client keeps one open with idle_msecs).",
        );
        sample(&mut out, n, "", g(&self.dict_connections));
        out
    }

    pub fn log(&self) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::info!(
            ok = g(&self.ok),
            failed = g(&self.failed),
            disabled = g(&self.disabled),
            temp = g(&self.temp),
            blocked = g(&self.blocked),
            cache_hits = g(&self.cache_hits),
            dict_cache_hits = g(&self.dict_cache_hits),
            "auth statistics"
        );
    }
}

/// The verdict for a user whose password matched: disabled accounts and services the
/// account may not use are refused.
fn admit(user: vmail_directory::User, service: &str) -> Verdict {
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
    Verdict::Ok { user: user.email }
}

pub struct Authenticator {
    dir: RwLock<Arc<Directory>>,
    penalty: Penalty,
    cache: Option<VerifiedCache>,
    verify_slots: Arc<Semaphore>,
    /// Index in `Scheme::ALL` of the scheme of the last real check (for dummy checks).
    last_scheme: std::sync::atomic::AtomicUsize,
    /// For hashes without a `{SCHEME}` prefix (`passwords.default_scheme`).
    default_scheme: Scheme,
    /// The scheme new hashes get (re-hash), and the dummy check's until a real check ran.
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
            // Until a real check has run: the scheme new passwords get.
            last_scheme: std::sync::atomic::AtomicUsize::new(
                Scheme::ALL
                    .iter()
                    .position(|x| *x == hash_scheme)
                    .unwrap_or(usize::MAX),
            ),
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

    /// SIGHUP / `vmailctl flush`: forget verified credentials and penalties.
    pub fn flush(&self) {
        if let Some(c) = &self.cache {
            c.clear();
        }
        self.penalty.clear();
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
        let started = Instant::now();
        // A login that is not UTF-8 cannot name a user; it still costs a check.
        let login_str = String::from_utf8_lossy(login);
        let login_str = login_str.trim();
        let verdict = self.decide(login_str, login, password, service, rip).await;
        self.stats.latency.observe(started.elapsed());
        let rip_s = rip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        match &verdict {
            Verdict::Ok { user } => {
                AuthStats::bump(&self.stats.ok);
                tracing::info!(user = %user, rip = %rip_s, service, elapsed_ms = started.elapsed().as_millis() as u64, "authenticated");
            }
            Verdict::Disabled { reason } => {
                AuthStats::bump(&self.stats.disabled);
                tracing::warn!(rip = %rip_s, user = ?login_str, service, reason, "authentication refused");
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
                // tokio rounds even a zero sleep up to its 1 ms tick.
                if !self.failure_delay.is_zero() {
                    tokio::time::sleep(self.failure_delay).await;
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
    ) -> Verdict {
        let assessed = self.penalty.assess(rip, login, Instant::now());
        if !assessed.delay.is_zero() {
            tokio::time::sleep(assessed.delay).await;
        }
        if assessed.blocked {
            AuthStats::bump(&self.stats.blocked);
            tracing::warn!(rip = %rip.map_or_else(|| "-".into(), |i| i.to_string()), failures = assessed.failures, "remote address blocked by the failure penalty; not checking");
            return Verdict::Fail;
        }
        let utf8_login = std::str::from_utf8(raw_login).is_ok() && !login.is_empty();
        if let (true, Some(c)) = (utf8_login, &self.cache) {
            if let Some(r) = c.recent(login, password, Instant::now()) {
                AuthStats::bump(&self.stats.cache_hits);
                self.penalty.record_success(rip, login);
                return admit(r.user, service);
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
                .record_failure(rip, login, password, Instant::now());
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
                .record_failure(rip, login, password, Instant::now());
            return Verdict::Fail;
        }
        if let Some(c) = &self.cache {
            if !cached {
                c.insert(&user.email, &stored, password, generation, Instant::now());
            }
            c.remember(login, password, &user, generation, Instant::now());
        }
        self.penalty.record_success(rip, login);
        if user.active && self.rehash && vmail_passwd::is_legacy(&stored, self.default_scheme) {
            self.rehash(dir, user.email.clone(), stored, password.to_vec());
        }
        admit(user, service)
    }

    /// Runs a password check on the blocking pool, at most `verify_concurrency` at once.
    /// The slot is released by the blocking thread itself as soon as the hash is computed,
    /// not when this task is next polled.
    async fn check(&self, stored: &str, password: &[u8]) -> Result<bool, String> {
        let Ok(slot) = self.verify_slots.clone().acquire_owned().await else {
            return Err("verification pool closed".into());
        };
        if let Ok(s) = vmail_passwd::scheme_of(stored, self.default_scheme) {
            self.remember_scheme(s);
        }
        let (stored, password, scheme) =
            (stored.to_string(), password.to_vec(), self.default_scheme);
        match tokio::task::spawn_blocking(move || {
            let r = vmail_passwd::verify(&stored, &password, scheme);
            drop(slot);
            r
        })
        .await
        {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("verification task failed: {e}")),
        }
    }

    /// What an unknown user costs: a check in the scheme real checks used last, so the
    /// time of a failure does not tell whether the login exists (on a database of DES
    /// hashes a SHA512-CRYPT dummy would be 600 times slower than a real check).
    async fn dummy_check(&self, password: &[u8]) {
        let Ok(slot) = self.verify_slots.clone().acquire_owned().await else {
            return;
        };
        let (password, scheme) = (password.to_vec(), self.dummy_scheme());
        let _ = tokio::task::spawn_blocking(move || {
            vmail_passwd::dummy_verify(scheme, &password);
            drop(slot);
        })
        .await;
    }

    fn remember_scheme(&self, s: Scheme) {
        if let Some(i) = Scheme::ALL.iter().position(|x| *x == s) {
            self.last_scheme.store(i, Ordering::Relaxed);
        }
    }

    fn dummy_scheme(&self) -> Scheme {
        Scheme::ALL
            .get(self.last_scheme.load(Ordering::Relaxed))
            .copied()
            .unwrap_or(self.hash_scheme)
    }

    /// Stores a strong hash of a password that just matched a legacy one, in the background
    /// (the client has its answer already). Compare-and-set: a password changed meanwhile
    /// wins.
    fn rehash(&self, dir: Arc<Directory>, email: String, old: String, password: Vec<u8>) {
        let scheme = self.hash_scheme;
        let slots = self.verify_slots.clone();
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let new =
                match tokio::task::spawn_blocking(move || vmail_passwd::hash(scheme, &password))
                    .await
                {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        tracing::error!(user = %email, error = %e, "re-hash failed");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(user = %email, error = %e, "re-hash task failed");
                        return;
                    }
                };
            match dir.replace_password(&email, &old, &new).await {
                Ok(true) => {
                    tracing::info!(user = %email, scheme = %scheme, "legacy password hash upgraded")
                }
                Ok(false) => {
                    tracing::info!(user = %email, "password changed meanwhile; not upgrading the hash")
                }
                Err(e) => {
                    tracing::warn!(user = %email, error = %e, "could not store the upgraded password hash")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dummy check of an unknown user follows the scheme of real checks, so on a
    /// database of DES hashes an unknown login is as cheap to fail as a wrong password.
    #[tokio::test]
    async fn dummy_check_follows_the_scheme_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.backend = vmail_config::Backend::Sqlite;
        config.database.sqlite_path = dir.path().join("vmail.db");
        config.authd.failure_delay_ms = 0;
        config.authd.max_delay_ms = 0;
        let d = Directory::open(&config).await.unwrap();
        d.init(true).await.unwrap();
        d.add_domain("example.org").await.unwrap();
        d.add_user("bob@example.org", "abNANd1rDfiNc", None)
            .await
            .unwrap();
        let a = Authenticator::new(d, &config).unwrap();
        assert_eq!(
            a.dummy_scheme(),
            Scheme::Sha512Crypt,
            "before any check: hash_scheme"
        );
        let v = a
            .authenticate(b"bob@example.org", b"wrong", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
        assert_eq!(a.dummy_scheme(), Scheme::DesCrypt);
        let v = a
            .authenticate(b"nobody@example.org", b"x", "smtp", None)
            .await;
        assert_eq!(v, Verdict::Fail);
    }
}
