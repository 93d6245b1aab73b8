//! `response_metadata = "verify"`: the token response's `Link` ruri/duri (draft-sakimura-oauth-meta)
//! must name the route's resource and the discovery document chaingate read, else 502 and the
//! token never reaches the upstream. Against chaingate's authority (which emits the links for
//! clients with `response_metadata = true`), a stub server for wrong `duri`s, and oidc-provider.

use chaingate_test_support as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};
use http::{Request, Response};
use http_body_util::Full;
use serde_json::json;
use support::*;

const APP_SECRET: &str = "meta-app-secret";
const GW_SECRET: &str = "meta-gateway-secret";

fn refusals(scrape: &str, domain: &str, reason: &str) -> f64 {
    sample(
        scrape,
        &format!(
            r#"chaingate_response_metadata_refusals_total{{domain="{domain}",reason="{reason}"}}"#
        ),
    )
    .unwrap_or(0.0)
}

fn exchanges(scrape: &str, domain: &str) -> f64 {
    sample(
        scrape,
        &format!(r#"chaingate_token_exchanges_total{{domain="{domain}",outcome="issued"}}"#),
    )
    .unwrap_or(0.0)
}

async fn wait_ready(gw: &chaingate_gateway::Running) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(gw.admin_addr, "/ready", None).await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery never completed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An AT1 from `issuer`'s client_credentials client `app`.
async fn at1(issuer: &str) -> String {
    use base64::Engine as _;
    let request = Request::post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("app:{APP_SECRET}"))
            ),
        )
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials&scope=a:read",
        )))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200, "AT1: {}", answer.body);
    answer.json()["access_token"].as_str().unwrap().to_string()
}

/// A: the caller's IdP. B: chain-grant clients that differ only in the links B sends them.
async fn authorities() -> (RunningAuthority, RunningAuthority) {
    let a = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\ndefault_audience = \"urn:a:gateway\"\n[[clients]]\nclient_id = \"app\"\nclient_secret = \"{APP_SECRET}\"\ngrants = [\"client_credentials\"]\nscope = \"a:read\"\n"
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let client = |id: &str, links: &str| {
        format!(
            "[[clients]]\nclient_id = \"{id}\"\nclient_secret = \"{GW_SECRET}\"\ngrants = [\"chain\"]\nscope = \"b:read\"\n{links}\n"
        )
    };
    let b = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:b:api"
{}{}{}
[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read" }}
"#,
            client(
                "gw-good",
                "response_metadata = true\nresource_uri = \"https://api.b.example/v1/orders\""
            ),
            client(
                "gw-evil",
                "response_metadata = true\nresource_uri = \"https://attacker.example/orders\""
            ),
            client("gw-plain", ""),
            a = a.issuer()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    (a, b)
}

/// A domain per (name, B client, mode) and its routes: (domain, path, resource_uri).
fn gateway_toml(
    issuer: &str,
    domains: &[(&str, &str, &str)],
    routes: &[(&str, &str, Option<&str>)],
    upstream: &Upstream,
) -> String {
    let mut toml = String::from("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n");
    for (name, client_id, mode) in domains {
        toml += &format!(
            "\n[domains.{name}]\nissuer = \"{issuer}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{GW_SECRET}\"\nallow_insecure_http = true\nscope = \"b:read\"\nresponse_metadata = \"{mode}\"\n"
        );
    }
    for (domain, path, resource_uri) in routes {
        let resource = resource_uri.map_or(String::new(), |r| format!("resource_uri = \"{r}\"\n"));
        toml += &format!(
            "\n[[routes]]\nname = \"{path}\"\npath_prefix = \"/{path}/\"\nupstream = \"{}\"\ndomain = \"{domain}\"\n{resource}",
            upstream.url()
        );
    }
    toml
}

fn reached(upstream: &Upstream, path: &str) -> usize {
    upstream
        .received()
        .iter()
        .filter(|r| r.uri.starts_with(&format!("/{path}/")))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_against_the_chaingate_authority() {
    let (a, b) = authorities().await;
    let upstream = Upstream::start().await;
    let good = Some("https://api.b.example");
    let gw = gateway(&gateway_toml(
        b.issuer(),
        &[
            ("good", "gw-good", "verify"),
            ("evil", "gw-evil", "verify"),
            ("plain", "gw-plain", "verify"),
            ("lenient", "gw-evil", "ignore"),
        ],
        &[
            ("good", "orders", good),
            // The same cached token, checked for a route whose resource it does not name.
            ("good", "billing", Some("https://billing.b.example")),
            ("evil", "evil", good),
            ("plain", "plain", good),
            ("lenient", "lenient", None),
        ],
        &upstream,
    ))
    .await;
    wait_ready(&gw).await;
    let token = at1(a.issuer()).await;

    // Links that name B's discovery document and the route's resource: forwarded.
    let answer = get(gw.addr, "/orders/1", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(reached(&upstream, "orders"), 1);

    // The token is cached with its ruri, and checked again for the other route of the domain.
    let answer = get(gw.addr, "/billing/1", Some(&token)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.json()["error"], "bad_gateway");
    assert!(!answer.body.contains("ruri") && !answer.body.contains("example"));
    assert_eq!(reached(&upstream, "billing"), 0);

    // A ruri naming another host: refused, not redirected, the upstream never asked.
    let answer = get(gw.addr, "/evil/1", Some(&token)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.header("location"), None);
    assert_eq!(reached(&upstream, "evil"), 0);

    // No Link header at all under "verify": refused (an attacker would simply strip it).
    let answer = get(gw.addr, "/plain/1", Some(&token)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(reached(&upstream, "plain"), 0);

    // "ignore": clients that do not understand the extension keep working, whatever it says.
    let answer = get(gw.addr, "/lenient/1", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(reached(&upstream, "lenient"), 1);

    let scrape = metrics(&gw).await;
    assert_eq!(refusals(&scrape, "good", "ruri_mismatch"), 1.0);
    assert_eq!(
        exchanges(&scrape, "good"),
        1.0,
        "both routes share one token"
    );
    assert_eq!(refusals(&scrape, "evil", "ruri_mismatch"), 1.0);
    assert_eq!(refusals(&scrape, "plain", "missing"), 1.0);
    assert_eq!(refusals(&scrape, "lenient", "ruri_mismatch"), 0.0);
    assert!(
        upstream.received().iter().all(|r| !r.contains(&token)),
        "AT1 reached the upstream"
    );
}

/// A token server that publishes RFC 8414 metadata for itself and answers every token request
/// with the `Link` value currently set (none if empty); `{issuer}` is replaced by its own URL.
struct LinkServer {
    addr: std::net::SocketAddr,
    link: Arc<Mutex<String>>,
    calls: Arc<Mutex<usize>>,
}

impl LinkServer {
    async fn start() -> Self {
        let link = Arc::new(Mutex::new(String::new()));
        let calls = Arc::new(Mutex::new(0));
        let (l, c) = (link.clone(), calls.clone());
        let addr = serve(move |req: Request<hyper::body::Incoming>| {
            let (link, calls) = (l.clone(), c.clone());
            async move {
                let host = req.headers()["host"].to_str().unwrap().to_string();
                let issuer = format!("http://{host}");
                let mut response = if req.uri().path() == "/.well-known/oauth-authorization-server"
                {
                    Response::new(Full::new(Bytes::from(
                        json!({"issuer": issuer, "token_endpoint": format!("{issuer}/token")})
                            .to_string(),
                    )))
                } else {
                    let n = {
                        let mut calls = calls.lock().unwrap();
                        *calls += 1;
                        *calls
                    };
                    let mut response = Response::new(Full::new(Bytes::from(format!(
                        r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":300}}"#
                    ))));
                    let link = link.lock().unwrap().replace("{issuer}", &issuer);
                    if !link.is_empty() {
                        response.headers_mut().insert("link", link.parse().unwrap());
                    }
                    response
                };
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                response
            }
        })
        .await;
        Self { addr, link, calls }
    }

    fn set_link(&self, value: &str) {
        *self.link.lock().unwrap() = value.to_string();
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

const RIGHT_DURI: &str = "<{issuer}/.well-known/oauth-authorization-server>; rel=\"duri\"";

#[tokio::test(flavor = "multi_thread")]
async fn a_duri_naming_another_discovery_document_is_refused_and_not_cached() {
    let server = LinkServer::start().await;
    let upstream = Upstream::start().await;
    let issuer = format!("http://{}", server.addr);
    let gw = gateway(&gateway_toml(
        &issuer,
        &[("strict", "gw", "verify"), ("lenient", "gw", "ignore")],
        &[
            ("strict", "strict", Some("https://api.b.example")),
            ("lenient", "lenient", None),
        ],
        &upstream,
    ))
    .await;
    wait_ready(&gw).await;

    // The attacker's discovery document, with the right resource.
    server.set_link(
        "<https://api.b.example/orders>; rel=\"ruri\", <https://as.attacker.example/.well-known/oauth-authorization-server>; rel=\"duri\"",
    );
    for _ in 0..2 {
        let answer = get(gw.addr, "/strict/x", Some("caller")).await;
        assert_eq!(answer.status, 502, "{}", answer.body);
    }
    assert_eq!(server.calls(), 2, "a refused token is not cached");
    // A URL on the issuer's own host that is neither of its metadata documents.
    server.set_link(&format!(
        "<https://api.b.example>; rel=\"ruri\", <{issuer}/.well-known/oauth-authorization-server/other>; rel=\"duri\""
    ));
    assert_eq!(get(gw.addr, "/strict/x", Some("caller")).await.status, 502);
    // ruri without duri (the relations may come split; here one is missing).
    server.set_link("<https://api.b.example>; rel=\"ruri\"");
    assert_eq!(get(gw.addr, "/strict/x", Some("caller")).await.status, 502);
    assert_eq!(reached(&upstream, "strict"), 0);

    // "ignore" forwards whatever the links say.
    assert_eq!(get(gw.addr, "/lenient/x", Some("caller")).await.status, 200);
    assert_eq!(reached(&upstream, "lenient"), 1);

    // The right links: accepted, cached, forwarded.
    server.set_link(&format!(
        "<https://API.b.example:443/v2>; rel=\"ruri\", {RIGHT_DURI}"
    ));
    for _ in 0..2 {
        let answer = get(gw.addr, "/strict/x", Some("caller")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(reached(&upstream, "strict"), 2);
    let calls = server.calls();
    assert_eq!(get(gw.addr, "/strict/x", Some("caller")).await.status, 200);
    assert_eq!(server.calls(), calls, "the verified token is cached");

    // The issuer's OpenID Discovery URL, where discovery read its RFC 8414 one: both derive from
    // the configured issuer, so either names this server.
    server.set_link(&format!(
        "<https://api.b.example>; rel=\"ruri\", <{issuer}/.well-known/openid-configuration>; rel=\"duri\""
    ));
    let answer = get(gw.addr, "/strict/x", Some("another-caller")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(reached(&upstream, "strict"), 4);

    let scrape = metrics(&gw).await;
    assert_eq!(refusals(&scrape, "strict", "duri_mismatch"), 3.0);
    assert_eq!(refusals(&scrape, "strict", "missing"), 1.0);
    assert_eq!(refusals(&scrape, "strict", "ruri_mismatch"), 0.0);
}

#[test]
fn verify_needs_discovery_and_resource_uri_needs_verify() {
    let base = |domain_extra: &str, route_extra: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[domains.b]\ntoken_endpoint = \"https://as.example/token\"\nclient_id = \"gw\"\nclient_secret = \"s\"\n{domain_extra}\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\ndomain = \"b\"\n{route_extra}\n"
        )
    };
    let error = |text: String| {
        chaingate_gateway::config::Config::from_toml(&text)
            .unwrap_err()
            .to_string()
    };
    let e = error(base("response_metadata = \"verify\"", ""));
    assert!(e.contains("domains.b.response_metadata"), "{e}");
    let e = error(base("", "resource_uri = \"https://api.example\""));
    assert!(e.contains("routes[0].resource_uri"), "{e}");
    let e = error(base("scope_strategy = \"grow\"", ""));
    assert!(e.contains("domains.b.scope_strategy"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_against_oidc_provider_with_link_headers() {
    // gw-pkjwt's key is required by the script; this test uses gw-basic only.
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let config = json!({
        "client_jwks": { "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "unused",
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        }] },
        "secrets": { "app": APP_SECRET, "gw-basic": GW_SECRET, "gw-post": "unused-post-secret" },
        "link_headers": {
            "ruri": "https://api.b.example/orders",
            "duri": "{issuer}/.well-known/oauth-authorization-server",
        },
    });
    let (peer, a, b, _tmp) = support::oidc_provider::start_peer(&config).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(
        &b,
        &[("b", "gw-basic", "verify")],
        &[
            ("b", "orders", Some("https://api.b.example")),
            ("b", "elsewhere", Some("https://other.example")),
        ],
        &upstream,
    ))
    .await;
    wait_ready(&gw).await;
    let token = at1(&a).await;
    let answer = get(gw.addr, "/orders/1", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = get(gw.addr, "/elsewhere/1", Some(&token)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(reached(&upstream, "orders"), 1);
    assert_eq!(reached(&upstream, "elsewhere"), 0);
    let scrape = metrics(&gw).await;
    assert_eq!(refusals(&scrape, "b", "ruri_mismatch"), 1.0);
    assert_eq!(exchanges(&scrape, "b"), 1.0);
    peer.stop().await;
}
