//! The gateway end to end: real sockets, an in-process token endpoint, an echo upstream.

use chaingate_test_support as support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

const AT1: &str = "caller-token-AT1.part2";

#[tokio::test(flavor = "multi_thread")]
async fn swaps_the_callers_token_for_the_exchanged_one() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;

    let answer = get(gw.addr, "/invoices/42?page=2", Some(AT1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["authorization"], "Bearer at2-0");

    let exchange = &sts.requests()[0];
    assert_eq!(
        exchange.param("grant_type"),
        Some("http://oauth.net/grant_type/chain")
    );
    assert_eq!(exchange.param("oauth_token"), Some(AT1));
    assert_eq!(exchange.param("scope"), Some("invoices.read"));
    assert_eq!(
        exchange.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // client_secret_basic: credentials in the header, never also in the body (RFC 6749 §2.3).
    assert!(exchange
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Basic "));
    assert_eq!(exchange.param("client_secret"), None);

    let seen = &upstream.received()[0];
    assert_eq!(seen.uri, "/invoices/42?page=2");
    assert_eq!(seen.header_all("authorization"), ["Bearer at2-0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_token_reaches_nothing_the_upstream_receives() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let request = Request::post(format!("http://{}/echo", gw.addr))
        .header("authorization", format!("Bearer {AT1}"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "authorization")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200);
    for seen in upstream.received() {
        assert!(!seen.contains(AT1), "AT1 leaked upstream: {seen:?}");
        assert!(
            !seen.contains("caller-token"),
            "part of AT1 leaked upstream: {seen:?}"
        );
        // Listing Authorization in Connection must not strip the credential we add.
        assert_eq!(seen.header("authorization"), Some("Bearer at2-0"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_and_authorization_value_format_are_sent_as_configured() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "")
        .replace("client_secret_basic", "client_secret_post")
        .replace(
            "grant = \"chain\"",
            "grant = \"chain\"\noauth_token_format = \"authorization\"",
        );
    let gw = gateway(&toml).await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);
    let exchange = &sts.requests()[0];
    assert_eq!(exchange.authorization, None);
    assert_eq!(exchange.param("client_id"), Some("gateway-a"));
    assert_eq!(
        exchange.param("client_secret"),
        Some("gateway-secret-value")
    );
    assert_eq!(
        exchange.param("oauth_token"),
        Some(format!("Bearer {AT1}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_and_untrusted_forwarding_fields_are_replaced() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let request = Request::get(format!("http://{}/h", gw.addr))
        .header("authorization", format!("Bearer {AT1}"))
        .header("connection", "x-private, keep-alive")
        .header("x-private", "secret-hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic cHJveHk6cHc=")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6")
        .header("x-forwarded-client-cert", "Hash=forged")
        .header("via", "1.1 edge")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-end-to-end", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200);
    // Hop-by-hop fields from the upstream's response do not reach the caller either.
    assert_eq!(answer.header("x-upstream-private"), None);
    assert_eq!(answer.header("keep-alive"), None);

    let seen = &upstream.received()[0];
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "forwarded",
        "x-forwarded-client-cert",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(seen.header_all("via"), ["1.1 edge", "1.1 chaingate"]);
    assert_eq!(
        seen.header("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_streamed_body_arrives_intact() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    // 24 MiB in 64 KiB chunks, streamed: never a single buffer on either side of the gateway.
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let chunks = 384;
    let mut expected = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for _ in 0..chunks {
        expected.update(&chunk);
    }
    let expected = hex(expected.finish().as_ref());
    let stream = futures_util::stream::iter((0..chunks).map(move |_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(chunk.clone())))
    }));
    let body = http_body_util::StreamBody::new(stream);
    let request = Request::post(format!("http://{}/upload", gw.addr))
        .header("authorization", format!("Bearer {AT1}"))
        .body(body)
        .unwrap();
    let client: hyper_util::client::legacy::Client<_, _> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["len"], 65536 * chunks);
    assert_eq!(json["sha256"], expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_token_make_exactly_one_exchange() {
    let sts = TokenServer::scripted(|n, _| {
        Reply::issue(n, Some(300)).delayed(Duration::from_millis(200))
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let addr = gw.addr;
    let burst: Vec<_> = (0..32)
        .map(|_| tokio::spawn(async move { get(addr, "/burst", Some(AT1)).await }))
        .collect();
    for answer in burst {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["authorization"], "Bearer at2-0");
    }
    assert_eq!(sts.calls(), 1);
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="billing",outcome="issued"}"#
        ),
        Some(1.0)
    );
}

// Paused time: the token's one second passes exactly, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn cached_tokens_are_reused_until_they_expire_then_re_exchanged() {
    let sts = TokenServer::scripted(|n, _| Reply::issue(n, Some(1))).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    assert_eq!(
        get(gw.addr, "/", Some(AT1)).await.json()["authorization"],
        "Bearer at2-0"
    );
    assert_eq!(
        get(gw.addr, "/", Some(AT1)).await.json()["authorization"],
        "Bearer at2-0"
    );
    assert_eq!(sts.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(gw.addr, "/", Some(AT1)).await.json()["authorization"],
        "Bearer at2-1"
    );
    assert_eq!(sts.calls(), 2);
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_cache_lookups_total{domain="billing",result="hit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_cache_lookups_total{domain="billing",result="miss"}"#
        ),
        Some(2.0)
    );
}

// Paused time: AT1's 30 s (read from the wall clock once, at the exchange) pass exactly.
#[tokio::test(start_paused = true)]
async fn a_jwt_callers_own_expiry_caps_the_cached_lifetime() {
    use base64::Engine as _;
    let sts = TokenServer::start().await; // AT2 says 300 s
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let at1 = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"ES256"}"#.into()),
        b64(format!(r#"{{"exp":{exp}}}"#))
    );
    assert_eq!(get(gw.addr, "/", Some(&at1)).await.status, 200);
    assert_eq!(get(gw.addr, "/", Some(&at1)).await.status, 200);
    assert_eq!(sts.calls(), 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(get(gw.addr, "/", Some(&at1)).await.status, 200);
    assert_eq!(sts.calls(), 2, "AT2 must not be served past AT1's exp");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_never_shared_across_callers_scopes_or_domains() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        r#"
[domains.payroll]
token_endpoint = "{}"
client_id = "gateway-a"
client_secret = "other"
allow_insecure_http = true

[[routes]]
name = "write"
path_prefix = "/write"
upstream = "{}"
domain = "billing"
scope = "invoices.write"

[[routes]]
name = "payroll"
path_prefix = "/payroll"
upstream = "{}"
domain = "payroll"
scope = "invoices.read"
"#,
        sts.url(),
        upstream.url(),
        upstream.url()
    );
    let gw = gateway(&config(&sts.url(), &upstream.url(), &extra)).await;
    let token_of = |path: &'static str, who: &'static str| async move {
        let answer = get(gw.addr, path, Some(who)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["authorization"].as_str().unwrap().to_string()
    };
    let alice_read = token_of("/read", "alice").await;
    let alice_write = token_of("/write", "alice").await;
    let alice_payroll = token_of("/payroll", "alice").await;
    let bob_read = token_of("/read", "bob").await;
    let all = [&alice_read, &alice_write, &alice_payroll, &bob_read];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(sts.calls(), 4);
    // Each exchange carried its own caller and scope.
    let requests = sts.requests();
    assert_eq!(requests[1].param("scope"), Some("invoices.write"));
    assert_eq!(requests[3].param("oauth_token"), Some("bob"));
    // And each repeats from the cache.
    assert_eq!(token_of("/read", "alice").await, alice_read);
    assert_eq!(token_of("/write", "alice").await, alice_write);
    assert_eq!(sts.calls(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_usable_credentials_get_rfc6750_answers() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;

    let none = get(gw.addr, "/", None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"chaingate\"")
    );

    let basic = send(
        &client(),
        Request::get(format!("http://{}/", gw.addr))
            .header("authorization", "Basic dTpw")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(basic.status, 401);

    let malformed = get(gw.addr, "/", Some("two words")).await;
    assert_eq!(malformed.status, 400);
    assert!(malformed
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_request\""));

    let twice = send(
        &client(),
        Request::get(format!("http://{}/", gw.addr))
            .header("authorization", "Bearer a")
            .header("authorization", "Bearer b")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(twice.status, 400);

    let query_too = get(gw.addr, "/?access_token=abc", Some("abc")).await;
    assert_eq!(query_too.status, 400);

    assert_eq!(
        sts.calls(),
        0,
        "no exchange for a request that was refused at the door"
    );
    assert!(upstream.received().is_empty());
}

async fn status_when_sts_says(reply: Reply) -> support::Answer {
    let sts = TokenServer::scripted(move |_, _| reply.clone()).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let answer = get(gw.addr, "/", Some(AT1)).await;
    assert!(
        upstream.received().is_empty(),
        "nothing is forwarded after a failed exchange"
    );
    assert!(
        !answer.body.contains("details only"),
        "token server details leaked: {}",
        answer.body
    );
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn token_server_refusals_map_to_caller_errors() {
    let invalid_grant = status_when_sts_says(Reply::error(400, "invalid_grant")).await;
    assert_eq!(invalid_grant.status, 401);
    assert!(invalid_grant
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));

    let invalid_scope = status_when_sts_says(Reply::error(400, "invalid_scope")).await;
    assert_eq!(invalid_scope.status, 403);
    assert!(invalid_scope
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));

    // RFC 8693 §2.2.2: the target (audience/resource) is refused: the caller may not reach it.
    let invalid_target = status_when_sts_says(Reply::error(400, "invalid_target")).await;
    assert_eq!(invalid_target.status, 403);
    assert_eq!(
        invalid_target.header("www-authenticate"),
        Some("Bearer realm=\"chaingate\", error=\"insufficient_scope\", scope=\"invoices.read\"")
    );
    assert_eq!(invalid_target.json()["error"], "insufficient_scope");

    // The token server wants the user back, or more claims (a step-up): relayed as 401 with the
    // same error code, so the caller's client can act on it.
    for code in ["interaction_required", "insufficient_claims"] {
        let answer = status_when_sts_says(Reply::error(400, code)).await;
        assert_eq!(answer.status, 401, "{code}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some(format!("Bearer realm=\"chaingate\", error=\"{code}\"").as_str()),
            "{code}"
        );
        assert_eq!(answer.json()["error"], code);
    }

    for code in [
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
    ] {
        assert_eq!(
            status_when_sts_says(Reply::error(401, code)).await.status,
            502,
            "{code}"
        );
    }
    for body in [
        "not json",
        r#"{"access_token":"x","token_type":"N_A"}"#,
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":"x","token_type":"Bearer","expires_in":-1}"#,
    ] {
        assert_eq!(
            status_when_sts_says(Reply::raw(200, body)).await.status,
            502,
            "{body}"
        );
    }
}

// Paused time: the slow token server's 20 s and the domain's 5 s timeout are virtual.
#[tokio::test(start_paused = true)]
async fn token_server_outages_are_503_with_retry_after_and_slowness_is_504() {
    for status in [500, 503] {
        let answer = status_when_sts_says(Reply::error(status, "server_error")).await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.header("retry-after"), Some("5"));
    }
    let mut throttled = Reply::error(429, "slow_down");
    throttled.retry_after = Some("12");
    let answer = status_when_sts_says(throttled).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("12"));

    let slow =
        status_when_sts_says(Reply::issue(0, Some(60)).delayed(Duration::from_secs(20))).await;
    assert_eq!(slow.status, 504);

    let closed = closed_port().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(
        &format!("http://{closed}/token"),
        &upstream.url(),
        "",
    ))
    .await;
    let unreachable = get(gw.addr, "/", Some(AT1)).await;
    assert_eq!(unreachable.status, 503);
    assert!(unreachable.header("retry-after").is_some());
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="billing",outcome="error"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_that_fits_the_deadline_is_waited_for_then_the_retry_serves() {
    // 429 with Retry-After: 1 on the first call; the domain's deadline (3 s) leaves room, so the
    // gateway waits the whole second and retries instead of answering 503.
    let sts = TokenServer::scripted(|n, _| {
        if n == 0 {
            let mut throttled = Reply::error(429, "slow_down");
            throttled.retry_after = Some("1");
            throttled
        } else {
            Reply::issue(n, Some(60))
        }
    })
    .await;
    let upstream = Upstream::start().await;
    let toml =
        config(&sts.url(), &upstream.url(), "").replace("timeout = \"5s\"", "timeout = \"3s\"");
    let gw = gateway(&toml).await;
    let started = tokio::time::Instant::now();
    let answer = get(gw.addr, "/", Some(AT1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sts.calls(), 2, "one throttled call, one retry");
    // The wait was the server's, not the jittered backoff's few milliseconds.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchange_retries_total{domain="billing"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_not_cached_as_successes() {
    let sts = TokenServer::scripted(|n, _| {
        if n == 0 {
            Reply::error(500, "server_error")
        } else {
            Reply::issue(n, Some(60))
        }
    })
    .await;
    let upstream = Upstream::start().await;
    // Without retries, so the first request sees the 500.
    let toml = config(&sts.url(), &upstream.url(), "")
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nretries = 0");
    let gw = gateway(&toml).await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 503);
    let second = get(gw.addr, "/", Some(AT1)).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["authorization"], "Bearer at2-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_are_502_and_504() {
    let sts = TokenServer::start().await;
    let closed = closed_port().await;
    let gw = gateway(&config(&sts.url(), &format!("http://{closed}"), "")).await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 502);

    let upstream = Upstream::start().await;
    let extra = "[timeouts]\nupstream_response = \"300ms\"\n";
    let gw = gateway(&config(&sts.url(), &upstream.url(), extra)).await;
    assert_eq!(get(gw.addr, "/slow/2000", Some(AT1)).await.status, 504);
    // Upstream statuses pass through unchanged.
    assert_eq!(get(gw.addr, "/status/418", Some(AT1)).await.status, 418);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_cleartext_is_served_and_forwarded_as_http1() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let request = Request::get(format!("http://{}/h2", gw.addr))
        .header("authorization", format!("Bearer {AT1}"))
        .body(Full::default())
        .unwrap();
    let answer = send(&h2_client(), request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["authorization"], "Bearer at2-0");
    let seen = &upstream.received()[0];
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.header_all("via"), ["2 chaingate"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_inbound_offers_h2_and_http1() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let pki = support::tls::pki();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = pki.gateway_tls_section();
    let gw = gateway(&config(&sts.url(), &upstream.url(), &extra)).await;
    let roots = pki.roots();
    for http2 in [false, true] {
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector);
        let request = Request::get(format!("https://localhost:{}/tls", gw.addr.port()))
            .header("authorization", format!("Bearer {AT1}"))
            .body(Full::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let expected = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(response.version(), expected);
    }
    let seen = upstream.received();
    assert!(seen
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let pki = support::tls::pki();
    let sts = TokenServer::start().await;
    // A second gateway terminating TLS plays the https upstream, in front of the echo upstream.
    let upstream = Upstream::start().await;
    let tls_extra = pki.gateway_tls_section();
    let front = gateway(&config(&sts.url(), &upstream.url(), &tls_extra)).await;
    let https_upstream = format!("https://localhost:{}", front.addr.port());
    let with_ca = config(&sts.url(), &https_upstream, "").replace(
        "domain = \"billing\"\n",
        &format!(
            "domain = \"billing\"\nca_file = {:?}\n",
            pki.ca_file.display().to_string()
        ),
    );
    let gw = gateway(&with_ca).await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);
    // Without the CA the upstream's certificate is not trusted.
    let gw = gateway(&config(&sts.url(), &https_upstream, "")).await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_exported_with_config_labels_only() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    get(gw.addr, "/a", Some(AT1)).await;
    get(gw.addr, "/b", Some(AT1)).await;
    get(gw.addr, "/c", None).await;
    let answer = get(gw.admin_addr, "/metrics", None).await;
    assert_eq!(answer.status, 200);
    let scrape = answer.body;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_requests_total{route="default",code="200"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_requests_total{route="default",code="401"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_request_duration_seconds_count{route="default"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchange_duration_seconds_count{domain="billing"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_cache_entries{domain="billing"}"#
        ),
        Some(1.0)
    );
    for leaked in [AT1, "at2-0", "gateway-secret-value", "/a", "/b"] {
        assert!(!scrape.contains(leaked), "{leaked} in metrics");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reports_live_and_ready_and_no_route_is_404() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = "[shutdown]\ndrain_delay = \"2s\"\n";
    let toml = config(&sts.url(), &upstream.url(), extra)
        .replace("path_prefix = \"/\"", "path_prefix = \"/api\"");
    let gw = gateway(&toml).await;
    assert_eq!(get(gw.admin_addr, "/live", None).await.status, 200);
    assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 200);
    assert_eq!(get(gw.addr, "/other", Some(AT1)).await.status, 404);
    assert_eq!(sts.calls(), 0);
    // A drain turns readiness off at once, while the admin port keeps answering.
    gw.begin_shutdown();
    assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 503);
    assert_eq!(get(gw.admin_addr, "/live", None).await.status, 200);
}
