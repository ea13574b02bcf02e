//! The Prometheus endpoint counts what lookupd answered.

use vmail_test_support::lookupd;
use vmail_test_support::{free_port, http_get, metric};

#[test]
fn metrics_count_requests_by_map_and_outcome() {
    let (_t, mut config) = vmail_test_support::sqlite_config();
    let port = free_port();
    config.lookupd.metrics = format!("inet:127.0.0.1:{port}");
    config.cache.enabled = true;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let d = vmail_directory::Directory::open(&config).await.unwrap();
        d.init(false).await.unwrap();
        d.add_domain("example.org").await.unwrap();
    });
    let d = lookupd::Daemon::start(config);
    let mut raw = lookupd::Raw::connect(&d.socket);
    assert_eq!(raw.ask(b"domains example.org"), "OK virtual");
    assert_eq!(raw.ask(b"domains example.org"), "OK virtual");
    assert_eq!(raw.ask(b"domains example.net"), "NOTFOUND ");
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    let get = |s: &str| metric(&body, s).unwrap_or_else(|| panic!("{s} missing:\n{body}"));
    assert_eq!(
        get("vmail_lookupd_requests_total{map=\"domains\",outcome=\"found\"}"),
        2.0
    );
    assert_eq!(
        get("vmail_lookupd_requests_total{map=\"domains\",outcome=\"notfound\"}"),
        1.0
    );
    assert_eq!(
        get("vmail_lookupd_requests_total{map=\"aliases\",outcome=\"found\"}"),
        0.0
    );
    assert_eq!(get("vmail_lookupd_cache_hits_total"), 1.0);
    assert_eq!(
        get("vmail_lookupd_request_duration_seconds_count{map=\"domains\"}"),
        3.0
    );
    assert_eq!(get("vmail_lookupd_backend_errors_total"), 0.0);
    assert!(body.contains("# TYPE vmail_lookupd_request_duration_seconds histogram"));
    assert_eq!(http_get(port, "/nope").0, "HTTP/1.0 404 Not Found");
}
