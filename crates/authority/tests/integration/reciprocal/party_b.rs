//! Party B: the `reciprocal` member, the reciprocal grant and the redemption at A.

use http::StatusCode;

use super::support::*;

#[tokio::test]
async fn token_responses_to_a_client_with_reciprocal_carry_the_member_and_others_do_not() {
    let p = Parties::start().await;
    let code_flow = alice_at_b(&p).await;
    assert_eq!(code_flow.status, StatusCode::OK, "{}", code_flow.body);
    assert_eq!(code_flow.json()["reciprocal"], "contacts.read");
    let cc = post_form(
        &url(&p.b, "/token"),
        Some(&basic("gateway-at-b", "gwb-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(cc.json()["reciprocal"], "contacts.read", "{}", cc.body);
    let plain = post_form(
        &url(&p.b, "/token"),
        Some(&basic("plain", "plain-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.json().get("reciprocal").is_none(), "{}", plain.body);
}

#[tokio::test]
async fn metadata_advertises_the_grant_at_b_and_the_code_endpoint_at_a() {
    let p = Parties::start().await;
    let b = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        p.b.issuer()
    ))
    .await
    .json();
    assert!(b["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&RECIPROCAL.into()));
    let a = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        p.a.issuer()
    ))
    .await
    .json();
    assert!(!a["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&RECIPROCAL.into()));
    assert_eq!(a["reciprocal_code_endpoint"], url(&p.a, "/reciprocal/code"));
}

#[tokio::test]
async fn delivered_code_is_redeemed_at_a_and_the_grant_works_there() {
    let p = Parties::start().await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let code = code_request(
        &p,
        ("gateway", "gw-secret"),
        &alice_at_a(&p).await,
        "party-b",
        "contacts.read",
    )
    .await
    .field("code");
    let r = deliver(&p, &code, &at_b).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({}));
    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(redemptions(&p, 1).await, (1, 0));
    let grant = p.b.reciprocal_grant("alice", "gateway-at-b").unwrap();
    assert_eq!(grant.scope, "contacts.read");
    assert!(
        grant.refresh_token.is_some(),
        "party-b has refresh_token at A"
    );
    assert!(grant.expires_at.is_some());
    let seen = introspect_at_a(&p, grant.access_token.expose()).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["sub"], "alice");
    assert_eq!(seen["client_id"], "party-b");
    assert_eq!(seen["scope"], "contacts.read");
    assert!(p.b.reciprocal_grant("alice", "plain").is_none());
    // B spent the code: it cannot be redeemed again.
    let again = post_form(
        &url(&p.a, "/token"),
        Some(&basic("party-b", "b-at-a-secret")),
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(again.error(), "invalid_grant");
}

#[tokio::test]
async fn a_second_code_replaces_the_grant() {
    let p = Parties::start().await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let at_a = alice_at_a(&p).await;
    let gw = ("gateway", "gw-secret");
    let first = code_request(&p, gw, &at_a, "party-b", "contacts.read")
        .await
        .field("code");
    assert_eq!(deliver(&p, &first, &at_b).await.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 1).await, (1, 0));
    let before = p.b.reciprocal_grant("alice", "gateway-at-b").unwrap();
    let wider = "contacts.read contacts.write";
    let second = code_request(&p, gw, &at_a, "party-b", wider)
        .await
        .field("code");
    assert_eq!(deliver(&p, &second, &at_b).await.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 2).await, (2, 0));
    let after = p.b.reciprocal_grant("alice", "gateway-at-b").unwrap();
    assert_eq!(after.scope, wider);
    assert!(!after.access_token.ct_eq(before.access_token.expose()));
    assert_eq!(
        introspect_at_a(&p, after.access_token.expose()).await["scope"],
        wider
    );
}

#[tokio::test]
async fn the_access_token_must_be_one_b_issued_to_that_client() {
    let p = Parties::start().await;
    let plain_token = post_form(
        &url(&p.b, "/token"),
        Some(&basic("plain", "plain-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await
    .field("access_token");
    let r = deliver(&p, "some-code", &plain_token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "invalid_grant");
    // A token of another authority (A) is not one B issued.
    let r = deliver(&p, "some-code", &alice_at_a(&p).await).await;
    assert_eq!(r.error(), "invalid_grant");
    let r = deliver(&p, "some-code", "not-a-token").await;
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(p.b.reciprocal_redemptions(), (0, 0), "nothing was redeemed");
}

#[tokio::test]
async fn client_authentication_parameters_and_permission_are_checked() {
    let p = Parties::start().await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let token_url = url(&p.b, "/token");
    let bad_auth = post_form(
        &token_url,
        Some(&basic("gateway-at-b", "wrong")),
        &[
            ("grant_type", RECIPROCAL),
            ("code", "c"),
            ("client_id", "gateway-at-b"),
            ("access_token", &at_b),
        ],
    )
    .await;
    assert_eq!(bad_auth.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad_auth.error(), "invalid_client");
    let auth = basic("gateway-at-b", "gwb-secret");
    let missing_code = post_form(
        &token_url,
        Some(&auth),
        &[
            ("grant_type", RECIPROCAL),
            ("client_id", "gateway-at-b"),
            ("access_token", &at_b),
        ],
    )
    .await;
    assert_eq!(missing_code.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_code.error(), "invalid_request");
    let missing_client_id = post_form(
        &token_url,
        Some(&auth),
        &[
            ("grant_type", RECIPROCAL),
            ("code", "c"),
            ("access_token", &at_b),
        ],
    )
    .await;
    assert_eq!(missing_client_id.error(), "invalid_request");
    let twice = format!(
        "grant_type={}&code=a&code=b&client_id=gateway-at-b&access_token={at_b}",
        form_urlencoded::byte_serialize(RECIPROCAL.as_bytes()).collect::<String>()
    );
    let req = http::Request::post(&token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &auth)
        .body(http_body_util::Full::new(bytes::Bytes::from(twice)))
        .unwrap();
    assert_eq!(request(req).await.error(), "invalid_request");
    // A client without `reciprocal` may not deliver codes, even with a token of its own.
    let plain_token = post_form(
        &token_url,
        Some(&basic("plain", "plain-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await
    .field("access_token");
    let not_allowed = post_form(
        &token_url,
        Some(&basic("plain", "plain-secret")),
        &[
            ("grant_type", RECIPROCAL),
            ("code", "c"),
            ("client_id", "plain"),
            ("access_token", &plain_token),
        ],
    )
    .await;
    assert_eq!(not_allowed.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_allowed.error(), "unauthorized_client");
    // An authority without `[reciprocal]` (here A) does not support the grant at all.
    let unsupported = post_form(
        &url(&p.a, "/token"),
        Some(&basic("gateway", "gw-secret")),
        &[
            ("grant_type", RECIPROCAL),
            ("code", "c"),
            ("client_id", "gateway"),
            ("access_token", "t"),
        ],
    )
    .await;
    assert_eq!(unsupported.error(), "unsupported_grant_type");
}

#[tokio::test]
async fn a_code_a_refuses_is_counted_as_a_failed_redemption_and_stores_nothing() {
    let p = Parties::start().await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let r = deliver(&p, "a-code-a-never-issued", &at_b).await;
    assert_eq!(r.status, StatusCode::OK, "B answers before it redeems");
    assert_eq!(redemptions(&p, 1).await, (0, 1));
    assert!(p.b.reciprocal_grant("alice", "gateway-at-b").is_none());
}

#[tokio::test]
async fn b_authenticates_at_a_with_client_secret_post_when_configured() {
    let post = "client_id = \"party-b-post\"\nclient_secret = \"b-post-secret\"\n\
                auth_method = \"client_secret_post\"";
    let p = Parties::start_with(post).await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let at_a = alice_at_a(&p).await;
    let gw = ("gateway", "gw-secret");
    let code = code_request(&p, gw, &at_a, "party-b-post", "contacts.read")
        .await
        .field("code");
    assert_eq!(deliver(&p, &code, &at_b).await.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 1).await, (1, 0));
    let grant = p.b.reciprocal_grant("alice", "gateway-at-b").unwrap();
    assert_eq!(
        introspect_at_a(&p, grant.access_token.expose()).await["client_id"],
        "party-b-post"
    );
    assert!(grant.refresh_token.is_none(), "no refresh_token grant at A");
    // A code for another recipient (party-b) cannot be redeemed by B as party-b-post.
    let code = code_request(&p, gw, &at_a, "party-b", "contacts.read")
        .await
        .field("code");
    assert_eq!(deliver(&p, &code, &at_b).await.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 2).await, (1, 1));
}

#[tokio::test]
async fn an_unreachable_party_a_is_a_failed_redemption() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[reciprocal]\ntoken_endpoint = \"http://{addr}/token\"\n\
         allow_insecure_http = true\ntimeout = \"2s\"\n{B_AT_A}\n{B_CLIENTS}"
    );
    let b =
        chaingate_authority::spawn(chaingate_authority::AuthorityConfig::from_toml(&toml).unwrap())
            .await
            .unwrap();
    // A client_credentials token: the user is the client itself.
    let token = post_form(
        &url(&b, "/token"),
        Some(&basic("gateway-at-b", "gwb-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await
    .field("access_token");
    let r = post_form(
        &url(&b, "/token"),
        Some(&basic("gateway-at-b", "gwb-secret")),
        &[
            ("grant_type", RECIPROCAL),
            ("code", "c"),
            ("client_id", "gateway-at-b"),
            ("access_token", &token),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let outcome = b
        .wait_reciprocal_redemptions(1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(outcome, (0, 1));
    assert!(b.reciprocal_grant("gateway-at-b", "gateway-at-b").is_none());
}
