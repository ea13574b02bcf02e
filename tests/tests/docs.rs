//! What the admin is told to configure does what it says (issue 20 item 6): the sender-login
//! map enforces nothing by itself, so every place that tells a postmaster to add
//! `smtpd_sender_login_maps` must also add a `*_sender_login_mismatch` restriction, or an
//! admin who follows it believes spoofing is prevented while any authenticated user can send
//! as anyone. (The restriction's effect through real Postfix is tested in `mail_flow.rs`.)

const MIGRATION: &str = include_str!("../../docs/MIGRATION.md");
use vmail_test_support::contrib::{CONTRIB_MAIN_CF as MAIN_CF, CONTRIB_MASTER_CF as MASTER_CF};

/// The indented (configuration) lines of a text, comments and prose left out.
fn settings(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn enforces(lines: &[&str]) -> bool {
    lines.iter().any(|l| {
        l.contains("smtpd_sender_restrictions")
            && (l.contains("reject_authenticated_sender_login_mismatch")
                || l.contains("reject_sender_login_mismatch")
                || l.contains("reject_known_sender_login_mismatch"))
    })
}

#[test]
fn every_sender_login_map_comes_with_its_enforcement() {
    // MIGRATION.md: the code block that adds the map also adds the restriction.
    let blocks: Vec<Vec<&str>> = MIGRATION
        .split("\n\n")
        .filter(|b| b.lines().all(|l| l.starts_with("    ") || l.is_empty()))
        .map(settings)
        .collect();
    let with_map: Vec<&Vec<&str>> = blocks
        .iter()
        .filter(|b| b.iter().any(|l| l.starts_with("smtpd_sender_login_maps")))
        .collect();
    assert!(
        !with_map.is_empty(),
        "MIGRATION.md no longer adds the sender-login map"
    );
    for b in with_map {
        assert!(
            enforces(b),
            "MIGRATION.md adds smtpd_sender_login_maps without a *_sender_login_mismatch restriction: {b:?}"
        );
    }
    // contrib: main.cf (authenticated clients of port 25) and the submission service.
    let main = settings(MAIN_CF);
    assert!(main
        .iter()
        .any(|l| l.starts_with("smtpd_sender_login_maps")));
    assert!(
        enforces(&main),
        "main.cf.vmail: the map without its enforcement"
    );
    let master = settings(MASTER_CF);
    assert!(
        master.iter().any(
            |l| l.contains("smtpd_sender_restrictions=") && l.contains("sender_login_mismatch")
        ),
        "master.cf.vmail: submission without reject_sender_login_mismatch"
    );
}
