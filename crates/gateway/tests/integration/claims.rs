//! Behaviours the README and docs/configuration.md promise, each checked where a user would
//! notice it: `cache.default_ttl`, `cache.max_entries`, `cache.max_bytes`, `timeouts.tls_handshake`.

use chaingate_test_support as support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncReadExt;

/// Exchanges the token server has answered so far.
fn exchanges(sts: &TokenServer) -> usize {
    sts.calls()
}

#[tokio::test(start_paused = true)]
async fn a_token_without_expires_in_lives_for_default_ttl() {
    let sts = TokenServer::scripted(|n, _| Reply::issue(n, None)).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "").replace(
        "[cache]\nexpiry_skew = \"0s\"\n",
        "[cache]\nexpiry_skew = \"0s\"\ndefault_ttl = \"90s\"\nrefresh_ahead = 0.0\n",
    ))
    .await;
    let caller = Some("default-ttl-caller");
    assert_eq!(get(gw.addr, "/", caller).await.status, 200);
    tokio::time::sleep(Duration::from_secs(89)).await;
    assert_eq!(get(gw.addr, "/", caller).await.status, 200);
    assert_eq!(exchanges(&sts), 1, "still cached just before default_ttl");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get(gw.addr, "/", caller).await.status, 200);
    assert_eq!(
        exchanges(&sts),
        2,
        "exchanged again once default_ttl passed"
    );
}

/// The entries gauge once moka has applied its bounds (on its own maintenance schedule: waited
/// for, bounded), or the last value seen above `bound`.
async fn settled_entries(gw: &chaingate_gateway::Running, bound: f64) -> f64 {
    let mut entries = f64::MAX;
    for _ in 0..200 {
        let scrape = metrics(gw).await;
        entries = sample(
            &scrape,
            r#"chaingate_token_cache_entries{domain="billing"}"#,
        )
        .expect("the entries gauge");
        if entries <= bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_holds_at_most_max_bytes_of_tokens() {
    // 4 KiB tokens under a 64 KiB budget: at most 16 fit, though max_entries would allow 1000.
    let sts = TokenServer::scripted(|n, _| {
        let token = format!("at2-{n}-{}", "t".repeat(4096));
        Reply::raw(
            200,
            &format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":300}}"#),
        )
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "").replace(
        "[cache]\nexpiry_skew = \"0s\"\n",
        "[cache]\nexpiry_skew = \"0s\"\nmax_entries = 1000\nmax_bytes = 65536\n",
    ))
    .await;
    for i in 0..200 {
        let token = format!("heavy-caller-{i}");
        assert_eq!(get(gw.addr, "/", Some(&token)).await.status, 200);
    }
    let entries = settled_entries(&gw, 16.0).await;
    assert!(
        entries <= 16.0,
        "{entries} tokens of 4 KiB cached with max_bytes = 64 KiB"
    );
    assert!(entries >= 1.0, "the cache still holds what fits");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_holds_at_most_max_entries_tokens() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "").replace(
        "[cache]\nexpiry_skew = \"0s\"\n",
        "[cache]\nexpiry_skew = \"0s\"\nmax_entries = 10\n",
    ))
    .await;
    for i in 0..200 {
        let token = format!("bounded-caller-{i}");
        assert_eq!(get(gw.addr, "/", Some(&token)).await.status, 200);
    }
    // The gauge must sit at the bound or below, never at the 200 tokens seen.
    let entries = settled_entries(&gw, 10.0).await;
    assert!(
        entries <= 10.0,
        "{entries} entries cached with max_entries = 10"
    );
    assert_eq!(exchanges(&sts), 200);
}

#[tokio::test(start_paused = true)]
async fn a_tls_handshake_that_does_not_finish_is_dropped_at_tls_handshake() {
    let pki = support::tls::pki();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = pki.gateway_tls_section() + "[timeouts]\ntls_handshake = \"3s\"\n";
    let toml = config(&sts.url(), &upstream.url(), &extra);
    let gw = gateway(&toml).await;
    // Connect and send nothing: no ClientHello, so the handshake never finishes.
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 1];
    let read = silent.read(&mut buf).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_never_accepts_the_connection_is_given_upstream_connect() {
    // A listener with a backlog of one that never accepts: once its queue is full, the kernel
    // drops further SYNs and a connect hangs, as against a black-holed address.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(50),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            queued.push(stream);
        }
    }
    let sts = TokenServer::start().await;
    let gw = gateway(&config(
        &sts.url(),
        &format!("http://{addr}"),
        "[timeouts]\nupstream_connect = \"700ms\"\n",
    ))
    .await;
    let started = tokio::time::Instant::now();
    let answer = get(gw.addr, "/", Some("connect-timeout-caller")).await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 502, "{}", answer.body);
    // The configured 700 ms, not the 2 s default or the 30 s response timeout.
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(2),
        "answered after {waited:?}"
    );
    drop(queued);
}

/// The last `Authorization` the upstream received.
fn last_token(upstream: &Upstream) -> String {
    let received = upstream.received();
    let last = received.last().expect("the upstream received a request");
    last.header("authorization").unwrap_or("").to_string()
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_tried_again_before_the_token_in_use_expires() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Lifetime 100 s, renewed from half of it. The token server is down (503, retries and all)
    // when the first renewal runs; the token in use keeps serving, and once the server is back a
    // later request renews it, well before it expires.
    let down = Arc::new(AtomicBool::new(false));
    let outage = down.clone();
    let sts = TokenServer::scripted(move |n, _| {
        if outage.load(Ordering::SeqCst) {
            Reply::error(503, "temporarily_unavailable")
        } else {
            Reply::issue(n, Some(100))
        }
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "").replace(
        "[cache]\nexpiry_skew = \"0s\"\n",
        "[cache]\nexpiry_skew = \"0s\"\nrefresh_ahead = 0.5\n",
    ))
    .await;
    let caller = Some("renewing-caller");
    let issued = tokio::time::Instant::now();
    assert_eq!(get(gw.addr, "/", caller).await.status, 200);
    assert_eq!(last_token(&upstream), "Bearer at2-0");
    tokio::time::sleep(Duration::from_secs(51)).await;
    down.store(true, Ordering::SeqCst);
    // Past half-life: served with at2-0, and a renewal starts and fails.
    assert_eq!(get(gw.addr, "/", caller).await.status, 200);
    while sts.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    down.store(false, Ordering::SeqCst);
    let before = sts.calls();
    // The server is back: requests are served with at2-0 until one of them renews it.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(get(gw.addr, "/", caller).await.status, 200);
        if last_token(&upstream) != "Bearer at2-0" {
            break;
        }
        assert!(
            issued.elapsed() < Duration::from_secs(100),
            "at2-0 expired before a second renewal was tried"
        );
    }
    assert!(issued.elapsed() < Duration::from_secs(100));
    assert_eq!(
        sts.calls(),
        before + 1,
        "one renewal once the server was back"
    );
}
