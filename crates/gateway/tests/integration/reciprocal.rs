//! Reciprocal OAuth (draft-ietf-oauth-reciprocal-04) with chaingate as party A's agent: the
//! wire protocol against recording token servers, and end to end between two chaingate
//! authorities (domain A issues the code, domain B redeems it and can then call A).

use chaingate_test_support as support;

use std::time::Duration;

use base64::Engine as _;
use support::*;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A JWT-shaped AT1 (the recording token server does not check signatures).
fn at1_for(sub: &str, jti: u32) -> String {
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"ES256","typ":"at+jwt"}"#),
        b64(&format!(r#"{{"sub":"{sub}","jti":"{jti}"}}"#))
    )
}

/// Domain B: issues AT2 asking for `wanted` back, and accepts reciprocal codes with `code_status`.
async fn party_b(wanted: &'static str, code_status: u16) -> TokenServer {
    TokenServer::scripted(move |n, request| {
        if request.param("grant_type") == Some(chaingate_oauth::grant::RECIPROCAL_GRANT) {
            return match code_status {
                200 => Reply::raw(200, "{}"),
                status => Reply::error(status, "invalid_grant"),
            };
        }
        Reply::raw(
            200,
            &format!(
                r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":300,"reciprocal":"{wanted}"}}"#
            ),
        )
    })
    .await
}

fn reciprocal_section(code_endpoint: &str) -> String {
    format!(
        r#"
[domains.billing.reciprocal]
code_endpoint = "{code_endpoint}"
recipient = "domain-b-at-a"
client_id = "agent-at-a"
client_secret = "agent-secret"
scopes = ["a:read"]
allow_insecure_http = true
timeout = "2s"
"#
    )
}

/// A gateway whose `billing` domain is `b` and whose party A answers at `code_endpoint`.
async fn agent_gateway(
    b: &str,
    code_endpoint: &str,
    upstream: &Upstream,
) -> chaingate_gateway::Running {
    gateway(&config(
        b,
        &upstream.url(),
        &reciprocal_section(code_endpoint),
    ))
    .await
}

/// `/reciprocal/code` at a recording server.
fn code_endpoint(a: &TokenServer) -> String {
    format!("http://{}/reciprocal/code", a.addr)
}

fn deliveries(scrape: &str, outcome: &str) -> f64 {
    sample(
        scrape,
        &format!(
            r#"chaingate_reciprocal_deliveries_total{{domain="billing",outcome="{outcome}"}}"#
        ),
    )
    .unwrap_or(0.0)
}

/// Polls the metrics until `outcome` reaches `count` (the delivery runs in the background).
async fn until_outcome(gw: &chaingate_gateway::Running, outcome: &str, count: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = metrics(gw).await;
        if deliveries(&scrape, outcome) >= count {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {outcome} = {count} in time:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reciprocal_requests(b: &TokenServer) -> Vec<TokenRequest> {
    b.requests()
        .into_iter()
        .filter(|r| r.param("grant_type") == Some(chaingate_oauth::grant::RECIPROCAL_GRANT))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_fetched_and_delivered_once_per_subject_and_scope() {
    let a = TokenServer::scripted(|n, _| {
        Reply::raw(200, &format!(r#"{{"code":"code-{n}","expires_in":60}}"#))
    })
    .await;
    let b = party_b("a:read a:write", 200).await;
    let upstream = Upstream::start().await;
    let gw = agent_gateway(&b.url(), &code_endpoint(&a), &upstream).await;

    let alice = at1_for("alice", 1);
    let answer = get(gw.addr, "/x", Some(&alice)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    until_outcome(&gw, "delivered", 1.0).await;

    // Party A was asked for a code for B's client, for the scope the operator allows only.
    let asked = a.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].param("subject_token"), Some(alice.as_str()));
    assert_eq!(asked[0].param("recipient"), Some("domain-b-at-a"));
    assert_eq!(asked[0].param("scope"), Some("a:read"));
    let agent_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("agent-at-a:agent-secret")
    );
    assert_eq!(
        asked[0].authorization.as_deref(),
        Some(agent_basic.as_str())
    );

    // Party B got the code with the token it issued (naming the user), from its own client.
    let delivered = reciprocal_requests(&b);
    assert_eq!(delivered.len(), 1);
    let d = &delivered[0];
    assert_eq!(d.param("code"), Some("code-0"));
    assert_eq!(d.param("access_token"), Some("at2-0"));
    assert_eq!(d.param("client_id"), Some("gateway-a"));
    assert!(d.authorization.as_deref().unwrap().starts_with("Basic "));
    assert_eq!(
        d.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );

    // Another token of the same user is exchanged (a cache miss) but not delivered again.
    let again = get(gw.addr, "/x", Some(&at1_for("alice", 2))).await;
    assert_eq!(again.status, 200);
    until_outcome(&gw, "duplicate", 1.0).await;
    // Another user is.
    let bob = get(gw.addr, "/x", Some(&at1_for("bob", 3))).await;
    assert_eq!(bob.status, 200);
    let scrape = until_outcome(&gw, "delivered", 2.0).await;
    assert_eq!(a.calls(), 2);
    assert_eq!(reciprocal_requests(&b).len(), 2);
    assert_eq!(deliveries(&scrape, "duplicate"), 1.0);
    // The upstream only ever saw AT2s; neither codes nor AT1s.
    for received in upstream.received() {
        assert!(received
            .header("authorization")
            .unwrap()
            .starts_with("Bearer at2-"));
        assert!(!received.contains("code-"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_the_operator_did_not_allow_are_declined_without_asking_anyone() {
    let a = TokenServer::scripted(|_, _| Reply::raw(200, r#"{"code":"c"}"#)).await;
    let b = party_b("a:admin", 200).await;
    let upstream = Upstream::start().await;
    let gw = agent_gateway(&b.url(), &code_endpoint(&a), &upstream).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    until_outcome(&gw, "declined", 1.0).await;
    assert_eq!(a.calls(), 0);
    assert!(reciprocal_requests(&b).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn trouble_at_either_party_never_reaches_the_caller() {
    let upstream = Upstream::start().await;

    // Party A unreachable.
    let b = party_b("a:read", 200).await;
    let nowhere = format!("http://{}/reciprocal/code", closed_port().await);
    let gw = agent_gateway(&b.url(), &nowhere, &upstream).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    until_outcome(&gw, "code_failed", 1.0).await;
    assert!(reciprocal_requests(&b).is_empty());

    // Party A wants the user's consent first: remembered, not asked again at once.
    let a = TokenServer::scripted(|_, _| Reply::error(400, "consent_required")).await;
    let b = party_b("a:read", 200).await;
    let gw = agent_gateway(&b.url(), &code_endpoint(&a), &upstream).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    until_outcome(&gw, "consent_required", 1.0).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 2))).await.status,
        200
    );
    until_outcome(&gw, "duplicate", 1.0).await;
    assert_eq!(a.calls(), 1);

    // Party B refuses the code.
    let a = TokenServer::scripted(|_, _| Reply::raw(200, r#"{"code":"c"}"#)).await;
    let b = party_b("a:read", 400).await;
    let gw = agent_gateway(&b.url(), &code_endpoint(&a), &upstream).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    until_outcome(&gw, "delivery_failed", 1.0).await;
}

/// A token server that issues AT2 asking for `a:read`, and answers the reciprocal grant with a
/// response head whose body never comes.
async fn stalling_party_b() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The forms are small: the whole request arrives with its head.
                while !String::from_utf8_lossy(&seen).contains("grant") {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&seen).into_owned();
                if text.contains("grant-type%3Areciprocal") {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
                    let _ = stream.write_all(head.as_bytes()).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let body = r#"{"access_token":"at2-0","token_type":"Bearer","expires_in":300,"reciprocal":"a:read"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_server_that_stalls_mid_answer_cannot_hold_a_delivery() {
    let a = TokenServer::scripted(|_, _| Reply::raw(200, r#"{"code":"c"}"#)).await;
    let b = stalling_party_b().await;
    let upstream = Upstream::start().await;
    // The domain's timeout (500 ms in support::config) bounds the whole answer, body included.
    let gw = agent_gateway(&format!("http://{b}/token"), &code_endpoint(&a), &upstream).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    until_outcome(&gw, "delivery_failed", 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_policy_the_reciprocal_member_is_ignored() {
    let b = party_b("a:read", 200).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&b.url(), &upstream.url(), "")).await;
    assert_eq!(
        get(gw.addr, "/x", Some(&at1_for("alice", 1))).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.calls(), 1, "only the exchange itself");
    assert!(!metrics(&gw)
        .await
        .contains("chaingate_reciprocal_deliveries_total{"));
}

// === end to end: two chaingate authorities ===

use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

async fn post_form(url: String, authorization: &str, form: &str) -> Answer {
    let request = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", authorization)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            form.to_owned(),
        )))
        .unwrap();
    send(&client(), request).await
}

/// Domain A: the callers' identity provider, and party A (it issues codes to its agent).
async fn domain_a() -> RunningAuthority {
    authority::spawn(
        AuthorityConfig::from_toml(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:gateway"
[[clients]]
client_id = "app"
client_secret = "app-secret"
grants = ["client_credentials"]
scope = "a:read a:write"
[[clients]]
client_id = "agent"
client_secret = "agent-secret"
grants = ["client_credentials"]
scope = "a:read"
[[clients]]
client_id = "domain-b"
client_secret = "b-at-a-secret"
grants = ["authorization_code"]
redirect_uris = ["https://b.example/callback"]
scope = "a:read"
[[reciprocal_policies]]
agent = "agent"
recipient = "domain-b"
scope = "a:read"
"#,
        )
        .unwrap(),
    )
    .await
    .unwrap()
}

/// Domain B: exchanges A's tokens by the chain grant, asks for `a:read` back, redeems at A.
async fn domain_b(a: &RunningAuthority) -> RunningAuthority {
    authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:b-api"
[[clients]]
client_id = "gateway"
client_secret = "gateway-secret"
grants = ["chain"]
scope = "b:read"
reciprocal = "a:read"
[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:gateway"]
scope_map = {{ "a:read" = "b:read" }}
[reciprocal]
token_endpoint = "{a}/token"
client_id = "domain-b"
client_secret = "b-at-a-secret"
allow_insecure_http = true
"#,
            a = a.issuer()
        ))
        .unwrap(),
    )
    .await
    .unwrap()
}

async fn caller_token(a: &RunningAuthority) -> String {
    let answer = post_form(
        format!("{}/token", a.issuer()),
        &basic("app", "app-secret"),
        "grant_type=client_credentials&scope=a:read",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_b_ends_up_with_a_working_token_for_domain_a() {
    let a = domain_a().await;
    let b = domain_b(&a).await;
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[domains.billing]
token_endpoint = "{b}/token"
client_id = "gateway"
client_secret = "gateway-secret"
allow_insecure_http = true
scope = "b:read"
[domains.billing.reciprocal]
code_endpoint = "{a}/reciprocal/code"
recipient = "domain-b"
client_id = "agent"
client_secret = "agent-secret"
scopes = ["a:read"]
allow_insecure_http = true
[[routes]]
path_prefix = "/"
upstream = "{u}"
domain = "billing"
"#,
        a = a.issuer(),
        b = b.issuer(),
        u = upstream.url()
    );
    let gw = gateway(&toml).await;

    // The caller's request is served as usual.
    let answer = get(gw.addr, "/calendar", Some(&caller_token(&a).await)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // In the background: A issued a code under its policy, chaingate delivered it to B, B
    // redeemed it at A's token endpoint.
    until_outcome(&gw, "delivered", 1.0).await;
    assert_eq!(
        b.wait_reciprocal_redemptions(1, Duration::from_secs(10))
            .await,
        (1, 0)
    );
    let grant = b
        .reciprocal_grant("app", "gateway")
        .expect("B keeps the grant for the user chaingate's client acted for");
    assert_eq!(grant.scope, "a:read");

    // B's token works at domain A: A's introspection (what A's resource servers ask) says it
    // is active, for the same user, issued to B's client at A, with the reciprocal scope.
    let introspected = post_form(
        format!("{}/introspect", a.issuer()),
        &basic("domain-b", "b-at-a-secret"),
        &format!("token={}", grant.access_token.expose()),
    )
    .await;
    assert_eq!(introspected.status, 200, "{}", introspected.body);
    let claims = introspected.json();
    assert_eq!(claims["active"], true, "{claims}");
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["client_id"], "domain-b");
    assert_eq!(claims["scope"], "a:read");

    // A new token of the same caller is exchanged again, but the grant is not sent twice.
    let again = get(gw.addr, "/calendar", Some(&caller_token(&a).await)).await;
    assert_eq!(again.status, 200);
    until_outcome(&gw, "duplicate", 1.0).await;
    assert_eq!(b.reciprocal_redemptions(), (1, 0));
}

// === end to end: the user's own consent at party A ===

use chaingate_test_support::parties;

#[tokio::test(flavor = "multi_thread")]
async fn after_the_user_consents_at_party_a_the_next_exchange_delivers() {
    // A: users, the agent `gateway` and B's client `other-rp` there, with no pre-consent policy
    // for that pair: only the user can allow it.
    let a = authority::spawn(AuthorityConfig::from_toml(parties::A_CONFIG).unwrap())
        .await
        .unwrap();
    let alice_at_a = || async {
        parties::user_token(
            &a,
            ("web", "web-secret"),
            "https://web.example/cb",
            "profile",
            "alice",
        )
        .await
        .field("access_token")
    };
    let first = alice_at_a().await;
    let audience = parties::claims(&first)["aud"].clone();
    let audiences = match &audience {
        serde_json::Value::Array(list) => list.clone(),
        one => vec![one.clone()],
    };
    let b = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
[[clients]]
client_id = "gateway"
client_secret = "gateway-secret"
grants = ["chain"]
scope = "files.read"
reciprocal = "contacts.read"
[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = {audiences}
scope_map = {{ "profile" = "files.read" }}
[reciprocal]
token_endpoint = "{a}/token"
client_id = "other-rp"
client_secret = "other-secret"
allow_insecure_http = true
"#,
            a = a.issuer(),
            audiences = serde_json::Value::Array(audiences.clone())
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let upstream = Upstream::start().await;
    let gw = gateway(&format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[domains.billing]
token_endpoint = "{b}/token"
client_id = "gateway"
client_secret = "gateway-secret"
allow_insecure_http = true
scope = "files.read"
[domains.billing.reciprocal]
code_endpoint = "{a}/reciprocal/code"
recipient = "other-rp"
client_id = "gateway"
client_secret = "gw-secret"
scopes = ["contacts.read"]
consent_retry = "300ms"
allow_insecure_http = true
[[routes]]
path_prefix = "/"
upstream = "{u}"
domain = "billing"
"#,
        a = a.issuer(),
        b = b.issuer(),
        u = upstream.url()
    ))
    .await;

    // No policy, no consent yet: A says so, and nothing reaches B.
    let answer = get(gw.addr, "/files", Some(&first)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    until_outcome(&gw, "consent_required", 1.0).await;
    assert_eq!(b.reciprocal_redemptions(), (0, 0));

    // Alice allows B's client `contacts.read` on A's consent page.
    let mut browser = parties::Agent::default();
    let page = browser
        .get(&format!(
            "{}/reciprocal/consent?recipient=other-rp&scope=contacts.read",
            a.issuer()
        ))
        .await;
    let consent = browser.through_sign_in(&a, page, "alice").await;
    let done = browser.decide(&a, &consent, "approve").await;
    assert!(done.body.contains("Access allowed"), "{}", done.body);

    // Once consent_retry has passed, her next exchange delivers, and B holds a token for A.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(gw.addr, "/files", Some(&alice_at_a().await)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if deliveries(&metrics(&gw).await, "delivered") >= 1.0 || b.reciprocal_redemptions().0 >= 1
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.wait_reciprocal_redemptions(1, Duration::from_secs(10))
            .await,
        (1, 0)
    );
    let grant = b.reciprocal_grant("alice", "gateway").expect("B's grant");
    let introspected = post_form(
        format!("{}/introspect", a.issuer()),
        &basic("other-rp", "other-secret"),
        &format!("token={}", grant.access_token.expose()),
    )
    .await;
    let claims = introspected.json();
    assert_eq!(claims["active"], true, "{claims}");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "other-rp");
    assert_eq!(claims["scope"], "contacts.read");
}
