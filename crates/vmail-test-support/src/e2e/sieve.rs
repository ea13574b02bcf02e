//! Users with a Sieve script (issue 19) in a [`Stack`]: their messages go through Dovecot's
//! LDA and Pigeonhole, from vmail-lda (pipe(8)) and from vmail-lmtpd alike.

use std::path::Path;

use super::Stack;

impl Stack {
    /// Whether the lane has Pigeonhole (package dovecot-sieve); a loud skip if not (a failure
    /// under CI).
    pub fn have_pigeonhole(&self, test: &str) -> bool {
        let plugin = Path::new("/usr/lib/dovecot/modules/lib90_sieve_plugin.so");
        let have = self.lane.root.host_path(plugin).exists();
        if !have {
            crate::skip(
                test,
                &format!(
                    "dovecot-sieve is not installed on lane {} (run scripts/test-deps)",
                    self.lane.name
                ),
            );
        }
        have
    }

    /// Gives `email` an active Sieve script as ManageSieve keeps it (`~/sieve/NAME.sieve`,
    /// linked from `~/.dovecot.sieve`), owned by the mail user, as whom Dovecot's LDA compiles
    /// it.
    pub fn give_sieve_script(&self, email: &str, script: &str) {
        let home = self.home(email);
        let sieve = home.join("sieve");
        std::fs::create_dir_all(&sieve).unwrap();
        let active = home.join(".dovecot.sieve");
        if active.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("sieve/main.sieve", &active).unwrap();
        }
        std::fs::write(sieve.join("main.sieve"), script).unwrap();
        let user = self.lane.mail_user();
        // The domain's directory too: the LDA, running as the mail user, makes the other homes
        // there.
        let domain = home.parent().unwrap();
        for p in [domain, &home, &sieve, &sieve.join("main.sieve")] {
            std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).unwrap();
        }
        std::os::unix::fs::lchown(&active, Some(user.uid), Some(user.gid)).unwrap();
    }
}
