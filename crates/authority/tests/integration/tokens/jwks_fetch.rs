//! Remote JWKS of trusted issuers: cached, refetched on unknown `kid` at a bounded rate,
//! bounded in size and time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::support::*;

const ISS: &str = "https://rotating.example";

/// A minimal JWKS server: answers every request with the current body; counts requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    /// `stall`: accept but never answer (to exercise the fetch timeout).
    async fn start(body: String, stall: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if stall {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { url, body, hits }
    }
}

async fn authority(jwks_uri: &str, extra: &str) -> RunningAuthority {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
{extra}
[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["chain"]
scope = "a:read"
[[trusted_issuers]]
issuer = "{ISS}"
jwks_uri = "{jwks_uri}"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
"#
    );
    spawn(AuthorityConfig::from_toml(&toml).unwrap())
        .await
        .unwrap()
}

fn token(key: &TestKey) -> String {
    let mut c = forge_claims("a:read");
    c["iss"] = json!(ISS);
    key.sign("at+jwt", &c)
}

async fn chain_at(b: &RunningAuthority, token: &str) -> Reply {
    post(
        &format!("{}/token", b.issuer()),
        Some(&basic("gateway", "gw-secret")),
        &[("grant_type", CHAIN), ("oauth_token", token)],
    )
    .await
}

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_but_only_once_per_interval() {
    let (k1, k2) = (TestKey::new("k1"), TestKey::new("k2"));
    let server = JwksServer::start(k1.jwks(), false).await;
    let b = authority(&server.url, "jwks_min_refetch_interval = \"1h\"").await;
    assert_eq!(chain_at(&b, &token(&k1)).await.status, StatusCode::OK);
    assert_eq!(chain_at(&b, &token(&k1)).await.status, StatusCode::OK);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "keys are cached");
    *server.body.lock().unwrap() = k2.jwks();
    for _ in 0..3 {
        let r = chain_at(&b, &token(&k2)).await;
        assert_eq!(r.error(), "invalid_grant", "{}", r.raw);
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "refetch is rate-limited"
    );

    let b2 = authority(&server.url, "jwks_min_refetch_interval = \"0s\"").await;
    *server.body.lock().unwrap() = k1.jwks();
    assert_eq!(chain_at(&b2, &token(&k1)).await.status, StatusCode::OK);
    *server.body.lock().unwrap() = k2.jwks();
    let r = chain_at(&b2, &token(&k2)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "rotated key found after refetch: {}",
        r.raw
    );
}

#[tokio::test]
async fn oversized_or_slow_jwks_fail_the_grant_quickly() {
    let k = TestKey::new("k");
    let big = json!({ "keys": [k.jwk], "padding": "x".repeat(10_000) }).to_string();
    let server = JwksServer::start(big, false).await;
    let b = authority(&server.url, "jwks_max_bytes = 4096").await;
    let r = chain_at(&b, &token(&k)).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.raw);

    let slow = JwksServer::start(k.jwks(), true).await;
    let b = authority(&slow.url, "jwks_fetch_timeout = \"300ms\"").await;
    let started = tokio::time::Instant::now();
    let r = chain_at(&b, &token(&k)).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.raw);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
