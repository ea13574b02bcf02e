//! The ceiling: the same Postfix and Dovecot with backends that do no work (`texthash:`
//! maps, an always-OK auth server, `/bin/true` as the transport, a trivial socketmap server).

use super::*;

pub struct Ceiling {
    /// The `texthash:` instance: the delivery figure, SMTP AUTH, and the RCPT reference.
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    pub auth_port: u16,
    /// smtpd of the RCPT reference figure (`texthash:` maps, no IPC).
    pub rcpt_port: u16,
    /// The `socketmap:` instance: contrib's main.cf.vmail lines against the trivial map
    /// server. Only its RCPT listener is measured.
    pub map_postfix: PrivatePostfix,
    /// smtpd of the RCPT ceiling (`socketmap:` maps -> trivial map server).
    pub map_rcpt_port: u16,
    /// The runtime of the always-OK auth server and the trivial map server (dropped after
    /// both Postfix instances).
    _rt: tokio::runtime::Runtime,
}

/// The `pipe(8)` transport of the delivery ceiling.
pub const CEILING_TRANSPORT: &str = "bintrue";

impl Ceiling {
    pub fn start(env: &Env, users: usize, aliases: usize) -> Result<Ceiling> {
        let u = &env.user;
        let mail_base = env.mail_base("mail-ceiling")?;
        // The same addresses as the database: served by the trivial map server, and written
        // out as texthash: tables (read once per process).
        let tables = Arc::new(Tables::bench(users, aliases));
        let auth_sock = env.work.join("ceiling-auth.sock");
        let map_sock = env.work.join("ceiling-map.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ceiling-srv")
            .enable_all()
            .build()?;
        let (auth_srv, map_srv) = {
            let _g = rt.enter();
            (
                tokio::net::UnixListener::bind(&auth_sock)
                    .with_context(|| format!("bind {}", auth_sock.display()))?,
                tokio::net::UnixListener::bind(&map_sock)
                    .with_context(|| format!("bind {}", map_sock.display()))?,
            )
        };
        // smtpd, cleanup and trivial-rewrite run as postfix.
        set_mode(&auth_sock, 0o666);
        set_mode(&map_sock, 0o666);
        rt.spawn(crate::stack::load::serve_always_ok(auth_srv));
        rt.spawn(crate::stack::trivial_map::serve(map_srv, tables.clone()));

        let dovecot = start_dovecot(
            common_dovecot(u)
                .passdb("driver = static\nargs = nopassword=y")
                .userdb(&static_userdb(u, &mail_base)),
        )?;
        let bintrue = format!(
            "{CEILING_TRANSPORT} unix - n n - - pipe\n  flags=DRhu user={}:{} argv=/bin/true",
            u.name, u.group
        );
        let auth_port = free_port();
        let rcpt_port = free_port();
        let postfix = start_postfix(
            common_postfix(rcpt_port)
                .file("etc/domains", &tables.texthash("domains"))
                .file("etc/mailboxes", &tables.texthash("mailboxes"))
                .file("etc/aliases", &tables.texthash("aliases"))
                .file("etc/transport", &tables.texthash("transport"))
                .main("virtual_mailbox_domains = texthash:@DIR@/etc/domains")
                .main("virtual_mailbox_maps = texthash:@DIR@/etc/mailboxes")
                .main("virtual_alias_maps = texthash:@DIR@/etc/aliases")
                .main("transport_maps = texthash:@DIR@/etc/transport")
                .main(&format!("virtual_transport = {CEILING_TRANSPORT}"))
                .main(&format!(
                    "{CEILING_TRANSPORT}_destination_recipient_limit = 1"
                ))
                .main("smtpd_sasl_type = dovecot")
                .main(&format!("smtpd_sasl_path = {}", auth_sock.display()))
                .master(&bintrue)
                .master(&auth_listener(auth_port, "auth", &[])),
        )?;

        // contrib's main.cf.vmail as the vmail instance has it, every socketmap pointed at
        // the trivial map server; only what no RCPT touches is moved off vmail's daemons
        // (SASL to the always-OK server, final delivery to /bin/true).
        let map_rcpt_port = free_port();
        let mut b = common_postfix(map_rcpt_port);
        for line in socketmaps_to(&contrib_main_cf(&env.work.join("spool")), &map_sock)? {
            b = b.main(&line);
        }
        let map_postfix = start_postfix(
            b.main(&format!("virtual_transport = {CEILING_TRANSPORT}"))
                .main(&format!(
                    "{CEILING_TRANSPORT}_destination_recipient_limit = 1"
                ))
                .main(&format!("smtpd_sasl_path = {}", auth_sock.display()))
                .master(&bintrue),
        )?;
        Ok(Ceiling {
            postfix,
            dovecot,
            auth_port,
            rcpt_port,
            map_postfix,
            map_rcpt_port,
            _rt: rt,
        })
    }
}

/// `main.cf` lines with every `socketmap:unix:PATH:NAME` table replaced by
/// `socketmap:unix:SOCK:NAME`; fails when there is none (contrib changed under us).
pub(super) fn socketmaps_to(lines: &[String], sock: &Path) -> Result<Vec<String>> {
    let mut replaced = 0;
    let out: Vec<String> = lines
        .iter()
        .map(|line| {
            let Some((name, value)) = line.split_once('=') else {
                return line.clone();
            };
            if !value.contains("socketmap:unix:") {
                return line.clone();
            }
            // Table lists are separated by commas and/or whitespace (postconf(5)).
            let tables: Vec<String> = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(
                    |t| match (t.strip_prefix("socketmap:unix:"), t.rsplit_once(':')) {
                        (Some(_), Some((_, map))) => {
                            replaced += 1;
                            format!("socketmap:unix:{}:{map}", sock.display())
                        }
                        _ => t.to_string(),
                    },
                )
                .collect();
            format!("{} = {}", name.trim(), tables.join(", "))
        })
        .collect();
    if replaced == 0 {
        bail!("contrib/postfix/main.cf.vmail has no socketmap:unix: table (update crates/vmail-bench/src/stack/setup/ceiling.rs)");
    }
    Ok(out)
}
