//! What the daemons share about a mailbox, without any database code: the user record
//! ([`User`]) as authd and the LDA read it, the delivery record lookupd hands the LDA
//! ([`RecipientRecord`]), the address rules ([`address`]) and the check every mailbox path
//! passes before it is handed out ([`mailbox::PathGuard`]).
//!
//! `vmail-directory` reads these from the database and re-exports them; `vmail-lda` uses them
//! alone, so that the binary Postfix starts for every message links no database code.

pub mod address;
pub mod mailbox;

pub use address::{Address, AddressPolicy};

/// A user record, as authd and the LDA need it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The address as stored.
    pub email: String,
    /// The stored hash, possibly with a `{SCHEME}` prefix. Never logged.
    pub password: Option<String>,
    /// False when the user or its domain is disabled.
    pub active: bool,
    /// Quota in bytes; `None` for no limit.
    pub quota_bytes: Option<u64>,
    /// Allowed services (`smtp`, `imap`, `pop3`, ...); `None` allows all.
    pub services: Option<Vec<String>>,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub mail: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("active", &self.active)
            .field("quota_bytes", &self.quota_bytes)
            .field("services", &self.services)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("home", &self.home)
            .field("mail", &self.mail)
            .finish()
    }
}

impl User {
    /// Whether the user may use `service` (case-insensitive).
    pub fn allows(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(service)))
    }

    /// The record without its hash: map answers never need it, and lookupd should not hold
    /// one in memory.
    pub fn without_password(self) -> User {
        User {
            password: None,
            ..self
        }
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
    pub fn new(user: &User, ext: Option<String>) -> RecipientRecord {
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
