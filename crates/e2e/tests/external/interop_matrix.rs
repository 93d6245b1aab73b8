//! chaingate, changed only by its config, swaps tokens through every grant profile and client
//! authentication method against two token servers held to the same expectations: panva's
//! oidc-provider (an implementation nobody here wrote) and chaingate's own authority. Both are
//! found by RFC 8414 / OpenID discovery from their issuer. RFC 8705 `tls_client_auth` runs
//! against oidc-provider only (the reference authority does not offer it): its token endpoint
//! over HTTPS asks for the gateway's client certificate and verifies it.
//!
//! One more row per server is DPoP (RFC 9449): a `dpop = true` domain whose token server checks
//! the gateway's proofs (oidc-provider with its own proof validation and nonces required) and
//! binds the token to the key (`cnf.jkt`); the upstream then receives `DPoP <AT2>` with a proof
//! by that key for exactly the request it got. Against chaingate's authority (nonces required
//! too) the row runs both ways: A binds the caller's AT1 to the caller's key, the gateway checks
//! the caller's proof on a `dpop = "allowed"` route, B exchanges the bound AT1, and the upstream
//! gets AT2 bound to the gateway's key.
//!
//! Against the authority every grant also runs with `gw-wid`, a client with no secret of its own:
//! the gateway sends a Kubernetes-style service account token from a file
//! (`client_assertion_file`) and B authenticates it as a `federated` client. oidc-provider has
//! no such client authentication (its assertions need `iss` = `sub` = the client id and a fresh
//! `jti` each time), so it has no such row.

use chaingate_test_support as support;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chaingate_authority::{self as authority, AuthorityConfig};
use chaingate_oauth::dpop::ProofKey;
use serde_json::json;
use support::*;

const APP_SECRET: &str = "matrix-app-secret";
const BASIC_SECRET: &str = "matrix-basic-secret";
const POST_SECRET: &str = "matrix-post-secret";
const PKJWT_KID: &str = "gw-pkjwt-es256";
const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const CLUSTER_SA: &str = "system:serviceaccount:mesh:chaingate";

const GRANTS: [&str; 3] = ["token-exchange", "chain", "jwt-bearer"];
const CLIENTS: [(&str, &str); 3] = [
    ("gw-basic", "client_secret_basic"),
    ("gw-post", "client_secret_post"),
    ("gw-pkjwt", "private_key_jwt"),
];

/// gw-pkjwt's key: a PKCS#8 PEM file for chaingate and the public JWK for the token server.
fn pkjwt_key(dir: &Path) -> (PathBuf, serde_json::Value) {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": PKJWT_KID,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    let pem = dir.join("gw-pkjwt.pem");
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    (pem, jwk)
}

async fn at1(issuer_a: &str) -> String {
    at1_bound(issuer_a, None).await
}

/// AT1 from A, bound to `key` when given (a DPoP proof with the token request, RFC 9449 §5).
async fn at1_bound(issuer_a: &str, key: Option<&ProofKey>) -> String {
    let token_endpoint = format!("{issuer_a}/token");
    let mut request = http::Request::post(&token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("app:{APP_SECRET}"))),
        );
    if let Some(key) = key {
        request = request.header(
            "dpop",
            key.proof("POST", &token_endpoint, None, None).unwrap(),
        );
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"grant_type=client_credentials&scope=a:read",
        )))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200, "AT1 from A: {}", answer.body);
    answer.json()["access_token"].as_str().unwrap().to_string()
}

/// B's token endpoint over mutual TLS and the certificates for it.
struct Mtls<'a> {
    token_endpoint: String,
    pki: &'a support::tls::TestPki,
}

/// The clients a server is tried with: all of [`CLIENTS`], and `gw-mtls` where mTLS is offered.
fn clients(mtls: Option<&Mtls<'_>>, wid: Option<&Path>) -> Vec<(&'static str, &'static str)> {
    let mut all = CLIENTS.to_vec();
    if mtls.is_some() {
        all.push(("gw-mtls", "tls_client_auth"));
    }
    if wid.is_some() {
        all.push(("gw-wid", "client_assertion_file"));
    }
    all
}

/// One domain and one route per (grant, client), all discovered from B's issuer (the mTLS
/// client's endpoint is B's HTTPS alias, named directly).
fn gateway_config(
    issuer_b: &str,
    pem: &Path,
    upstream: &Upstream,
    mtls: Option<&Mtls<'_>>,
    wid: Option<&Path>,
) -> String {
    let mut toml = String::from("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n");
    for grant in GRANTS {
        for (client_id, method) in clients(mtls, wid) {
            let name = format!("{grant}-{client_id}");
            let credentials = match method {
                "client_secret_basic" => format!("client_secret = \"{BASIC_SECRET}\""),
                "client_secret_post" => format!("client_secret = \"{POST_SECRET}\""),
                "tls_client_auth" => {
                    let mtls = mtls.expect("only offered with mTLS");
                    format!(
                        "client_cert_file = {:?}\nclient_cert_key_file = {:?}\nca_file = {:?}",
                        mtls.pki.client_cert_file.display().to_string(),
                        mtls.pki.client_key_file.display().to_string(),
                        mtls.pki.ca_file.display().to_string()
                    )
                }
                // Secretless: the platform's token, no auth_method or secret (issue: workload identity).
                "client_assertion_file" => format!(
                    "client_assertion_file = {:?}",
                    wid.expect("only offered with a token file")
                        .display()
                        .to_string()
                ),
                _ => format!(
                    "client_key_file = {:?}\nclient_key_id = \"{PKJWT_KID}\"",
                    pem.display().to_string()
                ),
            };
            let auth_method = match method {
                "client_assertion_file" => String::new(),
                method => format!("auth_method = \"{method}\""),
            };
            let grant_settings = match grant {
                "token-exchange" => "audience = \"urn:b:api\"\n",
                // The draft's own reading of oauth_token, for one of the three clients.
                "chain" if method == "client_secret_post" => {
                    "oauth_token_format = \"authorization\"\n"
                }
                _ => "",
            };
            let endpoint = match (method, mtls) {
                ("tls_client_auth", Some(mtls)) => {
                    format!("token_endpoint = \"{}\"", mtls.token_endpoint)
                }
                _ => format!("issuer = \"{issuer_b}\""),
            };
            toml += &format!(
                r#"
[domains.{name}]
{endpoint}
grant = "{grant}"
{grant_settings}client_id = "{client_id}"
{auth_method}
{credentials}
allow_insecure_http = true
scope = "b:read"

[[routes]]
name = "{name}"
path_prefix = "/{name}/"
upstream = "{}"
domain = "{name}"
"#,
                upstream.url()
            );
        }
    }
    // RFC 9449: the chain grant with gw-basic again, proving possession of the gateway's key.
    toml += &format!(
        r#"
[domains.dpop]
issuer = "{issuer_b}"
grant = "chain"
client_id = "gw-basic"
auth_method = "client_secret_basic"
client_secret = "{BASIC_SECRET}"
allow_insecure_http = true
scope = "b:read"
dpop = true

[[routes]]
name = "dpop"
path_prefix = "/dpop/"
upstream = "{}"
domain = "dpop"
dpop = "allowed"
"#,
        upstream.url()
    );
    toml
}

/// Waits (polling `/ready`, at most 5 s) until the gateway has discovered `issuer`'s endpoints.
async fn discovered(gw: &chaingate_gateway::Running, issuer: &str) {
    let mut ready = 0;
    for _ in 0..200 {
        ready = get(gw.admin_addr, "/ready", None).await.status.as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(ready, 200, "discovery of {issuer} never completed");
}

/// The DPoP row: AT2 is bound to the key whose proof came with it, for this very request.
async fn dpop_bound_token_reaches_the_upstream_with_its_proof(
    gw: &chaingate_gateway::Running,
    upstream: &Upstream,
    token: &str,
    issuer_b: &str,
) {
    for n in 0..2 {
        let path = format!("/dpop/orders/{n}");
        let answer = get(gw.addr, &path, Some(token)).await;
        assert_eq!(
            answer.status, 200,
            "{path} against {issuer_b}: {}",
            answer.body
        );
        let received = upstream
            .received()
            .into_iter()
            .rfind(|r| r.uri.starts_with(&path))
            .unwrap();
        let at2 = received
            .header("authorization")
            .and_then(|v| v.strip_prefix("DPoP "))
            .unwrap_or_else(|| {
                panic!(
                    "{path}: not a DPoP token: {:?}",
                    received.header("authorization")
                )
            })
            .to_string();
        let payload = URL_SAFE_NO_PAD
            .decode(at2.split('.').nth(1).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["iss"], issuer_b, "{path}");
        let jkt = chaingate_oauth::dpop::bound_jkt(&claims)
            .unwrap_or_else(|| panic!("{path}: AT2 has no cnf.jkt: {claims}"));
        let proof = received.header("dpop").expect("a DPoP proof upstream");
        let htu = format!("{}{path}", upstream.url());
        let check = chaingate_oauth::dpop::Expect {
            htm: "GET",
            htu: &htu,
            access_token: Some(&at2),
            nonces: &[],
            max_age: 60,
            skew: 5,
        };
        let verified = chaingate_oauth::dpop::verify(proof, &check)
            .unwrap_or_else(|e| panic!("{path}: the upstream's proof: {e}"));
        assert_eq!(verified.jkt, jkt, "{path}: proof key is the token's");
    }
}

/// Which DPoP rows a server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dpop {
    /// None.
    Off,
    /// B checks the gateway's proofs and binds AT2 to the gateway's key.
    TowardB,
    /// That, and A binds the caller's AT1 to the caller's key, which the gateway checks on a
    /// `dpop = "allowed"` route before B exchanges the bound AT1.
    BothWays,
}

/// A caller with a DPoP-bound AT1 of A: its proof passes the gateway, B takes the bound subject
/// token, and the upstream gets AT2 bound to the gateway's key, not the caller's. A proof by any
/// other key than AT1's is refused before the exchange.
async fn bound_caller_token_is_exchanged_and_forwarded_bound_to_the_gateway(
    gw: &chaingate_gateway::Running,
    upstream: &Upstream,
    issuer_a: &str,
    issuer_b: &str,
) {
    let (caller, thief) = (ProofKey::generate().unwrap(), ProofKey::generate().unwrap());
    let at1 = at1_bound(issuer_a, Some(&caller)).await;
    let claims = chaingate_test_support::consent::claims(&at1);
    assert_eq!(
        chaingate_oauth::dpop::bound_jkt(&claims),
        Some(caller.jkt()),
        "A bound AT1: {claims}"
    );
    let path = "/dpop/orders/bound";
    let url = format!("http://{}{path}", gw.addr);
    let http = client();
    let call = |key: &ProofKey| {
        let request = http::Request::get(&url)
            .header("authorization", format!("DPoP {at1}"))
            .header("dpop", key.proof("GET", &url, Some(&at1), None).unwrap())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(&http, request)
    };
    let stolen = call(&thief).await;
    assert_eq!(stolen.status, 401, "{}", stolen.body);
    assert_eq!(stolen.json()["error"], "invalid_dpop_proof");

    let answer = call(&caller).await;
    assert_eq!(
        answer.status, 200,
        "{path} against {issuer_b}: {}",
        answer.body
    );
    let received = upstream
        .received()
        .into_iter()
        .rfind(|r| r.uri.starts_with(path))
        .unwrap();
    let at2 = received
        .header("authorization")
        .and_then(|v| v.strip_prefix("DPoP "))
        .expect("a DPoP AT2 upstream")
        .to_string();
    let claims = chaingate_test_support::consent::claims(&at2);
    assert_eq!(claims["iss"], issuer_b);
    let jkt = chaingate_oauth::dpop::bound_jkt(&claims).expect("AT2 bound");
    assert_ne!(
        jkt,
        caller.jkt(),
        "AT2 is the gateway's to prove, not the caller's"
    );
    assert!(!received.contains(&at1), "AT1 reached the upstream");
    assert!(received.header("dpop").is_some());
}

/// Every (grant, client) route answers 200 with a token of B for the caller of A.
async fn swap_through_every_combination(
    issuer_a: &str,
    issuer_b: &str,
    pem: &Path,
    mtls: Option<&Mtls<'_>>,
    wid: Option<&Path>,
    dpop: Dpop,
) {
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_config(issuer_b, pem, &upstream, mtls, wid)).await;
    discovered(&gw, issuer_b).await;
    let token = at1(issuer_a).await;
    for grant in GRANTS {
        for (client_id, _) in clients(mtls, wid) {
            let path = format!("/{grant}-{client_id}/orders");
            let answer = get(gw.addr, &path, Some(&token)).await;
            assert_eq!(
                answer.status, 200,
                "{path} against {issuer_b}: {}",
                answer.body
            );
            let at2 = answer.json()["authorization"]
                .as_str()
                .unwrap()
                .strip_prefix("Bearer ")
                .unwrap()
                .to_string();
            let payload = URL_SAFE_NO_PAD
                .decode(at2.split('.').nth(1).unwrap())
                .unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(claims["iss"], issuer_b, "{path}");
            assert_eq!(claims["sub"], "app", "{path}");
            assert_eq!(claims["scope"], "b:read", "{path}");
            assert_eq!(claims["client_id"], client_id, "{path}");
        }
    }
    if dpop != Dpop::Off {
        dpop_bound_token_reaches_the_upstream_with_its_proof(&gw, &upstream, &token, issuer_b)
            .await;
    }
    if dpop == Dpop::BothWays {
        bound_caller_token_is_exchanged_and_forwarded_bound_to_the_gateway(
            &gw, &upstream, issuer_a, issuer_b,
        )
        .await;
    }
    let bad = get(gw.addr, "/chain-gw-basic/x", Some("not-a-token-from-a")).await;
    assert_eq!(
        bad.status, 401,
        "a token B refuses is the caller's: {}",
        bad.body
    );
    assert!(
        upstream.received().iter().all(|r| !r.contains(&token)),
        "AT1 reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grant_and_client_auth_works_against_oidc_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, jwk) = pkjwt_key(dir.path());
    let pki = support::tls::pki();
    let config = json!({
        "client_jwks": { "keys": [jwk] },
        "secrets": { "app": APP_SECRET, "gw-basic": BASIC_SECRET, "gw-post": POST_SECRET },
        "mtls": {
            "cert_file": pki.cert_file, "key_file": pki.key_file, "ca_file": pki.ca_file,
            "client_san_dns": "gateway-client",
        },
        "dpop": { "require_nonce": true },
    });
    let (peer, a, b, _tmp) = oidc_provider::start_peer(&config).await;
    let mtls = Mtls {
        token_endpoint: peer.mtls_token_endpoint.clone().expect("B offers mTLS"),
        pki: &pki,
    };
    swap_through_every_combination(&a, &b, &pem, Some(&mtls), None, Dpop::TowardB).await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grant_and_client_auth_works_against_the_chaingate_authority() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, jwk) = pkjwt_key(dir.path());
    let jwks = dir.path().join("gw-pkjwt.jwks.json");
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let a = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\ndefault_audience = \"urn:a:gateway\"\n[[clients]]\nclient_id = \"app\"\nclient_secret = \"{APP_SECRET}\"\ngrants = [\"client_credentials\"]\nscope = \"a:read a:write\"\n"
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let all_grants =
        "grants = [\"token-exchange\", \"chain\", \"jwt-bearer\"]\nscope = \"b:read b:write\"";
    // Workload identity: B's `gw-wid` trusts a cluster's service account tokens; the gateway
    // sends one read from a projected-style file instead of any secret of its own.
    let cluster = support::authority::TestKey::new("cluster-1");
    let cluster_jwks = dir.path().join("cluster.jwks.json");
    std::fs::write(&cluster_jwks, cluster.jwks()).unwrap();
    let b = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:b:api"
require_dpop_nonce = true

[[clients]]
client_id = "gw-wid"
federated = {{ issuer = "{CLUSTER_ISSUER}", subject = "{CLUSTER_SA}", jwks_file = {cluster_jwks:?} }}
{all_grants}

[[clients]]
client_id = "gw-basic"
client_secret = "{BASIC_SECRET}"
auth_method = "client_secret_basic"
{all_grants}

[[clients]]
client_id = "gw-post"
client_secret = "{POST_SECRET}"
auth_method = "client_secret_post"
{all_grants}

[[clients]]
client_id = "gw-pkjwt"
auth_method = "private_key_jwt"
jwks_file = {jwks:?}
{all_grants}

[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}
"#,
            jwks = jwks.display().to_string(),
            cluster_jwks = cluster_jwks.display().to_string(),
            a = a.issuer()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let token_file = dir.path().join("token");
    let now = chaingate_oauth::util::now_secs();
    let sa_token = cluster.sign(
        "JWT",
        &json!({ "iss": CLUSTER_ISSUER, "sub": CLUSTER_SA, "aud": b.issuer(),
                 "iat": now, "nbf": now, "exp": now + 3600, "jti": "sa-token-1" }),
    );
    std::fs::write(&token_file, &sa_token).unwrap();
    swap_through_every_combination(
        a.issuer(),
        b.issuer(),
        &pem,
        None,
        Some(&token_file),
        Dpop::BothWays,
    )
    .await;
}

/// Per-route targets against oidc-provider's resource indicators (RFC 8707): the route's own
/// `resource` and `audience` reach B, whose answer decides. A resource B serves gets a token for
/// it; one it does not gets `invalid_target`, which the caller sees as 403.
#[tokio::test(flavor = "multi_thread")]
async fn per_route_targets_reach_oidc_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (_pem, jwk) = pkjwt_key(dir.path());
    let config = json!({
        "client_jwks": { "keys": [jwk] },
        "secrets": { "app": APP_SECRET, "gw-basic": BASIC_SECRET, "gw-post": POST_SECRET },
    });
    let (peer, a, b, _tmp) = oidc_provider::start_peer(&config).await;
    let upstream = Upstream::start().await;
    let route = |name: &str, resource: &str| {
        format!(
            "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nupstream = \"{}\"\ndomain = \"b\"\naudience = \"{resource}\"\nresource = \"{resource}\"\n",
            upstream.url()
        )
    };
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[domains.b]\nissuer = \"{b}\"\ngrant = \"token-exchange\"\nclient_id = \"gw-basic\"\nauth_method = \"client_secret_basic\"\nclient_secret = \"{BASIC_SECRET}\"\nallow_insecure_http = true\nscope = \"b:read\"\n{}{}",
        route("served", "urn:b:api"),
        route("elsewhere", "urn:b:not-served"),
    );
    let gw = gateway(&toml).await;
    discovered(&gw, &b).await;
    let token = at1(&a).await;

    let served = get(gw.addr, "/served/orders", Some(&token)).await;
    assert_eq!(served.status, 200, "{}", served.body);
    let at2 = served.json()["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let payload = URL_SAFE_NO_PAD
        .decode(at2.split('.').nth(1).unwrap())
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["iss"], b);
    assert_eq!(claims["aud"], "urn:b:api", "{claims}");

    let elsewhere = get(gw.addr, "/elsewhere/orders", Some(&token)).await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    assert!(elsewhere
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    assert_eq!(
        upstream.received().len(),
        1,
        "only the served route went through"
    );
    peer.stop().await;
}
