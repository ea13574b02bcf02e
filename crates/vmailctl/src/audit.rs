//! `vmailctl audit`: the rows vmail matches differently from the classic `mysql:` maps,
//! named one per line so that they can be fixed before the switch (docs/MIGRATION.md, step 0).

use anyhow::Result;
use serde_json::json;
use vmail_directory::Directory;

/// Exit status when some row is never matched (as `query` uses for "not found").
const EXIT_UNMATCHED: u8 = 1;

pub(crate) async fn run(dir: &Directory, as_json: bool) -> Result<u8> {
    let findings = dir.audit().await?;
    let unmatched = findings.iter().filter(|f| !f.problem.matched()).count();
    if as_json {
        println!("{}", json!({ "ok": unmatched == 0, "rows": findings }));
    } else {
        for f in &findings {
            // Debug quoting shows the spaces and control characters that are the problem.
            println!(
                "{}.{} {:?}: {}",
                f.table,
                f.column,
                f.value,
                f.problem.explain()
            );
        }
        let matched = findings.len() - unmatched;
        println!("{unmatched} row(s) vmail never matches, {matched} matched differently from the classic maps");
    }
    Ok(if unmatched == 0 { 0 } else { EXIT_UNMATCHED })
}
