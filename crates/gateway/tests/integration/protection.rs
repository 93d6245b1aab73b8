//! Protecting the token server and the caller: retries within a budget, a circuit breaker that
//! fails fast and probes back, a cap on exchanges in flight (docs/reliability.md, promises 4 and 12).

use chaingate_test_support as support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

fn with(settings: &str, sts: &TokenServer, upstream: &Upstream) -> String {
    config(&sts.url(), &upstream.url(), "")
        .replace("timeout = \"5s\"", &format!("timeout = \"2s\"\n{settings}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_answers_are_retried_and_refusals_are_not() {
    let sts = TokenServer::scripted(|n, req| match (req.param("oauth_token"), n) {
        (Some("flaky"), 0 | 1) => Reply::error(503, "temporarily_unavailable"),
        (Some("flaky"), _) => Reply::issue(n, Some(60)),
        _ => Reply::error(400, "invalid_grant"),
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&with("retries = 2", &sts, &upstream)).await;
    assert_eq!(get(gw.addr, "/", Some("flaky")).await.status, 200);
    assert_eq!(sts.calls(), 3);
    assert_eq!(get(gw.addr, "/", Some("refused")).await.status, 401);
    assert_eq!(sts.calls(), 4, "a refusal is never retried");
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchange_retries_total{domain="billing"}"#
        ),
        Some(2.0)
    );
}

// Paused time (here and below): the breaker's open second, the token server's delays and the
// cache's windows pass exactly, so a loaded machine cannot stretch a window past its bound.
#[tokio::test(start_paused = true)]
async fn the_breaker_fails_fast_while_the_server_is_down_and_probes_it_back() {
    let down = Arc::new(AtomicBool::new(true));
    let state = down.clone();
    let sts = TokenServer::scripted(move |n, _| {
        if state.load(Ordering::SeqCst) {
            Reply::error(500, "server_error")
        } else {
            Reply::issue(n, Some(60))
        }
    })
    .await;
    let upstream = Upstream::start().await;
    let settings = "retries = 0\nbreaker_failures = 3\nbreaker_open = \"1s\"";
    let gw = gateway(&with(settings, &sts, &upstream)).await;
    for i in 0..3 {
        assert_eq!(
            get(gw.addr, "/", Some(&format!("caller-{i}"))).await.status,
            503
        );
    }
    assert_eq!(sts.calls(), 3);
    // Open: callers get 503 with Retry-After at once, the server gets nothing.
    let fast = get(gw.addr, "/", Some("caller-x")).await;
    assert_eq!(fast.status, 503);
    assert!(fast.header("retry-after").is_some());
    assert_eq!(sts.calls(), 3);
    assert_eq!(
        sample(
            &metrics(&gw).await,
            r#"chaingate_token_exchange_circuit_open{domain="billing"}"#
        ),
        Some(1.0)
    );
    // The server recovers; after the open period one probe closes the breaker.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(gw.addr, "/", Some("caller-y")).await.status, 200);
    assert_eq!(get(gw.addr, "/", Some("caller-z")).await.status, 200);
    assert_eq!(sts.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn exchanges_in_flight_are_capped_per_domain() {
    let sts =
        TokenServer::scripted(|n, _| Reply::issue(n, Some(60)).delayed(Duration::from_millis(400)))
            .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&with("max_in_flight = 2", &sts, &upstream)).await;
    let addr = gw.addr;
    let burst: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                get(addr, "/", Some(&format!("distinct-{i}")))
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in burst {
        statuses.push(request.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 503, 503, 503, 503],
        "two exchanges at a time, the rest shed"
    );
    assert_eq!(sts.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_remembered_briefly_so_it_cannot_hammer_the_server() {
    let sts = TokenServer::scripted(|_, _| Reply::error(400, "invalid_grant")).await;
    let upstream = Upstream::start().await;
    let toml = with("", &sts, &upstream) + "\n[cache]\nnegative_ttl = \"300ms\"\n";
    let toml = toml
        .replacen("[cache]\nexpiry_skew = \"0s\"\n", "", 1)
        .replace(
            "negative_ttl = \"300ms\"",
            "expiry_skew = \"0s\"\nnegative_ttl = \"300ms\"",
        );
    let gw = gateway(&toml).await;
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "/", Some("bad-token")).await.status, 401);
    }
    assert_eq!(
        sts.calls(),
        1,
        "refusals are served from the negative cache"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(gw.addr, "/", Some("bad-token")).await.status, 401);
    assert_eq!(sts.calls(), 2, "and asked again once it expires");
}

#[tokio::test(start_paused = true)]
async fn a_token_in_use_is_renewed_ahead_and_serves_through_an_outage() {
    let down = Arc::new(AtomicBool::new(false));
    let state = down.clone();
    let sts = TokenServer::scripted(move |n, _| {
        if state.load(Ordering::SeqCst) {
            Reply::error(503, "temporarily_unavailable")
        } else {
            Reply::issue(n, Some(2))
        }
    })
    .await;
    let upstream = Upstream::start().await;
    let toml = with("retries = 0", &sts, &upstream).replace(
        "expiry_skew = \"0s\"",
        "expiry_skew = \"0s\"\nrefresh_ahead = 0.5",
    );
    let gw = gateway(&toml).await;
    let token_seen =
        |answer: support::Answer| answer.json()["authorization"].as_str().unwrap().to_string();
    assert_eq!(
        token_seen(get(gw.addr, "/", Some("steady")).await),
        "Bearer at2-0"
    );
    // Past half its life, a hit still answers at once and starts a renewal in the background.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        token_seen(get(gw.addr, "/", Some("steady")).await),
        "Bearer at2-0"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sts.calls(), 2);
    assert_eq!(
        token_seen(get(gw.addr, "/", Some("steady")).await),
        "Bearer at2-1"
    );
    // The token server goes down: the cached token keeps serving until it expires.
    down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/", Some("steady")).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn long_targets_get_414_and_long_tokens_400() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&with("", &sts, &upstream)).await;
    let long_path = format!("/{}", "a".repeat(9 * 1024));
    assert_eq!(get(gw.addr, &long_path, Some("caller")).await.status, 414);
    assert_eq!(
        get(gw.addr, "/", Some(&"t".repeat(9 * 1024))).await.status,
        400
    );
    assert_eq!(sts.calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_refusing_the_token_gets_one_retry_with_a_fresh_one_for_bodyless_requests() {
    let sts = TokenServer::start().await;
    // The upstream considers at2-0 revoked.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let upstream_addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            record.lock().unwrap().push(auth.clone());
            let mut response =
                http::Response::new(http_body_util::Full::new(bytes::Bytes::from(auth.clone())));
            if auth == "Bearer at2-0" {
                *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    "www-authenticate",
                    "Bearer error=\"invalid_token\"".parse().unwrap(),
                );
            }
            response
        }
    })
    .await;
    let upstream = format!("http://{upstream_addr}");
    let toml = config(&sts.url(), &upstream, "");
    let gw = gateway(&toml).await;
    let answer = get(gw.addr, "/", Some("caller")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "Bearer at2-1");
    assert_eq!(
        sts.calls(),
        2,
        "the refused token was evicted and exchanged again, once"
    );
    assert_eq!(*seen.lock().unwrap(), ["Bearer at2-0", "Bearer at2-1"]);
    // The fresh token is what the cache serves from now on.
    assert_eq!(get(gw.addr, "/", Some("caller")).await.body, "Bearer at2-1");
    assert_eq!(sts.calls(), 2);

    // A request with a body is not sent twice: the upstream's 401 reaches the caller.
    let sts = TokenServer::start().await;
    let gw = gateway(&config(&sts.url(), &upstream, "")).await;
    let request = http::Request::post(format!("http://{}/", gw.addr))
        .header("authorization", "Bearer caller")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    assert_eq!(send(&client(), request).await.status, 401);
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_that_stalls_is_cut_off_at_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(
        &(config(&sts.url(), &upstream.url(), "") + "\n[timeouts]\nbody_idle = \"300ms\"\n"),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer caller\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    // Then nothing more. The gateway answers (or closes) well before a hang would end.
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
    let n = answered.expect("the stalled body was cut off").unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || head.starts_with("HTTP/1.1 502"), "{head}");
}
