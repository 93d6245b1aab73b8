//! Grant profiles and client authentication: token exchange, jwt-bearer, multi-hop identity
//! chaining, private_key_jwt and discovery, against the chaingate authority and a recording mock.

use chaingate_test_support as support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};
use support::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// An ES256 key: its PKCS#8 PEM (for chaingate) and public JWKS (for the authority).
fn client_key(dir: &Path, kid: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]});
    let pem = dir.join(format!("{kid}.pem"));
    let jwks_file = dir.join(format!("{kid}.jwks.json"));
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    (pem, jwks_file)
}

async fn idp() -> RunningAuthority {
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
"#,
        )
        .unwrap(),
    )
    .await
    .unwrap()
}

/// An AT1 from the IdP.
async fn at1(idp: &RunningAuthority) -> String {
    let request = http::Request::post(format!("{}/token", idp.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("app:app-secret")
            ),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"grant_type=client_credentials&scope=a:read",
        )))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["access_token"].as_str().unwrap().to_string()
}

fn trust(issuer: &RunningAuthority, audience: &str) -> String {
    format!(
        r#"
[[trusted_issuers]]
issuer = "{i}"
jwks_uri = "{i}/jwks.json"
allow_insecure_http = true
audiences = ["{audience}"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}
"#,
        i = issuer.issuer()
    )
}

fn gateway_toml(domains: &str, route_domain: &str, upstream: &Upstream) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{domains}
[[routes]]
name = "api"
path_prefix = "/"
upstream = "{}"
domain = "{route_domain}"
"#,
        upstream.url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_with_private_key_jwt_against_the_authority() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, jwks) = client_key(dir.path(), "gw-key-1");
    let idp = idp().await;
    let b = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
audiences = ["https://api.b.example"]
[[clients]]
client_id = "gateway"
auth_method = "private_key_jwt"
jwks_file = {jwks:?}
grants = ["token-exchange"]
scope = "b:read b:write"
{}
"#,
            trust(&idp, "urn:gateway"),
            jwks = jwks.display().to_string()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let upstream = Upstream::start().await;
    let domains = format!(
        r#"
[domains.b]
token_endpoint = "{}/token"
grant = "token-exchange"
audience = ["https://api.b.example"]
subject_token_type = "access_token"
client_id = "gateway"
auth_method = "private_key_jwt"
client_key_file = {:?}
client_key_id = "gw-key-1"
allow_insecure_http = true
scope = "b:read"
"#,
        b.issuer(),
        pem.display().to_string()
    );
    let gw = gateway(&gateway_toml(&domains, "b", &upstream)).await;
    let token = at1(&idp).await;
    let answer = get(gw.addr, "/x", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let at2 = answer.json()["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let claims = claims_of(&at2);
    assert_eq!(claims["iss"], b.issuer());
    assert_eq!(claims["aud"], "https://api.b.example");
    assert_eq!(claims["scope"], "b:read");
    assert_eq!(claims["client_id"], "gateway");
    // A token the authority rejects is the caller's problem: 401 invalid_token.
    let forged = tamper_signature(&token);
    assert_eq!(get(gw.addr, "/x", Some(&forged)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_chaining_takes_two_hops_each_cached_once() {
    let idp = idp().await;
    // Home authority: trusts the IdP, hands out a JWT authorization grant for the target.
    let home = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
audiences = ["urn:target-as"]
[[clients]]
client_id = "gateway"
client_secret = "home-secret"
grants = ["token-exchange"]
scope = "b:read b:write"
{}
"#,
            trust(&idp, "urn:gateway")
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    // Target authority: accepts the home authority's JWT as an RFC 7523 grant.
    let target = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
default_audience = "urn:target-api"
[[clients]]
client_id = "gateway-t"
client_secret = "target-secret"
grants = ["jwt-bearer"]
scope = "t:read"
[[trusted_issuers]]
issuer = "{h}"
jwks_uri = "{h}/jwks.json"
allow_insecure_http = true
audiences = ["urn:target-as"]
scope_map = {{ "b:read" = "t:read" }}
"#,
            h = home.issuer()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let upstream = Upstream::start().await;
    let domains = format!(
        r#"
[domains.home]
token_endpoint = "{}/token"
grant = "token-exchange"
requested_token_type = "jwt"
audience = "urn:target-as"
client_id = "gateway"
client_secret = "home-secret"
allow_insecure_http = true
scope = "b:read"

[domains.target]
token_endpoint = "{}/token"
grant = "jwt-bearer"
subject_domain = "home"
client_id = "gateway-t"
client_secret = "target-secret"
allow_insecure_http = true
scope = "t:read"
"#,
        home.issuer(),
        target.issuer()
    );
    let toml = gateway_toml(&domains, "target", &upstream)
        + &format!("\n[[routes]]\nname = \"home-direct\"\npath_prefix = \"/home\"\nupstream = \"{}\"\ndomain = \"home\"\n", upstream.url());
    // The catch-all route is first, so move the direct route ahead of it.
    let toml = toml.replacen("path_prefix = \"/\"\n", "path_prefix = \"/api\"\n", 1);
    let gw = gateway(&toml).await;
    let token = at1(&idp).await;
    let addr = gw.addr;
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let token = token.clone();
            tokio::spawn(async move { get(addr, "/api/orders", Some(&token)).await })
        })
        .collect();
    for answer in burst {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let at = answer.json()["authorization"]
            .as_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_string();
        let claims = claims_of(&at);
        assert_eq!(claims["iss"], target.issuer());
        assert_eq!(claims["scope"], "t:read");
        assert_eq!(claims["sub"], "app");
    }
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="home",outcome="issued"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="target",outcome="issued"}"#
        ),
        Some(1.0)
    );
    // The home hop's token is an N_A JWT grant: usable as a subject, never forwarded.
    let direct = get(gw.addr, "/home/x", Some(&token)).await;
    assert_eq!(direct.status, 502);
    assert!(upstream
        .received()
        .iter()
        .all(|r| !r.uri.starts_with("/home")));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_and_jwt_bearer_send_the_configured_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let actor_file = dir.path().join("actor-token");
    std::fs::write(&actor_file, "actor-one\n").unwrap();
    let sts = TokenServer::scripted(|n, req| {
        let issued = req.param("requested_token_type").unwrap_or("urn:ietf:params:oauth:token-type:access_token");
        Reply::raw(
            200,
            &format!(r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":60,"issued_token_type":"{issued}"}}"#),
        )
    })
    .await;
    let upstream = Upstream::start().await;
    let domains = format!(
        r#"
[domains.x]
token_endpoint = "{url}"
grant = "token-exchange"
subject_token_type = "jwt"
audience = ["aud-1", "aud-2"]
resource = ["https://r1.example/api", "https://r2.example/"]
requested_token_type = "access_token"
actor_token_file = {actor:?}
client_id = "gw"
client_secret = "s"
auth_method = "client_secret_post"
allow_insecure_http = true
scope = "s1 s2"

[domains.obo]
token_endpoint = "{url}"
grant = "jwt-bearer"
client_id = "gw"
client_secret = "s"
allow_insecure_http = true
extra_params = {{ requested_token_use = "on_behalf_of" }}
"#,
        url = sts.url(),
        actor = actor_file.display().to_string()
    );
    let toml = gateway_toml(&domains, "x", &upstream)
        .replacen("path_prefix = \"/\"", "path_prefix = \"/x\"", 1)
        + &format!("\n[[routes]]\nname = \"obo\"\npath_prefix = \"/obo\"\nupstream = \"{}\"\ndomain = \"obo\"\n", upstream.url());
    let gw = gateway(&toml).await;
    assert_eq!(get(gw.addr, "/x/1", Some("caller-one")).await.status, 200);
    // The actor token file is re-read: a rotated projected token is sent on the next exchange.
    std::fs::write(&actor_file, "actor-two\n").unwrap();
    assert_eq!(get(gw.addr, "/x/2", Some("caller-two")).await.status, 200);
    assert_eq!(get(gw.addr, "/obo/1", Some("caller-one")).await.status, 200);

    let requests = sts.requests();
    let first = &requests[0];
    let all = |name: &str| {
        first
            .form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        first.param("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(first.param("subject_token"), Some("caller-one"));
    assert_eq!(
        first.param("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:jwt")
    );
    assert_eq!(all("audience"), ["aud-1", "aud-2"]);
    assert_eq!(
        all("resource"),
        ["https://r1.example/api", "https://r2.example/"]
    );
    assert_eq!(
        first.param("requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(first.param("actor_token"), Some("actor-one"));
    assert_eq!(
        first.param("actor_token_type"),
        Some("urn:ietf:params:oauth:token-type:jwt")
    );
    assert_eq!(first.param("scope"), Some("s1 s2"));
    assert_eq!(requests[1].param("actor_token"), Some("actor-two"));
    let obo = &requests[2];
    assert_eq!(
        obo.param("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(obo.param("assertion"), Some("caller-one"));
    assert_eq!(obo.param("requested_token_use"), Some("on_behalf_of"));
    assert_eq!(obo.param("subject_token"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_token_exchange_answers_are_502() {
    for body in [
        r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#,
        r#"{"access_token":"t","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:jwt"}"#,
        r#"{"access_token":"t","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
    ] {
        let sts = TokenServer::scripted(move |_, _| Reply::raw(200, body)).await;
        let upstream = Upstream::start().await;
        let domains = format!(
            "[domains.x]\ntoken_endpoint = \"{}\"\ngrant = \"token-exchange\"\nrequested_token_type = \"access_token\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nallow_insecure_http = true\n",
            sts.url()
        );
        let gw = gateway(&gateway_toml(&domains, "x", &upstream)).await;
        assert_eq!(
            get(gw.addr, "/", Some("caller")).await.status,
            502,
            "{body}"
        );
        assert!(upstream.received().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_assertions_are_fresh_short_lived_and_aimed_at_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = client_key(dir.path(), "k");
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let domains = format!(
        "[domains.x]\ntoken_endpoint = \"{}\"\nclient_id = \"gw\"\nauth_method = \"private_key_jwt\"\nclient_key_file = {:?}\nallow_insecure_http = true\n",
        sts.url(),
        pem.display().to_string()
    );
    let gw = gateway(&gateway_toml(&domains, "x", &upstream)).await;
    assert_eq!(get(gw.addr, "/", Some("one")).await.status, 200);
    assert_eq!(get(gw.addr, "/", Some("two")).await.status, 200);
    let requests = sts.requests();
    let mut jtis = Vec::new();
    for request in &requests {
        assert_eq!(
            request.authorization, None,
            "one client authentication method only"
        );
        assert_eq!(
            request.param("client_assertion_type"),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(request.param("client_secret"), None);
        let assertion = request.param("client_assertion").unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(assertion.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        let claims = claims_of(assertion);
        assert_eq!(claims["iss"], "gw");
        assert_eq!(claims["sub"], "gw");
        assert_eq!(claims["aud"], sts.url());
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert!(lifetime <= 60, "{lifetime}");
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    assert_eq!(requests.len(), 2);
    assert_ne!(jtis[0], jtis[1], "every assertion has a fresh jti");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_finds_the_token_endpoint_and_readiness_waits_for_it() {
    let idp = idp().await;
    let b = authority::spawn(
        AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\n[[clients]]\nclient_id = \"gateway\"\nclient_secret = \"s\"\ngrants = [\"chain\"]\nscope = \"b:read\"\n{}",
            trust(&idp, "urn:gateway")
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let upstream = Upstream::start().await;
    let domains = format!(
        "[domains.b]\nissuer = \"{}\"\nclient_id = \"gateway\"\nclient_secret = \"s\"\nallow_insecure_http = true\n",
        b.issuer()
    );
    let gw = gateway(&gateway_toml(&domains, "b", &upstream)).await;
    let mut ready = 0;
    for _ in 0..100 {
        ready = get(gw.admin_addr, "/ready", None).await.status.as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 200);
    let token = at1(&idp).await;
    let answer = get(gw.addr, "/", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_refuses_a_different_issuer_and_falls_back_to_openid_configuration() {
    // A metadata server that claims another issuer: never used, never ready, requests get 503.
    let liar = serve(|_req| async {
        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"issuer":"https://someone-else.example","token_endpoint":"http://127.0.0.1:1/token"}"#,
        )))
    })
    .await;
    let upstream = Upstream::start().await;
    let domains = format!(
        "[domains.b]\nissuer = \"http://{liar}\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nallow_insecure_http = true\n"
    );
    let gw = gateway(&gateway_toml(&domains, "b", &upstream)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 503);
    assert_eq!(get(gw.addr, "/", Some("caller")).await.status, 503);

    // Only OpenID Connect discovery published: the fallback location is used.
    let sts = TokenServer::start().await;
    let token_url = sts.url();
    let oidc_only = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let issuer_cell = oidc_only.clone();
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (issuer, token_url) = (issuer_cell.clone(), token_url.clone());
        async move {
            let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            if req.uri().path() == "/.well-known/openid-configuration" {
                let body = format!(
                    r#"{{"issuer":"{}","token_endpoint":"{token_url}"}}"#,
                    issuer.get().unwrap()
                );
                *response.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
            } else {
                *response.status_mut() = http::StatusCode::NOT_FOUND;
            }
            response
        }
    })
    .await;
    oidc_only.set(format!("http://{addr}")).unwrap();
    let domains = format!("[domains.b]\nissuer = \"http://{addr}\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nallow_insecure_http = true\n");
    let gw = gateway(&gateway_toml(&domains, "b", &upstream)).await;
    let mut status = 0;
    for _ in 0..100 {
        status = get(gw.addr, "/", Some("caller")).await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_auth_presents_the_certificate_and_names_the_client() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki = support::tls::pki();
    // A token endpoint that requires a client certificate from the test CA (RFC 8705 §2).
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca_file).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .unwrap();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(&pki.cert_file).unwrap()],
            PrivateKeyDer::from_pem_file(&pki.key_file).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(bool, String)>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .unwrap()
                                .to_bytes();
                            record
                                .lock()
                                .unwrap()
                                .push((presented, String::from_utf8_lossy(&body).into_owned()));
                            let reply = r#"{"access_token":"mtls-at2","token_type":"Bearer","expires_in":60}"#;
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(reply)),
                            ))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    let upstream = Upstream::start().await;
    let domains = format!(
        "[domains.m]\ntoken_endpoint = \"https://localhost:{port}/token\"\nclient_id = \"gw-mtls\"\nauth_method = \"tls_client_auth\"\nclient_cert_file = {:?}\nclient_cert_key_file = {:?}\nca_file = {:?}\n",
        pki.client_cert_file.display().to_string(),
        pki.client_key_file.display().to_string(),
        pki.ca_file.display().to_string()
    );
    let gw = gateway(&gateway_toml(&domains, "m", &upstream)).await;
    let answer = get(gw.addr, "/", Some("caller")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["authorization"], "Bearer mtls-at2");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0, "the client certificate was presented");
    let form: Vec<(String, String)> = form_urlencoded::parse(seen[0].1.as_bytes())
        .into_owned()
        .collect();
    assert!(
        form.contains(&("client_id".into(), "gw-mtls".into())),
        "RFC 8705 §2: client_id is sent"
    );
    assert!(!form
        .iter()
        .any(|(k, _)| k == "client_secret" || k == "client_assertion"));
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_signs_with_rsa_ps256_and_ed25519_keys_for_the_configured_audience() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    // (key type, client_assertion_alg, the alg the assertion must carry)
    let cases = [
        (&rcgen::PKCS_RSA_SHA256, None, Algorithm::RS256),
        (&rcgen::PKCS_RSA_SHA256, Some("PS256"), Algorithm::PS256),
        (&rcgen::PKCS_ED25519, None, Algorithm::EdDSA),
    ];
    let audience = "https://as.example/realms/b";
    for (kind, configured_alg, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(kind).unwrap();
        let pem = dir.path().join("client.pem");
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        let sts = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let alg_line = configured_alg
            .map(|a| format!("client_assertion_alg = \"{a}\"\n"))
            .unwrap_or_default();
        let domains = format!(
            "[domains.x]\ntoken_endpoint = \"{}\"\nclient_id = \"gw\"\nauth_method = \"private_key_jwt\"\nclient_key_file = {:?}\n{alg_line}client_assertion_audience = \"{audience}\"\nallow_insecure_http = true\n",
            sts.url(),
            pem.display().to_string()
        );
        let gw = gateway(&gateway_toml(&domains, "x", &upstream)).await;
        assert_eq!(get(gw.addr, "/", Some("caller")).await.status, 200);
        let requests = sts.requests();
        let assertion = requests[0].param("client_assertion").unwrap();
        // Verified by jsonwebtoken against the public half alone, as a token endpoint would.
        let public = key.public_key_pem();
        let decoding = match expected {
            Algorithm::EdDSA => DecodingKey::from_ed_pem(public.as_bytes()),
            _ => DecodingKey::from_rsa_pem(public.as_bytes()),
        }
        .unwrap();
        let mut validation = Validation::new(expected);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["gw"]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let verified = jsonwebtoken::decode::<serde_json::Value>(assertion, &decoding, &validation)
            .unwrap_or_else(|e| panic!("{expected:?}: {e}"));
        assert_eq!(verified.header.alg, expected);
        assert_eq!(verified.claims["sub"], "gw");
        assert_eq!(verified.claims["aud"], audience, "not the token endpoint");
    }
}

#[tokio::test(start_paused = true)]
async fn discovery_is_repeated_every_discovery_refresh_and_a_failed_refresh_keeps_the_endpoint() {
    use std::sync::{Arc, Mutex};
    let first = TokenServer::start().await;
    let second = TokenServer::start().await;
    // What the metadata server answers: Some(token endpoint), or None for a 500.
    let published = Arc::new(Mutex::new(Some(first.url())));
    let issuer = Arc::new(std::sync::OnceLock::<String>::new());
    let (p, i) = (published.clone(), issuer.clone());
    let metadata = serve(move |_req| {
        let (p, i) = (p.clone(), i.clone());
        async move {
            let Some(endpoint) = p.lock().unwrap().clone() else {
                let mut down = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                *down.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return down;
            };
            let doc = serde_json::json!({ "issuer": i.get().unwrap(), "token_endpoint": endpoint });
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                doc.to_string(),
            )))
        }
    })
    .await;
    issuer.set(format!("http://{metadata}")).unwrap();
    let upstream = Upstream::start().await;
    let domains = format!(
        "[domains.b]\nissuer = \"http://{metadata}\"\ndiscovery_refresh = \"10m\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nallow_insecure_http = true\n"
    );
    let gw = gateway(&gateway_toml(&domains, "b", &upstream)).await;
    let mut ready = 0;
    for _ in 0..100 {
        ready = get(gw.admin_addr, "/ready", None).await.status.as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 200);
    // Each step sends a caller the cache has not seen, so every request exchanges.
    let exchange = |caller: &'static str| {
        let addr = gw.addr;
        async move { get(addr, "/", Some(caller)).await.status }
    };
    assert_eq!(exchange("caller-1").await, 200);
    assert_eq!((first.calls(), second.calls()), (1, 0));

    // The issuer moves its token endpoint: not seen before the refresh is due.
    *published.lock().unwrap() = Some(second.url());
    tokio::time::sleep(Duration::from_secs(9 * 60)).await;
    assert_eq!(exchange("caller-2").await, 200);
    assert_eq!((first.calls(), second.calls()), (2, 0), "refreshed early");
    // Past ten minutes the document is read again and the new endpoint used.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(exchange("caller-3").await, 200);
    assert_eq!((first.calls(), second.calls()), (2, 1), "never refreshed");

    // A refresh that fails keeps the last good endpoint: nothing breaks.
    *published.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    assert_eq!(exchange("caller-4").await, 200);
    assert_eq!((first.calls(), second.calls()), (2, 2));
    assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_aims_at_the_discovered_issuer_by_default_and_token_endpoint_on_request() {
    // draft-ietf-oauth-rfc7523bis: with the issuer known, it is the audience; the override stays.
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = client_key(dir.path(), "k");
    let sts = TokenServer::start().await;
    let token_url = sts.url();
    let issuer = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let issuer_cell = issuer.clone();
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (issuer, token_url) = (issuer_cell.clone(), token_url.clone());
        async move {
            let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            if req.uri().path() == "/.well-known/oauth-authorization-server" {
                let body = format!(
                    r#"{{"issuer":"{}","token_endpoint":"{token_url}"}}"#,
                    issuer.get().unwrap()
                );
                *response.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body));
            } else {
                *response.status_mut() = http::StatusCode::NOT_FOUND;
            }
            response
        }
    })
    .await;
    let issuer_url = format!("http://{addr}");
    issuer.set(issuer_url.clone()).unwrap();
    let upstream = Upstream::start().await;
    for (override_line, expected) in [
        ("", issuer_url.clone()),
        ("client_assertion_audience = \"issuer\"\n", issuer_url.clone()),
        ("client_assertion_audience = \"token_endpoint\"\n", sts.url()),
    ] {
        let domains = format!(
            "[domains.x]\nissuer = \"{issuer_url}\"\nclient_id = \"gw\"\nauth_method = \"private_key_jwt\"\nclient_key_file = {:?}\n{override_line}allow_insecure_http = true\n",
            pem.display().to_string()
        );
        let gw = gateway(&gateway_toml(&domains, "x", &upstream)).await;
        // Discovery is an event the gateway reports on /ready; wait for it, bounded.
        let mut ready = 0;
        for _ in 0..200 {
            ready = get(gw.admin_addr, "/ready", None).await.status.as_u16();
            if ready == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ready, 200);
        let before = sts.calls();
        let caller = format!("caller-{}", override_line.len());
        assert_eq!(get(gw.addr, "/", Some(&caller)).await.status, 200);
        let request = &sts.requests()[before];
        let claims = claims_of(request.param("client_assertion").unwrap());
        assert_eq!(claims["aud"], expected, "{override_line:?}");
    }
}
