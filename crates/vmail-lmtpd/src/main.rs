//! `vmail-lmtpd`: see the library; the skeleton of `main` is `vmail_daemon::main`.

fn main() -> anyhow::Result<()> {
    vmail_daemon::main::<vmail_lmtpd::Lmtpd>(&vmail_lmtpd::ABOUT)
}
