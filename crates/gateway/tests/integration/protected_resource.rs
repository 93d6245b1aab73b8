//! RFC 9728 Protected Resource Metadata and the challenges that point at it, walked the way an
//! MCP client (authorization spec 2025-11-25 onwards) does: call without a token, read
//! `resource_metadata` from the 401, fetch the document, find the authorization server in it,
//! read that server's RFC 8414 metadata, get a token there, call again. Against chaingate's
//! authority as the caller's server (A) and the route's domain (B). Then step-ups: from the
//! token server and from the upstream, relayed whole.

use chaingate_test_support as support;

use bytes::Bytes;
use chaingate_test_support::authority::{self as auth, Domains};
use http::{Request, Response};
use http_body_util::Full;
use serde_json::Value;
use support::*;

/// The resource identifier clients know the gateway by (RFC 9728 §1.2).
const RESOURCE: &str = "http://127.0.0.1:9/mcp";

fn toml(token_url: &str, upstream: &str, a_issuer: &str, extra_route: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[protected_resource]
resource = "{RESOURCE}"
authorization_servers = ["{a_issuer}"]
scopes_supported = ["a:read"]
resource_name = "Billing MCP server"

[domains.billing]
token_endpoint = "{token_url}"
grant = "chain"
client_id = "gateway"
client_secret = "gw-secret"
auth_method = "client_secret_basic"
allow_insecure_http = true
timeout = "5s"
scope = "b:read"

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "{upstream}"
domain = "billing"
dpop = "required"
{extra_route}
[routes.protected_resource]
resource = "http://127.0.0.1:9/admin"
scopes_supported = ["a:admin"]

[[routes]]
name = "mcp"
path_prefix = "/"
upstream = "{upstream}"
domain = "billing"
"#
    )
}

/// A challenge's auth-param value (quoted or not), parsed as a client would.
fn param(challenge: &str, name: &str) -> Option<String> {
    let at = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q[..q.find('"')?].to_string(),
        None => rest.split(',').next()?.trim().to_string(),
    })
}

async fn get_path(addr: std::net::SocketAddr, url: &str) -> Answer {
    // The identifier's authority is what clients are configured with; in the test the gateway
    // listens on a port of its own, so the request goes there with the document's path.
    let path = url.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    get(addr, path, None).await
}

#[tokio::test]
async fn an_mcp_client_finds_its_authorization_server_from_a_401_and_gets_through() {
    let domains = Domains::start().await;
    let upstream = Upstream::start().await;
    let a = domains.a.issuer().to_string();
    let gw = gateway(&toml(&domains.b_url("/token"), &upstream.url(), &a, "")).await;

    // 1. No token: 401 naming the metadata and the scope to ask for.
    let first = get(gw.addr, "/mcp/tools", None).await;
    assert_eq!(first.status, 401);
    let challenge = first.header("www-authenticate").unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"chaingate\""),
        "{challenge}"
    );
    let metadata_url = param(&challenge, "resource_metadata").expect("RFC 9728 §5.1");
    assert_eq!(
        metadata_url,
        "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(param(&challenge, "scope").as_deref(), Some("a:read"));

    // 2. The document, served without a token; `resource` is the identifier the URL was
    // formed from (§3.3: a client refuses a document that names another).
    let doc = get_path(gw.addr, &metadata_url).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    assert_eq!(doc.header("access-control-allow-origin"), Some("*"));
    let doc = doc.json();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], serde_json::json!([a]));
    assert_eq!(doc["scopes_supported"], serde_json::json!(["a:read"]));
    assert_eq!(
        doc["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    assert_eq!(doc["resource_name"], "Billing MCP server");
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    assert!(doc.get("dpop_signing_alg_values_supported").is_none());
    // Nothing reached the upstream or the token server for the discovery.
    assert!(upstream.received().is_empty());

    // 3. The authorization server's own metadata (RFC 8414), then a token from it.
    let issuer = doc["authorization_servers"][0].as_str().unwrap();
    let as_meta = auth::get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .body;
    assert_eq!(as_meta["issuer"], issuer);
    let token_endpoint = as_meta["token_endpoint"].as_str().unwrap();
    let at1 = auth::post(
        token_endpoint,
        Some(&auth::basic("app", "app-secret")),
        &[("grant_type", "client_credentials"), ("scope", "a:read")],
    )
    .await
    .token();

    // 4. Through: the upstream sees B's token, never the caller's.
    let ok = get(gw.addr, "/mcp/tools", Some(&at1)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = upstream.received();
    let forwarded = seen[0].header("authorization").unwrap().to_string();
    assert!(forwarded.starts_with("Bearer "));
    assert!(!forwarded.contains(&at1));
    assert_eq!(
        auth::claims(forwarded.trim_start_matches("Bearer "))["iss"],
        domains.b.issuer()
    );
}

#[tokio::test]
async fn a_route_serves_its_own_document_at_the_path_suffixed_url() {
    let domains = Domains::start().await;
    let upstream = Upstream::start().await;
    let a = domains.a.issuer().to_string();
    let gw = gateway(&toml(&domains.b_url("/token"), &upstream.url(), &a, "")).await;

    let first = get(gw.addr, "/admin/users", None).await;
    assert_eq!(first.status, 401);
    let challenge = first.header("www-authenticate").unwrap().to_string();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert_eq!(
        param(&challenge, "resource_metadata").as_deref(),
        Some("http://127.0.0.1:9/.well-known/oauth-protected-resource/admin")
    );
    assert_eq!(param(&challenge, "scope").as_deref(), Some("a:admin"));

    let doc = get(gw.addr, "/.well-known/oauth-protected-resource/admin", None).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    // Inherited from the top-level table: the servers and the name; its own: the rest.
    assert_eq!(doc["resource"], "http://127.0.0.1:9/admin");
    assert_eq!(doc["authorization_servers"], serde_json::json!([a]));
    assert_eq!(doc["resource_name"], "Billing MCP server");
    assert_eq!(doc["scopes_supported"], serde_json::json!(["a:admin"]));
    assert_eq!(doc["dpop_bound_access_tokens_required"], true);
    assert!(doc["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from("ES256")));

    // Only GET and HEAD; a path that is no document goes to the routes as before.
    let post = send(
        &client(),
        Request::post(format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            gw.addr
        ))
        .body(Full::new(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let other = get(gw.addr, "/.well-known/oauth-protected-resource/nope", None).await;
    assert_eq!(
        other.status, 401,
        "not a document: the `/` route asks for a token"
    );
}

/// The token server's answer to every exchange.
async fn refusing(body: &'static str) -> (TokenServer, Upstream, chaingate_gateway::Running) {
    let sts = TokenServer::scripted(move |_, _| Reply::raw(400, body)).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&toml(&sts.url(), &upstream.url(), "https://as.example", "")).await;
    (sts, upstream, gw)
}

#[tokio::test]
async fn a_step_up_from_the_token_server_is_relayed_whole() {
    let (_sts, upstream, gw) = refusing(
        r#"{"error":"insufficient_user_authentication","error_description":"A different authentication level is required","acr_values":"phr phrh","max_age":300}"#,
    )
    .await;
    let answer = get(gw.addr, "/mcp", Some("caller-token-step-up")).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"], "insufficient_user_authentication");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer realm=\"chaingate\", error=\"insufficient_user_authentication\", acr_values=\"phr phrh\", max_age=300, resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp\", scope=\"a:read\"")
    );
    assert!(upstream.received().is_empty());

    // `claims` as a JSON object: compact, base64url (quotes cannot sit in the parameter).
    let (_sts, _upstream, gw) = refusing(
        r#"{"error":"insufficient_claims","claims":{"access_token":{"acr":{"essential":true}}}}"#,
    )
    .await;
    let answer = get(gw.addr, "/mcp", Some("caller-token-claims")).await;
    let challenge = answer.header("www-authenticate").unwrap();
    let claims = param(challenge, "claims").unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&decoded).unwrap(),
        serde_json::json!({"access_token":{"acr":{"essential":true}}})
    );
}

#[tokio::test]
async fn insufficient_scope_names_the_scope_needed() {
    let (_sts, _upstream, gw) = refusing(r#"{"error":"invalid_scope"}"#).await;
    let answer = get(gw.addr, "/mcp", Some("caller-token-scope")).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer realm=\"chaingate\", error=\"insufficient_scope\", resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp\", scope=\"a:read\"")
    );
}

#[tokio::test]
async fn without_metadata_a_403_still_names_the_routes_scope() {
    let sts = TokenServer::scripted(|_, _| Reply::error(400, "invalid_scope")).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let answer = get(gw.addr, "/x", Some("caller-token-plain")).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer realm=\"chaingate\", error=\"insufficient_scope\", scope=\"invoices.read\"")
    );
    // No document is served without `[protected_resource]`: the path is the route's.
    let doc = get(gw.addr, "/.well-known/oauth-protected-resource", None).await;
    assert_eq!(doc.status, 401);
    assert!(!doc
        .header("www-authenticate")
        .unwrap()
        .contains("resource_metadata"));
}

#[tokio::test]
async fn an_upstream_step_up_points_the_caller_at_our_metadata() {
    let sts = TokenServer::start().await;
    let addr = serve(|_req| async {
        Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer realm="billing-internal", error="insufficient_user_authentication", acr_values="urn:mace:incommon:iap:silver", max_age=60, resource_metadata="http://billing.internal/.well-known/oauth-protected-resource""#,
            )
            .body(Full::new(Bytes::from_static(b"step up")))
            .unwrap()
    })
    .await;
    let gw = gateway(&toml(
        &sts.url(),
        &format!("http://{addr}"),
        "https://as.example",
        "",
    ))
    .await;
    let answer = get(gw.addr, "/mcp", Some("caller-token-upstream")).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body, "step up",
        "the upstream's body is the caller's"
    );
    let challenges: Vec<_> = answer.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 1);
    assert_eq!(
        challenges[0],
        "Bearer realm=\"chaingate\", error=\"insufficient_user_authentication\", acr_values=\"urn:mace:incommon:iap:silver\", max_age=60, resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp\", scope=\"a:read\""
    );
}

#[test]
fn two_routes_cannot_serve_different_documents_at_one_url() {
    let bad = toml(
        "http://127.0.0.1:1/token",
        "http://127.0.0.1:1",
        "https://as.example",
        "",
    )
    .replace(
        "resource = \"http://127.0.0.1:9/admin\"",
        "resource = \"http://127.0.0.1:9/mcp\"",
    );
    let e = chaingate_gateway::config::Config::from_toml(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("routes[1].protected_resource.resource"), "{e}");
    let missing = bad.replace(&format!("resource = \"{RESOURCE}\"\n"), "");
    let e = chaingate_gateway::config::Config::from_toml(&missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("protected_resource.resource"), "{e}");
}
