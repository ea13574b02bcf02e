//! What the deliveries are made of: the message, its trace lines, the recipients, and the
//! statistics of their timings.

use super::*;

/// A message of about `size` bytes as it leaves Postfix's queue file (LF line ends), after
/// the lines pipe(8)'s `D` and `R` flags prepend, which differ per recipient.
pub(super) fn message_body(size: usize) -> Vec<u8> {
    let mut m = format!(
        "Received: from mx.remote.test (mx.remote.test [192.0.2.1])\n\
         \tby mail.example.org (Postfix) with ESMTPS id 4dBnch1LxVz9sWj\n\
         \tfor <user@example.org>; Sat, 29 Nov 2026 12:00:00 +0000 (UTC)\n\
         From: Bob <{SENDER}>\n\
         To: <user@example.org>\n\
         Subject: benchmark message of {size} bytes\n\
         Date: Sat, 29 Nov 2026 12:00:00 +0000\n\
         Message-ID: <bench.{size}@remote.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\n"
    )
    .into_bytes();
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0usize;
    while m.len() + 77 <= size {
        for _ in 0..76 {
            m.push(B64[i % 64]);
            i = i.wrapping_mul(31).wrapping_add(7) % 1_000_003;
        }
        m.push(b'\n');
    }
    m
}

pub(super) fn trace_lines(recipient: &str) -> Vec<u8> {
    format!("Return-Path: <{SENDER}>\nDelivered-To: {recipient}\n").into_bytes()
}

pub(super) fn recipient(i: usize, recipients: usize) -> String {
    format!("user{}@example.org", i % recipients)
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}
