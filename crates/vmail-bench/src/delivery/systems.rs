//! The five ways `vmail-bench delivery` gets a message from Postfix's queue into a Maildir.
//! Each has a private Postfix of its own with the same main.cf (contrib's `socketmap:` lines
//! against one vmail-lookupd, so the address checks cost the same everywhere) apart from
//! `virtual_transport`:
//! - **pipe**: contrib's `vmail` pipe(8) service running the release vmail-lda, a process per
//!   recipient (`vmail_destination_recipient_limit = 1`, as contrib has it);
//! - **lmtpd**: `lmtp:unix:` to vmail-lmtpd, configured from contrib's `[lmtpd]`;
//! - **dovecot23**: `lmtp:unix:` to Dovecot 2.3's LMTP (host), its userdb contrib's dict
//!   route to vmail-authd;
//! - **dovecot24**: `lmtp:unix:` to Dovecot 2.4's LMTP in the Debian 13 root, its userdb
//!   contrib's Lua route to vmail-authd (how the Debian 13 issue wires Dovecot);
//! - **sink**: `lmtp:unix:` to an LMTP server that accepts and discards (`sink.rs`).
//!
//! Each Dovecot writes into a mail base of its own, so no Maildir of theirs holds another's
//! files (Dovecot reads `new/` when it saves; other systems' files would cost it). The pipe
//! and lmtpd share lookupd's `[mailbox]` base, as they would on a host.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vmail_test_support::contrib;
use vmail_test_support::dovecot::PrivateDovecot;
use vmail_test_support::postfix::{PostfixBuilder, PrivatePostfix};
use vmail_test_support::root::{SharedDir, SystemRoot};
use vmail_test_support::{free_port, set_mode};

use super::rss::Probe;
use super::sink::Sink;
use crate::dovecot_auth::root24;
use crate::dovecot_auth::systems::{root_dovecot_ids, Authd, Contrib, LuaListener};
use crate::stack::setup::{
    common_dovecot, contrib_main_cf, start_dovecot, start_postfix, unix_paths, vmail_toml, Daemon,
    Env,
};

/// The systems, in the order of the table: key, label.
pub const SYSTEMS: [(&str, &str); 5] = [
    ("pipe", "pipe(8) -> vmail-lda"),
    ("lmtpd", "lmtp -> vmail-lmtpd"),
    (
        "dovecot23",
        "lmtp -> Dovecot 2.3 LMTP (dict userdb -> authd)",
    ),
    (
        "dovecot24",
        "lmtp -> Dovecot 2.4 LMTP (Lua userdb -> authd)",
    ),
    ("sink", "lmtp -> discarding sink (ceiling)"),
];

/// How a system's deliveries are counted.
pub enum Counter {
    /// Files in the `new/` directories under this base.
    Maildir(PathBuf),
    Sink(Sink),
}

/// One running system.
pub struct System {
    pub key: &'static str,
    pub postfix: PrivatePostfix,
    /// An smtpd that puts every message on hold (the queue-drain figure fills the queue
    /// through it, then releases).
    pub hold_port: u16,
    pub counter: Counter,
    pub rss: Probe,
    /// What the table's legend says about it.
    pub note: String,
    /// For `pipe`: `virtual_transport` with GNU time around vmail-lda (the RSS figure).
    pub rss_transport: Option<String>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// What every system's Postfix has besides its transport: contrib's main.cf lines (maps
/// through lookupd at `spool`), room for the 30 MiB messages, and the hold listener.
fn postfix_for(spool: &Path, transport: &str, hold_port: u16) -> PostfixBuilder {
    let mut b = PostfixBuilder::new();
    for line in contrib_main_cf(spool) {
        if !line.starts_with("virtual_transport ") {
            b = b.main(&line);
        }
    }
    b.main(&format!("virtual_transport = {transport}"))
        .main("message_size_limit = 104857600")
        .main("mailbox_size_limit = 0")
        .main("virtual_mailbox_limit = 0")
        .master(&format!(
            "127.0.0.1:{hold_port} inet n - n - - smtpd\n  -o syslog_name=postfix/hold\n  \
             -o smtpd_data_restrictions=check_client_access,static:HOLD"
        ))
}

/// Dovecot's LMTP listener at `socket` (absolute: Dovecot takes a listener name starting
/// with `/` as its path), open to Postfix's lmtp client; `protocols` gains `lmtp`.
/// No `lmtp_user_concurrency_limit` (2.3's default; 2.4 spells it `unlimited`): 2.4's
/// default of 10 answers "451 4.3.0 Too many concurrent deliveries for user" when Postfix's
/// 20 connections carry more messages for one mailbox at once, and the deferred messages
/// would wait minutes in Postfix's queue.
fn lmtp_conf(socket: &Path, v24: bool) -> String {
    format!(
        "protocols = imap lmtp\nlmtp_user_concurrency_limit = {}\n\
         service lmtp {{\n  unix_listener {} {{\n    mode = 0666\n  }}\n}}\n",
        if v24 { "unlimited" } else { "0" },
        socket.display()
    )
}

/// Shared by the systems: the vmail config of lookupd and the LDA.
pub struct Shared {
    pub spool: PathBuf,
    pub cfg: PathBuf,
    _lookupd: Daemon,
}

impl Shared {
    /// lookupd from contrib's vmail.toml (the maps of every system's Postfix, and the
    /// pipe system's vmail-lda), Maildirs of that config under `ENV/mail-pipe`.
    pub fn start(env: &Env) -> Result<Shared> {
        let spool = contrib::spool_dir(&env.work, &SystemRoot::host())?;
        let run = env.work.join("run-vmail");
        std::fs::create_dir_all(&run)?;
        set_mode(&run, 0o755);
        let pw_file = env.work.join("db-password");
        contrib::write_password_file(&pw_file, &env.db.password, &env.user)?;
        let base = env.mail_base("mail-pipe")?;
        let cfg = env.work.join("vmail.toml");
        std::fs::write(&cfg, vmail_toml(env, &spool, &run, &base, &pw_file)?)?;
        set_mode(&cfg, 0o644);
        let c = vmail_config::load(Some(&cfg)).context("load the generated vmail.toml")?;
        let mut socks = unix_paths(&c.config.lookupd.socketmap);
        socks.extend(unix_paths(&c.config.lookupd.lda));
        let lookupd = Daemon::spawn(
            "vmail-lookupd",
            &env.lookupd,
            &cfg,
            &env.work.join("state-lookupd"),
            &socks,
            None,
        )?;
        Ok(Shared {
            spool,
            cfg,
            _lookupd: lookupd,
        })
    }
}

pub struct Bins {
    pub lmtpd: PathBuf,
}

/// Starts system `key`.
pub fn start(
    key: &'static str,
    env: &Env,
    shared: &Shared,
    bins: &Bins,
    root: &SystemRoot,
    contrib_dir: &Path,
) -> Result<System> {
    let u = &env.user;
    let hold_port = free_port();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut rss_transport = None;
    let lmtp = |sock: &Path| {
        let transport = format!("lmtp:unix:{}", sock.display());
        postfix_for(&shared.spool, &transport, hold_port)
    };
    let (b, counter, rss, note) = match key {
        "pipe" => {
            let user = format!("{}:{}", u.name, u.group);
            let service =
                contrib::contrib_vmail_service(&env.lda.display().to_string(), &shared.cfg, &user);
            // The RSS figure's copy: GNU time records vmail-lda's peak RSS (KiB) per run.
            let times = env.work.join("vmail-lda.rss");
            std::fs::write(&times, "")?;
            std::os::unix::fs::chown(&times, Some(u.uid), Some(u.gid))?;
            let timed = service.replacen("vmail ", "vmailrss ", 1).replacen(
                "argv=",
                &format!("argv=/usr/bin/time -a -o {} -f %M ", times.display()),
                1,
            );
            if timed == service {
                bail!("contrib's vmail service has no argv= (update delivery/systems.rs)");
            }
            rss_transport = Some("vmailrss".to_string());
            let base = env.work.join("mail-pipe");
            (
                postfix_for(&shared.spool, "vmail", hold_port)
                    .master(&service)
                    .master(&timed)
                    .main("vmailrss_destination_recipient_limit = 1"),
                Counter::Maildir(base),
                Probe::TimeFile(times),
                "contrib's pipe(8) service, the release (static) vmail-lda, recipients through lookupd".to_string(),
            )
        }
        "lmtpd" => {
            // contrib's vmail.toml, as lookupd and the pipe's vmail-lda read it: lmtpd asks
            // lookupd's `recipient` map ([lda] lookupd) as vmail-lda does, and lookupd's
            // [mailbox] templates place the Maildirs, so both write under `mail-pipe`
            // (the systems run one at a time; each counts what arrives while it runs).
            let base = env.work.join("mail-pipe");
            let cfg = shared.cfg.clone();
            let text = std::fs::read_to_string(&cfg)?;
            let c = vmail_config::load(Some(&cfg)).context("load vmail.toml")?;
            let socks = unix_paths(&c.config.lmtpd.listen);
            let sock = socks.first().cloned().context("no unix: [lmtpd] listen")?;
            // Its spool: contrib leaves the default, `lmtp` in the daemon's state directory
            // (VMAIL_STATE_DIR below; the loaded config resolved it against ours), which
            // belongs to the user it runs as, as the package's postinst makes /var/lib/vmail.
            if text.lines().any(|l| l.trim_start().starts_with("spool =")) {
                bail!("contrib's [lmtpd] now sets spool (update delivery/systems.rs)");
            }
            let state = env.work.join("state-lmtpd");
            let spool = state.join("lmtp");
            std::fs::create_dir_all(&spool)?;
            std::os::unix::fs::chown(&spool, Some(u.uid), Some(u.gid))?;
            set_mode(&spool, 0o700);
            let d = Daemon::spawn("vmail-lmtpd", &bins.lmtpd, &cfg, &state, &socks, None)?;
            let pid = d.pid();
            keep.push(Box::new(d));
            (
                lmtp(&sock),
                Counter::Maildir(base),
                Probe::Pid(pid),
                format!(
                    "contrib's [lmtpd] (max_connections {}, max_message_size {}, spool_memory {}), recipients through lookupd ([lda] lookupd = {:?}), Postfix's lmtp defaults",
                    c.config.lmtpd.max_connections,
                    c.config.lmtpd.max_message_size,
                    c.config.lmtpd.spool_memory,
                    c.config.lda.lookupd
                ),
            )
        }
        "dovecot23" => {
            let base = env.mail_base("mail-dovecot23")?;
            let authd = Authd::start(env, "authd-dovecot23", &base, None, false)?;
            let (dict, auth) = contrib::contrib_dict_files(&authd.dict);
            let sock = env.work.join("dovecot23-lmtp");
            let d = start_dovecot(
                common_dovecot(u)
                    .imap_only()
                    .file("dovecot-dict-auth.conf.ext", &dict)
                    .conf(&auth)
                    .conf(&lmtp_conf(&sock, false)),
            )?;
            let note = format!("Dovecot {}, authd {}", d.version, authd.cache);
            let probe = Probe::Dovecot(d.dir.path().join("run/master.pid"));
            keep.push(Box::new(authd));
            keep.push(Box::new(d));
            (lmtp(&sock), Counter::Maildir(base), probe, note)
        }
        "dovecot24" => {
            root24::check_root(root)?;
            // authd's socket, the LMTP socket and the homes in a dir both sides see at one
            // path; the root's Dovecot has its own uids and gids.
            let dir: SharedDir = root.shared_tempdir("vmail-bench-lmtp24");
            let lua_sock = dir.path().join("authd-lua.sock");
            let sock = dir.path().join("dovecot24-lmtp");
            let base = dir.path().join("mail");
            std::fs::create_dir(&base)?;
            std::os::unix::fs::chown(&base, Some(u.uid), Some(u.gid))?;
            set_mode(&base, 0o755);
            set_mode(dir.path(), 0o755);
            let (peers, group) = root_dovecot_ids(root);
            let l = LuaListener {
                socket: &lua_sock,
                extra_peers: &peers,
                group,
            };
            let authd = Authd::start(env, "authd-dovecot24", &base, Some(&l), false)?;
            let contrib = Contrib {
                dir: contrib_dir.to_path_buf(),
            };
            let (lua, conf) =
                contrib.lua24(&lua_sock.display().to_string(), "@DIR@/vmail-auth.lua")?;
            let d: PrivateDovecot = root24::start(
                root,
                u,
                &format!("{conf}\n{}", lmtp_conf(&sock, true)),
                &[("vmail-auth.lua", lua)],
            )?;
            let note = format!("Dovecot {}, authd {}", d.version, authd.cache);
            let probe = Probe::Dovecot(d.dir.real().join("run/master.pid"));
            keep.push(Box::new(authd));
            keep.push(Box::new(d));
            keep.push(Box::new(dir));
            (lmtp(&sock), Counter::Maildir(base), probe, note)
        }
        "sink" => {
            let sock = env.work.join("sink.sock");
            let sink = Sink::start(&sock)?;
            (
                lmtp(&sock),
                Counter::Sink(sink),
                Probe::None,
                "accepts every recipient, reads the data to its end, discards it".to_string(),
            )
        }
        other => bail!("no system {other}"),
    };
    let postfix = start_postfix(b)?;
    Ok(System {
        key,
        postfix,
        hold_port,
        counter,
        rss,
        note,
        rss_transport,
        _keep: keep,
    })
}
