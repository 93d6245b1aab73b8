//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-10): the edge gets one per request
//! from the in-process authority acting as Transaction Token Service, and a gateway inside the
//! trust domain checks it before anything reaches its upstream.

use chaingate_test_support as support;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::authority::{claims, header, now, Domains, TestKey};
use support::*;

const TRUST: &str = "trust.b.example";

/// B (the authority under test) serves the trust domain to the `gateway` client.
const SERVICE: &str = r#"
[txn_token_service]
audiences = ["trust.b.example"]
clients = ["gateway"]
lifetime = "60s"
"#;

/// An edge gateway: domain `tts` (B as the TTS), domain `b` (the chain grant at B) for the
/// route's own exchange; `txn` is the route's `[routes.txn_token]` body.
fn edge(d: &Domains, upstream: &Upstream, txn: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[domains.tts]
token_endpoint = "{token}"
grant = "token-exchange"
client_id = "gateway"
client_secret = "gw-secret"
allow_insecure_http = true
scope = "b:read"

[domains.b]
token_endpoint = "{token}"
grant = "chain"
client_id = "gateway"
client_secret = "gw-secret"
allow_insecure_http = true
scope = "b:read"

[[routes]]
name = "edge"
path_prefix = "/"
upstream = "{up}"
domain = "b"
[routes.txn_token]
domain = "tts"
{txn}
"#,
        token = d.b_url("/token"),
        up = upstream.url(),
    )
}

/// A gateway inside the trust domain; `keys` is `jwks_uri = ...` or `jwks_file = ...`.
fn inside(upstream: &Upstream, keys: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[domains.unused]
token_endpoint = "http://127.0.0.1:9/token"
grant = "chain"
client_id = "x"
client_secret = "y"
allow_insecure_http = true

[[routes]]
name = "inside"
path_prefix = "/"
upstream = "{up}"
domain = "unused"
[routes.txn_token_verify]
{keys}
audience = "{TRUST}"
mode = "alone"
allow_insecure_http = true
{extra}
"#,
        up = upstream.url(),
    )
}

fn request_to(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_sends_a_txn_token_from_the_authority_that_the_trust_domain_accepts_unchanged() {
    // Installed before anything logs: process-wide, so other tests' lines only add to the search.
    let captured = logs::Logs::global();
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let bearer = format!("Bearer {at1}");
    let deep = Upstream::start().await;
    let inner = gateway(&inside(
        &deep,
        &format!(
            "jwks_uri = \"{}\"\nissuer = \"{}\"",
            d.b_url("/jwks.json"),
            d.b.issuer()
        ),
        "",
    ))
    .await;
    let inner_upstream = format!("http://{}", inner.addr);
    // The edge forwards to the inner gateway, alone: the Txn-Token is the only credential.
    let edge_gw = gateway(
        &edge(
            &d,
            &deep,
            &format!("audience = \"{TRUST}\"\nmode = \"alone\""),
        )
        .replace(&deep.url(), &inner_upstream),
    )
    .await;
    let answer = send(
        &client(),
        request_to(
            edge_gw.addr,
            "/orders/7?card=4111",
            &[
                ("authorization", bearer.as_str()),
                // A caller's own Txn-Token never passes the edge.
                ("txn-token", "caller.forged.token"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let got = deep.received();
    let got = got.last().unwrap();
    assert!(got.header("authorization").is_none(), "{:?}", got.headers);
    assert_eq!(got.header_all("txn-token").len(), 1);
    let txn = got.header("txn-token").unwrap();
    assert_ne!(txn, "caller.forged.token");
    assert_eq!(header(txn)["typ"], "txntoken+jwt");
    let c = claims(txn);
    assert_eq!(c["aud"], TRUST);
    assert_eq!(c["sub"], "app");
    assert_eq!(c["req_wl"], "gateway");
    assert_eq!(c["scope"], "b:read");
    assert_eq!(c["rctx"]["req_ip"], "127.0.0.1");
    // Method and path only: never the query (it may carry credentials).
    assert_eq!(c["tctx"], json!({ "method": "GET", "path": "/orders/7" }));
    assert!(!txn.contains(&at1));
    // Two requests, two transactions: nothing is cached.
    let again = send(
        &client(),
        request_to(
            edge_gw.addr,
            "/orders/8",
            &[("authorization", bearer.as_str())],
        ),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let second = deep
        .received()
        .last()
        .unwrap()
        .header("txn-token")
        .unwrap()
        .to_string();
    assert_ne!(claims(&second)["txn"], c["txn"]);

    let edge_metrics = metrics(&edge_gw).await;
    assert!(
        edge_metrics.contains(r#"chaingate_txn_tokens_total{route="edge",result="issued"} 2"#),
        "{edge_metrics}"
    );
    assert!(
        edge_metrics.contains(r#"chaingate_txn_tokens_total{route="edge",result="stripped"} 1"#)
    );
    let inner_metrics = metrics(&inner).await;
    assert!(
        inner_metrics.contains(r#"chaingate_txn_tokens_total{route="inside",result="verified"} 2"#),
        "{inner_metrics}"
    );
    let logs = captured.text();
    for secret in [at1.as_str(), txn, second.as_str()] {
        assert!(!logs.contains(secret), "a token was logged");
        assert!(!edge_metrics.contains(secret) && !inner_metrics.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_the_swapped_authorization_goes_with_the_txn_token() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let bearer = format!("Bearer {at1}");
    let upstream = Upstream::start().await;
    let gw = gateway(&edge(&d, &upstream, &format!("audience = \"{TRUST}\""))).await;
    let answer = send(
        &client(),
        request_to(
            gw.addr,
            "/x",
            &[
                ("authorization", bearer.as_str()),
                ("connection", "txn-token"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let got = upstream.received().pop().unwrap();
    let authorization = got.header("authorization").unwrap();
    assert!(authorization.starts_with("Bearer ") && !authorization.contains(&at1));
    assert_eq!(claims(&authorization[7..])["aud"], "urn:b:api");
    // Listing it in Connection does not make chaingate drop the Txn-Token it added.
    assert_eq!(claims(got.header("txn-token").unwrap())["aud"], TRUST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trust_domain_the_tts_does_not_serve_is_a_502_and_nothing_goes_upstream() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let bearer = format!("Bearer {at1}");
    let upstream = Upstream::start().await;
    let gw = gateway(&edge(&d, &upstream, "audience = \"elsewhere.example\"")).await;
    let answer = send(
        &client(),
        request_to(gw.addr, "/x", &[("authorization", bearer.as_str())]),
    )
    .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.json()["error"], "bad_gateway");
    assert!(!answer.body.contains(&at1));
    assert!(upstream.received().is_empty());
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"chaingate_txn_tokens_total{route="edge",result="failed"} 1"#),
        "{m}"
    );
}

/// Txn-Tokens the test signs, checked by a gateway that trusts `key` as the TTS.
struct Inside {
    key: TestKey,
    gw: chaingate_gateway::Running,
    upstream: Upstream,
    _dir: tempfile::TempDir,
}

impl Inside {
    async fn start(extra: &str) -> Self {
        let key = TestKey::new("tts-1");
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("tts.json");
        std::fs::write(&jwks, key.jwks()).unwrap();
        let upstream = Upstream::start().await;
        let gw = gateway(&inside(
            &upstream,
            &format!("jwks_file = \"{}\"", jwks.display()),
            extra,
        ))
        .await;
        Self {
            key,
            gw,
            upstream,
            _dir: dir,
        }
    }

    fn claims(&self) -> Value {
        json!({
            "iss": "https://tts.example", "aud": TRUST, "sub": "alice", "txn": "txn-1",
            "scope": "b:read", "req_wl": "edge", "iat": now(), "exp": now() + 60,
        })
    }

    async fn call(&self, txn: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = txn.map(|t| ("txn-token", t)).into_iter().collect();
        send(&client(), request_to(self.gw.addr, "/in", &headers)).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inside_only_a_valid_txn_token_passes_and_it_passes_unchanged() {
    let captured = logs::Logs::global();
    let t = Inside::start("").await;
    let good = t.key.sign("txntoken+jwt", &t.claims());
    let answer = t.call(Some(&good)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        t.upstream.received()[0].header("txn-token"),
        Some(good.as_str())
    );

    let missing = t.call(None).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(missing.json()["error"], "invalid_request");
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Txn-Token realm=\"chaingate\"")
    );

    let other_key = TestKey::new("tts-1");
    let mut wrong_aud = t.claims();
    wrong_aud["aud"] = json!("other.example");
    let mut expired = t.claims();
    (expired["iat"], expired["exp"]) = (json!(now() - 120), json!(now() - 60));
    let mut overlong = t.claims();
    overlong["exp"] = json!(now() + 3600);
    let mut no_txn = t.claims();
    no_txn.as_object_mut().unwrap().remove("txn");
    let mut no_sub = t.claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    let refused = [
        ("forged", other_key.sign("txntoken+jwt", &t.claims())),
        ("wrong aud", t.key.sign("txntoken+jwt", &wrong_aud)),
        ("wrong typ", t.key.sign("at+jwt", &t.claims())),
        ("expired", t.key.sign("txntoken+jwt", &expired)),
        ("overlong", t.key.sign("txntoken+jwt", &overlong)),
        ("no txn", t.key.sign("txntoken+jwt", &no_txn)),
        ("no sub", t.key.sign("txntoken+jwt", &no_sub)),
        ("tampered", tamper_signature(&good)),
    ];
    for (what, token) in &refused {
        let answer = t.call(Some(token)).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_eq!(answer.json()["error"], "invalid_token", "{what}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Txn-Token realm=\"chaingate\", error=\"invalid_token\""),
            "{what}"
        );
        assert!(!answer.body.contains(token.as_str()), "{what}");
    }
    assert_eq!(
        t.upstream.received().len(),
        1,
        "nothing refused went upstream"
    );
    let m = metrics(&t.gw).await;
    assert!(
        m.contains(r#"chaingate_txn_tokens_total{route="inside",result="invalid"} 8"#),
        "{m}"
    );
    assert!(
        m.contains(r#"chaingate_txn_tokens_total{route="inside",result="missing"} 1"#),
        "{m}"
    );
    let logs = captured.text();
    assert!(refused
        .iter()
        .all(|(_, token)| !logs.contains(token.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_txn_token_headers_are_refused() {
    let t = Inside::start("").await;
    let good = t.key.sign("txntoken+jwt", &t.claims());
    let request = request_to(
        t.gw.addr,
        "/in",
        &[("txn-token", &good), ("txn-token", &good)],
    );
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(t.upstream.received().is_empty());
}

#[test]
fn config_errors_name_the_key() {
    let base = |route: &str| {
        format!(
            r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[domains.chain]
token_endpoint = "http://127.0.0.1:9/token"
grant = "chain"
client_id = "x"
client_secret = "y"
allow_insecure_http = true
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:9"
domain = "chain"
{route}
"#
        )
    };
    let error = |route: &str| {
        chaingate_gateway::config::Config::from_toml(&base(route))
            .unwrap_err()
            .to_string()
    };
    let e = error("[routes.txn_token]\ndomain = \"chain\"\naudience = \"t\"\nscope = \"s\"");
    assert!(
        e.contains("routes[0].txn_token.domain") && e.contains("token_exchange"),
        "{e}"
    );
    let e = error("[routes.txn_token]\ndomain = \"nope\"\naudience = \"t\"");
    assert!(e.contains("routes[0].txn_token.domain"), "{e}");
    let e = error("[routes.txn_token_verify]\njwks_uri = \"https://k.example/j\"\naudience = \"t\"\nmode = \"alone\"\nrequired = false");
    assert!(e.contains("routes[0].txn_token_verify.required"), "{e}");
    let e = error("[routes.txn_token_verify]\naudience = \"t\"");
    assert!(e.contains("routes[0].txn_token_verify.jwks_uri"), "{e}");
    let e = error("[routes.txn_token_verify]\njwks_uri = \"https://k.example/j\"\naudience = \"t\"\nmode = \"sideways\"");
    assert!(e.contains("mode") || e.contains("sideways"), "{e}");
}
