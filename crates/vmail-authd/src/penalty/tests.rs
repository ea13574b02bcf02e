use super::*;

fn cfg() -> PenaltyConfig {
    PenaltyConfig {
        window: Duration::from_secs(60),
        block_after: 5,
        ipv6_prefix: 64,
        trusted: vec![("10.0.0.0".parse().unwrap(), 8)],
        failure_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(700),
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn delay_doubles_and_is_capped_below_the_maximum() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).delay, Duration::ZERO);
    let mut seen = Vec::new();
    for i in 0..5u8 {
        p.record_failure(ip("192.0.2.1"), "a@x", &[i], t);
        seen.push(p.assess(ip("192.0.2.1"), "b@x", t).delay.as_millis());
    }
    // 100, 200, 400, then capped at max - failure delay = 600.
    assert_eq!(seen, vec![100, 200, 400, 600, 600]);
    assert!(p.assess(ip("192.0.2.1"), "b@x", t).blocked);
    assert!(!p.assess(ip("192.0.2.2"), "b@x", t).blocked);
}

#[test]
fn same_wrong_password_counts_once() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for _ in 0..10 {
        p.record_failure(ip("192.0.2.1"), "a@x", b"stale", t);
    }
    assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 1);
    p.record_failure(ip("192.0.2.1"), "a@x", b"other", t);
    assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 2);
}

/// One password tried against many logins (password spraying) is one failure per
/// login for the network, not one in all.
#[test]
fn one_password_sprayed_over_logins_counts_for_each() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for i in 0..5 {
        p.record_failure(ip("192.0.2.1"), &format!("user{i}@x"), b"Summer2026!", t);
    }
    let a = p.assess(ip("192.0.2.1"), "user9@x", t);
    assert_eq!((a.failures, a.blocked), (5, true));
    // A retry for the same login (a stale saved password) still counts once.
    p.record_failure(ip("192.0.2.2"), "a@x", b"stale", t);
    p.record_failure(ip("192.0.2.2"), "A@x", b"stale", t);
    assert_eq!(p.assess(ip("192.0.2.2"), "b@x", t).failures, 1);
}

#[test]
fn per_login_counter_follows_the_user_across_addresses() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for i in 0..3u8 {
        p.record_failure(ip(&format!("198.51.100.{i}")), "Victim@x", &[i], t);
    }
    let a = p.assess(ip("203.0.113.9"), "victim@X", t);
    assert_eq!(a.failures, 3);
    assert!(!a.blocked, "a login is delayed, never locked out");
}

#[test]
fn ipv6_shares_a_prefix_and_mapped_v4_is_v4() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    p.record_failure(ip("2001:db8:1:2::1"), "a@x", b"1", t);
    assert_eq!(p.assess(ip("2001:db8:1:2:ffff::9"), "z@x", t).failures, 1);
    assert_eq!(p.assess(ip("2001:db8:1:3::1"), "z@x", t).failures, 0);
    p.record_failure(ip("192.0.2.7"), "b@x", b"1", t);
    assert_eq!(p.assess(ip("::ffff:192.0.2.7"), "z@x", t).failures, 1);
}

#[test]
fn trusted_networks_are_exempt_and_not_counted() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for i in 0..10u8 {
        p.record_failure(ip("10.1.2.3"), "a@x", &[i], t);
    }
    let a = p.assess(ip("10.1.2.3"), "a@x", t);
    assert_eq!((a.delay, a.blocked), (Duration::ZERO, false));
    assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 0);
}

#[test]
fn window_expiry_and_success_reset() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for i in 0..5u8 {
        p.record_failure(ip("192.0.2.1"), "a@x", &[i], t);
    }
    assert!(p.assess(ip("192.0.2.1"), "a@x", t).blocked);
    assert!(
        !p.assess(ip("192.0.2.1"), "a@x", t + Duration::from_secs(61))
            .blocked
    );
    p.record_success(ip("192.0.2.1"), "a@x", t);
    assert_eq!(p.assess(ip("192.0.2.1"), "a@x", t).failures, 0);
}

/// Issue 15.4: one account's success does not wash what guesses at others cost the
/// network; the user's own typos are forgiven.
#[test]
fn a_success_forgives_only_its_own_failures() {
    let p = Penalty::new(PenaltyConfig {
        block_after: 100,
        ..cfg()
    });
    let t = Instant::now();
    let me = ip("192.0.2.1");
    let mut guess = 0u32;
    for _ in 0..3 {
        for _ in 0..33 {
            guess += 1;
            p.record_failure(me, "carol@x", &guess.to_le_bytes(), t);
        }
        // The attacker's own account: a typo, then its right password.
        p.record_failure(me, "bob@x", b"typo", t);
        p.record_success(me, "bob@x", t);
    }
    let a = p.assess(me, "carol@x", t);
    assert_eq!((a.failures, a.blocked), (99, false));
    p.record_failure(me, "carol@x", b"one more", t);
    assert!(p.assess(me, "carol@x", t).blocked);
    assert!(p.assess(me, "bob@x", t).blocked, "the network is blocked");
    // A legitimate typo elsewhere, then success: no trace left.
    let other = ip("198.51.100.1");
    p.record_failure(other, "dave@x", b"typo", t);
    p.record_success(other, "dave@x", t);
    assert_eq!(p.assess(other, "dave@x", t).failures, 0);
}

/// A failure the network already counted (a repeated password) adds nothing to the
/// pair's share, so a success cannot take back more than its pair put in.
#[test]
fn repeats_cannot_be_used_to_take_back_others_failures() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    let me = ip("192.0.2.1");
    for pw in [b"p1", b"p2", b"p3", b"p4"] {
        p.record_failure(me, "carol@x", pw, t);
    }
    for _ in 0..3 {
        // Passwords the network has just seen: not counted again, no share.
        for pw in [b"p3", b"p4"] {
            p.record_failure(me, "bob@x", pw, t);
        }
        p.record_success(me, "bob@x", t);
    }
    assert_eq!(p.assess(me, "nobody@x", t).failures, 4);
    // A share from before a reset takes nothing from the new counter.
    let later = t + Duration::from_secs(61);
    p.record_failure(me, "bob@x", b"q", t);
    p.record_failure(me, "carol@x", b"r", later);
    p.record_success(me, "bob@x", later);
    assert_eq!(p.assess(me, "nobody@x", later).failures, 1);
}

#[test]
fn no_rip_is_one_bucket() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    p.record_failure(None, "a@x", b"1", t);
    assert_eq!(p.assess(None, "b@x", t).failures, 1);
}

#[test]
fn table_stays_bounded() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    for i in 0..(MAX_ENTRIES as u32 + 10) {
        p.record_failure(
            Some(IpAddr::from(i.to_be_bytes())),
            &format!("{i}@x"),
            b"p",
            t,
        );
    }
    let t = p.table.lock().unwrap();
    assert!(t.counters.len() <= MAX_ENTRIES + 2);
    assert!(t.shares.len() <= MAX_ENTRIES + 1);
}

/// A full table of live counters does not lose the strongest evidence: filling it with
/// a few failures per entry does not reset a network that has nearly reached the block.
#[test]
fn filling_the_table_does_not_wash_a_guessing_network() {
    let p = Penalty::new(PenaltyConfig {
        block_after: 100,
        ..cfg()
    });
    let t = Instant::now();
    let guesser = ip("192.0.2.1");
    for i in 0..99u32 {
        p.record_failure(guesser, "carol@x", &i.to_le_bytes(), t);
    }
    // Other logins from many addresses, two failures each: more than the table holds.
    for i in 0..(MAX_ENTRIES as u32) {
        let from = Some(IpAddr::from((0xac10_0000u32 + i / 256).to_be_bytes()));
        for pw in [b"a", b"b"] {
            p.record_failure(from, &format!("filler{i}@x"), pw, t);
        }
    }
    let a = p.assess(guesser, "someone@x", t);
    assert_eq!(a.failures, 99);
    assert_eq!(p.assess(ip("198.51.100.1"), "carol@x", t).failures, 99);
    assert!(p.table.lock().unwrap().counters.len() <= MAX_ENTRIES);
}

#[test]
fn networks() {
    let n = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(in_net(n("10.9.8.7"), n("10.0.0.0"), 8));
    assert!(!in_net(n("11.0.0.1"), n("10.0.0.0"), 8));
    assert!(in_net(n("::ffff:10.0.0.1"), n("10.0.0.0"), 8));
    assert!(in_net(n("2001:db8::5"), n("2001:db8::"), 32));
    assert!(!in_net(n("2001:db9::5"), n("2001:db8::"), 32));
    assert!(in_net(n("1.2.3.4"), n("0.0.0.0"), 0));
    assert!(!in_net(n("1.2.3.4"), n("::"), 0));
}

fn checked(a: &Admission<'_>) -> bool {
    matches!(a, Admission::Check(_))
}

/// Review 3: checks in flight count against the block threshold until they end.
#[test]
fn checks_in_flight_count_towards_the_block() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    let me = ip("192.0.2.1");
    p.record_failure(me, "a@x", b"1", t);
    p.record_failure(me, "b@x", b"1", t);
    let running: Vec<_> = (0..3).map(|_| p.admit(me, t)).collect();
    assert!(running.iter().all(checked));
    // 2 failures + 3 in flight = block_after.
    assert!(matches!(
        p.admit(me, t),
        Admission::Blocked {
            failures: 2,
            in_flight: 3
        }
    ));
    assert!(checked(&p.admit(ip("192.0.2.2"), t)));
    drop(running);
    assert!(p.table.lock().unwrap().in_flight.is_empty());
    assert!(checked(&p.admit(me, t)));
    // Trusted networks are neither blocked nor tracked.
    let trusted: Vec<_> = (0..10).map(|_| p.admit(ip("10.0.0.1"), t)).collect();
    assert!(trusted.iter().all(checked));
    assert!(p.table.lock().unwrap().in_flight.is_empty());
}

/// The table of checks in flight stays bounded: past `MAX_ENTRIES` networks at once, a new
/// one is checked untracked; everything is released on drop.
#[test]
fn checks_in_flight_stay_bounded() {
    let p = Penalty::new(cfg());
    let t = Instant::now();
    let running: Vec<_> = (0..MAX_ENTRIES as u32)
        .map(|i| p.admit(Some(IpAddr::from(i.to_be_bytes())), t))
        .collect();
    assert!(running.iter().all(checked));
    let extra = p.admit(ip("2001:db8::1"), t);
    assert!(checked(&extra));
    assert_eq!(p.table.lock().unwrap().in_flight.len(), MAX_ENTRIES);
    drop((running, extra));
    assert!(p.table.lock().unwrap().in_flight.is_empty());
}
