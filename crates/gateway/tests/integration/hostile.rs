//! Hostile HTTP/1 input through raw sockets (docs/reliability.md promises 7–8 and its attack classes: framing and header
//! hygiene): each case is refused, or reaches the upstream as exactly one well-framed request,
//! and a request pipelined behind it gets its own answer. Nothing smuggled reaches the upstream.

use chaingate_test_support as support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "hostile-caller-token";

async fn setup() -> (TokenServer, Upstream, chaingate_gateway::Running) {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(
        &sts.url(),
        &upstream.url(),
        "[timeouts]\nheader_read = \"1s\"\n",
    ))
    .await;
    (sts, upstream, gw)
}

/// Sends raw bytes, then reads everything the gateway answers until it closes or goes quiet.
async fn exchange_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer[at + 9..at + 12].parse().ok())
        .collect()
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// The canary: a benign request pipelined behind each case.
fn canary() -> String {
    format!("GET /canary HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth())
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused_or_reframed_never_smuggled() {
    let (sts, upstream, gw) = setup().await;
    // The smuggled request carries a valid token: if any case desynchronised the gateway's parse
    // from the bytes sent, it would be forwarded and the upstream would record /smuggled.
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth());
    // (name, bytes, the exact statuses answered, requests the upstream receives from the case)
    let cases: Vec<(&str, String, &[u16], usize)> = vec![
        // CL + TE (RFC 9112 §6.1): the body is framed by TE alone and the connection closes after
        // the answer, so what CL would have framed is never read as a request.
        ("cl+te", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[200], 1),
        ("te+cl", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[200], 1),
        // Two different Content-Lengths (CVE-2021-32715 family).
        ("double cl", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello{smuggled}", auth()), &[400], 0),
        ("plus cl", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Content-Length: +5\r\n\r\nhello{smuggled}", auth()), &[400], 0),
        ("hex cl", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Content-Length: 0x5\r\n\r\nhello{smuggled}", auth()), &[400], 0),
        // chunked applied twice (RFC 9112 §6.1; CVE-2021-21299): refused before the upstream.
        ("te twice", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        ("te chunked, chunked", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        ("te identity", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        // Chunk-size overflow (CVE-2021-32714) and funky chunk extensions (CVE-2025-55315):
        // found in the first chunk, so refused before the upstream sees the request at all.
        ("chunk overflow", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        ("bare lf chunk ext", format!("POST /a HTTP/1.1\r\nHost: gw\r\n{}Transfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        // TE on HTTP/1.0 (CVE-2026-2835).
        ("te on 1.0", format!("POST /a HTTP/1.0\r\nHost: gw\r\n{}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", auth()), &[400], 0),
        // Bad bytes in fields (CVE-2019-9900) and obsolete line folding.
        ("nul in value", format!("GET /a HTTP/1.1\r\nHost: gw\r\n{}X-Bad: a\0b\r\n\r\n{smuggled}", auth()), &[400], 0),
        ("obs-fold", format!("GET /a HTTP/1.1\r\nHost: gw\r\n{}X-Folded: a\r\n b\r\n\r\n{smuggled}", auth()), &[400], 0),
    ];
    for (name, raw, expected, forwarded) in cases {
        let before = upstream.received().len();
        let answer = exchange_raw(gw.addr, raw.as_bytes()).await;
        assert_eq!(statuses(&answer), expected, "{name}:\n{answer}");
        let seen = upstream.received();
        assert_eq!(
            seen.len() - before,
            forwarded,
            "{name}: {:?}",
            &seen[before..]
        );
        for seen in &seen[before..] {
            assert_eq!(seen.uri, "/a", "{name}: {seen:?}");
            assert!(
                seen.header("transfer-encoding").is_none()
                    || seen.header("content-length").is_none(),
                "{name}: both framings forwarded: {seen:?}"
            );
        }
    }
    assert!(
        upstream
            .received()
            .iter()
            .all(|r| !r.uri.contains("smuggled")),
        "a smuggled request reached the upstream"
    );
    // Only the two forwarded cases cost an exchange (the same token, so one), never a refusal.
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_refusal_does_not_let_its_body_become_the_next_request() {
    let (sts, upstream, gw) = setup().await;
    // CVE-2025-4366 shape: refused for missing credentials, with a full request as its body.
    let inner = format!("GET /smuggled HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth());
    let raw = format!(
        "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{inner}{}",
        inner.len(),
        canary()
    );
    let answer = exchange_raw(gw.addr, raw.as_bytes()).await;
    let codes = statuses(&answer);
    assert_eq!(codes.first(), Some(&401), "{answer}");
    if codes.len() > 1 {
        assert_eq!(
            codes[1], 200,
            "the pipelined canary gets its own answer: {answer}"
        );
    }
    assert!(upstream
        .received()
        .iter()
        .all(|r| !r.uri.contains("smuggled")));
    assert!(sts
        .requests()
        .iter()
        .all(|r| r.param("oauth_token") == Some(TOKEN)));
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_requests_are_not_tunnelled() {
    let (_sts, upstream, gw) = setup().await;
    // h2c smuggling (CVE-2026-2833 family): the upgrade is not forwarded, no raw bytes pass.
    let raw = format!(
        "GET /a HTTP/1.1\r\nHost: gw\r\n{}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n{}",
        auth(),
        canary()
    );
    let answer = exchange_raw(gw.addr, raw.as_bytes()).await;
    assert!(!answer.contains("101 Switching Protocols"), "{answer}");
    for seen in upstream.received() {
        assert!(
            seen.header("upgrade").is_none() && seen.header("http2-settings").is_none(),
            "{seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_refused_with_431() {
    let (sts, _upstream, gw) = setup().await;
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = exchange_raw(
        gw.addr,
        format!("GET / HTTP/1.1\r\nHost: gw\r\n{}{many}\r\n", auth()).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&answer).first(), Some(&431), "{answer}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\n{}X-Big: {}\r\n\r\n",
        auth(),
        "a".repeat(512 * 1024)
    );
    let answer = exchange_raw(gw.addr, huge.as_bytes()).await;
    assert_eq!(
        statuses(&answer).first(),
        Some(&431),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(sts.calls(), 0);
}

fn with_field(bytes: usize) -> String {
    format!(
        "GET /a HTTP/1.1\r\nHost: gw\r\n{}X-Big: {}\r\nConnection: close\r\n\r\n",
        auth(),
        "a".repeat(bytes)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_past_max_header_bytes_gets_431_before_authn_and_exchange() {
    // The default (60 KiB, as Envoy): a 100 KB field is refused, a 40 KB one forwarded.
    let (sts, upstream, gw) = setup().await;
    let answer = exchange_raw(gw.addr, with_field(100 * 1024).as_bytes()).await;
    assert_eq!(
        statuses(&answer),
        [431],
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!((sts.calls(), upstream.received().len()), (0, 0));
    let answer = exchange_raw(gw.addr, with_field(40 * 1024).as_bytes()).await;
    assert_eq!(
        statuses(&answer),
        [200],
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!((sts.calls(), upstream.received().len()), (1, 1));

    // Configured lower: the key moves the line.
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(
        &sts.url(),
        &upstream.url(),
        "[limits]\nmax_header_bytes = 16384\n",
    ))
    .await;
    let answer = exchange_raw(gw.addr, with_field(20 * 1024).as_bytes()).await;
    assert_eq!(
        statuses(&answer),
        [431],
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert_eq!((sts.calls(), upstream.received().len()), (0, 0));
    let answer = exchange_raw(gw.addr, with_field(10 * 1024).as_bytes()).await;
    assert_eq!(
        statuses(&answer),
        [200],
        "{}",
        &answer[..answer.len().min(300)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowloris_head_is_cut_at_the_header_timeout() {
    let (_sts, _upstream, gw) = setup().await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // header_read = 1s: the connection is answered or closed well before 5 s.
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "a half-sent head kept the connection open");
}

// Paused time: "not served within 300 ms" is exact, not a guess at the machine's speed.
#[tokio::test(start_paused = true)]
async fn open_connections_are_capped_and_the_next_waits_its_turn() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(
        &sts.url(),
        &upstream.url(),
        "[limits]\nmax_connections = 2\n",
    ))
    .await;
    // Two idle connections hold both slots.
    let first = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let second = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn({
        let addr = gw.addr;
        async move { get(addr, "/", Some(TOKEN)).await.status }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past the cap"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert_eq!(status, 200);
    drop(second);
}
