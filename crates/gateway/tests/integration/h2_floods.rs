//! HTTP/2 floods against the gateway over raw frames: rapid reset (CVE-2023-44487), CONTINUATION
//! flood (RUSTSEC-2024-0332), empty DATA flood (RUSTSEC-2026-0258). Memory stays flat, the
//! attacking connection is ended or drained, and other callers are still served.

use chaingate_test_support as support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// These tests measure this process's memory and CPU, so they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

async fn still_serves(gw: &chaingate_gateway::Running) {
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
    let _turn = SERIAL.lock().await;
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

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_close_notify_mid_connection_does_not_spin() {
    let _turn = SERIAL.lock().await;
    use tokio::io::AsyncWriteExt as _;
    // CVE-2024-32650 / RUSTSEC-2024-0336: close_notify during or after a request made rustls spin.
    let pki = support::tls::pki();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = pki.gateway_tls_section();
    let gw = gateway(&config(&sts.url(), &upstream.url(), &extra)).await;
    let roots = pki.roots();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let mut held = Vec::new();
    for _ in 0..8 {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut stream = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tls-caller\r\nContent-Length: 5\r\n\r\nab")
            .await
            .unwrap();
        // close_notify mid-body, with the TCP connection left open.
        stream.get_mut().1.send_close_notify();
        let _ = stream.flush().await;
        held.push(stream);
    }
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_seconds() - before;
    assert!(
        spent < 0.5,
        "{spent} s of CPU in 1 s with idle half-closed TLS connections"
    );
    drop(held);
    assert_eq!(get(gw.admin_addr, "/live", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spray_of_distinct_tokens_is_bounded_by_the_in_flight_cap() {
    let _turn = SERIAL.lock().await;
    let sts =
        TokenServer::scripted(|n, _| Reply::issue(n, Some(60)).delayed(Duration::from_millis(20)))
            .await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "").replace(
        "timeout = \"500ms\"",
        "timeout = \"500ms\"\nmax_in_flight = 4\nretries = 0",
    );
    let gw = gateway(&toml).await;
    let addr = gw.addr;
    let before = rss_kib();
    // 16 callers, each a fresh token per request, for 2 s: the token server never sees more than
    // 4 exchanges at once (so at most ~4 / 20 ms = 200 per second), the rest are shed at once.
    let sprayers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(async move {
                let (mut ok, mut shed) = (0u32, 0u32);
                let until = tokio::time::Instant::now() + Duration::from_secs(2);
                let mut i = 0u64;
                while tokio::time::Instant::now() < until {
                    i += 1;
                    match get(addr, "/", Some(&format!("spray-{w}-{i}")))
                        .await
                        .status
                        .as_u16()
                    {
                        200 => ok += 1,
                        503 => shed += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (ok, shed)
            })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for s in sprayers {
        let (o, sh) = s.await.unwrap();
        ok += o;
        shed += sh;
    }
    assert!(shed > 0, "the cap shed part of the spray");
    assert!(
        sts.calls() as u32 <= ok + 4,
        "exchanges only for requests that were served"
    );
    assert!(
        sts.calls() <= 2 * 200 + 20,
        "{} exchanges in 2 s",
        sts.calls()
    );
    assert!(rss_kib().saturating_sub(before) < 64 * 1024);
    still_serves(&gw).await;
}
