//! Chain grant (draft-hunt-oauth-chain-01) and client_credentials at the token endpoint.

use http::StatusCode;
use serde_json::{json, Value};

use super::support::*;

#[tokio::test]
async fn client_credentials_issues_a_signed_rfc9068_token_with_no_store_headers() {
    let d = Domains::start().await;
    let r = post(
        &d.b_url("/token"),
        Some(&basic("gateway", "gw-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], "b:read b:write");
    assert!(r.body.get("refresh_token").is_none());
    let expires_in = r.body["expires_in"].as_u64().unwrap();
    assert!((299..=300).contains(&expires_in), "{expires_in}");

    let token = r.token();
    let h = header(&token);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    let c = claims(&token);
    assert_eq!(c["iss"], d.b.issuer());
    assert_eq!(c["sub"], "gateway");
    assert_eq!(c["client_id"], "gateway");
    assert_eq!(c["aud"], "urn:b:api");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);

    // The signature verifies with the published key.
    let jwks = get(&d.b_url("/jwks.json")).await.body;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    assert_eq!(jwk.common.key_id.as_deref(), h["kid"].as_str());
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["urn:b:api"]);
    v.set_issuer(&[d.b.issuer()]);
    jsonwebtoken::decode::<Value>(&token, &key, &v).expect("signature verifies");
}

#[tokio::test]
async fn client_credentials_reduces_scope_to_the_client_scope_and_reports_it() {
    let d = Domains::start().await;
    let url = d.b_url("/token");
    let auth = basic("gateway", "gw-secret");
    let r = post(
        &url,
        Some(&auth),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "b:read x:y"),
        ],
    )
    .await;
    assert_eq!(r.body["scope"], "b:read", "{}", r.raw);
    let r = post(
        &url,
        Some(&auth),
        &[("grant_type", "client_credentials"), ("scope", "x:y")],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
}

#[tokio::test]
async fn chain_grant_exchanges_a_domain_a_token_for_a_domain_b_token() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read a:write a:admin").await;
    let r = d.chain(&at1, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    assert!(
        r.body.get("refresh_token").is_none(),
        "no refresh token: {}",
        r.raw
    );
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], "b:read b:write");
    let at2 = r.token();
    let (c1, c2) = (claims(&at1), claims(&at2));
    assert_eq!(c2["iss"], d.b.issuer());
    assert_eq!(c2["sub"], "app", "subject carried over from AT1");
    assert_eq!(c2["client_id"], "gateway");
    assert_eq!(c2["aud"], "urn:b:api");
    assert!(c2["exp"].as_u64() <= c1["exp"].as_u64());
    assert_eq!(header(&at2)["typ"], "at+jwt");
}

#[tokio::test]
async fn chain_grant_accepts_bare_and_bearer_prefixed_tokens_case_insensitively() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    for value in [
        at1.clone(),
        format!("Bearer {at1}"),
        format!("bearer {at1}"),
        format!("BEARER {at1}"),
    ] {
        let r = d.chain(&value, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    }
    let r = d.chain(&format!("MAC {at1}"), &[]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(r.body["error_description"], "unsupported token scheme");
}

#[tokio::test]
async fn chain_grant_caps_the_new_token_at_the_presented_tokens_expiry() {
    let d = Domains::start().await;
    let mut c = forge_claims("a:read");
    c["exp"] = json!(now() + 60);
    let r = d.chain(&d.forge.sign("at+jwt", &c), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert!(r.body["expires_in"].as_u64().unwrap() <= 60);
    let at2 = claims(&r.token());
    assert!(at2["exp"].as_u64().unwrap() <= now() + 60);
    assert_eq!(at2["sub"], "forge|alice", "subject_prefix maps the subject");
}

#[tokio::test]
async fn chain_grant_rejects_every_invalid_token_with_invalid_grant() {
    let d = Domains::start().await;
    let other = TestKey::new("forge-1"); // same kid, different key
    let valid = forge_claims("a:read");
    let with = |k: &str, v: Value| {
        let mut c = valid.clone();
        c[k] = v;
        c
    };
    let unsigned = {
        let b64 = |v: Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "at+jwt"})),
            b64(valid.clone())
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            d.forge.sign("at+jwt", &with("exp", json!(now() - 120))),
        ),
        (
            "string exp",
            d.forge
                .sign("at+jwt", &with("exp", json!((now() + 600).to_string()))),
        ),
        (
            "no exp",
            d.forge.sign("at+jwt", &{
                let mut c = valid.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        (
            "string nbf",
            d.forge.sign("at+jwt", &with("nbf", json!("0"))),
        ),
        ("bad signature", other.sign("at+jwt", &valid)),
        (
            "unknown issuer",
            d.forge
                .sign("at+jwt", &with("iss", json!("https://evil.example"))),
        ),
        (
            "iss not exact",
            d.forge
                .sign("at+jwt", &with("iss", json!("https://forge.example/"))),
        ),
        (
            "wrong aud",
            d.forge.sign("at+jwt", &with("aud", json!(["urn:other"]))),
        ),
        (
            "no aud",
            d.forge.sign("at+jwt", &{
                let mut c = valid.clone();
                c.as_object_mut().unwrap().remove("aud");
                c
            }),
        ),
        ("typ JWT", d.forge.sign("JWT", &valid)),
        (
            "no typ",
            d.forge.sign_with("at+jwt", &valid, |h| h.typ = None),
        ),
        ("alg none", unsigned),
        (
            "jku to attacker keys",
            other.sign_with("at+jwt", &valid, |h| {
                h.kid = Some("attacker".into());
                h.jku = Some("http://127.0.0.1:1/jwks.json".into());
            }),
        ),
        ("not a jwt", "opaque-token-value".to_string()),
    ];
    for (name, token) in cases {
        let r = d.chain(&token, &[]).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
            "{name}: {}",
            r.raw
        );
        let description = r.body["error_description"].as_str().unwrap_or("");
        assert!(!description.is_empty(), "{name}: useful description");
        assert!(!r.raw.contains(&token), "{name}: token echoed");
    }
}

#[tokio::test]
async fn chain_grant_scope_is_request_intersect_mapped_token_scope_intersect_client_scope() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read a:admin").await; // maps to b:read only
    let r = d.chain(&at1, &[]).await;
    assert_eq!(r.body["scope"], "b:read", "{}", r.raw);
    let r = d.chain(&at1, &[("scope", "b:read b:write")]).await;
    assert_eq!(r.body["scope"], "b:read", "{}", r.raw);
    let r = d.chain(&at1, &[("scope", "b:write")]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
    let unmapped = d.at1("a:admin").await;
    let r = d.chain(&unmapped, &[]).await;
    assert_eq!(r.error(), "invalid_scope", "{}", r.raw);
    // The client's own scope bounds the result too (jwt-client may only get b:read).
    let at1 = d.at1("a:read a:write").await;
    let assertion = d.assertion(json!({}));
    let r = post(
        &d.b_url("/token"),
        None,
        &[
            ("grant_type", CHAIN),
            ("oauth_token", &at1),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(r.body["scope"], "b:read", "{}", r.raw);
}

#[tokio::test]
async fn chain_grant_needs_exactly_one_oauth_token() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    let r = d.chain(&at1, &[("oauth_token", &at1)]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = post(
        &d.b_url("/token"),
        Some(&basic("gateway", "gw-secret")),
        &[("grant_type", CHAIN)],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn chain_grant_requires_client_authentication_and_permission() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    let r = post(
        &d.b_url("/token"),
        None,
        &[("grant_type", CHAIN), ("oauth_token", &at1)],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let r = post(
        &d.b_url("/token"),
        Some(&basic("gateway", "wrong")),
        &[("grant_type", CHAIN), ("oauth_token", &at1)],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let r = post(
        &d.b_url("/token"),
        Some(&basic("limited", "limited-secret")),
        &[("grant_type", CHAIN), ("oauth_token", &at1)],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
}

#[tokio::test]
async fn token_endpoint_refuses_duplicates_ignores_unknown_and_treats_empty_as_omitted() {
    let d = Domains::start().await;
    let url = d.b_url("/token");
    let auth = basic("gateway", "gw-secret");
    let r = post(
        &url,
        Some(&auth),
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = post(
        &url,
        Some(&auth),
        &[
            ("grant_type", "client_credentials"),
            ("scope", ""),
            ("x-unknown", "1"),
        ],
    )
    .await;
    assert_eq!(
        r.body["scope"], "b:read b:write",
        "empty scope = omitted: {}",
        r.raw
    );
    let r = post(&url, Some(&auth), &[("grant_type", "Client_Credentials")]).await;
    assert_eq!(r.error(), "unsupported_grant_type");
    let r = post(
        &url,
        Some(&auth),
        &[("grant_type", "http://oauth.net/grant_type/chain/")],
    )
    .await;
    assert_eq!(r.error(), "unsupported_grant_type");
    let r = post(&url, Some(&auth), &[]).await;
    assert_eq!(r.error(), "invalid_request");
    let r = get(&url).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}
