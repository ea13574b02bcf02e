//! `--diagnostics`: what one check costs in-process (vmail-passwd and libxcrypt), without
//! the socket, for reading the figures against.

use super::*;

/// In-process costs: one SHA512-CRYPT check (vmail-passwd, and libxcrypt's crypt() that
/// Dovecot calls), a bare `Directory::user` read and a warm-cache
/// `Authenticator::authenticate`, each with the same numbers of concurrent callers.
pub(super) async fn diagnostics(
    config: &Config,
    users: usize,
    conns: &[usize],
    dur: Duration,
) -> Result<()> {
    let stored = vmail_passwd::hash(vmail_passwd::Scheme::Sha512Crypt, b"secret")?;
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let ok = vmail_passwd::verify(
            &stored,
            std::hint::black_box(b"secret"),
            vmail_passwd::Scheme::Crypt,
        )?;
        anyhow::ensure!(ok, "vmail-passwd does not verify its own hash");
    }
    let ours = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let bare = stored.trim_start_matches("{SHA512-CRYPT}");
    let glibc = libxcrypt_us(bare, "secret", n);
    println!(
        "one SHA512-CRYPT check (5000 rounds), one thread: vmail-passwd {ours:.0} us, \
         libxcrypt crypt() (what Dovecot calls) {}",
        glibc.map_or("n/a".to_string(), |g| format!("{g:.0} us"))
    );
    // The classic table's hashes (MySQL ENCRYPT()): what a wrong password costs there,
    // against the SHA512-CRYPT dummy check an unknown user costs (passwords.hash_scheme).
    let des = vmail_passwd::hash(vmail_passwd::Scheme::DesCrypt, b"secret")?;
    let t = Instant::now();
    for _ in 0..n {
        let ok = vmail_passwd::verify(
            &des,
            std::hint::black_box(b"wrong"),
            vmail_passwd::Scheme::Crypt,
        )?;
        anyhow::ensure!(!ok, "DES-CRYPT verified a wrong password");
    }
    let des_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for _ in 0..n {
        vmail_passwd::dummy_verify(
            vmail_passwd::Scheme::Sha512Crypt,
            std::hint::black_box(b"wrong"),
        );
    }
    let dummy_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "one DES-CRYPT check (classic ENCRYPT() hashes): {des_us:.1} us; the unknown-user dummy \
         check with passwords.hash_scheme = SHA512-CRYPT: {dummy_us:.0} us"
    );

    // What `failure_delay_ms = 0` still costs a failure: tokio rounds every timer up to its
    // next 1 ms tick.
    let t = Instant::now();
    for _ in 0..100 {
        tokio::time::sleep(Duration::ZERO).await;
    }
    println!(
        "tokio::time::sleep(Duration::ZERO) (the failure delay at 0): {:.0} us on average",
        t.elapsed().as_secs_f64() * 1e6 / 100.0
    );

    let dir = Arc::new(vmail_directory::Directory::open(config).await?);
    let open = |cache: bool| {
        let mut c = config.clone();
        c.authd.cache_enabled = cache;
        c.authd.cache_ttl_s = 3600;
        c.authd.cache_max_entries = 1_000_000;
        c
    };
    let (cw, cc) = (open(true), open(false));
    let warm = Arc::new(vmail_authd::Authenticator::new(
        vmail_directory::Directory::open(&cw).await?,
        &cw,
    )?);
    let cold = Arc::new(vmail_authd::Authenticator::new(
        vmail_directory::Directory::open(&cc).await?,
        &cc,
    )?);
    let rip: Option<std::net::IpAddr> = Some("192.0.2.253".parse()?);
    for n in 0..users {
        let v = warm
            .authenticate(login(n).as_bytes(), password(n).as_bytes(), "smtp", rip)
            .await;
        anyhow::ensure!(
            matches!(v, vmail_authd::Verdict::Ok { .. }),
            "{}: {v:?}",
            login(n)
        );
    }
    println!(
        "in-process, no socket: {:>5} | {:>24} | {:>24} | {:>24}",
        "conns", "Directory::user", "authenticate (cached)", "authenticate (cold)"
    );
    println!(
        "{:>22} {:>5} | {:>24} | {:>24} | {:>24}",
        "", "", "ceiling of (b)", "compare (b)", "compare (a)"
    );
    let fmt = |f: &Figure| format!("{:>8.0} {:>6.0} {:>8.0}", f.per_sec, f.p50_us, f.p99_us);
    for &conns in conns {
        let dir = dir.clone();
        let d = in_process(conns, dur, users, move |n| {
            let dir = dir.clone();
            async move { matches!(dir.user(&login(n)).await, Ok(Some(_))) }
        })
        .await?;
        let mut figs = Vec::new();
        for auth in [&warm, &cold] {
            let auth = auth.clone();
            figs.push(
                in_process(conns, dur, users, move |n| {
                    let auth = auth.clone();
                    async move {
                        let v = auth
                            .authenticate(login(n).as_bytes(), password(n).as_bytes(), "smtp", rip)
                            .await;
                        matches!(v, vmail_authd::Verdict::Ok { .. })
                    }
                })
                .await?,
            );
        }
        println!(
            "{:>22} {:>5} | {} | {} | {}",
            "",
            conns,
            fmt(&d),
            fmt(&figs[0]),
            fmt(&figs[1])
        );
    }
    Ok(())
}

/// `conns` tasks calling `op(user number)` one at a time for `dur`; stops a task at the
/// first `false`.
pub(super) async fn in_process<F, Fut>(
    conns: usize,
    dur: Duration,
    users: usize,
    op: F,
) -> Result<Figure>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (op, stop) = (op.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = (c * 7919 + i) % users;
                i += 1;
                let t = Instant::now();
                if !op(n).await {
                    break;
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            lat
        }));
    }
    collect(tasks, &stop, dur).await
}

/// Microseconds per `crypt(password, setting)` in libxcrypt (loaded at run time, so the
/// bench does not link it), or `None` if it is not there or disagrees.
pub(super) fn libxcrypt_us(setting: &str, password: &str, n: usize) -> Option<f64> {
    use std::ffi::{CStr, CString};
    type CryptFn =
        unsafe extern "C" fn(*const libc::c_char, *const libc::c_char) -> *mut libc::c_char;
    let key = CString::new(password).ok()?;
    let salt = CString::new(setting).ok()?;
    // SAFETY: dlopen/dlsym with NUL-terminated names; `crypt` has the signature above and
    // returns a pointer to a static NUL-terminated buffer (or NULL), read before the next
    // call; single-threaded here.
    unsafe {
        let lib = libc::dlopen(c"libcrypt.so.1".as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            return None;
        }
        let sym = libc::dlsym(lib, c"crypt".as_ptr());
        if sym.is_null() {
            return None;
        }
        let crypt: CryptFn = std::mem::transmute::<*mut libc::c_void, CryptFn>(sym);
        let t = Instant::now();
        for _ in 0..n {
            let out = crypt(key.as_ptr(), salt.as_ptr());
            if out.is_null() || CStr::from_ptr(out).to_bytes() != setting.as_bytes() {
                return None;
            }
        }
        Some(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    }
}
