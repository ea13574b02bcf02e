//! The classic system: the HowtoForge setup's `proxy:mysql:` maps, saslauthd with pam_mysql
//! (SMTP AUTH), Dovecot's SQL passdb and dovecot-lda behind `pipe(8)`.

use super::*;

/// `/etc/pam.d/NAME` for pam_mysql, removed again when dropped.
pub struct PamService {
    pub name: String,
    path: PathBuf,
}

impl PamService {
    /// The how-to's `/etc/pam.d/smtp`, under a name of our own (Postfix passes
    /// `smtpd_sasl_service` to saslauthd, which uses it as the PAM service).
    fn create(env: &Env) -> Result<PamService> {
        let name = format!("vmail-bench-stack-{}", std::process::id());
        let path = Path::new("/etc/pam.d").join(&name);
        // pam_mysql's host= takes host:port for a port other than the default.
        let host = match env.db_port() {
            "3306" => "127.0.0.1".to_string(),
            p => format!("127.0.0.1:{p}"),
        };
        let args = format!(
            "user={} passwd={} host={host} db={} table=users usercolumn=email \
             passwdcolumn=password crypt=1",
            env.db.user, env.db.password, env.db.name
        );
        let text = format!(
            "# written by vmail-bench stack (removed at its end)\n\
             auth    required   pam_mysql.so {args}\n\
             account sufficient pam_mysql.so {args}\n"
        );
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        set_mode(&path, 0o600);
        Ok(PamService { name, path })
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A cyrus `saslauthd -a pam` on a private run dir, as Debian starts it
/// (`/etc/default/saslauthd`: 5 processes) with the how-to's options (`-c` credential cache,
/// `-r` realm joined to the login).
pub struct Saslauthd {
    pub dir: PathBuf,
    cache: bool,
    running: bool,
}

impl Saslauthd {
    pub fn start(dir: &Path, cache: bool) -> Result<Saslauthd> {
        std::fs::create_dir_all(dir)?;
        // smtpd runs as postfix and connects to DIR/mux.
        set_mode(dir, 0o755);
        let mut me = Saslauthd {
            dir: dir.to_path_buf(),
            cache,
            running: false,
        };
        me.restart()?;
        Ok(me)
    }

    pub fn mux(&self) -> PathBuf {
        self.dir.join("mux")
    }

    /// (Re)starts it: a fresh process has an empty credential cache.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // The cache file survives the process; a new one starts empty only without it.
        for f in ["cache.mmap", "cache.flock", "mux", "mux.accept"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let mut c = Command::new("saslauthd");
        c.args(["-a", "pam", "-r", "-n", "5", "-m"]).arg(&self.dir);
        if self.cache {
            c.arg("-c");
        }
        // It forks into the background; its log goes to syslog, which does not exist here.
        let out = c
            .stdin(Stdio::null())
            .output()
            .context("run saslauthd (apt-get install sasl2-bin)")?;
        if !out.status.success() {
            bail!(
                "saslauthd -m {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
        let mux = self.mux();
        if !wait_until(Duration::from_secs(10), || {
            UnixStream::connect(&mux).is_ok()
        }) {
            bail!("saslauthd never listened on {}", mux.display());
        }
        Ok(())
    }

    /// Its processes: every `saslauthd` whose command line names our run dir.
    fn pids(&self) -> Vec<u32> {
        let dir = self.dir.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.ends_with(b"saslauthd"))
                        && args.contains(&dir.as_bytes())
                })
            })
            .collect()
    }

    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        for pid in self.pids() {
            signal(pid, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(5), || self.pids().is_empty()) {
            for pid in self.pids() {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Saslauthd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid we found running our own command line.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

pub struct Classic {
    pub postfix: PrivatePostfix,
    pub dovecot: PrivateDovecot,
    pub sasl_cached: Saslauthd,
    pub sasl_uncached: Saslauthd,
    /// smtpd with AUTH through the cached saslauthd (the how-to's `-c`).
    pub auth_port: u16,
    /// smtpd with AUTH through a saslauthd without `-c`.
    pub auth_port_nocache: u16,
    pub mail_base: PathBuf,
    /// smtpd of the RCPT figure.
    pub rcpt_port: u16,
    /// Kept until the end: saslauthd reads it at every authentication.
    _pam: PamService,
}

impl Classic {
    pub fn start(env: &Env) -> Result<Classic> {
        let mail_base = env.mail_base("mail-classic")?;
        let pam = PamService::create(env)?;
        let sasl_cached = Saslauthd::start(&env.work.join("saslauthd"), true)?;
        let sasl_uncached = Saslauthd::start(&env.work.join("saslauthd-nocache"), false)?;
        let u = &env.user;

        let dovecot = sql_dovecot(env, &mail_base)?;

        // Postfix: the how-to's main.cf map and transport lines, its mysql-virtual_*.cf files
        // (the same queries as crates/vmail-lookupd/tests/postfix.rs), its dovecot transport.
        let cf = |query: &str| {
            format!(
                "user = {}\npassword = {}\ndbname = {}\nhosts = 127.0.0.1:{}\nquery = {query}\n",
                env.db.user,
                env.db.password,
                env.db.name,
                env.db_port()
            )
        };
        let mysql = |name: &str| format!("mysql:@DIR@/etc/mysql-virtual_{name}.cf");
        let sasl_conf = |mux: &Path| {
            format!(
                "pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\nsaslauthd_path: {}\n",
                mux.display()
            )
        };
        let auth_port = free_port();
        let auth_port_nocache = free_port();
        let rcpt_port = free_port();
        let postfix = start_postfix(
            common_postfix(rcpt_port)
                .file(
                    "etc/mysql-virtual_domains.cf",
                    &cf("SELECT 'virtual' FROM domains WHERE domain='%s'"),
                )
                .file(
                    "etc/mysql-virtual_forwardings.cf",
                    &cf("SELECT destination FROM forwardings WHERE source='%s'"),
                )
                .file(
                    "etc/mysql-virtual_mailboxes.cf",
                    &cf("SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email='%s'"),
                )
                .file(
                    "etc/mysql-virtual_email2email.cf",
                    &cf("SELECT email FROM users WHERE email='%s'"),
                )
                .file(
                    "etc/mysql-virtual_transports.cf",
                    &cf("SELECT transport FROM transport WHERE domain='%s'"),
                )
                // The how-to's /etc/postfix/sasl/smtpd.conf: Debian's Postfix reads
                // $config_directory/sasl/NAME.conf (NAME = smtpd_sasl_path), before and
                // regardless of cyrus_sasl_config_path.
                .file("etc/sasl/smtpd.conf", &sasl_conf(&sasl_cached.mux()))
                .file("etc/sasl/smtpd-nocache.conf", &sasl_conf(&sasl_uncached.mux()))
                .main(&format!("virtual_mailbox_domains = proxy:{}", mysql("domains")))
                .main(&format!(
                    "virtual_alias_maps = proxy:{}, {}",
                    mysql("forwardings"),
                    mysql("email2email")
                ))
                .main(&format!("virtual_mailbox_maps = proxy:{}", mysql("mailboxes")))
                .main(&format!("transport_maps = proxy:{}", mysql("transports")))
                .main("virtual_transport = dovecot")
                .main("dovecot_destination_recipient_limit = 1")
                // Cyrus SASL; the service name is the PAM service saslauthd uses.
                .main("smtpd_sasl_type = cyrus")
                .main("smtpd_sasl_path = smtpd")
                .main("cyrus_sasl_config_path = @DIR@/etc/sasl")
                .main(&format!("smtpd_sasl_service = {}", pam.name))
                .main("broken_sasl_auth_clients = yes")
                .master(&format!(
                    "dovecot unix - n n - - pipe\n  flags=DRhu user={}:{} argv={DOVECOT_LDA} \
                     -c {} -f ${{sender}} -d ${{recipient}}",
                    u.name,
                    u.group,
                    dovecot.conf_path().display()
                ))
                .master(&auth_listener(auth_port, "auth", &[]))
                .master(&auth_listener(
                    auth_port_nocache,
                    "auth-nocache",
                    &["smtpd_sasl_path=smtpd-nocache".to_string()],
                )),
        )?;
        Ok(Classic {
            postfix,
            dovecot,
            sasl_cached,
            sasl_uncached,
            auth_port,
            auth_port_nocache,
            mail_base,
            rcpt_port,
            _pam: pam,
        })
    }
}
