//! Smoke test of the independent OAuth peer built from panva's oidc-provider
//! (crates/e2e/interop/oidc-provider.mjs, run with node): domain A issues RFC 9068 JWT access tokens by
//! client_credentials; domain B accepts them by RFC 8693 token exchange, the chain grant and
//! RFC 7523 jwt-bearer, with client_secret_basic, client_secret_post and private_key_jwt clients.
//!
//! Like authority_interop, the test installs the pinned npm packages itself
//! (`npm ci --prefix crates/e2e/interop`) when they are missing.

use chaingate_test_support as support;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use support::oidc_provider::start_peer;
use support::{client, send, Answer, HttpClient};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const CHAIN: &str = "http://oauth.net/grant_type/chain";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const APP_SECRET: &str = "app-secret-3f9c";
const BASIC_SECRET: &str = "gw-basic-secret-81d2";
const POST_SECRET: &str = "gw-post-secret-a07e";
const PKJWT_KID: &str = "gw-pkjwt-es256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    form.finish()
}

async fn post(
    client: &HttpClient,
    url: &str,
    basic: Option<(&str, &str)>,
    pairs: &[(&str, &str)],
) -> Answer {
    let mut request = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if let Some((id, secret)) = basic {
        // RFC 6749 §2.3.1: form-urlencode id and secret, then Base64.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = format!("{}:{}", encode(id), encode(secret));
        request = request.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(credentials)),
        );
    }
    send(
        client,
        request.body(Full::new(Bytes::from(form(pairs)))).unwrap(),
    )
    .await
}

async fn get_json(client: &HttpClient, url: &str) -> Value {
    let answer = send(
        client,
        Request::get(url).body(Full::new(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "GET {url}: {}", answer.body);
    answer.json()
}

/// Verifies a JWT access token against `jwks_uri` the way a resource server would.
async fn verify_at(client: &HttpClient, metadata: &Value, token: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 typ");
    assert_eq!(header.alg, Algorithm::ES256);
    let jwks: JwkSet =
        serde_json::from_value(get_json(client, metadata["jwks_uri"].as_str().unwrap()).await)
            .unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("kid in jwks");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[metadata["issuer"].as_str().unwrap()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

/// A P-256 key for gw-pkjwt: its public JWK and the PKCS#8 PEM for signing assertions.
fn client_key() -> (Value, EncodingKey) {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    assert_eq!(raw[0], 0x04);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        "kid": PKJWT_KID,
        "alg": "ES256",
        "use": "sig",
    });
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    (jwk, signing)
}

/// A fresh private_key_jwt client assertion (RFC 7523 §3) for `audience`.
fn client_assertion(key: &EncodingKey, audience: &str, jti: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(PKJWT_KID.into());
    let claims = json!({
        "iss": "gw-pkjwt",
        "sub": "gw-pkjwt",
        "aud": audience,
        "jti": jti,
        "iat": now(),
        "exp": now() + 60,
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.json()["error"], code, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_peer_issues_and_exchanges_tokens() {
    let (jwk, pkjwt_key) = client_key();
    let config = json!({
        "client_jwks": { "keys": [jwk] },
        "secrets": { "app": APP_SECRET, "gw-basic": BASIC_SECRET, "gw-post": POST_SECRET },
    });
    let (peer, a, b, _tmp) = start_peer(&config).await;
    let http = client();

    // Discovery: OpenID path and the RFC 8414 alias serve the same metadata.
    let meta_a = get_json(&http, &format!("{a}/.well-known/openid-configuration")).await;
    assert_eq!(meta_a["issuer"], a.as_str());
    let meta_b = get_json(&http, &format!("{b}/.well-known/openid-configuration")).await;
    assert_eq!(meta_b["issuer"], b.as_str());
    assert_eq!(
        get_json(
            &http,
            &format!("{b}/.well-known/oauth-authorization-server")
        )
        .await,
        meta_b
    );
    let grants: Vec<&str> = meta_b["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    for grant in [TOKEN_EXCHANGE, CHAIN, JWT_BEARER] {
        assert!(grants.contains(&grant), "{grant} missing from {grants:?}");
    }
    let methods = meta_b["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
    let token_a = meta_a["token_endpoint"].as_str().unwrap().to_owned();
    let token_b = meta_b["token_endpoint"].as_str().unwrap().to_owned();
    assert_eq!(token_b, format!("{b}/token"));

    // 1. AT1 from A by client_credentials (Basic).
    let answer = post(
        &http,
        &token_a,
        Some(("app", APP_SECRET)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "a:read a:write"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "a:read a:write");
    let at1 = body["access_token"].as_str().unwrap().to_owned();
    let at1_claims = verify_at(&http, &meta_a, &at1, "urn:a:gateway").await;
    assert_eq!(at1_claims["sub"], "app");
    assert_eq!(at1_claims["client_id"], "app");
    let at1_exp = at1_claims["exp"].as_u64().unwrap();

    // Wrong secret at A.
    let answer = post(
        &http,
        &token_a,
        Some(("app", "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_client");

    // 2. B: each grant, each client authentication method.
    let check_b = |answer: Answer, client_id: &'static str| {
        let meta_b = meta_b.clone();
        let http = http.clone();
        async move {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let body = answer.json();
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["scope"], "b:read");
            let expires_in = body["expires_in"].as_u64().unwrap();
            assert!(expires_in > 0 && expires_in <= 300, "{expires_in}");
            let token = body["access_token"].as_str().unwrap().to_owned();
            let claims = verify_at(&http, &meta_b, &token, "urn:b:api").await;
            assert_eq!(claims["sub"], "app", "sub carried over");
            assert_eq!(claims["client_id"], client_id);
            assert_eq!(claims["scope"], "b:read");
            assert!(claims["exp"].as_u64().unwrap() <= at1_exp);
            (body, claims)
        }
    };

    // RFC 8693 token exchange, client_secret_basic, scope in B's names.
    let answer = post(
        &http,
        &token_b,
        Some(("gw-basic", BASIC_SECRET)),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &at1),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", "urn:b:api"),
            ("resource", "urn:b:api"),
            ("scope", "b:read"),
        ],
    )
    .await;
    let (body, claims) = check_b(answer, "gw-basic").await;
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    let b_token = body["access_token"].as_str().unwrap().to_owned();
    assert!(claims.get("act").is_none());

    // Token exchange with an actor token: `act` names the actor.
    let answer = post(
        &http,
        &token_b,
        Some(("gw-basic", BASIC_SECRET)),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &at1),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("actor_token", &at1),
            ("actor_token_type", ACCESS_TOKEN_TYPE),
            ("scope", "a:read"),
        ],
    )
    .await;
    let (_, claims) = check_b(answer, "gw-basic").await;
    assert_eq!(claims["act"]["sub"], "app");

    // Chain grant, client_secret_post, bare and `Bearer `-prefixed oauth_token, scope in A's names.
    for oauth_token in [at1.clone(), format!("Bearer {at1}")] {
        let answer = post(
            &http,
            &token_b,
            None,
            &[
                ("grant_type", CHAIN),
                ("oauth_token", &oauth_token),
                ("scope", "a:read"),
                ("client_id", "gw-post"),
                ("client_secret", POST_SECRET),
            ],
        )
        .await;
        let (body, _) = check_b(answer, "gw-post").await;
        assert!(body.get("issued_token_type").is_none());
    }

    // RFC 7523 jwt-bearer with private_key_jwt client authentication (aud = token endpoint).
    let assertion = client_assertion(&pkjwt_key, &token_b, "jti-1");
    let jwt_bearer_form = |client_assertion: &str| {
        form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", &at1),
            ("scope", "b:read"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", client_assertion),
        ])
    };
    let post_raw = |body: String| {
        let http = http.clone();
        let url = token_b.clone();
        async move {
            send(
                &http,
                Request::post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
        }
    };
    let answer = post_raw(jwt_bearer_form(&assertion)).await;
    check_b(answer, "gw-pkjwt").await;
    // oidc-provider refuses a replayed client assertion (same jti).
    let answer = post_raw(jwt_bearer_form(&assertion)).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_client");
    // The issuer is also an accepted assertion audience.
    let answer = post_raw(jwt_bearer_form(&client_assertion(&pkjwt_key, &b, "jti-2"))).await;
    check_b(answer, "gw-pkjwt").await;

    // 3. Negative: garbage tokens.
    let answer = post(
        &http,
        &token_b,
        Some(("gw-basic", BASIC_SECRET)),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", "garbage"),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ],
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    for oauth_token in ["garbage", "Bearer garbage"] {
        let answer = post(
            &http,
            &token_b,
            Some(("gw-basic", BASIC_SECRET)),
            &[("grant_type", CHAIN), ("oauth_token", oauth_token)],
        )
        .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let answer = post_raw(form(&[
        ("grant_type", JWT_BEARER),
        ("assertion", "garbage"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        (
            "client_assertion",
            &client_assertion(&pkjwt_key, &token_b, "jti-3"),
        ),
    ]))
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_grant");
    // A tampered signature, and a token B itself issued (not from A): refused.
    let tampered = support::tamper_signature(&at1);
    for subject_token in [tampered.as_str(), b_token.as_str()] {
        let answer = post(
            &http,
            &token_b,
            Some(("gw-basic", BASIC_SECRET)),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject_token),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
        )
        .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
        let answer = post(
            &http,
            &token_b,
            Some(("gw-basic", BASIC_SECRET)),
            &[("grant_type", CHAIN), ("oauth_token", subject_token)],
        )
        .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // Scope beyond the client's.
    let answer = post(
        &http,
        &token_b,
        Some(("gw-basic", BASIC_SECRET)),
        &[
            ("grant_type", CHAIN),
            ("oauth_token", &at1),
            ("scope", "b:admin"),
        ],
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_scope");
    // Wrong client secret at B.
    let answer = post(
        &http,
        &token_b,
        Some(("gw-basic", "wrong")),
        &[("grant_type", CHAIN), ("oauth_token", &at1)],
    )
    .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_client");

    peer.stop().await;
}
