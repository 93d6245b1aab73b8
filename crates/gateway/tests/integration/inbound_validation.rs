//! `[routes.validate]`: the caller's JWT is checked locally, and every attack in
//! docs/reliability.md's attack class "JWT validation" is a 401 `invalid_token` that never reaches the token server.

use chaingate_test_support as support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use support::*;

const AUDIENCE: &str = "urn:a:gateway";

/// An ES256 signing key and its public JWK.
struct Key {
    pair: EcdsaKeyPair,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        Self {
            pair,
            kid: kid.to_string(),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The issuer: serves its JWKS at /jwks and counts fetches.
struct Issuer {
    url: String,
    key: Key,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start() -> Self {
        let key = Key::new("good-key");
        let jwks = json!({ "keys": [key.jwk()] }).to_string();
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let addr = serve(move |_req| {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = jwks.clone();
            async move { http::Response::new(http_body_util::Full::new(Bytes::from(body))) }
        })
        .await;
        Self {
            url: format!("http://{addr}"),
            key,
            fetches,
        }
    }

    fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "at+jwt", "kid": self.key.kid})
    }

    fn claims(&self) -> Value {
        json!({"iss": self.url, "sub": "alice", "aud": AUDIENCE, "client_id": "app", "iat": now(), "exp": now() + 300, "jti": "j1"})
    }

    fn token(&self) -> String {
        self.key.sign(&self.header(), &self.claims())
    }

    fn token_with(
        &self,
        header: impl FnOnce(&mut Value),
        claims: impl FnOnce(&mut Value),
    ) -> String {
        let (mut h, mut c) = (self.header(), self.claims());
        header(&mut h);
        claims(&mut c);
        self.key.sign(&h, &c)
    }
}

async fn setup() -> (Issuer, TokenServer, Upstream, chaingate_gateway::Running) {
    let issuer = Issuer::start().await;
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "")
        + &format!(
            "\n[routes.validate]\nissuer = \"{}\"\njwks_uri = \"{}/jwks\"\naudience = \"{AUDIENCE}\"\nrequired_claims = [\"sub\"]\njwks_min_refetch_interval = \"10s\"\nallow_insecure_http = true\n",
            issuer.url, issuer.url
        );
    let gw = gateway(&toml).await;
    (issuer, sts, upstream, gw)
}

async fn assert_refused(gw: &chaingate_gateway::Running, token: &str, what: &str) {
    let answer = get(gw.addr, "/", Some(token)).await;
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_passes_and_is_exchanged() {
    let (issuer, sts, _upstream, gw) = setup().await;
    let answer = get(gw.addr, "/", Some(&issuer.token())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_jwt_attack_is_refused_without_calling_the_token_server() {
    let (issuer, sts, upstream, gw) = setup().await;
    let claims = issuer.claims();

    // alg=none in its spellings (CVE-2015-9235).
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.",
            signing_input(&json!({"alg": alg, "typ": "at+jwt"}), &claims)
        );
        assert_refused(&gw, &token, alg).await;
    }
    // HS256 MACed with the issuer's public key material (CVE-2016-10555).
    for secret in [
        issuer.key.jwk().to_string(),
        issuer
            .key
            .pair
            .public_key()
            .as_ref()
            .iter()
            .map(|b| *b as char)
            .collect(),
    ] {
        let input = signing_input(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": "good-key"}),
            &claims,
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        assert_refused(
            &gw,
            &format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())),
            "HS256 confusion",
        )
        .await;
    }
    // Embedded or remote keys (CVE-2018-0114, RFC 8725 §3.10): jwk, jku, x5u are never used.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lure = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let attacker = Key::new("attacker");
    let attacker_header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "attacker", "jwk": attacker.jwk(),
        "jku": format!("http://{lure}/jwks"), "x5u": format!("http://{lure}/cert")});
    assert_refused(
        &gw,
        &attacker.sign(&attacker_header, &claims),
        "embedded jwk / jku / x5u",
    )
    .await;
    // kid injection (RFC 8725 §2.9).
    let fetches_before = issuer.fetches.load(Ordering::SeqCst);
    for kid in [
        json!("../../dev/null"),
        json!("' OR 1=1--"),
        json!("K".repeat(4_000)),
        json!(42),
    ] {
        let token = issuer.token_with(|h| h["kid"] = kid.clone(), |_| {});
        assert_refused(&gw, &token, "kid injection").await;
    }
    assert!(
        issuer.fetches.load(Ordering::SeqCst) - fetches_before <= 1,
        "unknown kids refetch the JWKS at most once per window"
    );
    // A token past limits.max_token_bytes (8 KiB) is refused before any parsing.
    let oversized = issuer.token_with(|h| h["kid"] = json!("K".repeat(10_000)), |_| {});
    assert_eq!(get(gw.addr, "/", Some(&oversized)).await.status, 400);
    // Psychic signature: ES256 with r = s = 0 (CVE-2022-21449).
    let zero = format!(
        "{}.{}",
        signing_input(&issuer.header(), &claims),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_refused(&gw, &zero, "zero signature").await;
    // Type-confused claims (CVE-2026-25537).
    assert_refused(
        &gw,
        &issuer.token_with(|_| {}, |c| c["exp"] = json!("99999999999")),
        "string exp",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(|_| {}, |c| c["nbf"] = json!("0")),
        "string nbf",
    )
    .await;
    // Cross-JWT confusion, wrong issuer, wrong audience, expiry, missing required claims.
    assert_refused(
        &gw,
        &issuer.token_with(|h| h["typ"] = json!("JWT"), |_| {}),
        "typ JWT",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(
            |h| {
                h.as_object_mut().unwrap().remove("typ");
            },
            |_| {},
        ),
        "no typ",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(|_| {}, |c| c["iss"] = json!("https://other.example")),
        "wrong iss",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(|_| {}, |c| c["aud"] = json!("urn:sibling")),
        "wrong aud",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(|_| {}, |c| c["exp"] = json!(now() - 10)),
        "expired",
    )
    .await;
    assert_refused(
        &gw,
        &issuer.token_with(
            |_| {},
            |c| {
                c.as_object_mut().unwrap().remove("sub");
            },
        ),
        "no sub",
    )
    .await;
    // A tampered payload under a real signature.
    let good = issuer.token();
    let parts: Vec<_> = good.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": issuer.url, "sub": "admin", "aud": AUDIENCE, "exp": now() + 300}).to_string(),
    );
    assert_refused(
        &gw,
        &format!("{}.{forged_claims}.{}", parts[0], parts[2]),
        "tampered payload",
    )
    .await;

    assert_eq!(sts.calls(), 0, "no refused token reached the token server");
    assert!(upstream.received().is_empty());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a jku/x5u URL was fetched"
    );
    // The real thing still works afterwards.
    assert_eq!(get(gw.addr, "/", Some(&issuer.token())).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_picked_up_on_its_first_unknown_kid() {
    let key_one = Key::new("one");
    let key_two = Key::new("two");
    let jwks = Arc::new(std::sync::Mutex::new(
        json!({ "keys": [key_one.jwk()] }).to_string(),
    ));
    let served = jwks.clone();
    let addr = serve(move |_req| {
        let body = served.lock().unwrap().clone();
        async move { http::Response::new(http_body_util::Full::new(Bytes::from(body))) }
    })
    .await;
    let iss = format!("http://{addr}");
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "")
        + &format!("\n[routes.validate]\nissuer = \"{iss}\"\njwks_uri = \"{iss}/jwks\"\naudience = \"{AUDIENCE}\"\njwks_min_refetch_interval = \"0s\"\nallow_insecure_http = true\n");
    let gw = gateway(&toml).await;
    let claims = json!({"iss": iss, "sub": "bob", "aud": AUDIENCE, "exp": now() + 300});
    let signed = |key: &Key| {
        key.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}),
            &claims,
        )
    };
    assert_eq!(get(gw.addr, "/", Some(&signed(&key_one))).await.status, 200);
    *jwks.lock().unwrap() = json!({ "keys": [key_one.jwk(), key_two.jwk()] }).to_string();
    assert_eq!(get(gw.addr, "/", Some(&signed(&key_two))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_jwks_and_a_redirecting_jwks_is_not_followed() {
    let issuer = Issuer::start().await;
    // The redirect points at the issuer's live key set, which counts its fetches: following the
    // redirect would fetch it, and the gateway would turn ready.
    let target = format!("{}/jwks", issuer.url);
    let redirects = Arc::new(AtomicUsize::new(0));
    let counter = redirects.clone();
    let redirect = serve(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        let target = target.clone();
        async move {
            let mut response = http::Response::new(http_body_util::Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::FOUND;
            response
                .headers_mut()
                .insert("location", target.parse().unwrap());
            response
        }
    })
    .await;
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "")
        + &format!("\n[routes.validate]\nissuer = \"{}\"\njwks_uri = \"http://{redirect}/jwks\"\naudience = \"{AUDIENCE}\"\nallow_insecure_http = true\njwks_min_refetch_interval = \"10ms\"\n", issuer.url);
    let gw = gateway(&toml).await;
    // Three attempts answered with the redirect: each has finished (followed or not) before the
    // next began.
    tokio::time::timeout(Duration::from_secs(10), async {
        while redirects.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the gateway keeps retrying its key set");
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(
        get(gw.admin_addr, "/ready", None).await.status,
        503,
        "ready without keys"
    );
    // Without keys the gateway cannot judge the token: that is its outage, not the caller's fault.
    assert_eq!(get(gw.addr, "/", Some(&issuer.token())).await.status, 503);
    assert_eq!(sts.calls(), 0);
}
