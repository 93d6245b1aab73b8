//! Incremental authorization (draft-wdenniss-oauth-incremental-auth -00 → -04):
//! include_granted_scopes, existing_grant, overbroad_scope.

use http::StatusCode;

use super::support::*;

fn with_flag<'a>(mut p: Vec<(&'a str, &'a str)>, flag: &'a str) -> Vec<(&'a str, &'a str)> {
    p.push(("include_granted_scopes", flag));
    p
}

#[tokio::test]
async fn include_granted_scopes_unions_earlier_grants_for_confidential_clients() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let q = agent
        .approve(&s, &web_params("read", &challenge), "alice")
        .await;
    assert_eq!(
        redeem_web(&s, &q["code"], &verifier).await.json()["scope"],
        "read"
    );

    // The consent page shows the earlier scope apart from the new one.
    let params = with_flag(web_params("write", &challenge), "true");
    let consent = agent.consent_page(&s, &params, "alice").await;
    let already = consent
        .body
        .find("Already granted")
        .expect("already-granted section");
    let new = consent.body.find(">New<").expect("new section");
    assert!(
        consent.body[new..already].contains("<code>write</code>"),
        "{}",
        consent.body
    );
    assert!(consent.body[already..].contains("<code>read</code>"));
    let q = agent
        .decide(&s, &consent, "approve")
        .await
        .redirect_params();
    let r = redeem_web(&s, &q["code"], &verifier).await;
    assert_eq!(r.json()["scope"], "read write");
    assert_eq!(
        claims(r.json()["access_token"].as_str().unwrap())["scope"],
        "read write"
    );

    // Without the flag (or with false) only the requested scope is granted.
    for flag in [None, Some("false")] {
        let mut params = web_params("profile", &challenge);
        if let Some(f) = flag {
            params.push(("include_granted_scopes", f));
        }
        let q = agent.approve(&s, &params, "alice").await;
        assert_eq!(
            redeem_web(&s, &q["code"], &verifier).await.json()["scope"],
            "profile"
        );
    }
    // Another user's grants are their own.
    let mut bob = Agent::default();
    let q = bob
        .approve(
            &s,
            &with_flag(web_params("email", &challenge), "true"),
            "bob",
        )
        .await;
    assert_eq!(
        redeem_web(&s, &q["code"], &verifier).await.json()["scope"],
        "email"
    );
}

#[tokio::test]
async fn include_granted_scopes_must_be_true_or_false() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    for value in ["yes", "TRUE", "1"] {
        let page = Agent::default()
            .authorize(&s, &with_flag(web_params("read", &challenge), value))
            .await;
        let q = page.redirect_params();
        assert_eq!(q["error"], "invalid_request", "{value}");
        assert_eq!(q["state"], "st-123");
    }
}

fn native_params(
    scope: &str,
    challenge: &str,
    extra: Option<(&'static str, &'static str)>,
) -> Vec<(String, String)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", "native"),
        ("redirect_uri", "com.example.app:/cb"),
        ("scope", scope),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(e) = extra {
        p.push(e);
    }
    p.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn refs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn native_code(
    s: &Server,
    agent: &mut Agent,
    user: &str,
    scope: &str,
    challenge: &str,
) -> String {
    agent
        .approve(s, &refs(&native_params(scope, challenge, None)), user)
        .await["code"]
        .clone()
}

async fn redeem_native(s: &Server, code: &str, verifier: &str, existing: Option<&str>) -> Page {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "com.example.app:/cb"),
        ("client_id", "native"),
        ("code_verifier", verifier),
    ];
    if let Some(e) = existing {
        form.push(("existing_grant", e));
    }
    post_form(&s.url("/token"), None, &form).await
}

#[tokio::test]
async fn public_clients_get_no_earlier_scopes_silently() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let code = native_code(&s, &mut agent, "alice", "read", &challenge).await;
    assert_eq!(
        redeem_native(&s, &code, &verifier, None).await.json()["scope"],
        "read"
    );
    let params = native_params(
        "write",
        &challenge,
        Some(("include_granted_scopes", "true")),
    );
    let consent = agent.consent_page(&s, &refs(&params), "alice").await;
    assert!(
        !consent.body.contains("Already granted"),
        "{}",
        consent.body
    );
    let q = agent
        .decide(&s, &consent, "approve")
        .await
        .redirect_params();
    assert_eq!(
        redeem_native(&s, &q["code"], &verifier, None).await.json()["scope"],
        "write"
    );
}

#[tokio::test]
async fn existing_grant_unions_scopes_for_the_same_client_and_user() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut alice = Agent::default();
    let code = native_code(&s, &mut alice, "alice", "read", &challenge).await;
    let first = redeem_native(&s, &code, &verifier, None).await.json();
    let rt = first["refresh_token"].as_str().unwrap().to_string();

    let code = native_code(&s, &mut alice, "alice", "write", &challenge).await;
    let r = redeem_native(&s, &code, &verifier, Some(&rt)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["scope"], "read write");
    // The new refresh token carries the union.
    let new_rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let refreshed = post_form(
        &s.url("/token"),
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &new_rt),
            ("client_id", "native"),
        ],
    )
    .await;
    assert_eq!(
        refreshed.json()["scope"],
        "read write",
        "{}",
        refreshed.body
    );
}

#[tokio::test]
async fn existing_grant_of_another_client_user_or_revoked_is_invalid_grant() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut alice = Agent::default();
    let mut bob = Agent::default();
    // Foreign client: a refresh token of `web`.
    let q = alice
        .approve(&s, &web_params("read", &challenge), "alice")
        .await;
    let web_rt = redeem_web(&s, &q["code"], &verifier).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Other user: bob's refresh token of `native`.
    let code = native_code(&s, &mut bob, "bob", "read", &challenge).await;
    let bob_rt = redeem_native(&s, &code, &verifier, None).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Revoked: alice's own, revoked by the client (RFC 7009).
    let code = native_code(&s, &mut alice, "alice", "read", &challenge).await;
    let revoked_rt = redeem_native(&s, &code, &verifier, None).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_form(
        &s.url("/revoke"),
        None,
        &[("token", &revoked_rt), ("client_id", "native")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Rotated away: no longer a valid grant either.
    let code = native_code(&s, &mut alice, "alice", "read", &challenge).await;
    let old_rt = redeem_native(&s, &code, &verifier, None).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_form(
        &s.url("/token"),
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &old_rt),
            ("client_id", "native"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    for (rt, why) in [
        (web_rt.as_str(), "another client"),
        (bob_rt.as_str(), "another user"),
        (revoked_rt.as_str(), "revoked"),
        (old_rt.as_str(), "revoked"),
        ("garbage", "unknown"),
    ] {
        let code = native_code(&s, &mut alice, "alice", "write", &challenge).await;
        let r = redeem_native(&s, &code, &verifier, Some(rt)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
        assert_eq!(r.json()["error"], "invalid_grant", "{why}");
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(why),
            "{why}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn an_expired_existing_grant_is_invalid_grant() {
    let s = Server::start_with("refresh_token_ttl = \"1s\"").await;
    let (verifier, challenge) = pkce();
    let mut alice = Agent::default();
    let code = native_code(&s, &mut alice, "alice", "read", &challenge).await;
    let rt = redeem_native(&s, &code, &verifier, None).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let code = native_code(&s, &mut alice, "alice", "write", &challenge).await;
    let r = redeem_native(&s, &code, &verifier, Some(&rt)).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.body.contains("expired"), "{}", r.body);
}

#[tokio::test]
async fn too_many_scopes_in_one_request_is_overbroad_scope() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    let page = Agent::default()
        .authorize(&s, &web_params("read write profile email", &challenge))
        .await;
    let q = page.redirect_params();
    assert_eq!(q["error"], "overbroad_scope");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.a.issuer());
    // Omitting scope asks for all five of the client's scopes: also overbroad.
    let mut params = web_params("x", &challenge);
    params.remove(3);
    assert_eq!(
        Agent::default()
            .authorize(&s, &params)
            .await
            .redirect_params()["error"],
        "overbroad_scope"
    );
    // Three is fine.
    let page = Agent::default()
        .authorize(&s, &web_params("read write profile", &challenge))
        .await;
    assert_eq!(page.status, StatusCode::OK);
}
