//! Client authentication: client_secret_basic, client_secret_post, private_key_jwt.

use http::StatusCode;
use serde_json::json;

use super::support::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn basic_auth_form_urlencodes_client_id_and_secret_before_base64() {
    let d = Domains::start().await;
    // client_id `a:b ü`, secret `s%cr+t &=x`: both need RFC 6749 App. B encoding.
    let r = post(
        &d.b_url("/token"),
        Some(&basic("a:b ü", "s%cr+t &=x")),
        &[CC],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(claims(&r.token())["client_id"], "a:b ü");
    // Without the encoding the `:` in the id splits wrongly: refused.
    let raw = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "a:b ü:s%cr+t &=x",
    );
    let r = post(&d.b_url("/token"), Some(&format!("Basic {raw}")), &[CC]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_secret_with_basic_is_401_invalid_client_with_a_basic_challenge() {
    let d = Domains::start().await;
    let r = post(&d.b_url("/token"), Some(&basic("gateway", "nope")), &[CC]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(!r.raw.contains("nope"));
    let r = post(&d.b_url("/token"), Some(&basic("nobody", "x")), &[CC]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let r = post(&d.b_url("/token"), Some("Bearer abc"), &[CC]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

#[tokio::test]
async fn client_secret_post_works_only_for_clients_registered_for_it() {
    let d = Domains::start().await;
    let url = d.b_url("/token");
    let r = post(
        &url,
        None,
        &[
            CC,
            ("client_id", "poster"),
            ("client_secret", "post-secret"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let r = post(&url, Some(&basic("poster", "post-secret")), &[CC]).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let r = post(
        &url,
        None,
        &[CC, ("client_id", "gateway"), ("client_secret", "gw-secret")],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

#[tokio::test]
async fn more_than_one_authentication_method_is_invalid_request() {
    let d = Domains::start().await;
    let r = post(
        &d.b_url("/token"),
        Some(&basic("gateway", "gw-secret")),
        &[CC, ("client_id", "gateway"), ("client_secret", "gw-secret")],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let assertion = d.assertion(json!({}));
    let r = post(
        &d.b_url("/token"),
        Some(&basic("gateway", "gw-secret")),
        &[
            CC,
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

async fn with_assertion(d: &Domains, assertion: &str) -> Reply {
    post(
        &d.b_url("/token"),
        None,
        &[
            CC,
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
    )
    .await
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_and_refuses_a_replayed_jti() {
    let d = Domains::start().await;
    let assertion = d.assertion(json!({}));
    let r = with_assertion(&d, &assertion).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(claims(&r.token())["client_id"], "jwt-client");
    let r = with_assertion(&d, &assertion).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("jti"),
        "{}",
        r.raw
    );
    // The issuer identifier is also an acceptable audience.
    let r = with_assertion(&d, &d.assertion(json!({ "aud": d.b.issuer() }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}

#[tokio::test]
async fn private_key_jwt_refuses_bad_assertions() {
    let d = Domains::start().await;
    let stranger = TestKey::new("client-1");
    let at_typed = d.client_key.sign(
        "at+jwt",
        &json!({
            "iss": "jwt-client", "sub": "jwt-client", "aud": d.b_url("/token"),
            "exp": now() + 60, "jti": "typed",
        }),
    );
    let cases = vec![
        (
            "wrong aud",
            d.assertion(json!({ "aud": "https://elsewhere.example/token" })),
        ),
        ("expired", d.assertion(json!({ "exp": now() - 120 }))),
        (
            "exp too far ahead",
            d.assertion(json!({ "exp": now() + 86_400 })),
        ),
        ("no jti", d.assertion(json!({ "jti": null }))),
        ("sub differs", d.assertion(json!({ "sub": "someone-else" }))),
        (
            "string exp",
            d.assertion(json!({ "exp": (now() + 60).to_string() })),
        ),
        (
            "wrong key",
            stranger.sign(
                "JWT",
                &json!({
                    "iss": "jwt-client", "sub": "jwt-client", "aud": d.b_url("/token"),
                    "exp": now() + 60, "jti": "k",
                }),
            ),
        ),
        ("access token as assertion", at_typed),
    ];
    for (name, assertion) in cases {
        let r = with_assertion(&d, &assertion).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "invalid_client"),
            "{name}: {}",
            r.raw
        );
        assert!(!r.raw.contains(&assertion), "{name}: assertion echoed");
    }
}
