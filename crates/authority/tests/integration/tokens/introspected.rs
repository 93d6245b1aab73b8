//! Trusted issuers whose tokens are validated by RFC 7662 introspection (opaque tokens).

use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;

use super::support::*;

const DOMAIN_A: &str = r#"
listen = "127.0.0.1:0"
default_audience = "urn:a:gateway"
[[clients]]
client_id = "app"
client_secret = "app-secret"
grants = ["client_credentials"]
scope = "a:read"
[[clients]]
client_id = "domain-b"
client_secret = "b-introspects"
"#;

async fn domain_b(a: &RunningAuthority, cache_ttl: &str) -> RunningAuthority {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["chain"]
scope = "b:read"
[[trusted_issuers]]
issuer = "{a}"
introspection_endpoint = "{a}/introspect"
introspection_client_id = "domain-b"
introspection_client_secret = "b-introspects"
introspection_cache_ttl = "{cache_ttl}"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read" }}
"#,
        a = a.issuer()
    );
    spawn(AuthorityConfig::from_toml(&toml).unwrap())
        .await
        .unwrap()
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
async fn chain_grant_validates_tokens_by_introspection_and_sees_revocation() {
    let a = spawn(AuthorityConfig::from_toml(DOMAIN_A).unwrap())
        .await
        .unwrap();
    let b = domain_b(&a, "0s").await;
    let app = basic("app", "app-secret");
    let at1 = post(
        &format!("{}/token", a.issuer()),
        Some(&app),
        &[("grant_type", "client_credentials")],
    )
    .await
    .token();
    let r = chain_at(&b, &at1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let at2 = claims(&r.token());
    assert_eq!(at2["sub"], "app");
    assert_eq!(at2["scope"], "b:read");
    assert!(at2["exp"].as_u64() <= claims(&at1)["exp"].as_u64());

    let r = post(
        &format!("{}/revoke", a.issuer()),
        Some(&app),
        &[("token", &at1)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = chain_at(&b, &at1).await;
    assert_eq!(r.error(), "invalid_grant", "revoked at A: {}", r.raw);
    let r = chain_at(&b, "opaque-garbage").await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.raw);
}

#[tokio::test]
async fn introspection_answers_are_cached_within_the_ttl() {
    let a = spawn(AuthorityConfig::from_toml(DOMAIN_A).unwrap())
        .await
        .unwrap();
    let b = domain_b(&a, "1h").await;
    let app = basic("app", "app-secret");
    let at1 = post(
        &format!("{}/token", a.issuer()),
        Some(&app),
        &[("grant_type", "client_credentials")],
    )
    .await
    .token();
    assert_eq!(chain_at(&b, &at1).await.status, StatusCode::OK);
    a.shutdown().await; // A is gone: only the cache can answer now
    let r = chain_at(&b, &at1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}
