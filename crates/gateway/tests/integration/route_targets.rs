//! Per-route targets (issue 19): `audience`, `resource` and `authorization_details` on a route
//! reach the token server and split the cache; routes match on path, host, method and headers;
//! `exchange = "if_needed" | "never"` forwards the caller's own token.

use chaingate_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::authority::TestKey;
use support::logs::Logs;
use support::*;

const ISSUER: &str = "https://idp.example";

/// An RFC 8693 token server issuing `at2-<n>` access tokens (§2.2.1: `issued_token_type`).
async fn exchange_server() -> TokenServer {
    TokenServer::scripted(|n, _| {
        Reply::raw(
            200,
            &format!(
                r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}}"#
            ),
        )
    })
    .await
}

/// A token-exchange domain `te` (default audience `urn:te:default`) on `sts`, then `routes`.
fn te_config(sts: &TokenServer, routes: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[cache]
expiry_skew = "0s"

[domains.te]
token_endpoint = "{}"
grant = "token-exchange"
client_id = "gateway-a"
client_secret = "gateway-secret-value"
allow_insecure_http = true
audience = "urn:te:default"

{routes}
"#,
        sts.url()
    )
}

fn route(name: &str, keys: &str, upstream: &Upstream) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\nupstream = \"{}\"\ndomain = \"te\"\n{keys}\n",
        upstream.url()
    )
}

/// `[routes.validate]` trusting `key`'s JWKS (written under `dir`), for chaingate's audience.
fn validate(key: &TestKey, dir: &std::path::Path) -> String {
    let path = dir.join("jwks.json");
    std::fs::write(&path, key.jwks()).unwrap();
    format!(
        "[routes.validate]\nissuer = \"{ISSUER}\"\njwks_file = \"{}\"\naudience = \"urn:chaingate\"\n",
        path.display()
    )
}

fn caller_token(key: &TestKey, aud: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    key.sign_with(
        "at+jwt",
        &json!({"iss": ISSUER, "sub": "alice", "aud": aud, "iat": now, "exp": now + 300}),
        |_| {},
    )
}

fn params<'a>(request: &'a TokenRequest, name: &str) -> Vec<&'a str> {
    request
        .form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The Authorization the upstream answered with (it echoes what it received).
fn seen(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["authorization"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_with_different_targets_never_share_a_token_and_the_server_sees_them() {
    let sts = exchange_server().await;
    let upstream = Upstream::start().await;
    let routes = route(
        "a",
        "path_prefix = \"/a\"\naudience = \"urn:upstream:a\"\nresource = [\"https://a.example/api\"]",
        &upstream,
    ) + &route(
        "b",
        "path_prefix = \"/b\"\n[[routes.authorization_details]]\ntype = \"account_information\"\nactions = [\"read\"]",
        &upstream,
    ) + &route("plain", "path_prefix = \"/\"", &upstream);
    let gw = gateway(&te_config(&sts, &routes)).await;

    // One caller token on three routes: three exchanges, three tokens.
    assert_eq!(
        seen(&get(gw.addr, "/a", Some("caller-1")).await),
        "Bearer at2-0"
    );
    assert_eq!(
        seen(&get(gw.addr, "/b", Some("caller-1")).await),
        "Bearer at2-1"
    );
    assert_eq!(
        seen(&get(gw.addr, "/", Some("caller-1")).await),
        "Bearer at2-2"
    );
    // Each route's own token is cached for it.
    assert_eq!(
        seen(&get(gw.addr, "/a/x", Some("caller-1")).await),
        "Bearer at2-0"
    );
    assert_eq!(
        seen(&get(gw.addr, "/b/x", Some("caller-1")).await),
        "Bearer at2-1"
    );
    assert_eq!(sts.calls(), 3);

    let requests = sts.requests();
    assert_eq!(params(&requests[0], "audience"), ["urn:upstream:a"]);
    assert_eq!(params(&requests[0], "resource"), ["https://a.example/api"]);
    assert!(params(&requests[0], "authorization_details").is_empty());
    // Route b keeps the domain's audience and adds its details, as one JSON parameter.
    assert_eq!(params(&requests[1], "audience"), ["urn:te:default"]);
    let details: Value =
        serde_json::from_str(requests[1].param("authorization_details").unwrap()).unwrap();
    assert_eq!(
        details,
        json!([{"type": "account_information", "actions": ["read"]}])
    );
    // A route without targets asks exactly as before.
    assert_eq!(params(&requests[2], "audience"), ["urn:te:default"]);
    assert!(params(&requests[2], "resource").is_empty());
    assert!(params(&requests[2], "authorization_details").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_and_details_go_with_the_chain_grant_too() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        "[[routes]]\nname = \"pay\"\npath_prefix = \"/pay\"\nupstream = \"{}\"\ndomain = \"billing\"\nresource = \"https://pay.example/\"\n[[routes.authorization_details]]\ntype = \"payment_initiation\"\n",
        upstream.url()
    );
    let gw = gateway(&config(&sts.url(), &upstream.url(), &extra)).await;
    assert_eq!(
        seen(&get(gw.addr, "/pay", Some("caller-2")).await),
        "Bearer at2-0"
    );
    assert_eq!(
        seen(&get(gw.addr, "/", Some("caller-2")).await),
        "Bearer at2-1"
    );
    let requests = sts.requests();
    assert_eq!(params(&requests[0], "resource"), ["https://pay.example/"]);
    assert_eq!(
        requests[0].param("authorization_details"),
        Some(r#"[{"type":"payment_initiation"}]"#)
    );
    assert!(params(&requests[1], "resource").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_authorization_details_are_a_403_the_caller_can_act_on() {
    let sts =
        TokenServer::scripted(|_, _| Reply::error(400, "invalid_authorization_details")).await;
    let upstream = Upstream::start().await;
    let routes = route(
        "pay",
        "path_prefix = \"/\"\n[[routes.authorization_details]]\ntype = \"payment_initiation\"",
        &upstream,
    );
    let gw = gateway(&te_config(&sts, &routes)).await;
    let answer = get(gw.addr, "/", Some("caller-3")).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    let challenge = answer.header("www-authenticate").unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(!answer.body.contains("details only the gateway"));
    assert!(upstream.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_route_matching_path_host_method_and_headers_wins() {
    let sts = exchange_server().await;
    let (mcp, api, rest) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let routes = route(
        "mcp-call",
        "path = \"/mcp\"\nmethods = [\"POST\"]\nheaders = { \"Mcp-Method\" = \"tools/call\" }",
        &mcp,
    ) + &route(
        "api-host",
        "path_prefix = \"/\"\nhost = \"API.example\"",
        &api,
    ) + &route("rest", "path_prefix = \"/\"", &rest);
    let gw = gateway(&te_config(&sts, &routes)).await;
    let send_one = |method: &str, path: &str, host: Option<&str>, mcp_method: Option<&str>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", gw.addr))
            .header("authorization", "Bearer caller-4");
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(value) = mcp_method {
            request = request.header("mcp-method", value);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        async move { send(&client(), request).await.status }
    };
    assert_eq!(
        send_one("POST", "/mcp", None, Some("tools/call")).await,
        200
    );
    assert_eq!(
        send_one("POST", "/mcp", None, Some("tools/list")).await,
        200
    );
    assert_eq!(send_one("GET", "/mcp", None, Some("tools/call")).await, 200);
    assert_eq!(
        send_one("POST", "/mcp/x", None, Some("tools/call")).await,
        200
    );
    assert_eq!(
        send_one("GET", "/x", Some("api.example:8080"), None).await,
        200
    );
    assert_eq!(
        send_one("GET", "/x", Some("other.example"), None).await,
        200
    );
    let paths = |u: &Upstream| {
        u.received()
            .iter()
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&mcp), ["POST /mcp"]);
    assert_eq!(paths(&api), ["GET /x"]);
    assert_eq!(
        paths(&rest),
        ["POST /mcp", "GET /mcp", "POST /mcp/x", "GET /x"]
    );
    let scrape = metrics(&gw).await;
    let requests = |route: &str| {
        sample(
            &scrape,
            &format!("chaingate_requests_total{{route=\"{route}\",code=\"200\"}}"),
        )
    };
    assert_eq!(requests("mcp-call"), Some(1.0));
    assert_eq!(requests("api-host"), Some(1.0));
    assert_eq!(requests("rest"), Some(4.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn if_needed_forwards_a_token_already_for_the_upstream_and_exchanges_the_others() {
    let _ = Logs::global();
    let key = TestKey::new("idp-1");
    let dir = tempfile::tempdir().unwrap();
    let sts = exchange_server().await;
    let upstream = Upstream::start().await;
    let routes = route(
        "mcp",
        "path_prefix = \"/\"\naudience = \"urn:upstream\"\nexchange = \"if_needed\"",
        &upstream,
    ) + &validate(&key, dir.path());
    let sink = Logs::default();
    chaingate_core::tls::install_crypto_provider();
    let gw = chaingate_gateway::start(
        chaingate_gateway::config::Config::from_toml(&te_config(&sts, &routes)).unwrap(),
        chaingate_gateway::Options {
            access_log: Some(Box::new(sink.clone())),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Already for the upstream (and not for chaingate): forwarded as it came, no exchange.
    let aimed = caller_token(&key, json!(["urn:upstream"]));
    let answer = get(gw.addr, "/tools", Some(&aimed)).await;
    assert_eq!(seen(&answer), format!("Bearer {aimed}"));
    assert_eq!(sts.calls(), 0);
    // For chaingate only: exchanged for the upstream's audience.
    let ours = caller_token(&key, json!("urn:chaingate"));
    assert_eq!(
        seen(&get(gw.addr, "/tools", Some(&ours)).await),
        "Bearer at2-0"
    );
    assert_eq!(sts.calls(), 1);
    assert_eq!(params(&sts.requests()[0], "audience"), ["urn:upstream"]);
    assert_eq!(params(&sts.requests()[0], "subject_token"), [ours.as_str()]);
    // For neither, or not validly signed: refused locally, never forwarded or exchanged.
    let elsewhere = caller_token(&key, json!("urn:someone-else"));
    assert_eq!(get(gw.addr, "/tools", Some(&elsewhere)).await.status, 401);
    let forged = caller_token(&TestKey::new("idp-1"), json!(["urn:upstream"]));
    assert_eq!(get(gw.addr, "/tools", Some(&forged)).await.status, 401);
    assert_eq!(sts.calls(), 1);
    assert_eq!(upstream.received().len(), 2);

    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(&scrape, "chaingate_exchange_skipped_total{route=\"mcp\"}"),
        Some(1.0),
        "{scrape}"
    );
    gw.begin_shutdown();
    gw.wait().await;
    let lines = sink.text();
    let caches: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.split("cache=\"").nth(1))
        .map(|rest| rest.trim_end_matches('"'))
        .collect();
    assert_eq!(caches, ["skipped", "miss", "none", "none"], "{lines}");
    assert!(!lines.contains(&aimed));
}

#[tokio::test(flavor = "multi_thread")]
async fn never_forwards_the_validated_token_and_relays_its_refusal() {
    let key = TestKey::new("idp-2");
    let dir = tempfile::tempdir().unwrap();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // An upstream that refuses every token as RFC 6750 §3.1 says, counting what it is sent.
    let refusals = Arc::new(AtomicUsize::new(0));
    let counter = refusals.clone();
    let refusing = serve(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            http::Response::builder()
                .status(401)
                .header("www-authenticate", "Bearer error=\"invalid_token\"")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"refusing\"\npath_prefix = \"/refusing\"\nupstream = \"http://{refusing}\"\ndomain = \"te\"\nexchange = \"never\"\n{}",
        validate(&key, dir.path())
    ) + &route("direct", "path_prefix = \"/\"\nexchange = \"never\"", &upstream)
        + &validate(&key, dir.path());
    let gw = gateway(&te_config(&sts, &routes)).await;

    let token = caller_token(&key, json!("urn:chaingate"));
    assert_eq!(
        seen(&get(gw.addr, "/x", Some(&token)).await),
        format!("Bearer {token}")
    );
    // The upstream refuses the caller's own token: the caller hears it; nothing is exchanged
    // and nothing retried (an exchanged token would be evicted and exchanged again).
    let refused = get(gw.addr, "/refusing", Some(&token)).await;
    assert_eq!(refused.status, 401);
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(refusals.load(Ordering::SeqCst), 1);
    let bad = caller_token(&key, json!("urn:other"));
    assert_eq!(get(gw.addr, "/x", Some(&bad)).await.status, 401);
    assert_eq!(upstream.received().len(), 1);
    assert_eq!(sts.calls(), 0);
    let scrape = metrics(&gw).await;
    let skipped = |route: &str| {
        sample(
            &scrape,
            &format!("chaingate_exchange_skipped_total{{route=\"{route}\"}}"),
        )
    };
    assert_eq!(skipped("direct"), Some(1.0));
    assert_eq!(skipped("refusing"), Some(1.0));
}
