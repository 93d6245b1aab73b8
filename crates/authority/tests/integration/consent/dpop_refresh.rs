//! RFC 9449 §5: a public client's refresh token is bound to the DPoP key it was issued with; a
//! confidential client's is not (it authenticates on every refresh).

use bytes::Bytes;
use chaingate_oauth::dpop::ProofKey;
use http::StatusCode;
use http_body_util::Full;

use super::support::*;

/// POSTs a token request, with `basic` client authentication and a DPoP proof when given.
async fn token(
    s: &Server,
    basic_auth: Option<&str>,
    key: Option<&ProofKey>,
    form: &[(&str, &str)],
) -> Page {
    let url = s.url("/token");
    let mut req = http::Request::post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(encode(form))))
        .unwrap();
    if let Some(auth) = basic_auth {
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    if let Some(key) = key {
        let proof = key.proof("POST", &url, None, None).unwrap();
        req.headers_mut().insert("dpop", proof.parse().unwrap());
    }
    request(req).await
}

fn refresh_token(page: &Page) -> String {
    page.json()["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_public_clients_refresh_token_works_only_with_its_dpop_key() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let params = [
        ("response_type", "code"),
        ("client_id", "native"),
        ("redirect_uri", "com.example.app:/cb"),
        ("scope", "read"),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let code = agent.approve(&s, &params, "alice").await["code"].clone();
    let (key, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let issued = token(
        &s,
        None,
        Some(&key),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "com.example.app:/cb"),
            ("client_id", "native"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.json()["token_type"], "DPoP");
    let rt = refresh_token(&issued);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_id", "native"),
    ];

    // Without a proof, or with another key's, the bound refresh token is refused and not spent.
    for (proof, what) in [(None, "no proof"), (Some(&thief), "another key")] {
        let r = token(&s, None, proof, &form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant", "{what}");
        assert!(!r.body.contains(&rt), "{what}");
    }
    let r = token(&s, None, Some(&key), &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["token_type"], "DPoP");
    assert_eq!(
        claims(r.json()["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    // The rotated token stays bound.
    let rt2 = refresh_token(&r);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt2.as_str()),
        ("client_id", "native"),
    ];
    assert_eq!(
        token(&s, None, None, &form).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_confidential_clients_refresh_token_is_not_bound() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let code = agent
        .approve(&s, &web_params("read", &challenge), "alice")
        .await["code"]
        .clone();
    let auth = basic("web", "web-secret");
    let key = ProofKey::generate().unwrap();
    let issued = token(
        &s,
        Some(&auth),
        Some(&key),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://web.example/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(issued.json()["token_type"], "DPoP", "{}", issued.body);
    let rt = refresh_token(&issued);
    let r = token(
        &s,
        Some(&auth),
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["token_type"],
        "Bearer",
        "no proof, so a bearer access token"
    );
}
