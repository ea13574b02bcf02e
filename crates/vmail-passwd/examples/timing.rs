//! Measures `verify` (and `dummy_verify`) per scheme on this machine, so the numbers in
//! the docs and the size of authd's blocking pool can be checked.
//! Run: `cargo run --release -p vmail-passwd --example timing`

use std::time::{Duration, Instant};

use vmail_passwd::{dummy_verify, hash, verify, Scheme};

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn show(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:8.1} us", d.as_secs_f64() * 1e6)
    } else {
        format!("{:8.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn main() {
    let password = b"correct horse battery staple";
    let cases: [(&str, Scheme, usize); 8] = [
        ("DES-CRYPT", Scheme::DesCrypt, 2001),
        ("MD5-CRYPT", Scheme::Md5Crypt, 501),
        ("SHA256-CRYPT (5000 rounds)", Scheme::Sha256Crypt, 101),
        ("SHA512-CRYPT (5000 rounds)", Scheme::Sha512Crypt, 101),
        ("BLF-CRYPT (cost 10)", Scheme::BlfCrypt, 21),
        ("ARGON2ID (m=64 MiB, t=3, p=1)", Scheme::Argon2id, 11),
        ("ARGON2I (m=32 MiB, t=4, p=1)", Scheme::Argon2i, 11),
        ("SSHA512", Scheme::Ssha512, 20001),
    ];
    println!("{:<32} {:>11} {:>11}", "scheme", "verify", "dummy");
    for (name, scheme, runs) in cases {
        let stored = hash(scheme, password).expect("hash");
        assert_eq!(verify(&stored, password, Scheme::Crypt), Ok(true));
        let real = median(runs, || {
            std::hint::black_box(verify(&stored, b"wrong password", Scheme::Crypt).ok());
        });
        let dummy = median(runs, || dummy_verify(scheme, b"wrong password"));
        println!("{name:<32} {} {}", show(real), show(dummy));
    }
}
