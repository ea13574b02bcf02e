//! vmail-doc: writes the man pages and shell completions of every installed vmail program.
//! Each page is rendered from the very `clap::Command` its binary parses (exposed by each
//! program's library), so an option added to a program is in its page and its completions
//! the next time this runs; `vmail.toml(5)` is made from the shipped, commented
//! `contrib/vmail/vmail.toml` and the built-in defaults of `vmail_config::Config`.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

mod config_page;
mod page;
mod programs;

pub use config_page::{
    config_page, defaults as config_defaults, parse_reference, Item, Section, REFERENCE,
};
pub use page::render as render_page;
pub use programs::{programs, Program};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// What [`write_all`] wrote, for the caller to report.
#[derive(Debug, Default)]
pub struct Written {
    pub pages: Vec<PathBuf>,
    pub completions: Vec<PathBuf>,
}

/// The shells whose completions are written, and the file name each one loads on demand
/// (bash-completion and fish by the command's name, zsh by `_name` in `$fpath`).
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

/// The file name under which `shell` looks for the completions of `name`.
pub fn completion_file(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// Writes `man_dir/manN/NAME.N` for every program and vmail.toml(5), and
/// `completion_dir/{bash,zsh,fish}/FILE` for every program.
pub fn write_all(man_dir: &Path, completion_dir: &Path) -> Result<Written, Error> {
    let mut written = Written::default();
    let mut pages: Vec<(String, &str, String)> = programs()
        .into_iter()
        .map(|p| (p.name().to_string(), p.section, page::render(&p)))
        .collect();
    pages.push(("vmail.toml".into(), "5", config_page()));
    for (name, section, text) in pages {
        let path = man_dir
            .join(format!("man{section}"))
            .join(format!("{name}.{section}"));
        write(&path, text.as_bytes())?;
        written.pages.push(path);
    }
    for p in programs() {
        for (shell, dir) in SHELLS {
            let mut cmd = p.command.clone();
            let name = p.name().to_string();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut buf);
            let path = completion_dir.join(dir).join(completion_file(shell, &name));
            write(&path, &buf)?;
            written.completions.push(path);
        }
    }
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, bytes).map_err(err)
}
