//! The Postfix lookup tables vmail serves, with the virtual(5) search order done here because
//! Postfix sends socketmap and tcp_table servers only the full key.

use std::collections::{HashSet, VecDeque};

use crate::address::Address;
use crate::error::Result;
use crate::rows::{self, Rows};
use crate::RecipientRecord;

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
    /// `check_recipient_access` in `smtpd_recipient_restrictions`: `550 5.2.1` for an
    /// address whose search ends at a disabled mailbox, so that its mail is refused as
    /// disabled instead of "user unknown" (the other maps answer nothing for it).
    RecipientAccess,
    /// Not a Postfix table: the delivery record of a recipient ([`RecipientRecord`]) for
    /// vmail-lda, so one socket round trip to lookupd replaces a database connection per
    /// message.
    Recipient,
}

impl Map {
    pub const ALL: [Map; 7] = [
        Map::Domains,
        Map::Mailboxes,
        Map::Aliases,
        Map::Senders,
        Map::Transport,
        Map::RecipientAccess,
        Map::Recipient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Map::Domains => "domains",
            Map::Mailboxes => "mailboxes",
            Map::Aliases => "aliases",
            Map::Senders => "senders",
            Map::Transport => "transport",
            Map::RecipientAccess => "recipient_access",
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

/// How many alias domains one `aliases` lookup may visit (each costs a statement or two):
/// alias domains that point at each other are searched once each, and a lookup never does
/// more work than this, whatever the table holds.
const MAX_ALIAS_DOMAINS: usize = 32;

/// How many destinations an `aliases` answer built from catch-alls may hold: Postfix's
/// `virtual_alias_expansion_limit` (postconf(5), default 1000) would refuse more anyway.
const MAX_CATCH_ALL_DESTINATIONS: usize = 1000;

/// How deep alias-domain indirections (`@a -> @b -> @c`) are followed for `senders`, which
/// follows one path only.
const MAX_DOMAIN_HOPS: usize = 4;

/// The socketmap answer of `recipient_access` for a disabled mailbox: an access(5) action
/// with its own code, because `REJECT` would answer `access_map_reject_code` (554).
const DISABLED_ACCESS: &str = "550 5.2.1 Mailbox disabled";

pub(crate) async fn lookup<R: Rows>(rows: &R, map: Map, key: &str) -> Result<Option<String>> {
    let key = key.trim();
    match map {
        Map::Domains => {
            let Some(d) = rows.directory().policy.domain(key) else {
                return Ok(None);
            };
            Ok(rows
                .directory()
                .domain_exists_folded(&d)
                .await?
                .then(|| "virtual".to_string()))
        }
        Map::Mailboxes => {
            let Some(a) = rows.directory().policy.parse(key) else {
                return Ok(None);
            };
            Ok(mailbox(rows, &a).await?)
        }
        Map::Aliases => {
            let Some(a) = rows.directory().policy.parse(key) else {
                return Ok(None);
            };
            Ok(aliases(rows, &a).await?.map(|v| v.join(",")))
        }
        Map::Senders => {
            let Some(a) = rows.directory().policy.parse(key) else {
                return Ok(None);
            };
            Ok(senders(rows, &a).await?.map(|v| v.join(",")))
        }
        Map::Transport => transport(rows, key).await,
        Map::RecipientAccess => {
            // Postfix also asks access maps about the bare domain and `user@`: never ours.
            let Some(a) = rows.directory().policy.parse(key) else {
                return Ok(None);
            };
            Ok(matches!(own(rows, &a).await?, Own::Disabled).then(|| DISABLED_ACCESS.to_string()))
        }
        Map::Recipient => Ok(rows::recipient_unbounded(rows, key)
            .await?
            .map(|(user, ext)| RecipientRecord::new(&user, ext).encode())),
    }
}

async fn active_user<R: Rows>(rows: &R, a: &Address) -> Result<bool> {
    Ok(rows.map_user(a).await?.is_some_and(|u| u.active))
}

/// `domain/user/` for an active mailbox: exact address, then without the extension.
async fn mailbox<R: Rows>(rows: &R, a: &Address) -> Result<Option<String>> {
    let t = &rows.directory().config.mailbox.map_template;
    if active_user(rows, a).await? {
        return Ok(Some(vmail_config::expand_template(t, &a.local, &a.domain)));
    }
    let (base, ext) = a.base(&rows.directory().policy);
    if ext.is_some() && active_user(rows, &base).await? {
        return Ok(Some(vmail_config::expand_template(
            t,
            &base.local,
            &base.domain,
        )));
    }
    Ok(None)
}

/// What an address holds itself, before any catch-all: virtual(5)'s first two steps.
enum Own {
    /// Its forwardings (the extension propagated when found without it), or itself for an
    /// active mailbox.
    Found(Vec<String>),
    /// A mailbox that exists but is disabled (or in a disabled domain): the search ends
    /// here, so its mail is never handed to a catch-all.
    Disabled,
    /// Nothing: the domain's catch-all comes next.
    Nothing,
}

/// `user+ext@domain`, then `user@domain`; at each step forwardings before the mailbox, as
/// with the classic `virtual_alias_maps = forwardings, email2email`.
async fn own<R: Rows>(rows: &R, a: &Address) -> Result<Own> {
    let full = a.to_string();
    let (f, user) = match rows.prefetch_address(a).await? {
        Some((user, f)) => (f, Some(user)),
        None => (
            rows.map_forwardings(&full, &a.local, &a.domain).await?,
            None,
        ),
    };
    if !f.is_empty() {
        return Ok(Own::Found(f));
    }
    let user = match user {
        Some(known) => known,
        None => rows.map_user(a).await?,
    };
    match user {
        Some(u) if u.active => return Ok(Own::Found(vec![full])),
        Some(_) => return Ok(Own::Disabled),
        None => {}
    }
    let (base, ext) = a.base(&rows.directory().policy);
    if let Some(ext) = &ext {
        let f = rows
            .map_forwardings(&base.to_string(), &base.local, &base.domain)
            .await?;
        if !f.is_empty() {
            return Ok(Own::Found(f.iter().map(|d| propagate(d, ext)).collect()));
        }
        match rows.map_user(&base).await? {
            Some(u) if u.active => return Ok(Own::Found(vec![full])),
            Some(_) => return Ok(Own::Disabled),
            None => {}
        }
    }
    Ok(Own::Nothing)
}

/// virtual(5) order: `user+ext@domain`, `user@domain` (the extension propagated to the
/// result, as Postfix's default `propagate_unmatched_extensions` does), then `@domain`; a
/// disabled mailbox ends the search with no answer (see [`Own`]).
///
/// A catch-all destination `@other` makes this an alias domain: the answer is `user@other`
/// only if that address exists there, so an unknown user of an alias domain is rejected at
/// RCPT like one of the real domain. When `other` is not in `domains` at all (a domain
/// forwarded to another server), the answer is `user@other` as with virtual(5). Alias domains of alias domains are searched here too,
/// each domain once (alias domains that point at each other form loops), at most
/// [`MAX_ALIAS_DOMAINS`] of them (past a limit the answer is a temporary failure, as Postfix
/// defers an "unreasonable" expansion, never a cut list or "not found"). The answer names only addresses whose own search ends
/// without a catch-all (a mailbox or forwarding of the user, or a plain catch-all
/// destination): Postfix looks every answer up again (cleanup's virtual alias recursion), and
/// an answer naming the user in another alias domain could send Postfix from one domain of
/// a loop to the next until its 1000-level nesting limit bounces the message.
async fn aliases<R: Rows>(rows: &R, a: &Address) -> Result<Option<Vec<String>>> {
    match own(rows, a).await? {
        Own::Found(v) => return Ok(Some(v)),
        Own::Disabled => return Ok(None),
        Own::Nothing => {}
    }
    let mut out: Vec<String> = Vec::new();
    let mut in_out: HashSet<String> = HashSet::new();
    // Domains whose catch-all is still to be read, and every domain seen (at most
    // MAX_ALIAS_DOMAINS + 1: a vector is faster than a set).
    let mut pending = VecDeque::from([a.domain.clone()]);
    let mut seen = vec![a.domain.clone()];
    let mut exhausted = false;
    'domains: while let Some(domain) = pending.pop_front() {
        let catch = rows
            .map_forwardings(&format!("@{domain}"), "", &domain)
            .await?;
        for d in catch {
            let found = match d.strip_prefix('@') {
                None => d,
                Some(other) => {
                    let Some(target) = rows
                        .directory()
                        .policy
                        .parse(&format!("{}@{other}", a.local))
                    else {
                        continue;
                    };
                    if seen.contains(&target.domain) {
                        continue;
                    }
                    if seen.len() > MAX_ALIAS_DOMAINS {
                        exhausted = true;
                        break 'domains;
                    }
                    seen.push(target.domain.clone());
                    // Memoized rows answer without a pause: let other lookups run between
                    // domains.
                    tokio::task::yield_now().await;
                    match own(rows, &target).await? {
                        Own::Found(_) => target.to_string(),
                        Own::Disabled => continue,
                        // Not a domain of ours: a whole domain forwarded to another server
                        // (`@old.example -> @new-provider.example`). virtual(5) rewrites the
                        // address and Postfix routes it there; no row here can say whether
                        // the user exists, so answering nothing would bounce all its mail.
                        Own::Nothing if !rows.directory().domain_listed(&target.domain).await? => {
                            target.to_string()
                        }
                        Own::Nothing => {
                            pending.push_back(target.domain);
                            continue;
                        }
                    }
                }
            };
            if out.len() >= MAX_CATCH_ALL_DESTINATIONS {
                exhausted = true;
                break 'domains;
            }
            if in_out.insert(found.clone()) {
                out.push(found);
            }
        }
    }
    if exhausted {
        warn_limited(&a.domain);
        return Err(crate::Error::Limit(format!(
            "alias domains of {} exceed the search limits ({MAX_ALIAS_DOMAINS} domains, \
             {MAX_CATCH_ALL_DESTINATIONS} destinations)",
            a.domain
        )));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// One warning for a lookup that hit a limit, at most once a minute per process: a table
/// that makes every lookup hit it must not fill the log (`Relaxed` suffices: an extra
/// line in a race is harmless).
fn warn_limited(domain: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if last != 0 && now < last + 60 {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    LAST.store(now, Ordering::Relaxed);
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        domain,
        max_domains = MAX_ALIAS_DOMAINS,
        max_destinations = MAX_CATCH_ALL_DESTINATIONS,
        suppressed,
        "alias domains of this domain exceed the search limits; answering temporary failure"
    );
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
/// as for aliases; an alias domain inherits the owners of the same user in the real domain. A
/// disabled mailbox ends the search: nobody owns it through a catch-all.
async fn senders<R: Rows>(rows: &R, a: &Address) -> Result<Option<Vec<String>>> {
    match senders_exact(rows, a).await? {
        Owners::Found(o) => return Ok(Some(o)),
        Owners::Disabled => return Ok(None),
        Owners::Nothing => {}
    }
    let mut hop = a.clone();
    for _ in 0..MAX_DOMAIN_HOPS {
        let mut owners = Vec::new();
        let mut next = None;
        for d in rows
            .map_forwardings(&hop.catch_all(), "", &hop.domain)
            .await?
        {
            match d.strip_prefix('@') {
                Some(other) => {
                    next = rows
                        .directory()
                        .policy
                        .parse(&format!("{}@{other}", hop.local))
                }
                None => owners.push(d),
            }
        }
        if !owners.is_empty() {
            return Ok(Some(owners));
        }
        let Some(n) = next else { break };
        match senders_exact(rows, &n).await? {
            Owners::Found(o) => return Ok(Some(o)),
            Owners::Disabled => return Ok(None),
            Owners::Nothing => {}
        }
        hop = n;
    }
    Ok(None)
}

/// What [`senders_exact`] found.
enum Owners {
    Found(Vec<String>),
    /// A disabled mailbox without forwardings.
    Disabled,
    Nothing,
}

/// Owners of exactly this address (and its extension-less form), without catch-alls.
async fn senders_exact<R: Rows>(rows: &R, a: &Address) -> Result<Owners> {
    let (base, ext) = a.base(&rows.directory().policy);
    let mut candidates = vec![a.clone()];
    if ext.is_some() {
        candidates.push(base);
    }
    for c in &candidates {
        let mut owners = Vec::new();
        let user = rows.map_user(c).await?;
        if user.as_ref().is_some_and(|u| u.active) {
            owners.push(c.to_string());
        }
        for d in rows
            .map_forwardings(&c.to_string(), &c.local, &c.domain)
            .await?
        {
            if !owners.contains(&d) {
                owners.push(d);
            }
        }
        if !owners.is_empty() {
            return Ok(Owners::Found(owners));
        }
        if user.is_some() {
            return Ok(Owners::Disabled);
        }
    }
    Ok(Owners::Nothing)
}

/// transport(5) order for the keys Postfix hands a socketmap: the full address, then its
/// domain; a bare domain key is looked up as is.
async fn transport<R: Rows>(rows: &R, key: &str) -> Result<Option<String>> {
    if key.contains('@') {
        let Some(a) = rows.directory().policy.parse(key) else {
            return Ok(None);
        };
        if let Some(t) = rows
            .directory()
            .transport_for(&a.to_string(), &a.domain)
            .await?
        {
            return Ok(Some(t));
        }
        return rows.directory().transport_for(&a.domain, &a.domain).await;
    }
    match rows.directory().policy.domain(key) {
        Some(d) => rows.directory().transport_for(&d, &d).await,
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
