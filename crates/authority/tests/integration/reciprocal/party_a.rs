//! Party A: `POST /reciprocal/code` (policy or user consent) and `GET /reciprocal/consent`.

use http::StatusCode;

use super::support::*;

const GW: (&str, &str) = ("gateway", "gw-secret");

/// Redeems a code at A as `client`, like party B does (no redirect_uri).
async fn redeem(p: &Parties, client: (&str, &str), code: &str) -> Page {
    post_form(
        &url(&p.a, "/token"),
        Some(&basic(client.0, client.1)),
        &[("grant_type", "authorization_code"), ("code", code)],
    )
    .await
}

#[tokio::test]
async fn a_policy_lets_the_agent_get_a_one_time_code_bound_to_the_recipient() {
    let p = Parties::start().await;
    let at_a = alice_at_a(&p).await;
    let r = code_request(&p, GW, &at_a, "party-b", "contacts.read").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(r.json()["expires_in"], 60);
    let code = r.field("code");
    let token = redeem(&p, ("party-b", "b-at-a-secret"), &code).await;
    let at = token.field("access_token");
    let c = claims(&at);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["client_id"], "party-b");
    assert_eq!(token.json()["scope"], "contacts.read");
    assert!(token.json()["refresh_token"].is_string());
    let again = redeem(&p, ("party-b", "b-at-a-secret"), &code).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error(), "invalid_grant");

    // Bound to the recipient: another client cannot redeem it.
    let code = code_request(&p, GW, &at_a, "party-b", "contacts.read")
        .await
        .field("code");
    let stolen = redeem(&p, ("other-rp", "other-secret"), &code).await;
    assert_eq!(stolen.error(), "invalid_grant");
    // And it was issued without redirect_uri, so one in the token request does not match.
    let code = code_request(&p, GW, &at_a, "party-b", "contacts.read")
        .await
        .field("code");
    let with_redirect = post_form(
        &url(&p.a, "/token"),
        Some(&basic("party-b", "b-at-a-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://b.example/cb"),
        ],
    )
    .await;
    assert_eq!(with_redirect.error(), "invalid_grant");
}

#[tokio::test]
async fn without_a_policy_or_the_users_consent_the_answer_is_consent_required() {
    let p = Parties::start().await;
    let at_a = alice_at_a(&p).await;
    // No policy for (gateway, other-rp), none for (gateway2, party-b).
    let r = code_request(&p, GW, &at_a, "other-rp", "contacts.read").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "consent_required");
    let r = code_request(
        &p,
        ("gateway2", "gw2-secret"),
        &at_a,
        "party-b",
        "contacts.read",
    )
    .await;
    assert_eq!(r.error(), "consent_required");
    // Within the recipient's scope but beyond the policy.
    let r = code_request(&p, GW, &at_a, "party-b", "contacts.read calendar").await;
    assert_eq!(r.error(), "consent_required");
    // Beyond the recipient's registered scope.
    let r = code_request(&p, GW, &at_a, "party-b", "contacts.read admin").await;
    assert_eq!(r.error(), "invalid_scope");
}

#[tokio::test]
async fn after_the_user_approves_on_the_consent_page_codes_are_issued_without_a_policy() {
    let p = Parties::start().await;
    let at_a = alice_at_a(&p).await;
    let mut agent = Agent::default();
    let consent_url = format!(
        "{}?{}",
        url(&p.a, "/reciprocal/consent"),
        encode(&[("recipient", "other-rp"), ("scope", "contacts.read")])
    );
    let page = agent.get(&consent_url).await;
    assert!(page.body.contains("Sign in"), "{}", page.body);
    assert!(page.header("set-cookie").contains("HttpOnly"));
    let consent = agent.through_sign_in(&p.a, page, "alice").await;
    assert!(consent.body.contains("Other RP"), "names the recipient");
    assert!(consent.body.contains("contacts.read"));
    assert!(consent
        .header("content-security-policy")
        .contains("script-src 'none'"));
    let done = agent.decide(&p.a, &consent, "approve").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Access allowed"), "{}", done.body);
    let r = code_request(&p, GW, &at_a, "other-rp", "contacts.read").await;
    let code = r.field("code");
    let token = redeem(&p, ("other-rp", "other-secret"), &code).await;
    assert_eq!(claims(&token.field("access_token"))["sub"], "alice");
    // Only what she approved, only for her.
    let r = code_request(&p, GW, &at_a, "other-rp", "contacts.read calendar").await;
    assert_eq!(r.error(), "consent_required");
    let at_bob = user_token(
        &p.a,
        ("web", "web-secret"),
        "https://web.example/cb",
        "profile",
        "bob",
    )
    .await
    .field("access_token");
    let r = code_request(&p, GW, &at_bob, "other-rp", "contacts.read").await;
    assert_eq!(r.error(), "consent_required");

    // Signed in already (same browser): straight to consent; denying records nothing.
    let consent_url = format!(
        "{}?{}",
        url(&p.a, "/reciprocal/consent"),
        encode(&[("recipient", "other-rp"), ("scope", "calendar")])
    );
    let consent = agent.get(&consent_url).await;
    assert!(
        consent.body.contains("name=\"decision\""),
        "{}",
        consent.body
    );
    let denied = agent.decide(&p.a, &consent, "deny").await;
    assert!(
        denied.body.contains("Access not allowed"),
        "{}",
        denied.body
    );
    let r = code_request(&p, GW, &at_a, "other-rp", "calendar").await;
    assert_eq!(r.error(), "consent_required");
}

#[tokio::test]
async fn the_consent_page_refuses_unknown_recipients_and_scopes_and_forged_forms() {
    let p = Parties::start().await;
    let consent = |params: &[(&str, &str)]| {
        format!("{}?{}", url(&p.a, "/reciprocal/consent"), encode(params))
    };
    let page = get(&consent(&[
        ("recipient", "nobody"),
        ("scope", "contacts.read"),
    ]))
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    // A public or code-less client cannot receive codes.
    let page = get(&consent(&[
        ("recipient", "gateway"),
        ("scope", "contacts.read"),
    ]))
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = get(&consent(&[("recipient", "other-rp"), ("scope", "admin")])).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = get(&consent(&[("recipient", "other-rp")])).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);

    let mut agent = Agent::default();
    let page = agent
        .get(&consent(&[
            ("recipient", "other-rp"),
            ("scope", "contacts.read"),
        ]))
        .await;
    let consent_page = agent.through_sign_in(&p.a, page, "alice").await;
    let forged = Agent::default()
        .post(
            &url(&p.a, "/authorize/decision"),
            &[
                ("tx", &consent_page.hidden("tx")),
                ("csrf", &consent_page.hidden("csrf")),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no session cookie");
    let at_a = alice_at_a(&p).await;
    let r = code_request(&p, GW, &at_a, "other-rp", "contacts.read").await;
    assert_eq!(r.error(), "consent_required");
}

#[tokio::test]
async fn the_agent_must_authenticate_and_present_a_valid_subject_token() {
    let p = Parties::start().await;
    let at_a = alice_at_a(&p).await;
    let r = code_request(&p, ("gateway", "wrong"), &at_a, "party-b", "contacts.read").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error(), "invalid_client");
    let r = post_form(
        &url(&p.a, "/reciprocal/code"),
        None,
        &[
            ("subject_token", &at_a),
            ("recipient", "party-b"),
            ("scope", "contacts.read"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = code_request(&p, GW, "not-a-token", "party-b", "contacts.read").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "invalid_grant");
    // A token of another authority (B) is not one A issued.
    let at_b = alice_at_b(&p).await.field("access_token");
    let r = code_request(&p, GW, &at_b, "party-b", "contacts.read").await;
    assert_eq!(r.error(), "invalid_grant");
    // A revoked token no longer works (the web client revokes its own token).
    let revoke = post_form(
        &url(&p.a, "/revoke"),
        Some(&basic("web", "web-secret")),
        &[("token", &at_a)],
    )
    .await;
    assert_eq!(revoke.status, StatusCode::OK);
    let r = code_request(&p, GW, &at_a, "party-b", "contacts.read").await;
    assert_eq!(r.error(), "invalid_grant");
    let fresh = alice_at_a(&p).await;
    let missing = post_form(
        &url(&p.a, "/reciprocal/code"),
        Some(&basic("gateway", "gw-secret")),
        &[("subject_token", &fresh), ("scope", "contacts.read")],
    )
    .await;
    assert_eq!(missing.error(), "invalid_request");
    let r = code_request(&p, GW, &fresh, "nobody", "contacts.read").await;
    assert_eq!(r.error(), "invalid_request");
}
