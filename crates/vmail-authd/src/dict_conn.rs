//! One Dovecot dict-proxy client connection: Dovecot's auth process asking for passdb and
//! userdb records (`passdb { driver = dict }`, `userdb { driver = dict }`). Dovecot checks
//! the password itself; we serve the record as JSON. Replies go back in request order (the
//! client matches each to its oldest pending command), so requests are answered one by one.
//!
//! Keys (set in contrib/dovecot/dovecot-dict-auth.conf.ext):
//! - `passdb/<service>/<user>` (or `passdb/<user>`): `{"user", "password"}` plus the userdb
//!   record with a `userdb_` prefix (`userdb_uid`, `userdb_home`, ...), which Dovecot's
//!   prefetch userdb uses so that a login costs one request; or, when the account, its domain
//!   or the service is disabled, `fail`, `nologin` and `reason` instead of the userdb fields;
//! - `userdb/<user>`: `{"uid", "gid", "home", "mail", "quota_rule"}`, for lookups without a
//!   passdb step (LDA/LMTP, `doveadm user`); not found for a disabled account;
//! - iterating `userdb/` lists every active user (`doveadm user '*'`).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::Instrument;
use vmail_directory::User;
use vmail_proto::dict::{self, Reply, Request};

use crate::authenticator::{AuthStats, Authenticator};
use crate::deadline::{self, Inbox};
use crate::handler::Handler;
use crate::records::{self, bounded};

impl Handler {
    /// Serves a dict-proxy connection until it ends. Errors are logged, never propagated.
    pub(crate) async fn serve_dict<S>(&self, mut stream: S, mut shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (auth, settings): (&Authenticator, _) = (&self.auth, &self.limits);
        AuthStats::bump(&auth.stats.dict_connections);
        let mut inbox = Inbox::new();
        let mut out: Vec<u8> = Vec::with_capacity(512);
        let mut hello = false;
        loop {
            while let Some(n) = match dict::find_line(&inbox.buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "closing dict connection");
                    return;
                }
            } {
                let req = dict::parse_request(&inbox.buf[..n]);
                inbox.take(n);
                let req = match req {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing dict connection after a broken line");
                        return;
                    }
                };
                out.clear();
                match req {
                    Request::Hello(h) if !hello => {
                        // 2 up to Dovecot 2.3.16, 3 from 2.3.17 (the lookup then carries the user).
                        if !(2..=3).contains(&h.major) {
                            tracing::warn!(
                                major = h.major,
                                "dict client speaks an unknown protocol version"
                            );
                            return;
                        }
                        hello = true;
                        continue;
                    }
                    _ if !hello => {
                        tracing::warn!("dict request before hello; closing");
                        return;
                    }
                    Request::Hello(_) => {
                        tracing::warn!("second dict hello; closing");
                        return;
                    }
                    Request::Lookup { ref key, .. } => {
                        let reply = match req.shared_key() {
                            Some(k) => {
                                let k = String::from_utf8_lossy(k);
                                let span = tracing::debug_span!("dict_lookup", key = %k);
                                let r = lookup(auth, &k).instrument(span).await;
                                let s = &auth.stats;
                                AuthStats::bump(match r {
                                    Reply::Found(_) => &s.dict_found,
                                    Reply::NotFound => &s.dict_not_found,
                                    _ => &s.dict_failed,
                                });
                                r
                            }
                            None => {
                                tracing::debug!(key = %String::from_utf8_lossy(key), "not a shared/ key");
                                Reply::NotFound
                            }
                        };
                        dict::encode_reply(&reply, &mut out);
                    }
                    Request::Iterate {
                        flags,
                        max_rows,
                        ref path,
                        ..
                    } => iterate(auth, path, flags, max_rows, &mut out).await,
                    Request::Unsupported(c) => {
                        // Transactions and unknown commands: answering would desynchronise the
                        // client, so close as Dovecot's own server does.
                        tracing::warn!(command = %c.escape_debug(), "unsupported dict command; closing");
                        return;
                    }
                }
                if deadline::write(&mut stream, &out, settings).await.is_err() {
                    return;
                }
            }
            // Requests are answered before the next is read, so the wait is never our own.
            if !inbox
                .fill(&mut stream, hello, settings, &mut shutdown, "dict")
                .await
            {
                return;
            }
        }
    }
}

/// Splits a key (without `shared/`) into its kind, the service and the login. Only a
/// `passdb/` key carries a service (`passdb/%s/%u`); a `userdb/` key is `userdb/%u` and
/// its whole rest is the login, so `userdb/evil/alice@example.org` names the (unknown)
/// user `evil/alice@example.org`, never alice.
fn split_key(key: &str) -> (&str, Option<&str>, &str) {
    let (kind, rest) = key.split_once('/').unwrap_or((key, ""));
    if kind != "passdb" {
        return (kind, None, rest);
    }
    match rest.split_once('/') {
        // A service name never holds '@'; a login may hold '/' only in its local part.
        Some((s, l)) if !s.contains('@') && !s.is_empty() => (kind, Some(s), l),
        _ => (kind, None, rest),
    }
}

async fn lookup(auth: &Authenticator, key: &str) -> Reply {
    let (kind, service, login) = split_key(key);
    let user = match kind {
        "passdb" | "userdb" => match bounded(auth, auth.dict_user(login)).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "dict lookup failed");
                return Reply::Failed(format!("vmail directory: {e}"));
            }
        },
        _ => return Reply::NotFound,
    };
    let Some(user) = user else {
        return Reply::NotFound;
    };
    let value = match kind {
        "passdb" => {
            let Some(v) = passdb_record(&user, service, auth.default_scheme_name()) else {
                return Reply::NotFound;
            };
            v
        }
        // A disabled account (or domain) has no userdb record: Dovecot then treats it as
        // an unknown user (LMTP/LDA reject, `doveadm user` says so) instead of serving its
        // home and mail location to whoever asks without a passdb step.
        _ if !user.active => return Reply::NotFound,
        _ => userdb_record(&user),
    };
    Reply::Found(value.to_string().into_bytes())
}

/// The passdb fields of `user`, with its userdb fields as `userdb_*` unless the login is
/// refused; `None` for a user without a password (nobody can log in).
pub fn passdb_record(
    user: &User,
    service: Option<&str>,
    default_scheme: &str,
) -> Option<serde_json::Value> {
    let stored = user.password.as_deref().filter(|p| !p.is_empty())?;
    // Dovecot needs the scheme; unprefixed hashes are in our configured default.
    let password = if stored.starts_with('{') && stored.contains('}') {
        stored.to_string()
    } else {
        format!("{{{default_scheme}}}{stored}")
    };
    let mut rec = serde_json::Map::new();
    rec.insert("user".into(), user.email.clone().into());
    rec.insert("password".into(), password.into());
    if let Some(reason) = records::refusal(user, service) {
        // `fail` makes Dovecot's auth server itself refuse (every client of it, not only
        // the login processes that honour `nologin`); the reason reaches Dovecot's log.
        // No userdb fields: a refused login never gets to a userdb lookup.
        rec.insert("fail".into(), "y".into());
        rec.insert("nologin".into(), "y".into());
        rec.insert("reason".into(), reason.into());
    } else {
        // Passdb extra fields named `userdb_*` become the userdb reply of this login, which
        // `userdb { driver = prefetch }` then returns without a second dict request
        // (wiki UserDatabase.Prefetch, PasswordDatabase.ExtraFields). Built from the userdb
        // record itself so a login and `doveadm user` can never see different values.
        for (k, v) in userdb_fields(user) {
            rec.insert(format!("userdb_{k}"), v);
        }
    }
    Some(serde_json::Value::Object(rec))
}

/// The userdb fields of `user`. Values are strings, as Dovecot's dict userdb expects.
pub fn userdb_record(user: &User) -> serde_json::Value {
    serde_json::Value::Object(userdb_fields(user))
}

fn userdb_fields(user: &User) -> serde_json::Map<String, serde_json::Value> {
    records::userdb_fields(user)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect()
}

async fn iterate(auth: &Authenticator, path: &[u8], flags: u32, max_rows: u64, out: &mut Vec<u8>) {
    let Some(dir) = auth.directory() else {
        dict::encode_reply(&Reply::Failed("directory unavailable".into()), out);
        return;
    };
    let users = if path == b"shared/userdb/" {
        records::active_users(&dir, auth).await
    } else {
        Ok(Vec::new())
    };
    match users {
        Ok(users) => {
            let limit = if max_rows == 0 {
                usize::MAX
            } else {
                max_rows as usize
            };
            for email in users.into_iter().take(limit) {
                let mut key = path.to_vec();
                key.extend_from_slice(email.as_bytes());
                let value = if flags & dict::ITERATE_NO_VALUE != 0 {
                    Vec::new()
                } else {
                    b"{}".to_vec()
                };
                dict::encode_reply(&Reply::Row { key, value }, out);
            }
            dict::encode_reply(&Reply::EndOfRows, out);
        }
        Err(e) => {
            tracing::error!(error = %e, "dict iteration failed");
            dict::encode_reply(&Reply::Failed(format!("vmail directory: {e}")), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            email: "alice@example.org".into(),
            password: Some("{SHA512-CRYPT}$6$salt$hash".into()),
            active: true,
            quota_bytes: Some(1_048_576),
            services: Some(vec!["imap".into(), "smtp".into()]),
            uid: 5000,
            gid: 5001,
            home: "/home/vmail/example.org/alice".into(),
            mail: "maildir:~/Maildir".into(),
        }
    }

    /// The `userdb_*` fields of a passdb record, with the prefix removed.
    fn prefetched(rec: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        rec.as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("userdb_")?.to_string(), v.clone())))
            .collect()
    }

    #[test]
    fn only_passdb_keys_carry_a_service() {
        assert_eq!(
            split_key("passdb/imap/alice@example.org"),
            ("passdb", Some("imap"), "alice@example.org")
        );
        assert_eq!(
            split_key("passdb/alice@example.org"),
            ("passdb", None, "alice@example.org")
        );
        assert_eq!(
            split_key("userdb/evil/alice@example.org"),
            ("userdb", None, "evil/alice@example.org")
        );
        assert_eq!(
            split_key("userdb/alice@example.org"),
            ("userdb", None, "alice@example.org")
        );
    }

    #[test]
    fn passdb_record_carries_the_userdb_record_for_prefetch() {
        let u = user();
        let rec = passdb_record(&u, Some("imap"), "CRYPT").unwrap();
        assert_eq!(rec["user"], "alice@example.org");
        assert_eq!(rec["password"], "{SHA512-CRYPT}$6$salt$hash");
        assert_eq!(rec["userdb_uid"], "5000");
        assert_eq!(rec["userdb_gid"], "5001");
        assert_eq!(rec["userdb_home"], "/home/vmail/example.org/alice");
        assert_eq!(rec["userdb_mail"], "maildir:~/Maildir");
        assert_eq!(rec["userdb_quota_rule"], "*:bytes=1048576");
        // Exactly the userdb record, field for field, and nothing else with the prefix.
        assert_eq!(
            serde_json::Value::Object(prefetched(&rec)),
            userdb_record(&u)
        );
        assert!(rec.get("nologin").is_none() && rec.get("fail").is_none());
    }

    #[test]
    fn passdb_record_without_quota_has_no_userdb_quota_rule() {
        let u = User {
            quota_bytes: None,
            ..user()
        };
        let rec = passdb_record(&u, None, "CRYPT").unwrap();
        assert!(rec.get("userdb_quota_rule").is_none(), "{rec}");
        assert_eq!(
            serde_json::Value::Object(prefetched(&rec)),
            userdb_record(&u)
        );
        // Values stay strings, as in the userdb record.
        assert!(prefetched(&rec).values().all(|v| v.is_string()), "{rec}");
    }

    #[test]
    fn refused_logins_carry_no_userdb_fields() {
        let disabled = User {
            active: false,
            ..user()
        };
        let rec = passdb_record(&disabled, Some("imap"), "CRYPT").unwrap();
        assert_eq!(rec["fail"], "y");
        assert_eq!(rec["nologin"], "y");
        assert_eq!(rec["reason"], "Account disabled");
        assert!(prefetched(&rec).is_empty(), "{rec}");

        let rec = passdb_record(&user(), Some("pop3"), "CRYPT").unwrap();
        assert_eq!(rec["reason"], "Service not allowed for this account");
        assert!(prefetched(&rec).is_empty(), "{rec}");
    }

    #[test]
    fn unprefixed_hash_gets_the_default_scheme_and_no_password_no_record() {
        let u = User {
            password: Some("abNANd1rDfiNc".into()),
            ..user()
        };
        let rec = passdb_record(&u, Some("imap"), "CRYPT").unwrap();
        assert_eq!(rec["password"], "{CRYPT}abNANd1rDfiNc");
        let none = User {
            password: Some(String::new()),
            ..user()
        };
        assert!(passdb_record(&none, Some("imap"), "CRYPT").is_none());
    }
}
