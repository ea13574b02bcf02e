//! `[address]`, `[mailbox]` and `[passwords]`: what an account looks like to every
//! program (how its addresses compare, where its mail lives, how its password is hashed).

use serde::{Deserialize, Serialize};

/// `[address]`: how addresses are compared.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressConfig {
    /// Characters that separate a local part from its extension (Postfix's
    /// `recipient_delimiter`); empty disables extensions.
    pub recipient_delimiter: String,
    /// Fold local parts to lower case. The classic MySQL schema compares case-insensitively,
    /// so this is on by default; domains are always folded.
    pub fold_local_part: bool,
}

/// `[mailbox]`: what a user's mailbox looks like to Postfix, Dovecot and the LDA.
/// Templates expand `%u` (full address), `%n` (local part), `%d` (domain).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// The `virtual_mailbox_maps` answer; the classic query returns `domain/user/`.
    pub map_template: String,
    pub home: String,
    /// Dovecot mail location.
    pub mail: String,
    pub uid: u32,
    pub gid: u32,
}

/// `[passwords]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Scheme of stored hashes without a `{SCHEME}` prefix. The classic how-to stores MySQL
    /// `ENCRYPT()` output, i.e. DES crypt, so `CRYPT`.
    pub default_scheme: String,
    /// Scheme for new passwords.
    pub hash_scheme: String,
}

impl Default for AddressConfig {
    fn default() -> Self {
        AddressConfig {
            recipient_delimiter: "+".into(),
            fold_local_part: true,
        }
    }
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            map_template: "%d/%n/".into(),
            home: "/home/vmail/%d/%n".into(),
            mail: "maildir:/home/vmail/%d/%n/Maildir".into(),
            uid: 5000,
            gid: 5000,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            default_scheme: "CRYPT".into(),
            hash_scheme: "SHA512-CRYPT".into(),
        }
    }
}
