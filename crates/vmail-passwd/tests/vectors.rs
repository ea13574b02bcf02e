//! Checks every vector in `vectors.txt` (made by doveadm, mkpasswd, openssl and MariaDB;
//! see `make-vectors.sh`): the right password verifies, wrong ones do not, and
//! `scheme_of` names the scheme the tool produced.

use std::collections::HashSet;

use vmail_passwd::{scheme_of, verify, Scheme};

struct Vector {
    line: usize,
    column: String,
    password: Vec<u8>,
    stored: String,
}

/// Undoes the file's escaping: `\\`, `\t`, `\n`, `\xHH`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).expect("\\x needs two hex digits");
                out.push(u8::from_str_radix(hex, 16).expect("bad \\x escape"));
                i += 2;
            }
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
        i += 2;
    }
    out
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors.txt");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 3, "vectors.txt line {}: {l:?}", n + 1);
            Vector {
                line: n + 1,
                column: cols[0].to_string(),
                password: unescape(cols[1]),
                stored: cols[2].to_string(),
            }
        })
        .collect()
}

const CRYPT_FORMATS: [Scheme; 5] = [
    Scheme::DesCrypt,
    Scheme::Md5Crypt,
    Scheme::Sha256Crypt,
    Scheme::Sha512Crypt,
    Scheme::BlfCrypt,
];

/// Passwords that must not verify against a vector for `password` in `scheme`.
fn wrong_passwords(scheme: Scheme, password: &[u8]) -> Vec<Vec<u8>> {
    let mut wrong = Vec::new();
    // A changed character: flip the lowest bit of the first byte (DES uses only the low
    // 7 bits of each byte, so flipping the top bit would not count as a change there).
    let mut changed = password.to_vec();
    match changed.first_mut() {
        Some(b) => *b ^= 1,
        None => changed.push(b'x'),
    }
    wrong.push(changed);
    // An appended character, unless the scheme ignores it: DES reads 8 characters.
    if !(scheme == Scheme::DesCrypt && password.len() >= 8) {
        let mut appended = password.to_vec();
        appended.push(b'x');
        wrong.push(appended);
    }
    if !password.is_empty() {
        wrong.push(Vec::new());
    }
    wrong
}

fn check(v: &Vector) -> usize {
    let ctx = format!("vectors.txt line {} ({})", v.line, v.column);
    let scheme =
        scheme_of(&v.stored, Scheme::Crypt).unwrap_or_else(|e| panic!("{ctx}: scheme_of: {e}"));
    let named: Scheme = v
        .column
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    match named {
        Scheme::Crypt => assert!(CRYPT_FORMATS.contains(&scheme), "{ctx}: got {scheme}"),
        // Dovecot's MD5 = MD5-CRYPT when written by doveadm.
        _ => assert_eq!(scheme, named, "{ctx}"),
    }
    assert_eq!(
        verify(&v.stored, &v.password, Scheme::Crypt),
        Ok(true),
        "{ctx}: right password"
    );
    let wrong = wrong_passwords(scheme, &v.password);
    for w in &wrong {
        assert_eq!(
            verify(&v.stored, w, Scheme::Crypt),
            Ok(false),
            "{ctx}: wrong password {:?}",
            String::from_utf8_lossy(w)
        );
    }
    1 + wrong.len()
}

fn is_expensive(v: &Vector) -> bool {
    v.stored.contains("$argon2") || v.stored.contains("$2y$10$") || v.stored.contains("$2b$10$")
}

#[test]
fn unescape_works() {
    assert_eq!(unescape(r"a\\b\tc\nd\xe4"), b"a\\b\tc\nd\xe4");
}

#[test]
fn file_covers_every_scheme_and_tool() {
    let vs = vectors();
    assert!(vs.len() >= 200, "only {} vectors", vs.len());
    let mut seen = HashSet::new();
    for v in &vs {
        seen.insert(
            v.column
                .split('.')
                .next()
                .unwrap()
                .parse::<Scheme>()
                .unwrap(),
        );
        seen.insert(scheme_of(&v.stored, Scheme::Crypt).unwrap());
    }
    for s in Scheme::ALL {
        assert!(seen.contains(&s), "no vector for {s}");
    }
    let text = include_str!("vectors.txt");
    for tool in [
        "# doveadm",
        "# printf %s PASSWORD | mkpasswd",
        "openssl passwd",
        "# mariadb",
    ] {
        assert!(text.contains(tool), "no block from {tool}");
    }
    // The bare crypt(3) strings from mkpasswd/openssl/MariaDB are there, unprefixed.
    assert!(vs.iter().any(|v| v.stored.len() == 13));
    assert!(vs.iter().any(|v| v.stored.starts_with("$2b$")));
    assert!(vs.iter().any(|v| v.stored.starts_with("$2a$")));
    assert!(vs.iter().any(|v| v.stored.contains("$5$rounds=")));
    assert!(vs.iter().any(|v| v.stored.starts_with("$6$rounds=")));
    assert!(vs.iter().any(|v| v.stored.starts_with("$6$")));
}

#[test]
fn cheap_vectors_verify() {
    let checks: usize = vectors()
        .iter()
        .filter(|v| !is_expensive(v))
        .map(check)
        .sum();
    eprintln!("{checks} verifications");
}

/// Argon2 (64 MiB each) and bcrypt cost 10: a few dozen verifications, in parallel.
#[test]
fn expensive_vectors_verify() {
    let vs: Vec<Vector> = vectors().into_iter().filter(is_expensive).collect();
    assert!(
        !vs.is_empty() && vs.len() <= 12,
        "{} expensive vectors",
        vs.len()
    );
    let checks: usize = std::thread::scope(|s| {
        let handles: Vec<_> = vs.iter().map(|v| s.spawn(|| check(v))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!("{checks} verifications");
}

/// The unprefixed strings also verify with the default spelled out as the concrete
/// scheme, and a bare DES string under a `{CRYPT}` prefix is the same thing.
#[test]
fn defaults_and_prefixes_agree() {
    for v in vectors().iter().filter(|v| !v.stored.starts_with('{')) {
        if is_expensive(v) {
            continue;
        }
        let scheme = scheme_of(&v.stored, Scheme::Crypt).unwrap();
        assert_eq!(
            verify(&v.stored, &v.password, scheme),
            Ok(true),
            "line {}",
            v.line
        );
        let prefixed = format!("{{CRYPT}}{}", v.stored);
        assert_eq!(
            verify(&prefixed, &v.password, Scheme::Plain),
            Ok(true),
            "line {}",
            v.line
        );
    }
}
