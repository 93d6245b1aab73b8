//! Authorization code flow: PKCE, state, redirect URI rules, code single use, refresh rotation,
//! CSRF and clickjacking protection, response metadata.

use http::StatusCode;

use super::support::*;

#[tokio::test]
async fn metadata_advertises_the_code_flow_incremental_auth_and_registration() {
    let s = Server::start().await;
    let m = Agent::default()
        .get(&format!(
            "{}/.well-known/oauth-authorization-server",
            s.a.issuer()
        ))
        .await
        .json();
    assert_eq!(m["authorization_endpoint"], s.url("/authorize"));
    assert_eq!(m["registration_endpoint"], s.url("/register"));
    assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        m["incremental_authz_types_supported"],
        serde_json::json!(["confidential", "public"])
    );
    let grants = m["grant_types_supported"].to_string();
    assert!(grants.contains("\"authorization_code\"") && grants.contains("\"refresh_token\""));
    assert!(m["token_endpoint_auth_methods_supported"]
        .to_string()
        .contains("\"none\""));
    assert!(!m["introspection_endpoint_auth_methods_supported"]
        .to_string()
        .contains("\"none\""));
}

#[tokio::test]
async fn code_flow_echoes_state_and_iss_and_issues_tokens_with_link_metadata() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let login = agent
        .authorize(&s, &web_params("read profile", &challenge))
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Sign in"), "{}", login.body);
    assert!(login.header("set-cookie").contains("HttpOnly"));
    assert!(login.header("set-cookie").contains("SameSite=Lax"));
    let consent = agent.sign_in(&s, &login, "alice", "alice-pw").await;
    assert!(consent.body.contains("Signed in as <strong>alice</strong>"));
    assert!(
        consent.body.contains("Web &lt;App&gt;"),
        "client name escaped"
    );
    let redirect = agent.decide(&s, &consent, "approve").await;
    let location = redirect.header("location");
    assert!(
        location.starts_with("https://web.example/cb?"),
        "{location}"
    );
    let q = redirect.redirect_params();
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], s.a.issuer());
    assert_eq!(q["turi"], s.url("/token"));
    assert_eq!(
        q["duri"],
        format!("{}/.well-known/oauth-authorization-server", s.a.issuer())
    );
    let r = redeem_web(&s, &q["code"], &verifier).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let link = r.header("link");
    assert_eq!(
        link,
        format!(
            "<https://api.example/v1/resource>; rel=\"ruri\", <{}/.well-known/oauth-authorization-server>; rel=\"duri\"",
            s.a.issuer()
        )
    );
    let body = r.json();
    assert_eq!(body["scope"], "profile read");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"]
        .as_str()
        .is_some_and(|t| t.len() >= 43));
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], "alice");
    assert_eq!(at["client_id"], "web");
    assert_eq!(at["aud"], "https://api.example/v1");

    // A second authorization in the same browser skips the sign-in.
    let again = agent.authorize(&s, &web_params("read", &challenge)).await;
    assert!(again.body.contains("name=\"decision\""));
}

#[tokio::test]
async fn client_credentials_of_a_response_metadata_client_carry_the_link_header() {
    let s = Server::start().await;
    let r = post_form(
        &s.url("/token"),
        Some(&basic("m2m", "m2m-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // ruri falls back to the default audience, which is a URL.
    assert!(r
        .header("link")
        .starts_with("<https://api.example/v1>; rel=\"ruri\""));
    // Clients without the flag get no Link header.
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let mut params = web_params("read", &challenge);
    params[1] = ("client_id", "other");
    params[2] = ("redirect_uri", "https://other.example/cb");
    let q = agent.approve(&s, &params, "alice").await;
    assert!(!q.contains_key("turi") && !q.contains_key("duri"));
    let r = post_form(
        &s.url("/token"),
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", "https://other.example/cb"),
            ("code_verifier", &verifier),
            ("client_id", "other"),
            ("client_secret", "other-secret"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.headers.get("link").is_none());
}

#[tokio::test]
async fn pkce_is_required_for_public_clients_and_plain_is_refused() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let base = |challenge: Option<(&'static str, String)>| {
        let mut p: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", "native".into()),
            ("redirect_uri", "com.example.app:/cb".into()),
            ("scope", "read".into()),
            ("state", "s1".into()),
        ];
        if let Some((method, c)) = challenge {
            p.push(("code_challenge", c));
            p.push(("code_challenge_method", method.into()));
        }
        p
    };
    let mut agent = Agent::default();
    for (params, what) in [
        (base(None), "PKCE"),
        (base(Some(("plain", verifier.clone()))), "S256"),
    ] {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = agent.authorize(&s, &params).await;
        let q = page.redirect_params();
        assert_eq!(q["error"], "invalid_request");
        assert!(q["error_description"].contains(what), "{q:?}");
        assert_eq!(q["state"], "s1");
        assert!(page.header("location").starts_with("com.example.app:/cb?"));
    }
    // plain is refused for confidential clients too.
    let mut params = web_params("read", &challenge);
    params[6] = ("code_challenge_method", "plain");
    assert_eq!(
        agent.authorize(&s, &params).await.redirect_params()["error"],
        "invalid_request"
    );

    let params = base(Some(("S256", challenge.clone())));
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let redeem = |code: String, verifier: Option<String>| {
        let url = s.url("/token");
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", "com.example.app:/cb".to_string()),
                ("client_id", "native".to_string()),
            ];
            if let Some(v) = verifier {
                form.push(("code_verifier", v));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(&url, None, &form).await
        }
    };
    let code = agent.approve(&s, &params, "alice").await["code"].clone();
    let r = redeem(code, None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let code = agent.approve(&s, &params, "alice").await["code"].clone();
    let (wrong, _) = pkce();
    assert_eq!(
        redeem(code, Some(wrong)).await.json()["error"],
        "invalid_grant"
    );
    let code = agent.approve(&s, &params, "alice").await["code"].clone();
    let r = redeem(code, Some(verifier)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A public client may not introspect.
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let i = post_form(
        &s.url("/introspect"),
        None,
        &[("token", &token), ("client_id", "native")],
    )
    .await;
    assert_eq!(i.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_redirect_uri_that_is_not_registered_gets_an_error_page_never_a_redirect() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    let mut agent = Agent::default();
    for uri in [
        "https://evil.example/cb",
        "https://web.example/cb/",
        "https://web.example/CB",
        "https://web.example/cb?x=1",
    ] {
        let mut params = web_params("read", &challenge);
        params[2] = ("redirect_uri", uri);
        let page = agent.authorize(&s, &params).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(page.headers.get("location").is_none());
        assert!(page.body.contains("redirect"), "{}", page.body);
    }
    // Several registered URIs: the request must name one.
    let mut params = web_params("read", &challenge);
    params.remove(2);
    assert_eq!(
        agent.authorize(&s, &params).await.status,
        StatusCode::BAD_REQUEST
    );
    // Unknown client: error page.
    let mut params = web_params("read", &challenge);
    params[1] = ("client_id", "nobody");
    let page = agent.authorize(&s, &params).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get("location").is_none());
    // A registered URI with a query keeps it and appends the response.
    let mut params = web_params("read", &challenge);
    params[2] = ("redirect_uri", "https://web.example/cb2?x=1");
    let page = agent.authorize(&s, &params).await;
    let page = agent.sign_in(&s, &page, "alice", "alice-pw").await;
    let redirect = agent.decide(&s, &page, "deny").await;
    assert!(redirect
        .header("location")
        .starts_with("https://web.example/cb2?x=1&error=access_denied"));
    assert_eq!(redirect.redirect_params()["state"], "st-123");
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_client_and_redirect_uri() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let code = agent
        .approve(&s, &web_params("read", &challenge), "alice")
        .await["code"]
        .clone();
    // Another client cannot redeem it (and does not burn it).
    let r = post_form(
        &s.url("/token"),
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://web.example/cb"),
            ("code_verifier", &verifier),
            ("client_id", "other"),
            ("client_secret", "other-secret"),
        ],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let first = redeem_web(&s, &code, &verifier).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = redeem_web(&s, &code, &verifier).await;
    assert_eq!(second.json()["error"], "invalid_grant");
    // The replay revoked what the first redemption issued.
    let body = first.json();
    let refresh = post_form(
        &s.url("/token"),
        Some(&basic("web", "web-secret")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refresh.json()["error"], "invalid_grant");
    let active = post_form(
        &s.url("/introspect"),
        Some(&basic("web", "web-secret")),
        &[("token", body["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(active.json()["active"], false);

    // redirect_uri must be repeated exactly at the token endpoint.
    let code = agent
        .approve(&s, &web_params("read", &challenge), "alice")
        .await["code"]
        .clone();
    let r = post_form(
        &s.url("/token"),
        Some(&basic("web", "web-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://web.example/cb2?x=1"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        redeem_web(&s, "not-a-code", &verifier).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let s = Server::start().await;
    let (verifier, challenge) = pkce();
    let mut agent = Agent::default();
    let code = agent
        .approve(&s, &web_params("read write", &challenge), "alice")
        .await["code"]
        .clone();
    let rt1 = redeem_web(&s, &code, &verifier).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh = |rt: String, scope: Option<&'static str>| {
        let url = s.url("/token");
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            if let Some(sc) = scope {
                form.push(("scope", sc));
            }
            post_form(&url, Some(&basic("web", "web-secret")), &form).await
        }
    };
    // A wider scope is refused and leaves the token usable.
    assert_eq!(
        refresh(rt1.clone(), Some("read admin")).await.json()["error"],
        "invalid_scope"
    );
    let r = refresh(rt1.clone(), Some("read")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["scope"], "read");
    assert!(r.header("link").contains("rel=\"duri\""));
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    // The new refresh token keeps the grant's full scope.
    let r = refresh(rt2.clone(), None).await;
    assert_eq!(r.json()["scope"], "read write");
    let rt3 = r.json()["refresh_token"].as_str().unwrap().to_string();
    // Reusing a rotated token fails and revokes the whole family.
    assert_eq!(refresh(rt2, None).await.json()["error"], "invalid_grant");
    let r = refresh(rt3, None).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    // Another client cannot use someone else's refresh token.
    let code = agent
        .approve(&s, &web_params("read", &challenge), "alice")
        .await["code"]
        .clone();
    let rt = redeem_web(&s, &code, &verifier).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_form(
        &s.url("/token"),
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", "other"),
            ("client_secret", "other-secret"),
        ],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        refresh(rt, None).await.status,
        StatusCode::OK,
        "still valid for its own client"
    );
}

#[tokio::test]
async fn forms_need_the_session_cookie_and_the_csrf_token() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    let mut agent = Agent::default();
    let login = agent.authorize(&s, &web_params("read", &challenge)).await;
    let tx = login.hidden("tx");
    let csrf = login.hidden("csrf");
    let login_url = s.url("/authorize/login");
    // Missing or wrong CSRF token.
    for form in [
        vec![
            ("tx", tx.as_str()),
            ("username", "alice"),
            ("password", "alice-pw"),
        ],
        vec![
            ("tx", tx.as_str()),
            ("csrf", "forged"),
            ("username", "alice"),
            ("password", "alice-pw"),
        ],
    ] {
        let page = agent.post(&login_url, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    }
    // Right token, but another browser (no session cookie).
    let mut stranger = Agent::default();
    let form = [
        ("tx", tx.as_str()),
        ("csrf", csrf.as_str()),
        ("username", "alice"),
        ("password", "alice-pw"),
    ];
    assert_eq!(
        stranger.post(&login_url, &form).await.status,
        StatusCode::FORBIDDEN
    );
    // A wrong password shows the form again with a message, no consent.
    let again = agent.sign_in(&s, &login, "alice", "wrong").await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body.contains("role=\"alert\"") && !again.body.contains("decision"));
    let consent = agent.sign_in(&s, &login, "alice", "alice-pw").await;
    // The session id changes on sign-in.
    assert!(consent.header("set-cookie").starts_with("cg_session="));
    let decision_url = s.url("/authorize/decision");
    let tx = consent.hidden("tx");
    let page = agent
        .post(
            &decision_url,
            &[("tx", &tx), ("csrf", "forged"), ("decision", "approve")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = agent
        .post(&decision_url, &[("tx", &tx), ("decision", "approve")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The genuine form still works once, then the request is gone.
    let done = agent.decide(&s, &consent, "approve").await;
    assert!(done.redirect_params().contains_key("code"));
    assert_eq!(
        agent.decide(&s, &consent, "approve").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn pages_refuse_framing_run_no_script_and_are_accessible() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    let mut agent = Agent::default();
    let login = agent.authorize(&s, &web_params("read", &challenge)).await;
    let consent = agent.sign_in(&s, &login, "alice", "alice-pw").await;
    let mut bad = web_params("read", &challenge);
    bad[2] = ("redirect_uri", "https://evil.example/");
    let error = agent.authorize(&s, &bad).await;
    for page in [&login, &consent, &error] {
        assert_eq!(page.header("x-frame-options"), "DENY");
        let csp = page.header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'none'"),
            "{csp}"
        );
        assert_eq!(page.header("cache-control"), "no-store");
        assert!(page.header("content-type").starts_with("text/html"));
        assert!(!page.body.contains("<script"));
        assert!(page.body.contains("name=\"viewport\""));
        assert!(page.body.contains("<html lang=\"en\">"));
    }
    assert!(
        login.body.contains("<label for=\"username\">") && login.body.contains("id=\"username\"")
    );
    assert!(
        login.body.contains("<label for=\"password\">") && login.body.contains("id=\"password\"")
    );
    // The consent form may post and then be redirected to the client's origin.
    assert!(consent
        .header("content-security-policy")
        .contains("form-action 'self' https://web.example"));
    let css = agent.get(&s.url("/authorize/style.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
}

#[tokio::test]
async fn deny_and_request_errors_redirect_with_state() {
    let s = Server::start().await;
    let (_, challenge) = pkce();
    let mut agent = Agent::default();
    let consent = agent
        .consent_page(&s, &web_params("read", &challenge), "alice")
        .await;
    let q = agent.decide(&s, &consent, "deny").await.redirect_params();
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("access_denied", "st-123")
    );
    assert!(!q.contains_key("code"));
    let mut params = web_params("read", &challenge);
    params[0] = ("response_type", "token");
    assert_eq!(
        agent.authorize(&s, &params).await.redirect_params()["error"],
        "unsupported_response_type"
    );
    let params = web_params("nothing-known", &challenge);
    assert_eq!(
        agent.authorize(&s, &params).await.redirect_params()["error"],
        "invalid_scope"
    );
}
