//! Issue 15.5: the time a failure takes does not tell whether the login exists, even when
//! the client first makes authd check a cheap legacy hash. Its own test binary, so no other
//! test competes for the two cores while it measures.

use std::time::{Duration, Instant};

use vmail_authd::{Authenticator, Verdict};
use vmail_directory::Directory;
use vmail_passwd::Scheme;
use vmail_test_support::authd::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// alice has a SHA512-CRYPT hash, bob the how-to's DES crypt. Before each measured attempt
/// the "attacker" fails a login as bob, so the last real check was a cheap DES one. Known
/// and unknown logins are measured interleaved (in alternating order) and compared by
/// median; a loaded machine gets three tries, the bug is a factor of ten.
#[test]
fn unknown_and_existing_logins_cost_the_same_with_mixed_schemes() {
    let sha = vmail_passwd::hash(Scheme::Sha512Crypt, b"wonderland").unwrap();
    unknown_costs_what_alice_costs(&sha, "SHA512-CRYPT");
}

/// The same with alice's hash as `doveadm pw -s BLF-CRYPT` writes it: bcrypt at cost 5,
/// and `hash_scheme = "BLF-CRYPT"` as docs/GUIDE.md advises for such a database. A dummy
/// check in the scheme alone (bcrypt, at `hash()`'s cost 10) took 40 times what alice's
/// check takes.
#[test]
fn unknown_and_existing_logins_cost_the_same_with_other_cost_parameters() {
    unknown_costs_what_alice_costs(
        "{BLF-CRYPT}$2y$05$IKNXv1goiDCrvjUQMD36g.F7GLnAb7FT0ja7v8Uxhtd5yUw5K1UPa",
        "BLF-CRYPT",
    );
}

/// A directory to measure on: test defaults with no failure delay, and no penalty delays or
/// blocks (10/8 trusted), so that only what the answer costs is measured.
fn measuring_config() -> (tempfile::TempDir, vmail_config::Config) {
    let (t, config) = vmail_test_support::sqlite_config();
    let mut config = test_config(config);
    config.authd.failure_delay_ms = 0;
    config.authd.max_delay_ms = 0;
    config.authd.trusted_networks = vec!["10.0.0.0/8".into()];
    (t, config)
}

/// Runs `f` with an authenticator on `config`, on a runtime of one worker.
fn with_authenticator(config: &vmail_config::Config, f: impl AsyncFnOnce(&Authenticator)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = Directory::open(config).await.unwrap();
        let a = Authenticator::new(dir, config).unwrap();
        f(&a).await
    });
}

/// The tests of this binary measure one at a time.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn unknown_costs_what_alice_costs(sha: &str, hash_scheme: &str) {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (_t, mut config) = measuring_config();
    config.passwords.hash_scheme = hash_scheme.into();
    populate(
        &config,
        &["example.org"],
        &[
            ("alice@example.org", sha),
            ("bob@example.org", "abNANd1rDfiNc"),
        ],
    );
    with_authenticator(&config, async |a| {
        let rip = Some("10.0.0.1".parse().unwrap());
        let attempt = |login: &'static str| {
            async move {
                // The cheap DES check the client chooses to run first.
                let v = a
                    .authenticate(b"bob@example.org", b"wrong-pw", "smtp", rip)
                    .await;
                assert_eq!(v, Verdict::Fail);
                let t = Instant::now();
                let v = a
                    .authenticate(login.as_bytes(), b"wrong-pw", "smtp", rip)
                    .await;
                assert_eq!(v, Verdict::Fail);
                t.elapsed()
            }
        };
        let mut report = Vec::new();
        for _try in 0..3 {
            let (mut known, mut unknown) = (Vec::new(), Vec::new());
            for i in 0..120 {
                if i % 2 == 0 {
                    known.push(attempt("alice@example.org").await);
                    unknown.push(attempt("nobody@example.org").await);
                } else {
                    unknown.push(attempt("nobody@example.org").await);
                    known.push(attempt("alice@example.org").await);
                }
            }
            // The first rounds warm caches and threads up.
            let (k, u) = (median(known.split_off(20)), median(unknown.split_off(20)));
            let diff = k.abs_diff(u).as_secs_f64() / k.as_secs_f64();
            eprintln!(
                "median existing {k:?}, unknown {u:?}: {:.1} % apart",
                diff * 100.0
            );
            report.push((k, u));
            if diff <= 0.10 {
                return;
            }
        }
        panic!("unknown and existing logins differ by more than 10 % in median: {report:?}");
    });
}

/// Review 2: dave may use SMTP only. After his own SMTP login, his right password over
/// IMAP hit the recently-verified cache and was refused at once (0.16 ms), while a wrong
/// password costs a hash (7.49 ms median): the refusal told the password was right. Both
/// are measured with `Pacing::Caller` (the Lua channel: no sleep hides anything),
/// interleaved, and compared by median; a loaded machine gets three tries.
#[test]
fn a_refused_recent_login_costs_what_a_wrong_password_costs() {
    use vmail_authd::authenticator::Pacing;
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (_t, config) = measuring_config();
    populate(
        &config,
        &["example.org"],
        &[("dave@example.org", &sha512("davepw"))],
    );
    sqlite_exec(
        &config,
        "UPDATE users SET services = 'smtp' WHERE email = 'dave@example.org';",
    );
    with_authenticator(&config, async |a| {
        let rip = Some("10.0.0.1".parse().unwrap());
        let attempt = |pw: &'static str, service: &'static str| async move {
            let t = Instant::now();
            let v = a
                .authenticate_paced(
                    b"dave@example.org",
                    pw.as_bytes(),
                    service,
                    rip,
                    Pacing::Caller,
                )
                .await;
            (v, t.elapsed())
        };
        let (v, _) = attempt("davepw", "smtp").await;
        assert!(matches!(v, Verdict::Ok { .. }), "{v:?}");
        let mut report = Vec::new();
        for _try in 0..3 {
            let (mut refused, mut wrong) = (Vec::new(), Vec::new());
            for i in 0..100 {
                let order = if i % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for right in order {
                    let (v, took) = attempt(if right { "davepw" } else { "wrong" }, "imap").await;
                    assert!(!matches!(v, Verdict::Ok { .. }), "{v:?}");
                    if right {
                        refused.push(took)
                    } else {
                        wrong.push(took)
                    }
                }
            }
            let (r, w) = (median(refused.split_off(10)), median(wrong.split_off(10)));
            let ratio = w.as_secs_f64() / r.as_secs_f64();
            eprintln!(
                "median refused right password {r:?}, wrong password {w:?}: ratio {ratio:.2}"
            );
            report.push((r, w));
            if (0.67..=1.5).contains(&ratio) {
                return;
            }
        }
        panic!("a refused right password and a wrong one differ by more than 1.5 times in median: {report:?}");
    });
}
