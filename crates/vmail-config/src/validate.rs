//! The checks that turn a bad value into an error naming its key (after serde has
//! refused unknown keys and wrong types), and the derived defaults filled in on the way.

use std::path::Path;

use crate::template::{self, location_fields};
use crate::{state_dir, Backend, Config, Error, MailboxConfig};

impl Config {
    /// Validates values and fills in derived defaults (the SQLite path).
    pub(crate) fn finish(&mut self, path: &Path) -> Result<(), Error> {
        let invalid = |key: &'static str, message: String| Error::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let db = &mut self.database;
        if db.sqlite_path.as_os_str().is_empty() {
            db.sqlite_path = state_dir().join("vmail.db");
        }
        if db.backend == Backend::Mysql && db.hosts.is_empty() {
            return Err(invalid(
                "database.hosts",
                "needs at least one server".into(),
            ));
        }
        if db.password.is_some() && db.password_file.is_some() {
            return Err(invalid(
                "database.password",
                "set either password or password_file, not both".into(),
            ));
        }
        if db.connect_timeout_ms == 0 || db.query_timeout_ms == 0 {
            return Err(invalid(
                "database.query_timeout_ms",
                "timeouts must be greater than zero".into(),
            ));
        }
        if db.pool_max == 0 {
            return Err(invalid("database.pool_max", "must be at least 1".into()));
        }
        if db.batch_keys == 0 || db.batch_keys > 1024 {
            return Err(invalid(
                "database.batch_keys",
                "must be 1 (off) to 1024".into(),
            ));
        }
        if db.batch_in_flight == 0 {
            return Err(invalid(
                "database.batch_in_flight",
                "must be at least 1".into(),
            ));
        }
        let d = &self.address.recipient_delimiter;
        if d.chars()
            .any(|c| c.is_alphanumeric() || c == '@' || c.is_whitespace())
        {
            return Err(invalid(
                "address.recipient_delimiter",
                format!("{d:?}: delimiters must be punctuation other than '@'"),
            ));
        }
        let l = &mut self.lookupd;
        // World-writable sockets would let every local user probe the directory (lookupd)
        // or guess passwords unpenalised (authd).
        let a = &self.authd;
        for (key, mode) in [
            ("lookupd.socket_mode", &l.socket_mode),
            ("lookupd.lda_socket_mode", &l.lda_socket_mode),
            ("authd.auth_socket_mode", &a.auth_socket_mode),
            ("authd.dict_socket_mode", &a.dict_socket_mode),
            ("authd.lua_socket_mode", &a.lua_socket_mode),
            ("lmtpd.socket_mode", &self.lmtpd.socket_mode),
        ] {
            match u32::from_str_radix(mode, 8) {
                Ok(m) if m <= 0o777 && m & 0o002 == 0 => {}
                _ => {
                    return Err(invalid(
                        key,
                        format!(
                        "{mode:?}: expected octal permission bits without o+w, such as \"0660\""
                    ),
                    ))
                }
            }
        }
        if l.max_connections == 0
            || l.metrics_max_connections == 0
            || l.idle_timeout_ms == 0
            || l.request_read_timeout_ms == 0
            || l.request_timeout_ms == 0
        {
            return Err(invalid(
                "lookupd.max_connections",
                "max_connections, metrics_max_connections, idle_timeout_ms, request_read_timeout_ms and request_timeout_ms must be greater than zero"
                    .into(),
            ));
        }
        if l.pid_file.as_os_str().is_empty() {
            l.pid_file = state_dir().join("lookupd.pid");
        }
        let a = &mut self.authd;
        if a.max_connections == 0
            || a.metrics_max_connections == 0
            || a.idle_timeout_ms == 0
            || a.request_read_timeout_ms == 0
            || a.request_timeout_ms == 0
        {
            return Err(invalid(
                "authd.max_connections",
                "max_connections, metrics_max_connections, idle_timeout_ms, request_read_timeout_ms and request_timeout_ms must be greater than zero"
                    .into(),
            ));
        }
        if a.max_delay_ms >= 10_000 || a.failure_delay_ms > a.max_delay_ms {
            return Err(invalid(
                "authd.max_delay_ms",
                format!(
                    "failure_delay_ms ({}) <= max_delay_ms ({}) < 10000 is required: Postfix gives up on the auth server after 10 s",
                    a.failure_delay_ms, a.max_delay_ms
                ),
            ));
        }
        if a.ipv6_prefix == 0 || a.ipv6_prefix > 128 {
            return Err(invalid(
                "authd.ipv6_prefix",
                format!("{}: expected 1-128", a.ipv6_prefix),
            ));
        }
        for net in &a.trusted_networks {
            check_cidr(net).map_err(|m| invalid("authd.trusted_networks", m))?;
        }
        for e in &a.lua {
            if !e.strip_prefix("unix:").is_some_and(|p| p.starts_with('/')) {
                return Err(invalid(
                    "authd.lua",
                    format!("{e:?}: expected unix:/path; the Lua channel checks each client's uid (SO_PEERCRED, authd.lua_peers), which an inet: socket cannot tell"),
                ));
            }
        }
        if !a.lua.is_empty() && a.lua_peers.iter().all(|p| p.trim().is_empty()) {
            return Err(invalid(
                "authd.lua_peers",
                "empty: nobody could use authd.lua (list Dovecot's auth worker user, e.g. [\"root\", \"dovecot\"], or set lua = [])".into(),
            ));
        }
        if a.cache_enabled && a.cache_max_entries == 0 {
            return Err(invalid(
                "authd.cache_max_entries",
                "must be at least 1 when the cache is enabled".into(),
            ));
        }
        if a.pid_file.as_os_str().is_empty() {
            a.pid_file = state_dir().join("authd.pid");
        }
        for (key, m) in [
            ("lookupd.metrics", &self.lookupd.metrics),
            ("authd.metrics", &self.authd.metrics),
        ] {
            let ok = m.is_empty() || is_inet_endpoint(m);
            if !ok {
                return Err(invalid(
                    key,
                    format!("{m:?}: expected inet:HOST:PORT (e.g. inet:127.0.0.1:9161) or empty"),
                ));
            }
        }
        if !matches!(self.lda.over_quota.as_str(), "bounce" | "defer") {
            return Err(invalid(
                "lda.over_quota",
                format!(
                    "{:?}: expected \"bounce\" or \"defer\"",
                    self.lda.over_quota
                ),
            ));
        }
        let lda = &self.lda;
        let endpoint_ok = |e: &str| {
            e.strip_prefix("unix:").is_some_and(|p| p.starts_with('/')) || is_inet_endpoint(e)
        };
        if !lda.lookupd.is_empty() && !endpoint_ok(&lda.lookupd) {
            return Err(invalid(
                "lda.lookupd",
                format!(
                    "{:?}: expected unix:/absolute/path or inet:HOST:PORT (or empty)",
                    lda.lookupd
                ),
            ));
        }
        if lda.lookupd_timeout_ms == 0 {
            return Err(invalid(
                "lda.lookupd_timeout_ms",
                "must be greater than zero".into(),
            ));
        }
        check_sieve_script(&lda.sieve_script).map_err(|m| invalid("lda.sieve_script", m))?;
        if !lda.dovecot_lda.starts_with('/') {
            return Err(invalid(
                "lda.dovecot_lda",
                format!("{:?}: must be an absolute path", lda.dovecot_lda),
            ));
        }
        // pipe(8)'s default command_time_limit is 1000 s; a longer deadline would never
        // fire before Postfix kills vmail-lda and bounces the message.
        if !(1..1_000_000).contains(&lda.dovecot_lda_timeout_ms) {
            return Err(invalid(
                "lda.dovecot_lda_timeout_ms",
                "must be greater than zero and under 1000000 (pipe(8)'s command_time_limit)".into(),
            ));
        }
        self.lmtpd
            .finish(&state_dir())
            .map_err(|(key, m)| invalid(key, m))?;
        if self.cache.enabled && self.cache.max_entries == 0 {
            return Err(invalid(
                "cache.max_entries",
                "must be at least 1 when the cache is enabled".into(),
            ));
        }
        for (key, v) in [
            ("mailbox.map_template", &self.mailbox.map_template),
            ("mailbox.home", &self.mailbox.home),
            ("mailbox.mail", &self.mailbox.mail),
        ] {
            template::check_variables(v).map_err(|m| invalid(key, m))?;
        }
        self.mailbox
            .check_paths()
            .map_err(|(key, m)| invalid(key, m))?;
        Ok(())
    }
}

impl MailboxConfig {
    /// Every template gives each account a path of its own (see `template::check_separates`);
    /// `Err` names the key.
    fn check_paths(&self) -> Result<(), (&'static str, String)> {
        let path_template =
            |t: &str| template::check_separates(t).and_then(|()| template::check_fixed_text(t));
        path_template(&self.map_template).map_err(|m| ("mailbox.map_template", m))?;
        if !self.home.is_empty() {
            if !self.home.starts_with('/') {
                return Err((
                    "mailbox.home",
                    format!("{:?}: must be an absolute path (or empty)", self.home),
                ));
            }
            path_template(&self.home).map_err(|m| ("mailbox.home", m))?;
        }
        let (path, _) = location_fields(&self.mail);
        let under_home = if path == "~" {
            Some("")
        } else {
            path.strip_prefix("~/")
        };
        let r = match under_home {
            Some(_) if self.home.is_empty() => {
                Err(format!("{:?} uses ~ but mailbox.home is empty", self.mail))
            }
            Some("") => Ok(()),
            Some(rest) => template::check_fixed_text(rest),
            None if !path.starts_with('/') => Err(format!(
                "{:?}: the path must be absolute or start with ~/",
                self.mail
            )),
            None => path_template(path),
        };
        r.map_err(|m| ("mailbox.mail", m))
    }
}

/// `[lda] sieve_script`: a path below the recipient's home (the home comes from the
/// directory and is checked there; this keeps the script inside it), or empty.
fn check_sieve_script(s: &str) -> Result<(), String> {
    use std::path::Component;
    // Dovecot's spelling (`~/.dovecot.sieve`): the same path under the home.
    let rest = s.strip_prefix("~/").unwrap_or(s);
    let p = Path::new(rest);
    if rest.starts_with('/') || rest.starts_with('~') {
        return Err(format!(
            "{s:?}: must be relative to the home (\".dovecot.sieve\" or \"~/.dovecot.sieve\"), or empty"
        ));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{s:?}: must not contain '..'"));
    }
    if !s.is_empty() && !p.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{s:?}: names the home itself, not a script"));
    }
    Ok(())
}

/// `inet:HOST:PORT` with a non-empty host and a valid port.
pub(crate) fn is_inet_endpoint(s: &str) -> bool {
    s.strip_prefix("inet:")
        .and_then(|a| a.rsplit_once(':'))
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Parses `ADDR` or `ADDR/LEN` (a network in CIDR notation) into the address and prefix
/// length, the one parser authd and the config check share.
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not an IP address or network"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
        },
    };
    Ok((addr, len))
}

fn check_cidr(s: &str) -> Result<(), String> {
    parse_cidr(s).map(|_| ())
}
