//! RFC 8693 token exchange.

use http::StatusCode;
use serde_json::json;

use super::support::*;

async fn exchange(d: &Domains, params: &[(&str, &str)]) -> Reply {
    let mut all = vec![("grant_type", EXCHANGE)];
    all.extend_from_slice(params);
    post(
        &d.b_url("/token"),
        Some(&basic("gateway", "gw-secret")),
        &all,
    )
    .await
}

#[tokio::test]
async fn token_exchange_issues_a_token_for_the_requested_audience_with_issued_token_type() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read a:write").await;
    let r = exchange(
        &d,
        &[
            ("subject_token", &at1),
            ("subject_token_type", AT_TYPE),
            ("audience", "urn:b:other"),
            ("scope", "b:write"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.body["issued_token_type"], AT_TYPE);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], "b:write");
    assert!(r.body.get("refresh_token").is_none());
    assert_eq!(r.headers["cache-control"], "no-store");
    let c = claims(&r.token());
    assert_eq!(c["aud"], "urn:b:other");
    assert_eq!(c["sub"], "app");
    assert!(c.get("act").is_none());
}

#[tokio::test]
async fn token_exchange_with_an_actor_token_records_the_actor_in_act() {
    let d = Domains::start().await;
    let mut subject = forge_claims("a:read");
    subject["act"] = json!({ "sub": "earlier-actor" });
    let subject = d.forge.sign("at+jwt", &subject);
    let actor = d.at1("a:read").await; // sub = "app" at domain A
    let r = exchange(
        &d,
        &[
            ("subject_token", &subject),
            ("subject_token_type", AT_TYPE),
            ("actor_token", &actor),
            ("actor_token_type", AT_TYPE),
            ("resource", "urn:b:api"),
            ("resource", "urn:b:other"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:jwt",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        r.body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let c = claims(&r.token());
    assert_eq!(c["sub"], "forge|alice");
    assert_eq!(c["act"]["sub"], "app");
    assert_eq!(c["act"]["iss"], d.a.issuer());
    assert_eq!(c["act"]["act"]["sub"], "earlier-actor", "prior actors nest");
    assert_eq!(c["aud"], json!(["urn:b:api", "urn:b:other"]));
}

#[tokio::test]
async fn token_exchange_refuses_unknown_audiences_with_invalid_target() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    for (name, value) in [
        ("audience", "urn:unknown"),
        ("resource", "https://unknown.example/api"),
        ("resource", "not a uri"),
    ] {
        let r = exchange(
            &d,
            &[
                ("subject_token", &at1),
                ("subject_token_type", AT_TYPE),
                (name, value),
            ],
        )
        .await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_target"),
            "{value}: {}",
            r.raw
        );
    }
}

#[tokio::test]
async fn token_exchange_reports_bad_subject_and_actor_tokens_as_invalid_request() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    let mut expired = forge_claims("a:read");
    expired["exp"] = json!(now() - 100);
    let expired = d.forge.sign("at+jwt", &expired);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("subject_token", &expired), ("subject_token_type", AT_TYPE)],
        vec![
            ("subject_token", "garbage"),
            ("subject_token_type", AT_TYPE),
        ],
        vec![("subject_token", &at1)],
        vec![
            ("subject_token", &at1),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ],
        vec![
            ("subject_token", &at1),
            ("subject_token_type", AT_TYPE),
            ("actor_token", &at1),
        ],
        vec![
            ("subject_token", &at1),
            ("subject_token_type", AT_TYPE),
            ("actor_token_type", AT_TYPE),
        ],
        vec![
            ("subject_token", &at1),
            ("subject_token_type", AT_TYPE),
            ("actor_token", &expired),
            ("actor_token_type", AT_TYPE),
        ],
        vec![
            ("subject_token", &at1),
            ("subject_token_type", AT_TYPE),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
        ],
    ];
    for params in cases {
        let r = exchange(&d, &params).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{params:?}: {}",
            r.raw
        );
        assert!(!r.raw.contains(&at1) && !r.raw.contains(&expired));
    }
}
