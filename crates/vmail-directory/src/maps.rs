//! The Postfix lookup tables vmail serves, with the virtual(5) search order done here because
//! Postfix sends socketmap and tcp_table servers only the full key.

use std::future::Future;
use std::pin::Pin;

use crate::address::Address;
use crate::error::Result;
use crate::Directory;

/// The maps, by the names used in `socketmap:...:NAME` and `vmailctl query NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    /// `virtual_mailbox_domains`: `virtual` when the domain is ours.
    Domains,
    /// `virtual_mailbox_maps`: the mailbox path (`domain/user/`).
    Mailboxes,
    /// `virtual_alias_maps`: forwardings, plus every mailbox mapped to itself (the classic
    /// `email2email` map) so that a real mailbox wins over a catch-all.
    Aliases,
    /// `smtpd_sender_login_maps`: the SASL logins that may use a sender address.
    Senders,
    /// `transport_maps`.
    Transport,
    /// Not a Postfix table: the delivery record of a recipient ([`RecipientRecord`]) for
    /// vmail-lda, so one socket round trip to lookupd replaces a database connection per
    /// message.
    Recipient,
}

impl Map {
    pub const ALL: [Map; 6] = [
        Map::Domains,
        Map::Mailboxes,
        Map::Aliases,
        Map::Senders,
        Map::Transport,
        Map::Recipient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Map::Domains => "domains",
            Map::Mailboxes => "mailboxes",
            Map::Aliases => "aliases",
            Map::Senders => "senders",
            Map::Transport => "transport",
            Map::Recipient => "recipient",
        }
    }
}

impl std::str::FromStr for Map {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Map::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown map {s:?} (known: {})",
                    Map::ALL.map(Map::name).join(", ")
                )
            })
    }
}

impl std::fmt::Display for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A boxed future, for the one recursive lookup (alias domains).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How deep alias-domain indirections (`@a -> @b -> @c`) are followed before we give up on a
/// loop.
const MAX_DOMAIN_HOPS: usize = 4;

pub(crate) async fn lookup(dir: &Directory, map: Map, key: &str) -> Result<Option<String>> {
    let key = key.trim();
    match map {
        Map::Domains => {
            let Some(d) = dir.policy.domain(key) else {
                return Ok(None);
            };
            Ok(dir
                .domain_exists_folded(&d)
                .await?
                .then(|| "virtual".to_string()))
        }
        Map::Mailboxes => {
            let Some(a) = dir.policy.parse(key) else {
                return Ok(None);
            };
            Ok(mailbox(dir, &a).await?)
        }
        Map::Aliases => {
            let Some(a) = dir.policy.parse(key) else {
                return Ok(None);
            };
            Ok(aliases(dir, &a, 0).await?.map(|v| v.join(",")))
        }
        Map::Senders => {
            let Some(a) = dir.policy.parse(key) else {
                return Ok(None);
            };
            Ok(senders(dir, &a).await?.map(|v| v.join(",")))
        }
        Map::Transport => transport(dir, key).await,
        Map::Recipient => Ok(dir
            .recipient(key)
            .await?
            .map(|(user, ext)| RecipientRecord::new(&user, ext).encode())),
    }
}

/// What vmail-lda needs to deliver to a recipient, as the `recipient` map answers it: one
/// line of JSON, because paths from the database may hold any character.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientRecord {
    /// The mailbox's address as stored (for `Delivered-To:`).
    pub email: String,
    pub active: bool,
    pub home: String,
    pub mail: String,
    pub quota_bytes: Option<u64>,
    /// `+ext` when only the address without its extension is a mailbox.
    pub ext: Option<String>,
}

impl RecipientRecord {
    pub fn new(user: &crate::User, ext: Option<String>) -> RecipientRecord {
        RecipientRecord {
            email: user.email.clone(),
            active: user.active,
            home: user.home.clone(),
            mail: user.mail.clone(),
            quota_bytes: user.quota_bytes,
            ext,
        }
    }

    pub fn encode(&self) -> String {
        // Serialising plain strings, bools and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(s: &str) -> std::result::Result<RecipientRecord, String> {
        serde_json::from_str(s).map_err(|e| format!("malformed recipient record: {e}"))
    }
}

async fn active_user(dir: &Directory, a: &Address) -> Result<bool> {
    Ok(dir.map_user(a).await?.is_some_and(|u| u.active))
}

/// `domain/user/` for an active mailbox: exact address, then without the extension.
async fn mailbox(dir: &Directory, a: &Address) -> Result<Option<String>> {
    let t = &dir.config.mailbox.map_template;
    if active_user(dir, a).await? {
        return Ok(Some(vmail_config::expand_template(t, &a.local, &a.domain)));
    }
    let (base, ext) = a.base(&dir.policy);
    if ext.is_some() && active_user(dir, &base).await? {
        return Ok(Some(vmail_config::expand_template(
            t,
            &base.local,
            &base.domain,
        )));
    }
    Ok(None)
}

/// virtual(5) order: `user+ext@domain`, `user@domain` (the extension propagated to the
/// result, as Postfix's default `propagate_unmatched_extensions` does), then `@domain`. At each
/// step forwardings come before the mailbox self-mapping, as with the classic
/// `virtual_alias_maps = forwardings, email2email`. A catch-all destination `@other` makes
/// this an alias domain: the result is `user@other` only if that address exists there, so an
/// unknown user of an alias domain is rejected at RCPT like one of the real domain.
fn aliases<'a>(
    dir: &'a Directory,
    a: &'a Address,
    hops: usize,
) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
    Box::pin(async move {
        let full = a.to_string();
        let (f, active) = match dir.prefetch_address(a).await? {
            Some((user, f)) => (f, Some(user.is_some_and(|u| u.active))),
            None => (dir.forwardings(&full, &a.local, &a.domain).await?, None),
        };
        if !f.is_empty() {
            return Ok(Some(f));
        }
        let active = match active {
            Some(known) => known,
            None => active_user(dir, a).await?,
        };
        if active {
            return Ok(Some(vec![full]));
        }
        let (base, ext) = a.base(&dir.policy);
        if let Some(ext) = &ext {
            let f = dir
                .forwardings(&base.to_string(), &base.local, &base.domain)
                .await?;
            if !f.is_empty() {
                return Ok(Some(f.iter().map(|d| propagate(d, ext)).collect()));
            }
            if active_user(dir, &base).await? {
                return Ok(Some(vec![full]));
            }
        }
        let catch = dir.forwardings(&a.catch_all(), "", &a.domain).await?;
        let mut out = Vec::new();
        for d in catch {
            match d.strip_prefix('@') {
                Some(other) => {
                    // Alias domain: same user (extension kept) in the other domain.
                    if hops >= MAX_DOMAIN_HOPS {
                        tracing::warn!(domain = %a.domain, "alias domain chain too long or looping");
                        continue;
                    }
                    let Some(target) = dir.policy.parse(&format!("{}@{other}", a.local)) else {
                        continue;
                    };
                    if aliases(dir, &target, hops + 1).await?.is_some() {
                        out.push(target.to_string());
                    }
                }
                None => out.push(d),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    })
}

/// `user+ext` appended to a destination found through the extension-less key.
fn propagate(dest: &str, ext: &str) -> String {
    match dest.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() => format!("{l}{ext}@{d}"),
        _ => dest.to_string(),
    }
}

/// Logins that own an address: the mailbox itself, and the destinations of an alias pointing
/// at it (a login is a full address, so a remote destination can never log in). Search order
/// as for aliases; an alias domain inherits the owners of the same user in the real domain.
async fn senders(dir: &Directory, a: &Address) -> Result<Option<Vec<String>>> {
    if let Some(o) = senders_exact(dir, a).await? {
        return Ok(Some(o));
    }
    let mut hop = a.clone();
    for _ in 0..MAX_DOMAIN_HOPS {
        let mut owners = Vec::new();
        let mut next = None;
        for d in dir.forwardings(&hop.catch_all(), "", &hop.domain).await? {
            match d.strip_prefix('@') {
                Some(other) => next = dir.policy.parse(&format!("{}@{other}", hop.local)),
                None => owners.push(d),
            }
        }
        if !owners.is_empty() {
            return Ok(Some(owners));
        }
        let Some(n) = next else { break };
        if let Some(o) = senders_exact(dir, &n).await? {
            return Ok(Some(o));
        }
        hop = n;
    }
    Ok(None)
}

/// Owners of exactly this address (and its extension-less form), without catch-alls.
async fn senders_exact(dir: &Directory, a: &Address) -> Result<Option<Vec<String>>> {
    let (base, ext) = a.base(&dir.policy);
    let mut candidates = vec![a.clone()];
    if ext.is_some() {
        candidates.push(base);
    }
    for c in &candidates {
        let mut owners = Vec::new();
        if active_user(dir, c).await? {
            owners.push(c.to_string());
        }
        for d in dir.forwardings(&c.to_string(), &c.local, &c.domain).await? {
            if !owners.contains(&d) {
                owners.push(d);
            }
        }
        if !owners.is_empty() {
            return Ok(Some(owners));
        }
    }
    Ok(None)
}

/// transport(5) order for the keys Postfix hands a socketmap: the full address, then its
/// domain; a bare domain key is looked up as is.
async fn transport(dir: &Directory, key: &str) -> Result<Option<String>> {
    if key.contains('@') {
        let Some(a) = dir.policy.parse(key) else {
            return Ok(None);
        };
        if let Some(t) = dir.transport_for(&a.to_string()).await? {
            return Ok(Some(t));
        }
        return dir.transport_for(&a.domain).await;
    }
    match dir.policy.domain(key) {
        Some(d) => dir.transport_for(&d).await,
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_round_trip() {
        for m in Map::ALL {
            assert_eq!(m.name().parse::<Map>().unwrap(), m);
        }
        assert!("virtual".parse::<Map>().is_err());
    }

    #[test]
    fn extension_propagates_into_local_part() {
        assert_eq!(propagate("bob@example.org", "+tag"), "bob+tag@example.org");
        assert_eq!(propagate("@example.org", "+tag"), "@example.org");
    }
}
