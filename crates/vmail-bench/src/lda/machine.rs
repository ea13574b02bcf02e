//! The files and the machine around the deliveries: Maildirs counted, trees chowned to the
//! mail user, the file system type, whether a binary is statically linked, group names.

use super::*;

/// Files in every `new/` below `dir`: what the LDAs have delivered.
pub(super) fn count_delivered(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|f| f == "new") {
            n += std::fs::read_dir(&p).map_or(0, |r| r.count());
        } else {
            n += count_delivered(&p);
        }
    }
    n
}

pub(super) fn chown_tree(p: &Path, user: &MailUser) -> Result<()> {
    std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid))
        .with_context(|| format!("chown {}", p.display()))?;
    if p.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), user)?;
        }
    }
    Ok(())
}

pub(super) fn write_file(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?;
    vmail_test_support::set_mode(p, 0o644);
    Ok(())
}

pub(super) fn fs_type(p: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// "static" or "dynamic": whether the ELF binary at `p` names a program interpreter
/// (`PT_INTERP`, the dynamic loader). scripts/build-release links vmail-lda statically; a plain
/// `cargo build` does not, which the figures should say.
pub(super) fn link_mode(p: &Path) -> String {
    // The headers only: reading the whole binary would raise this process's peak RSS, which
    // every child's ru_maxrss inherits (see run_child).
    let mut head = Vec::new();
    match File::open(p).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)) {
        Ok(_) => link_mode_of(&head).into(),
        Err(e) => format!("unreadable: {e}"),
    }
}

pub(super) fn link_mode_of(elf: &[u8]) -> &'static str {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64 little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return "not ELF64 LE";
    }
    let (Some(phoff), Some(size), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return "truncated ELF";
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return "truncated ELF";
    };
    let mut interp = false;
    for i in 0..num {
        match elf.get(phoff + i * size..phoff + i * size + 4) {
            Some(t) => interp |= t == 3u32.to_le_bytes(),
            None => return "truncated ELF",
        }
    }
    if interp {
        "dynamic"
    } else {
        "static"
    }
}

/// The name of group `gid` (lookupd's socket is given to the group the LDA runs as).
pub(super) fn group_name(gid: u32) -> Result<String> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == gid.to_string()).then(|| name.to_string())
        })
        .with_context(|| format!("no group with gid {gid} in /etc/group"))
}
