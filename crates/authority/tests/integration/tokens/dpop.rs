//! DPoP at the token endpoint (RFC 9449 §5): bound tokens, refused proofs, introspection.

use bytes::Bytes;
use chaingate_oauth::dpop::ProofKey;
use http::StatusCode;
use http_body_util::Full;
use serde_json::{json, Value};

use super::support::*;

const CC: (&str, &str) = ("grant_type", "client_credentials");

/// POSTs a form as `gateway` with each of `proofs` as a `DPoP` header.
async fn post_dpop(url: &str, proofs: &[&str], params: &[(&str, &str)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic("gateway", "gw-secret"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    for proof in proofs {
        req.headers_mut().append("dpop", proof.parse().unwrap());
    }
    send(req).await
}

/// A proof signed by `key` (a [`TestKey`]) with any claims: for what ProofKey will not make.
fn forged(key: &TestKey, claims: &Value) -> String {
    let mut jwk = key.jwk.clone();
    for member in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    key.sign_with("dpop+jwt", claims, |h| {
        h.kid = None;
        h.jwk = Some(serde_json::from_value(jwk).unwrap());
    })
}

fn assert_bound(r: &Reply, key: &ProofKey) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.body["token_type"], "DPoP", "{}", r.raw);
    assert_eq!(claims(&r.token())["cnf"], json!({ "jkt": key.jkt() }));
}

#[tokio::test]
async fn a_proof_binds_client_credentials_and_chain_tokens_and_introspection_shows_it() {
    let d = Domains::start().await;
    let url = d.b_url("/token");
    let key = ProofKey::generate().unwrap();
    let r = post_dpop(
        &url,
        &[&key.proof("POST", &url, None, None).unwrap()],
        &[CC],
    )
    .await;
    assert_bound(&r, &key);
    let bound = r.token();

    let at1 = d.at1("a:read").await;
    let proof = key.proof("POST", &url, None, None).unwrap();
    let r = post_dpop(
        &url,
        &[&proof],
        &[("grant_type", CHAIN), ("oauth_token", &at1)],
    )
    .await;
    assert_bound(&r, &key);

    // Without a proof nothing changes: Bearer, no cnf.
    let r = post(&url, Some(&basic("gateway", "gw-secret")), &[CC]).await;
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(claims(&r.token()).get("cnf").is_none());

    // RFC 9449 §6.2 (introspection) and §5.1 (metadata).
    let r = post(
        &d.b_url("/introspect"),
        Some(&basic("gateway", "gw-secret")),
        &[("token", &bound)],
    )
    .await;
    assert_eq!(r.body["active"], true, "{}", r.raw);
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["cnf"], json!({ "jkt": key.jkt() }));
    let m = get(&d.b_url("/.well-known/oauth-authorization-server")).await;
    let algs = m.body["dpop_signing_alg_values_supported"].as_array();
    assert!(
        algs.is_some_and(|a| a.contains(&json!("ES256"))),
        "{}",
        m.raw
    );
}

#[tokio::test]
async fn bad_proofs_are_invalid_dpop_proof_and_never_quoted() {
    let d = Domains::start().await;
    let url = d.b_url("/token");
    let key = ProofKey::generate().unwrap();
    let forge = TestKey::new("dpop-forge");
    let claims_at = |iat: u64, htm: &str, htu: &str| json!({ "jti": format!("j-{iat}-{htm}-{}", htu.len()), "htm": htm, "htu": htu, "iat": iat });
    // The forging itself is right: a fresh, well-formed forged proof is accepted.
    let good = forged(&forge, &claims_at(now(), "POST", &url));
    assert_eq!(
        post_dpop(&url, &[&good], &[CC]).await.status,
        StatusCode::OK
    );

    let mut tampered = key.proof("POST", &url, None, None).unwrap();
    let last = if tampered.ends_with('A') { 'B' } else { 'A' };
    tampered.pop();
    tampered.push(last);
    let two = [
        key.proof("POST", &url, None, None).unwrap(),
        key.proof("POST", &url, None, None).unwrap(),
    ];
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("bad signature", vec![tampered]),
        (
            "wrong htm",
            vec![key.proof("GET", &url, None, None).unwrap()],
        ),
        (
            "wrong htu",
            vec![key
                .proof("POST", &d.b_url("/introspect"), None, None)
                .unwrap()],
        ),
        (
            "stale iat",
            vec![forged(&forge, &claims_at(now() - 600, "POST", &url))],
        ),
        ("replayed jti", vec![good.clone()]),
        ("two headers", two.to_vec()),
    ];
    for (case, proofs) in cases {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = post_dpop(&url, &refs, &[CC]).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            "{case}: {}",
            r.raw
        );
        assert!(r.body["error_description"].is_string(), "{case}");
        for proof in &proofs {
            assert!(!r.raw.contains(proof.as_str()), "{case}: proof quoted");
        }
    }
}

#[tokio::test]
async fn with_require_dpop_nonce_a_proof_without_the_nonce_gets_use_dpop_nonce_then_succeeds() {
    let b = chaingate_authority::spawn(
        chaingate_authority::AuthorityConfig::from_toml(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:b:api"
require_dpop_nonce = true

[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["client_credentials"]
"#,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let url = format!("{}/token", b.issuer());
    let key = ProofKey::generate().unwrap();
    let r = post_dpop(
        &url,
        &[&key.proof("POST", &url, None, None).unwrap()],
        &[CC],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "use_dpop_nonce"),
        "{}",
        r.raw
    );
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_string();
    let wrong = key.proof("POST", &url, None, Some("not-ours")).unwrap();
    let r = post_dpop(&url, &[&wrong], &[CC]).await;
    assert_eq!(r.error(), "use_dpop_nonce", "{}", r.raw);
    let proof = key.proof("POST", &url, None, Some(&nonce)).unwrap();
    let r = post_dpop(&url, &[&proof], &[CC]).await;
    assert_bound(&r, &key);
    // Every token response carries a nonce to use next (§8.2).
    assert!(r.headers.contains_key("dpop-nonce"));
    // Requests without a proof are unaffected.
    let r = post(&url, Some(&basic("gateway", "gw-secret")), &[CC]).await;
    assert_eq!(r.body["token_type"], "Bearer", "{}", r.raw);
}
