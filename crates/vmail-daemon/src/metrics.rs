//! Prometheus metrics over a minimal HTTP endpoint (`GET /metrics`, text format 0.0.4),
//! off unless configured. Hand-written because the daemons only need counters and
//! fixed-bucket histograms they already keep as atomics, and a scrape endpoint that
//! answers one request per connection: an HTTP stack would be most of the binary.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Stream;

/// Latency buckets in seconds: from a cached answer (tens of µs) to a deadline (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram with fixed buckets, updated lock-free.
pub struct Histogram {
    buckets: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    pub fn new(buckets: &'static [f64]) -> Histogram {
        Histogram {
            buckets,
            counts: buckets.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.buckets.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` series; `labels` is `a="x",b="y"` or empty.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.buckets.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Appends `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one sample.
pub fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// What renders the current metrics.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves one scrape connection: one request, one answer, close.
pub async fn serve(stream: Stream, render: Render) {
    match stream {
        Stream::Unix(s) => serve_on(s, render).await,
        Stream::Tcp(s) => serve_on(s, render).await,
    }
}

/// From the connection's start to the end of the request header, and again for the reply
/// to be taken. A scraper sends its request at once (Prometheus: one short GET) and reads
/// the answer; whoever does not gives the slot back, so idle, dribbling or non-reading
/// connections hold the listener's small budget for this long at most.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

async fn serve_on<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, render: Render) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(HEADER_TIMEOUT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
            if buf.len() > 8192 {
                return false;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, ctype, body) = if method == b"GET" && (path == b"/metrics" || path == b"/") {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_string(),
        )
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A scraper that does not read the body would otherwise hold the slot for ever.
    let mut reply = head.into_bytes();
    reply.extend_from_slice(body.as_bytes());
    if crate::write_all_within(&mut s, &reply, HEADER_TIMEOUT)
        .await
        .is_ok()
    {
        let _ = s.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render("x_seconds", "map=\"a\"", &mut out);
        assert!(
            out.contains("x_seconds_bucket{map=\"a\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{map=\"a\",le=\"0.01\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{map=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{map=\"a\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{map=\"a\"} 1.0055\n"), "{out}");
        let mut out = String::new();
        h.render("y", "", &mut out);
        assert!(
            out.contains("y_bucket{le=\"+Inf\"} 3\n") && out.contains("y_count 3\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn scrape_and_404() {
        let render: Render = Arc::new(|| "up 1\n".to_string());
        for (req, want) in [
            (&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..], "200 OK"),
            (&b"GET /other HTTP/1.0\r\n\r\n"[..], "404"),
        ] {
            let (mut a, b) = tokio::io::duplex(4096);
            let t = tokio::spawn(serve_on(b, render.clone()));
            a.write_all(req).await.unwrap();
            let mut resp = String::new();
            a.read_to_string(&mut resp).await.unwrap();
            t.await.unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.0 {want}")), "{resp}");
            if want == "200 OK" {
                assert!(resp.ends_with("\r\n\r\nup 1\n"), "{resp}");
                assert!(resp.contains("Content-Length: 5\r\n"));
            }
        }
    }
}
