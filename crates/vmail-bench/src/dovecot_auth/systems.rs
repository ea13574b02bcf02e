//! The systems `vmail-bench dovecot-auth` measures, besides the ones it borrows from
//! `vmail-bench stack` (the classic SQL Dovecot and contrib's dict Dovecot, `stack/setup.rs`):
//! a vmail-authd per route, contrib's Lua route on Dovecot 2.3 (host) and 2.4 (root), and
//! the SQL passdb in 2.4 syntax.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vmail_test_support::dovecot::PrivateDovecot;
use vmail_test_support::root::SystemRoot;
use vmail_test_support::set_mode;

use super::root24;
use crate::stack::setup::{
    common_dovecot, replace_some, start_dovecot, unix_paths, vmail_toml, Daemon, Env,
};

/// Where contrib keeps the Lua script's socket and its own path, replaced per run.
const CONTRIB_LUA_SOCKET: &str = "/run/vmail/auth-lua";
const CONTRIB_LUA_SCRIPT: &str = "/etc/dovecot/vmail-auth.lua";

/// A vmail-authd for one route, from contrib's vmail.toml.
pub struct Authd {
    _daemon: Daemon,
    pub dict: PathBuf,
    /// What its cache does, for the report (`cache_enabled`, TTL, recheck).
    pub cache: String,
}

/// The Lua listener of an authd: its socket on the host, the peers it lets in besides
/// contrib's (`root`, `dovecot`), e.g. the root's `dovecot` uid, and the socket's group when
/// not contrib's (the root's `dovecot` gid, which the host does not know by name).
pub struct LuaListener<'a> {
    pub socket: &'a Path,
    pub extra_peers: &'a [String],
    pub group: Option<String>,
}

/// What a Lua listener serving Dovecot in `root` needs besides its socket: the root's
/// `dovecot` uid as an extra peer, and the root's `dovecot` gid as the socket's group (the
/// host does not know them by name).
pub fn root_dovecot_ids(root: &SystemRoot) -> (Vec<String>, Option<String>) {
    let peers = root
        .lookup_user("dovecot")
        .map(|(uid, _)| uid.to_string())
        .into_iter()
        .collect();
    (peers, root.lookup_group("dovecot").map(|g| g.to_string()))
}

/// `[authd]` with our Lua listener in place of contrib's `lua` and `lua_peers` lines (and
/// `lua_socket_group`, when the listener names one); the socket's mode as contrib has it.
fn with_lua(toml: &str, lua: &LuaListener) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in toml.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            section = t.to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let ours = key == "lua"
            || key == "lua_peers"
            || (key == "lua_socket_group" && lua.group.is_some());
        if section == "[authd]" && ours {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t == "[authd]" {
            let mut peers = vec!["\"root\"".to_string(), "\"dovecot\"".to_string()];
            peers.extend(lua.extra_peers.iter().map(|p| format!("\"{p}\"")));
            out.push_str(&format!(
                "# vmail-bench dovecot-auth: the Lua listener of this run\n\
                 lua = [\"unix:{}\"]\nlua_peers = [{}]\n",
                lua.socket.display(),
                peers.join(", ")
            ));
            if let Some(g) = &lua.group {
                out.push_str(&format!("lua_socket_group = \"{g}\"\n"));
            }
        }
    }
    out
}

impl Authd {
    /// Starts vmail-authd `name` with contrib's vmail.toml moved under `ENV/name` (see
    /// `stack::setup::vmail_toml`); `mail_base` is where its `[mailbox]` templates put
    /// homes as Dovecot sees them. `cache_off` sets `cache_enabled = false`.
    pub fn start(
        env: &Env,
        name: &str,
        mail_base: &Path,
        lua: Option<&LuaListener>,
        cache_off: bool,
    ) -> Result<Authd> {
        let dir = env.work.join(name);
        let spool = dir.join("spool");
        let run = dir.join("run");
        for d in [&dir, &spool.join("private"), &run] {
            std::fs::create_dir_all(d)?;
            set_mode(d, 0o755);
        }
        let pw_file = dir.join("db-password");
        std::fs::write(&pw_file, format!("{}\n", env.db.password))?;
        std::os::unix::fs::chown(&pw_file, Some(0), Some(env.user.gid))?;
        set_mode(&pw_file, 0o640);
        let mut toml = vmail_toml(env, &spool, &run, mail_base, &pw_file)?;
        if cache_off {
            toml = replace_some(
                "contrib/vmail/vmail.toml",
                &toml,
                "cache_enabled = true",
                "cache_enabled = false",
            )?;
        }
        if let Some(l) = lua {
            toml = with_lua(&toml, l);
        }
        let cfg = dir.join("vmail.toml");
        std::fs::write(&cfg, &toml)?;
        set_mode(&cfg, 0o644);
        let loaded = vmail_config::load(Some(&cfg))
            .with_context(|| format!("load the generated {}", cfg.display()))?;
        let a = &loaded.config.authd;
        let mut socks = unix_paths(&a.auth);
        socks.extend(unix_paths(&a.dict));
        let dict = unix_paths(&a.dict)
            .into_iter()
            .next()
            .context("vmail.toml has no [authd] dict listener")?;
        if let Some(l) = lua {
            socks.push(l.socket.to_path_buf());
        }
        let cache = if a.cache_enabled {
            format!(
                "cache_enabled = true, cache_ttl_s = {}, cache_recheck_s = {}",
                a.cache_ttl_s, a.cache_recheck_s
            )
        } else {
            "cache_enabled = false".into()
        };
        let daemon = Daemon::spawn(name, &env.authd, &cfg, &dir.join("state"), &socks, None)?;
        Ok(Authd {
            _daemon: daemon,
            dict,
            cache,
        })
    }
}

/// contrib's files, read at run time from `contrib` (the source tree's by default), so that
/// the bench runs whatever contrib has now.
pub struct Contrib {
    pub dir: PathBuf,
}

impl Contrib {
    fn read(&self, rel: &str) -> Result<String> {
        let p = self.dir.join(rel);
        std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
    }

    /// The first of `rels` that exists.
    fn first(&self, rels: &[&str]) -> Result<(String, String)> {
        for r in rels {
            if self.dir.join(r).exists() {
                return Ok((r.to_string(), self.read(r)?));
            }
        }
        bail!(
            "none of {} in {} (contrib's Lua route not there yet?)",
            rels.join(", "),
            self.dir.display()
        )
    }

    /// The Lua script and the 2.3 configuration, pointed at `socket` and `script` (the
    /// script's path as Dovecot sees it).
    pub fn lua23(&self, socket: &str, script: &str) -> Result<(String, String)> {
        let (lua_file, lua) = self.first(&["dovecot/vmail-auth.lua"])?;
        let (conf_file, conf) = self.first(&["dovecot/conf.d/auth-vmail-lua.conf.ext"])?;
        point(&lua_file, &lua, &conf_file, &conf, socket, script)
    }

    /// The Lua script and the 2.4 configuration, as [`Contrib::lua23`].
    pub fn lua24(&self, socket: &str, script: &str) -> Result<(String, String)> {
        let (lua_file, lua) =
            self.first(&["dovecot/2.4/vmail-auth.lua", "dovecot/vmail-auth.lua"])?;
        let (conf_file, conf) = self.first(&[
            "dovecot/2.4/conf.d/auth-vmail-lua.conf.ext",
            "dovecot/2.4/conf.d/auth-vmail.conf.ext",
            "dovecot/2.4/auth-vmail-lua.conf.ext",
        ])?;
        point(&lua_file, &lua, &conf_file, &conf, socket, script)
    }
}

/// The script and its configuration with contrib's socket and script paths replaced. The
/// configuration must name the script; the socket may be named in either (or left to the
/// script's default).
fn point(
    lua_file: &str,
    lua: &str,
    conf_file: &str,
    conf: &str,
    socket: &str,
    script: &str,
) -> Result<(String, String)> {
    if !lua.contains(CONTRIB_LUA_SOCKET) && !conf.contains(CONTRIB_LUA_SOCKET) {
        bail!("neither {lua_file} nor {conf_file} names {CONTRIB_LUA_SOCKET} (update crates/vmail-bench/src/dovecot_auth/systems.rs)");
    }
    let conf = replace_some(
        &format!("contrib/{conf_file}"),
        conf,
        CONTRIB_LUA_SCRIPT,
        script,
    )?;
    Ok((
        lua.replace(CONTRIB_LUA_SOCKET, socket),
        conf.replace(CONTRIB_LUA_SOCKET, socket),
    ))
}

/// Dovecot 2.3 on the host with contrib's Lua passdb/userdb against `socket`.
pub fn lua23_dovecot(env: &Env, contrib: &Contrib, socket: &Path) -> Result<PrivateDovecot> {
    let (lua, conf) = contrib.lua23(&socket.display().to_string(), "@DIR@/vmail-auth.lua")?;
    start_dovecot(
        common_dovecot(&env.user)
            .file("vmail-auth.lua", &lua)
            .conf(&conf),
    )
}

/// Dovecot 2.4 in the root with the classic SQL passdb in 2.4 syntax (the same query and
/// `CRYPT` default scheme as the 2.3 one) and a static userdb, homes under `@DIR@/home`.
pub fn sql24_dovecot(env: &Env, root: &SystemRoot) -> Result<PrivateDovecot> {
    let u = &env.user;
    let extra = format!(
        "sql_driver = mysql\n\
         mysql 127.0.0.1 {{\n  port = {}\n  dbname = {}\n  user = {}\n  password = {}\n}}\n\
         passdb sql {{\n  default_password_scheme = CRYPT\n  \
         query = SELECT email AS user, password FROM users WHERE email = '%{{user}}'\n}}\n\
         userdb static {{\n  fields {{\n    uid = {}\n    gid = {}\n    \
         home = @DIR@/home/%{{user|domain}}/%{{user|username}}\n  }}\n}}\n",
        env.db_port(),
        env.db.name,
        env.db.user,
        env.db.password,
        u.uid,
        u.gid
    );
    root24::start(root, u, &extra, &[])
}

/// Dovecot 2.4 in the root with contrib's 2.4 Lua configuration against `socket` (a path
/// both sides see, in a `SharedDir` of the root).
pub fn lua24_dovecot(
    env: &Env,
    root: &SystemRoot,
    contrib: &Contrib,
    socket: &Path,
) -> Result<PrivateDovecot> {
    let (lua, conf) = contrib.lua24(&socket.display().to_string(), "@DIR@/vmail-auth.lua")?;
    root24::start(root, &env.user, &conf, &[("vmail-auth.lua", lua)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lua_listener_replaces_contribs() {
        let t = "[authd]\nauth = []\nlua = [\"unix:/x\"]\nlua_socket_mode = \"0660\"\n\
                 lua_socket_group = \"dovecot\"\nlua_peers = [\"a\"]\n[lda]\nlua = 1\n";
        let mut l = LuaListener {
            socket: Path::new("/s/auth-lua"),
            extra_peers: &["101".to_string()],
            group: None,
        };
        let out = with_lua(t, &l);
        assert!(out.contains("lua = [\"unix:/s/auth-lua\"]\n"), "{out}");
        assert!(
            out.contains("lua_peers = [\"root\", \"dovecot\", \"101\"]\n"),
            "{out}"
        );
        assert!(out.contains("lua_socket_mode = \"0660\"\n"), "{out}");
        assert!(out.contains("lua_socket_group = \"dovecot\"\n"), "{out}");
        assert!(!out.contains("unix:/x"), "{out}");
        assert!(!out.contains("\"a\""), "{out}");
        // Other sections keep their lines.
        assert!(out.ends_with("[lda]\nlua = 1\n"), "{out}");
        l.group = Some("104".into());
        let out = with_lua(t, &l);
        assert!(out.contains("lua_socket_group = \"104\"\n"), "{out}");
        assert!(!out.contains("\"dovecot\"\nlua_peers = [\"a"), "{out}");
        assert_eq!(out.matches("lua_socket_group").count(), 1, "{out}");
    }
}
