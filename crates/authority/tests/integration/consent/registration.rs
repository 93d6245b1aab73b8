//! RFC 7591/7592 registration with client intermediary metadata, and the consent page that
//! names every party.

use http::StatusCode;
use serde_json::{json, Value};

use super::support::*;

fn metadata() -> Value {
    json!({
        "client_name": "Tax Helper Backend",
        "redirect_uris": ["https://app.example/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "read write unknown",
        "client_uri": "https://app.example/",
        "software_id": "tax-helper",
        "end_user_application": {
            "name": "Tax Helper <Mobile>",
            "description": "Files your taxes",
            "uri": "https://taxhelper.example/",
            "logo_uri": "https://taxhelper.example/logo.png"
        },
        "intermediaries": [
            { "name": "Cloud & Co \"Relay\"", "uri": "https://relay.example/", "logo_uri": "https://relay.example/l.png", "contacts": ["ops@relay.example"] },
            { "name": "<script>alert(1)</script>", "description": "an analytics platform" }
        ],
        "an_unknown_field": 7
    })
}

async fn register(s: &Server, body: &Value) -> Page {
    json_request("POST", &s.url("/register"), Some(IAT), Some(body)).await
}

#[tokio::test]
async fn registration_needs_an_initial_access_token() {
    let s = Server::start().await;
    let r = json_request("POST", &s.url("/register"), None, Some(&metadata())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(r.header("www-authenticate").starts_with("Bearer"));
    let r = json_request(
        "POST",
        &s.url("/register"),
        Some("wrong-token-0123456789"),
        Some(&metadata()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .contains("error=\"invalid_token\""));
    let r = json_request("GET", &s.url("/register"), Some(IAT), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn registration_echoes_parties_and_supports_read_update_delete() {
    let s = Server::start().await;
    let r = register(&s, &metadata()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let reg = r.json();
    let sent = metadata();
    assert_eq!(reg["end_user_application"], sent["end_user_application"]);
    assert_eq!(reg["intermediaries"], sent["intermediaries"]);
    assert_eq!(reg["redirect_uris"], sent["redirect_uris"]);
    assert_eq!(reg["client_name"], "Tax Helper Backend");
    assert_eq!(
        reg["scope"], "read write",
        "scope is bounded by registration.scope"
    );
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert!(reg.get("an_unknown_field").is_none());
    let id = reg["client_id"].as_str().unwrap().to_string();
    let uri = reg["registration_client_uri"].as_str().unwrap().to_string();
    assert_eq!(uri, s.url(&format!("/register/{id}")));
    let token = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.len() >= 43);

    // Read.
    let read = json_request("GET", &uri, Some(&token), None).await;
    assert_eq!(read.status, StatusCode::OK);
    let read = read.json();
    assert_eq!(read["intermediaries"], sent["intermediaries"]);
    assert_eq!(read["client_secret"], reg["client_secret"]);
    assert!(read.get("registration_access_token").is_none());
    assert_eq!(
        json_request("GET", &uri, Some("wrong"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        json_request("GET", &uri, Some(IAT), None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The registered client works at the token endpoint and on the consent page.
    let (verifier, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "read"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let mut agent = Agent::default();
    let q = agent.approve(&s, &params, "alice").await;
    let secret = reg["client_secret"].as_str().unwrap();
    let redeem = |code: String| {
        let url = s.url("/token");
        let auth = basic(&id, secret);
        let verifier = verifier.clone();
        async move {
            post_form(
                &url,
                Some(&auth),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", "https://app.example/cb"),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    let tokens = redeem(q["code"].clone()).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);

    // Update: full replacement rules.
    let mut update = metadata();
    update["client_id"] = json!(id);
    update
        .as_object_mut()
        .unwrap()
        .remove("end_user_application");
    update["intermediaries"] = json!([{ "name": "Only Relay" }]);
    let bad_cases = [
        ("registration_access_token", json!(token)),
        ("client_id_issued_at", json!(1)),
        ("client_secret", json!("not-the-secret")),
        ("client_id", json!("someone-else")),
    ];
    for (key, value) in bad_cases {
        let mut body = update.clone();
        body[key] = value;
        let r = json_request("PUT", &uri, Some(&token), Some(&body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key}");
        assert_eq!(r.json()["error"], "invalid_client_metadata", "{key}");
    }
    let mut body = update.clone();
    body["client_secret"] = json!(secret);
    let r = json_request("PUT", &uri, Some(&token), Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.json().get("end_user_application").is_none(),
        "omitted fields are deleted"
    );
    assert_eq!(
        r.json()["intermediaries"],
        json!([{ "name": "Only Relay" }])
    );
    assert_eq!(r.json()["client_secret"], secret, "the secret is kept");
    let read = json_request("GET", &uri, Some(&token), None).await.json();
    assert_eq!(read["intermediaries"], json!([{ "name": "Only Relay" }]));

    // Delete: 204, then the client and its refresh tokens are gone.
    let refresh_token = tokens.json()["refresh_token"].as_str().unwrap().to_string();
    let r = json_request("DELETE", &uri, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        json_request("GET", &uri, Some(&token), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = post_form(
        &s.url("/token"),
        Some(&basic(&id, secret)),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        agent.authorize(&s, &params).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn bad_metadata_is_refused_with_the_rfc_7591_codes() {
    let s = Server::start().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "intermediaries",
            json!([{ "uri": "https://x.example" }]),
            "invalid_client_metadata",
        ),
        (
            "intermediaries",
            json!([{ "name": 5 }]),
            "invalid_client_metadata",
        ),
        (
            "intermediaries",
            json!({ "name": "not an array" }),
            "invalid_client_metadata",
        ),
        (
            "intermediaries",
            json!([{ "name": "X", "logo_uri": "http://x.example/l.png" }]),
            "invalid_client_metadata",
        ),
        (
            "intermediaries",
            json!([{ "name": "X", "uri": "/relative" }]),
            "invalid_client_metadata",
        ),
        (
            "end_user_application",
            json!({ "description": "no name" }),
            "invalid_client_metadata",
        ),
        (
            "end_user_application",
            json!("a string"),
            "invalid_client_metadata",
        ),
        (
            "redirect_uris",
            json!(["http://app.example/cb"]),
            "invalid_redirect_uri",
        ),
        (
            "redirect_uris",
            json!(["https://app.example/cb#frag"]),
            "invalid_redirect_uri",
        ),
        ("redirect_uris", json!([]), "invalid_redirect_uri"),
        (
            "token_endpoint_auth_method",
            json!("private_key_jwt"),
            "invalid_client_metadata",
        ),
        (
            "grant_types",
            json!(["password"]),
            "invalid_client_metadata",
        ),
        (
            "response_types",
            json!(["token"]),
            "invalid_client_metadata",
        ),
    ];
    for (key, value, code) in cases {
        let mut body = metadata();
        body[key] = value;
        let r = register(&s, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key}: {}", r.body);
        assert_eq!(r.json()["error"], code, "{key}: {}", r.body);
    }
    let r = json_request("POST", &s.url("/register"), Some(IAT), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dev_mode_allows_http_urls_for_parties() {
    let s = Server::start_with("dev_mode = true").await;
    let mut body = metadata();
    body["intermediaries"] = json!([{ "name": "Local", "uri": "http://localhost:8080/", "logo_uri": "http://127.0.0.1:9/l.png" }]);
    body["redirect_uris"] = json!(["http://app.test/cb"]);
    let r = register(&s, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn consent_page_names_every_party_escaped_with_logos_and_links() {
    let s = Server::start().await;
    let reg = register(&s, &metadata()).await.json();
    let id = reg["client_id"].as_str().unwrap();
    let (_, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", id),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "read"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let mut agent = Agent::default();
    let login = agent.authorize(&s, &params).await;
    assert!(
        login.body.contains("Tax Helper &lt;Mobile&gt;"),
        "sign-in names the application"
    );
    let page = agent.sign_in(&s, &login, "alice", "alice-pw").await.body;
    // The end-user application is the headline.
    let h1 = &page[page.find("<h1>").unwrap()..page.find("</h1>").unwrap()];
    assert!(h1.contains("Tax Helper &lt;Mobile&gt;"), "{h1}");
    assert!(page.contains("Tax Helper Backend"), "client name");
    assert!(
        page.contains("Cloud &amp; Co &quot;Relay&quot;"),
        "intermediary 1"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "intermediary 2, escaped"
    );
    assert!(!page.contains("<script>"));
    assert!(page.contains("<img src=\"https://taxhelper.example/logo.png\" alt=\"Logo of Tax Helper &lt;Mobile&gt;\">"));
    assert!(page.contains("alt=\"Logo of Cloud &amp; Co &quot;Relay&quot;\""));
    assert!(page.contains("href=\"https://relay.example/\""));
    assert!(page.contains("href=\"https://taxhelper.example/\""));
    assert!(
        !page.contains("an analytics platform"),
        "descriptions are not displayed"
    );
}
