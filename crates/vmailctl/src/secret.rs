//! Passwords and hashes come from the terminal or stdin, never from argv (every local user
//! can read argv in `ps`).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};

/// Reads one secret: a hidden terminal prompt, or the first line of stdin when it is not a
/// terminal (scripts: `printf '%s\n' "$pw" | vmailctl user add ...`).
pub(crate) fn read_secret(prompt: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("reading password from terminal");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A new password: asked twice on a terminal, once from stdin. Empty is refused.
pub(crate) fn new_password() -> Result<String> {
    let pw = read_secret("New password: ")?;
    if std::io::stdin().is_terminal() {
        let again = read_secret("Retype new password: ")?;
        if again != pw {
            bail!("passwords do not match");
        }
    }
    if pw.is_empty() {
        bail!("empty password refused");
    }
    let _ = std::io::stdout().flush();
    Ok(pw)
}

/// An already hashed password for `--hashed`: one line from stdin (a hidden prompt on a
/// terminal), which must parse as a scheme vmail-passwd knows, so a typo or a truncated
/// copy never becomes a password nobody can log in with.
pub(crate) fn read_hash(default: vmail_passwd::Scheme) -> Result<String> {
    let hash = read_secret("Password hash: ")?;
    let hash = hash.trim().to_string();
    check_hash(&hash, default).context("the hash read from stdin")?;
    Ok(hash)
}

/// Refuses a hash authd could check no password against: `user add --hashed` and every
/// user of an import. A `{SCHEME}` prefix must be one vmail-passwd knows; a value without
/// one (classic databases store DES or MD5-crypt bare) must parse under `default`,
/// `[passwords] default_scheme`, as authd reads it. Empty is refused too: authd fails every
/// login against it and logs the hash as unusable; `active` false is how to disable a login.
pub(crate) fn check_hash(hash: &str, default: vmail_passwd::Scheme) -> Result<()> {
    if hash.is_empty() {
        bail!(
            "empty password hash refused (authd can check no password against it; to \
             disable a login, set active to false and keep a hash)"
        );
    }
    if let Err(e) = vmail_passwd::scheme_of(hash, default) {
        let prefixed = hash.starts_with('{') && hash.contains('}');
        if prefixed {
            bail!("{e}");
        }
        bail!("{e} (no {{SCHEME}} prefix, so read as passwords.default_scheme = {default})");
    }
    Ok(())
}
