//! HTTP/2 floods against the gateway over raw frames: rapid reset (CVE-2023-44487), CONTINUATION
//! flood (RUSTSEC-2024-0332), empty DATA flood (RUSTSEC-2026-0258). Memory stays flat, the
//! attacking connection is ended or drained, and other callers are still served.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: `:method GET`, `:scheme http`, `:path /` from the static table, `:authority gw` literal.
fn request_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x41, 0x02, b'g', b'w']
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Writes the flood (ignoring a write error: the server may hang up mid-flood, which is the
/// point), then drains what the server sends until it closes or goes quiet.
async fn flood(addr: std::net::SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writer = async move {
        let _ = write.write_all(&bytes).await;
    };
    let reader = async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(2), read.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return got,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ((), got) = tokio::join!(writer, reader);
    got
}

/// Whether the server sent a GOAWAY frame (type 0x7) in `bytes`.
fn saw_goaway(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 0x7 {
            return true;
        }
        at += 9 + len;
    }
    false
}

async fn still_serves(gw: &chaingate::Running) {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        get(gw.addr, "/", Some("control-caller")),
    )
    .await;
    assert_eq!(
        answer
            .expect("a control request is answered promptly")
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_continuation_and_empty_data_floods_leave_memory_flat() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    still_serves(&gw).await;
    let before = rss_kib();

    // Rapid reset: 20 000 HEADERS + RST_STREAM pairs on one connection.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    for i in 0..20_000u32 {
        let stream = 2 * i + 1;
        bytes.extend(frame(0x1, 0x5, stream, &request_block()));
        bytes.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
    }
    let answer = flood(gw.addr, bytes).await;
    assert!(
        saw_goaway(&answer),
        "rapid reset: the connection is told to go away"
    );
    still_serves(&gw).await;

    // CONTINUATION flood: a header block that never ends.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    bytes.extend(frame(0x1, 0x1, 1, &request_block()));
    let filler = [0x40, 0x03, b'x', b'-', b'a', 0x10]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'v', 16))
        .collect::<Vec<_>>();
    for _ in 0..10_000 {
        bytes.extend(frame(0x9, 0, 1, &filler));
    }
    let _ = flood(gw.addr, bytes).await;
    still_serves(&gw).await;

    // Empty DATA flood: 100 000 zero-length DATA frames on one open stream.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    bytes.extend(frame(
        0x1,
        0x4,
        1,
        &[0x83, 0x86, 0x84, 0x41, 0x02, b'g', b'w'],
    ));
    for _ in 0..100_000 {
        bytes.extend(frame(0x0, 0, 1, &[]));
    }
    let _ = flood(gw.addr, bytes).await;
    still_serves(&gw).await;

    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB during the floods"
    );
    assert_eq!(
        upstream
            .received()
            .iter()
            .filter(|r| r.header("authorization").is_none())
            .count(),
        0
    );
}
