//! What Dovecot's passdb and userdb get for a user, whichever channel asks (dict proxy or
//! the Lua channel): the userdb fields, the rule that refuses a login, and the list of
//! users an iteration returns. Written once so the channels can never disagree.

use std::collections::HashMap;
use std::time::Duration;

use vmail_directory::{Directory, User};

use crate::authenticator::Authenticator;

/// The userdb fields of `user`, in a fixed order: `uid`, `gid`, `home`, `mail` and, with a
/// quota, `quota_rule` (Dovecot's quota plugin reads `*:bytes=N`).
pub fn userdb_fields(user: &User) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("uid", user.uid.to_string()),
        ("gid", user.gid.to_string()),
        ("home", user.home.clone()),
        ("mail", user.mail.clone()),
    ];
    if let Some(q) = user.quota_bytes {
        f.push(("quota_rule", format!("*:bytes={q}")));
    }
    f
}

/// Why a login of `user` for `service` is refused (account or domain disabled, service
/// not allowed); `None` when it is allowed. No service: only the account is looked at.
pub fn refusal(user: &User, service: Option<&str>) -> Option<&'static str> {
    if !user.active {
        Some("Account disabled")
    } else if service.is_some_and(|s| !user.allows(s)) {
        Some("Service not allowed for this account")
    } else {
        None
    }
}

/// Runs a directory call under the request deadline; `Err` is the reason to report.
pub async fn bounded<T>(
    auth: &Authenticator,
    f: impl std::future::Future<Output = vmail_directory::Result<T>>,
) -> Result<T, String> {
    let t: Duration = auth.request_timeout();
    match tokio::time::timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("directory lookup slower than {} ms", t.as_millis())),
    }
}

/// Every user an iteration lists (`doveadm user '*'`): disabled accounts and those of
/// disabled domains are skipped, as their userdb lookup answers not found. One question
/// per domain, not per user.
pub async fn active_users(dir: &Directory, auth: &Authenticator) -> Result<Vec<String>, String> {
    let users = bounded(auth, dir.list_users(None)).await?;
    let mut domains: HashMap<String, bool> = HashMap::new();
    let mut listed = Vec::with_capacity(users.len());
    for (email, active) in users {
        if !active {
            continue;
        }
        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        let on = match domains.get(domain) {
            Some(&on) => on,
            None => {
                let on = bounded(auth, dir.domain_exists(domain)).await?;
                domains.insert(domain.to_string(), on);
                on
            }
        };
        if on {
            listed.push(email);
        }
    }
    Ok(listed)
}
