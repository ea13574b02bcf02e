//! `vmail-lda-direct`, which vmail-lda execs from its own directory when lookupd cannot
//! answer, is the binary of another package (it links the database code that vmail-lda must
//! not), so `cargo test -p vmail-lda` does not build it, and a copy found by path could be
//! missing or stale. [`sibling`] builds it beside `vmail-lda`, where vmail-lda looks for it:
//! once per test binary, and incrementally (a no-op when it is fresh).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of a fresh `vmail-lda-direct` beside the `vmail-lda` under test.
pub fn sibling() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let lda = PathBuf::from(env!("CARGO_BIN_EXE_vmail-lda"));
            let profile_dir = lda.parent().expect("vmail-lda is in target/<profile>");
            let target = profile_dir.parent().expect("target/<profile> has a parent");
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev",
                Some(p) => p,
            };
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "vmail-lda-direct"])
                .args(["--bin", "vmail-lda-direct", "--profile", profile])
                .arg("--target-dir")
                .arg(target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building vmail-lda-direct failed");
            profile_dir.join("vmail-lda-direct")
        })
        .clone()
}
