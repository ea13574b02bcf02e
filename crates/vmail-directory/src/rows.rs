//! The sub-answers a map lookup is made of, behind one trait, so that lookupd can share them
//! between lookups without the directory knowing: [`Directory`] reads each from the database
//! when asked; lookupd's wrapper (`vmail-lookupd/src/cache/shared.rs`: its memo and address
//! set) answers from memory where it can and asks the directory otherwise. The search order
//! itself (`maps.rs`) is written once, against this trait.

use std::future::Future;

use crate::address::Address;
use crate::error::Result;
use crate::{maps, Directory, Map, User};

/// What the map search asks, besides the plain questions it puts to
/// [`Rows::directory`] (domains, transports).
pub trait Rows: Sync {
    /// The directory underneath: its address rules, configuration and unshared questions.
    fn directory(&self) -> &Directory;

    /// The user row of `a` for the maps (password not needed).
    fn map_user(&self, a: &Address) -> impl Future<Output = Result<Option<User>>> + Send;

    /// Alias destinations of exactly `key` (an address or `@domain`) for the maps: none in a
    /// disabled domain.
    fn map_forwardings(
        &self,
        key: &str,
        local: &str,
        domain: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The user row and the forwardings of `a` read together, when that saves a round trip
    /// (`None`: not read, ask [`map_forwardings`](Self::map_forwardings) and
    /// [`map_user`](Self::map_user)).
    fn prefetch_address(
        &self,
        a: &Address,
    ) -> impl Future<Output = Result<Option<(Option<User>, Vec<String>)>>> + Send;

    /// The user row of `a` for a delivery (the `recipient` map): never "absent" on the word
    /// of anything but a statement.
    fn recipient_user(&self, a: &Address) -> impl Future<Output = Result<Option<User>>> + Send;
}

/// The plain reader: every sub-answer is a statement.
impl Rows for Directory {
    fn directory(&self) -> &Directory {
        self
    }

    async fn map_user(&self, a: &Address) -> Result<Option<User>> {
        self.read_user(a).await
    }

    async fn map_forwardings(&self, key: &str, local: &str, domain: &str) -> Result<Vec<String>> {
        self.read_forwardings(key, local, domain).await
    }

    /// Reading both costs as much as asking for each when nothing keeps the rows.
    async fn prefetch_address(&self, _: &Address) -> Result<Option<(Option<User>, Vec<String>)>> {
        Ok(None)
    }

    async fn recipient_user(&self, a: &Address) -> Result<Option<User>> {
        self.read_user(a).await
    }
}

/// Answers `key` in `map` from `rows`, under the directory's deadline: `Ok(None)` is
/// NOTFOUND, an error with [`crate::Error::is_temporary`] is TEMP.
pub async fn lookup<R: Rows>(rows: &R, map: Map, key: &str) -> Result<Option<String>> {
    rows.directory().bounded(maps::lookup(rows, map, key)).await
}

/// The user mail for `recipient` is delivered to: exact address, then without its
/// extension, under the directory's deadline. Returns the user and the extension
/// (delimiter included).
pub async fn recipient<R: Rows>(
    rows: &R,
    recipient: &str,
) -> Result<Option<(User, Option<String>)>> {
    rows.directory()
        .bounded(recipient_unbounded(rows, recipient))
        .await
}

/// [`recipient`] without its deadline, for a search already under one (the `recipient` map).
pub(crate) async fn recipient_unbounded<R: Rows>(
    rows: &R,
    recipient: &str,
) -> Result<Option<(User, Option<String>)>> {
    let policy = rows.directory().policy();
    let Some(a) = policy.parse(recipient) else {
        return Ok(None);
    };
    if let Some(u) = rows.recipient_user(&a).await? {
        return Ok(Some((u, None)));
    }
    let (base, ext) = a.base(policy);
    if ext.is_some() {
        if let Some(u) = rows.recipient_user(&base).await? {
            return Ok(Some((u, ext)));
        }
    }
    Ok(None)
}
