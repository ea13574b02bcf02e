//! The SASL layer carried inside AUTH and CONT lines: the mechanisms we offer, the
//! decoding of PLAIN and LOGIN answers, and [`Secret`], which keeps passwords and the
//! base64 carrying them out of `Debug` output. The rules are in the parent module's
//! documentation.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use thiserror::Error;

/// Bytes that may contain a password: SASL answers and the base64 carrying them.
/// `Debug` prints `Secret(<redacted>)`; [`Secret::expose`] is the only way to the bytes.
/// The buffer is overwritten with zeros when dropped (best effort: copies the caller
/// makes are its own business).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether there are no bytes (an empty password, an empty `resp=`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the optimiser from treating the zeroing as a dead store.
        std::hint::black_box(&self.0);
    }
}

/// The SASL mechanisms we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: one answer, `authzid NUL authcid NUL password`.
    Plain,
    /// The de-facto LOGIN mechanism: prompts `Username:` then `Password:`.
    Login,
}

impl Mechanism {
    /// The name as announced in `MECH` lines.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The `MECH` flags Dovecot announces for it (`mech-plain.c`, `mech-login.c`:
    /// `MECH_SEC_PLAINTEXT`). Postfix filters mechanisms on these
    /// (`smtpd_sasl_security_options = noplaintext`).
    pub fn flags(self) -> &'static [&'static str] {
        &["plaintext"]
    }

    /// Looks a mechanism name up case-insensitively, as Dovecot's `mech_register_find()`.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login]
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }
}

/// Why a SASL answer is unacceptable. Carries no input: the input may be a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SaslError {
    /// The base64 does not decode. Answer `FAIL id code=invalid_base64 reason=...` at
    /// once (no failure delay), as Dovecot does.
    #[error("invalid base64 data")]
    InvalidBase64,
    /// A PLAIN answer without exactly two NULs.
    #[error("PLAIN answer is not authzid NUL authcid NUL password")]
    PlainSyntax,
    /// An empty authentication identity.
    #[error("empty username")]
    EmptyUsername,
    /// A LOGIN answer containing a NUL byte.
    #[error("LOGIN answer contains a NUL byte")]
    Nul,
}

/// The three parts of a PLAIN answer. `Debug` shows the names escaped and hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCreds {
    /// The identity to act as, if the client asked for one different from `authcid`.
    /// We have no master users: a `Some` here must fail like a wrong password.
    pub authzid: Option<Vec<u8>>,
    /// The username whose password is given. Never empty.
    pub authcid: Vec<u8>,
    /// The password (may be empty; it then fails verification like any wrong one).
    pub password: Secret,
}

impl fmt::Debug for PlainCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCreds")
            .field(
                "authzid",
                &self
                    .authzid
                    .as_deref()
                    .map(|z| z.escape_ascii().to_string()),
            )
            .field("authcid", &self.authcid.escape_ascii().to_string())
            .field("password", &self.password)
            .finish()
    }
}

/// Base64 as Dovecot accepts it: standard alphabet, padding optional, unused trailing
/// bits ignored, no whitespace.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes SASL base64 as Dovecot accepts it: standard alphabet, padding optional, unused
/// trailing bits ignored, no whitespace.
pub fn decode_base64(b64: &[u8]) -> Result<Secret, SaslError> {
    LENIENT
        .decode(b64)
        .map(Secret::new)
        .map_err(|_| SaslError::InvalidBase64)
}

/// Decodes a base64 PLAIN answer (`resp=` or `CONT` data) and splits it; see
/// [`parse_plain`].
pub fn decode_plain(b64: &[u8]) -> Result<PlainCreds, SaslError> {
    parse_plain(decode_base64(b64)?.expose())
}

/// Splits a decoded PLAIN answer `authzid NUL authcid NUL password`: exactly two NULs,
/// non-empty authcid, authzid equal to authcid dropped (see the module documentation).
pub fn parse_plain(raw: &[u8]) -> Result<PlainCreds, SaslError> {
    let mut parts = raw.splitn(4, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::PlainSyntax);
    };
    if authcid.is_empty() {
        return Err(SaslError::EmptyUsername);
    }
    Ok(PlainCreds {
        authzid: (!authzid.is_empty() && authzid != authcid).then(|| authzid.to_vec()),
        authcid: authcid.to_vec(),
        password: Secret::new(password.to_vec()),
    })
}

/// Decodes one base64 LOGIN answer (the username after `Username:`, the password after
/// `Password:`). The result may be empty; an empty username must fail. NUL is refused.
pub fn decode_login_step(b64: &[u8]) -> Result<Secret, SaslError> {
    let answer = decode_base64(b64)?;
    if answer.expose().contains(&0) {
        return Err(SaslError::Nul);
    }
    Ok(answer)
}

/// The LOGIN prompts Dovecot sends, in order (`mech-login.c`), for
/// [`Reply::Cont`](super::Reply::Cont).
pub const LOGIN_PROMPTS: [&str; 2] = ["Username:", "Password:"];
