//! The password checks of [`Authenticator`]: real ones on the bounded blocking pool, the
//! dummy check of an unknown user, and the background re-hash of a legacy hash.

use std::sync::Arc;

use vmail_directory::Directory;

use super::{AuthStats, Authenticator};
use crate::hash_costs::thread_cpu_time;

impl Authenticator {
    /// Runs a password check on the blocking pool, at most `verify_concurrency` at once.
    /// The slot is released by the blocking thread itself as soon as the hash is computed,
    /// not when this task is next polled.
    pub(super) async fn check(&self, stored: &str, password: &[u8]) -> Result<bool, String> {
        let Ok(slot) = self.verify_slots.clone().acquire_owned().await else {
            return Err("verification pool closed".into());
        };
        AuthStats::bump(&self.stats.checks);
        let (owned, password, scheme) =
            (stored.to_string(), password.to_vec(), self.default_scheme);
        match tokio::task::spawn_blocking(move || {
            let started = thread_cpu_time();
            let r = vmail_passwd::verify(&owned, &password, scheme);
            let took = thread_cpu_time()
                .zip(started)
                .map(|(end, start)| end.saturating_sub(start));
            drop(slot);
            (r, took)
        })
        .await
        {
            Ok((r, took)) => {
                if let (Ok(_), Some(took)) = (&r, took) {
                    self.costs.observe(stored, took);
                }
                r.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("verification task failed: {e}")),
        }
    }

    /// What an unknown user costs: a check as costly as the costliest one in use, so the
    /// time of a failure does not tell whether the login exists (issue 15.5). Not the
    /// scheme of the last check: the client picks that, by first failing a login with a
    /// cheap hash.
    ///
    /// The choice is among kinds of hash (scheme and cost parameters: `$2y$05`,
    /// `$6$rounds=N`, Argon2's `m,t,p`), by measured CPU time, counting for each kind the
    /// least a check of it took: `passwords.default_scheme` and `hash_scheme` at `hash()`'s
    /// parameters from the start, then every kind of stored hash checked, the first of a
    /// configured scheme replacing that scheme's start value. A scheme's rank alone
    /// checked bcrypt at `hash()`'s cost 10 for unknown logins while every stored hash was
    /// `doveadm pw`'s bcrypt at cost 5: 40 times what an existing login cost. CPU time, not
    /// wall-clock time, so that load cannot make a cheap kind look costly; the least seen,
    /// so that no client can make a kind look cheaper. On a database whose hashes are all
    /// in a scheme other than `hash_scheme` (DES only, say) an unknown login costs more
    /// than a known one; set `hash_scheme` to the scheme in use there until it is upgraded.
    /// The dummy result is thrown away (the password may even be that user's: that is no
    /// login as the user).
    pub(super) async fn dummy_check(&self, password: &[u8]) {
        let Ok(slot) = self.verify_slots.clone().acquire_owned().await else {
            return;
        };
        AuthStats::bump(&self.stats.checks);
        let (scheme, stored) = self.costs.choice();
        let (password, default) = (password.to_vec(), self.default_scheme);
        let _ = tokio::task::spawn_blocking(move || {
            match stored {
                Some(stored) => {
                    let r = vmail_passwd::verify(&stored, std::hint::black_box(&password), default);
                    let _ = std::hint::black_box(r);
                }
                None => vmail_passwd::dummy_verify(scheme, &password),
            }
            drop(slot);
        })
        .await;
    }

    /// Stores a strong hash of a password that just matched a legacy one, in the background
    /// (the client has its answer already). Compare-and-set: a password changed meanwhile
    /// wins.
    pub(super) fn rehash(
        &self,
        dir: Arc<Directory>,
        email: String,
        old: String,
        password: Vec<u8>,
    ) {
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
