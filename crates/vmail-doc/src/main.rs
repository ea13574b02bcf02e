//! `vmail-doc [DIR]`: writes DIR/man (man pages) and DIR/completions (bash, zsh, fish) for
//! every installed vmail program; DIR defaults to `target`. See the library.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target".into()));
    anyhow::ensure!(args.next().is_none(), "usage: vmail-doc [DIR]");
    let written = vmail_doc::write_all(&dir.join("man"), &dir.join("completions"))
        .context("writing the documentation")?;
    for path in written.pages.iter().chain(&written.completions) {
        println!("{}", path.display());
    }
    Ok(())
}
