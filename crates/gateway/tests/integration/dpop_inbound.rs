//! DPoP from the caller (RFC 9449 §4.3, §7.1): on a `dpop` route the caller's proof is checked
//! before any exchange, every failed check is a 401 `invalid_dpop_proof` with a `DPoP`
//! challenge, and neither the proof nor AT1 goes further than the gateway.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use chaingate_oauth::dpop::{ath, ProofKey};
use chaingate_test_support::{
    config, gateway, logs::Logs, metrics, sample, send, serve, Answer, TokenServer, Upstream,
};
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ES256 key that signs whatever header and claims a test forges.
struct Forge(EcdsaKeyPair);

impl Forge {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Self(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }

    fn xy(&self) -> (String, String) {
        let point = self.0.public_key().as_ref();
        (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        )
    }

    fn jwk(&self) -> Value {
        let (x, y) = self.xy();
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    }

    /// RFC 7638: the SHA-256 of the required members in lexicographic order.
    fn jkt(&self) -> String {
        let (x, y) = self.xy();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        URL_SAFE_NO_PAD.encode(chaingate_oauth::digest::sha256(canonical.as_bytes()))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()})
    }

    fn claims(htu: &str, token: &str) -> Value {
        json!({"jti": format!("j-{}", rand_id()), "htm": "GET", "htu": htu, "iat": now(), "ath": ath(token)})
    }

    /// A proof that passes, but for the edits.
    fn proof(&self, htu: &str, token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut h, mut c) = (self.header(), Self::claims(htu, token));
        edit(&mut h, &mut c);
        self.sign(&h, &c)
    }
}

fn rand_id() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

/// A JWKS issuer whose AT1s the gateway validates locally; `cnf.jkt` binds them.
struct Issuer {
    url: String,
    key: Forge,
}

impl Issuer {
    async fn start() -> Self {
        let key = Forge::new();
        let mut jwk = key.jwk();
        jwk["kid"] = json!("k1");
        jwk["alg"] = json!("ES256");
        let jwks = json!({ "keys": [jwk] }).to_string();
        let addr = serve(move |_req| {
            let body = jwks.clone();
            async move { http::Response::new(Full::new(Bytes::from(body))) }
        })
        .await;
        Self {
            url: format!("http://{addr}"),
            key,
        }
    }

    fn token(&self, jkt: Option<&str>) -> String {
        let mut claims = json!({"iss": self.url, "sub": "alice", "aud": "urn:gw", "client_id": "app",
                                "iat": now(), "exp": now() + 300, "jti": rand_id()});
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        self.key.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
            &claims,
        )
    }

    fn validate(&self) -> String {
        format!(
            "\n[routes.validate]\nissuer = \"{0}\"\njwks_uri = \"{0}/jwks\"\naudience = \"urn:gw\"\nallow_insecure_http = true\n",
            self.url
        )
    }
}

/// `GET http://addr/path` with the given Authorization and DPoP values.
async fn call(
    addr: std::net::SocketAddr,
    path: &str,
    authorization: Option<String>,
    proofs: &[&str],
) -> Answer {
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    for p in proofs {
        request = request.header("dpop", *p);
    }
    send(
        &chaingate_test_support::client(),
        request.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

fn challenges(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn assert_proof_refused(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    let c = challenges(answer);
    assert_eq!(c.len(), 1, "{what}");
    assert!(
        c[0].starts_with("DPoP error=\"invalid_dpop_proof\", error_description=\""),
        "{what}: {c:?}"
    );
    assert!(
        c[0].ends_with("algs=\"ES256 ES384 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA\""),
        "{what}: {c:?}"
    );
    assert_eq!(answer.json()["error"], "invalid_dpop_proof", "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_proof_is_accepted_and_neither_proof_nor_at1_reaches_the_upstream() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&(config(&sts.url(), &upstream.url(), "") + "dpop = \"required\"\n")).await;
    let key = ProofKey::generate().unwrap();
    let at1 = "opaque-caller-token-1";
    let htu = format!("http://{}/orders/7", gw.addr);
    let proof = key.proof("GET", &htu, Some(at1), None).unwrap();

    let ok = call(
        gw.addr,
        "/orders/7?page=2",
        Some(format!("DPoP {at1}")),
        &[&proof],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = upstream.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer at2-0"));
    assert!(seen[0].header("dpop").is_none());
    assert!(!seen[0].contains(at1) && !seen[0].contains(&proof));
    assert_eq!(sts.requests()[0].param("oauth_token"), Some(at1));

    // The same proof again is a replay (§11.1), refused before the cache answers.
    let again = call(gw.addr, "/orders/7", Some(format!("DPoP {at1}")), &[&proof]).await;
    assert_proof_refused(&again, "replay");
    assert_eq!(
        again.json()["error_description"],
        "the DPoP proof was already used"
    );

    // Bearer on a required route, and no credentials: DPoP challenges only.
    let bearer = call(gw.addr, "/orders/7", Some(format!("Bearer {at1}")), &[]).await;
    assert_eq!(bearer.status, 401);
    assert!(challenges(&bearer)[0].starts_with("DPoP error=\"invalid_token\", algs="));
    let none = call(gw.addr, "/orders/7", None, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(challenges(&none).len(), 1);
    assert!(challenges(&none)[0].starts_with("DPoP algs="));
    assert_eq!(upstream.received().len(), 1);

    let scrape = metrics(&gw).await;
    for (result, n) in [("ok", 1.0), ("replay", 1.0)] {
        let series =
            format!("chaingate_dpop_proofs_total{{route=\"default\",result=\"{result}\"}}");
        assert_eq!(sample(&scrape, &series), Some(n), "{result}\n{scrape}");
    }
    assert!(!scrape.contains(at1) && !scrape.contains(&proof));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failed_proof_check_is_invalid_dpop_proof_and_never_reaches_the_token_server() {
    let logs = Logs::global();
    let issuer = Issuer::start().await;
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "")
        + "dpop = \"allowed\"\ndpop_max_age = \"30s\"\n"
        + &issuer.validate();
    let gw = gateway(&toml).await;
    let key = Forge::new();
    let at1 = issuer.token(Some(&key.jkt()));
    let htu = format!("http://{}/r", gw.addr);
    let auth = || Some(format!("DPoP {at1}"));

    // The forge itself is right: an unedited proof passes.
    let good = key.proof(&htu, &at1, |_, _| {});
    let answer = call(gw.addr, "/r", auth(), &[&good]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let calls = sts.calls();

    let other = Forge::new();
    let mut cases: Vec<(&str, &str, String)> = vec![
        ("signature", "signature", {
            let p = key.proof(&htu, &at1, |_, _| {});
            chaingate_test_support::tamper_signature(&p)
        }),
        (
            "typ",
            "typ",
            key.proof(&htu, &at1, |h, _| h["typ"] = json!("jwt")),
        ),
        ("alg none", "alg", {
            let p = key.proof(&htu, &at1, |h, _| h["alg"] = json!("none"));
            format!("{}.", p.rsplit_once('.').unwrap().0)
        }),
        (
            "alg HS256",
            "alg",
            key.proof(&htu, &at1, |h, _| h["alg"] = json!("HS256")),
        ),
        (
            "no jwk",
            "jwk",
            key.proof(&htu, &at1, |h, _| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
        ),
        (
            "private jwk",
            "jwk",
            key.proof(&htu, &at1, |h, _| h["jwk"]["d"] = json!("AAAA")),
        ),
        (
            "other key's jwk",
            "signature",
            key.proof(&htu, &at1, |h, _| h["jwk"] = other.jwk()),
        ),
        (
            "htm",
            "htm",
            key.proof(&htu, &at1, |_, c| c["htm"] = json!("POST")),
        ),
        (
            "htu path",
            "htu",
            key.proof(&htu, &at1, |_, c| {
                c["htu"] = json!(format!("http://{}/other", gw.addr))
            }),
        ),
        (
            "htu scheme",
            "htu",
            key.proof(&htu, &at1, |_, c| {
                c["htu"] = json!(format!("https://{}/r", gw.addr))
            }),
        ),
        (
            "htu host",
            "htu",
            key.proof(&htu, &at1, |_, c| {
                c["htu"] = json!("http://elsewhere.example/r")
            }),
        ),
        (
            "stale iat",
            "iat",
            key.proof(&htu, &at1, |_, c| c["iat"] = json!(now() - 31)),
        ),
        (
            "future iat",
            "iat",
            key.proof(&htu, &at1, |_, c| c["iat"] = json!(now() + 60)),
        ),
        (
            "ath",
            "ath",
            key.proof(&htu, &at1, |_, c| c["ath"] = json!(ath("another-token"))),
        ),
        (
            "no ath",
            "ath",
            key.proof(&htu, &at1, |_, c| {
                c.as_object_mut().unwrap().remove("ath");
            }),
        ),
        (
            "no jti",
            "malformed",
            key.proof(&htu, &at1, |_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "cnf.jkt mismatch",
            "binding",
            other.proof(&htu, &at1, |_, _| {}),
        ),
        (
            "oversize",
            "malformed",
            key.proof(&htu, &at1, |_, c| c["pad"] = json!("x".repeat(5000))),
        ),
        ("replay", "replay", good.clone()),
    ];
    let mut sent = Vec::new();
    for (what, _, proof) in &cases {
        let answer = call(gw.addr, "/r", auth(), &[proof]).await;
        assert_proof_refused(&answer, what);
        assert!(
            !answer.body.contains(&at1) && !answer.body.contains(proof.as_str()),
            "{what}"
        );
        sent.push(proof.clone());
    }
    // §4.3 step 1: exactly one DPoP header; none at all is no proof either.
    let (a, b) = (
        key.proof(&htu, &at1, |_, _| {}),
        key.proof(&htu, &at1, |_, _| {}),
    );
    assert_proof_refused(&call(gw.addr, "/r", auth(), &[&a, &b]).await, "two headers");
    assert_proof_refused(&call(gw.addr, "/r", auth(), &[]).await, "no header");
    cases.push(("two headers", "multiple", a));
    cases.push(("no header", "missing", String::new()));

    // A bound token presented as Bearer (§7.1), and an unbound one that is fine as Bearer.
    let bearer = call(gw.addr, "/r", Some(format!("Bearer {at1}")), &[]).await;
    assert_eq!(bearer.status, 401, "{}", bearer.body);
    assert!(challenges(&bearer)[0].starts_with("DPoP error=\"invalid_token\""));
    let plain = issuer.token(None);
    let ok = call(gw.addr, "/r", Some(format!("Bearer {plain}")), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // An allowed route challenges both schemes when nothing came.
    let none = call(gw.addr, "/r", None, &[]).await;
    assert_eq!(
        challenges(&none),
        [
            "DPoP algs=\"ES256 ES384 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA\"",
            "Bearer realm=\"chaingate\""
        ]
    );
    assert_eq!(
        sts.calls(),
        calls + 1,
        "only the unbound bearer token was exchanged"
    );

    let scrape = metrics(&gw).await;
    let mut expected = std::collections::BTreeMap::new();
    for (_, reason, _) in &cases {
        *expected.entry(*reason).or_insert(0.0) += 1.0;
    }
    expected.insert("ok", 1.0);
    for (result, n) in expected {
        let series =
            format!("chaingate_dpop_proofs_total{{route=\"default\",result=\"{result}\"}}");
        assert_eq!(sample(&scrape, &series), Some(n), "{result}");
    }
    let text = logs.text();
    for secret in sent.iter().chain([&at1, &good]) {
        let signature = secret.rsplit('.').next().unwrap();
        if !signature.is_empty() {
            assert!(!text.contains(signature) && !scrape.contains(signature));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_without_dpop_is_unchanged_and_never_forwards_a_dpop_header() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let key = ProofKey::generate().unwrap();
    let proof = key
        .proof("GET", &format!("http://{}/", gw.addr), Some("at1"), None)
        .unwrap();
    let refused = call(gw.addr, "/", Some("DPoP at1".into()), &[&proof]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(challenges(&refused), ["Bearer realm=\"chaingate\""]);
    let ok = call(gw.addr, "/", Some("Bearer at1".into()), &[&proof]).await;
    assert_eq!(ok.status, 200);
    assert!(upstream.received()[0].header("dpop").is_none());
    assert!(!metrics(&gw).await.contains("chaingate_dpop_proofs_total{"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_local_validation_a_jwt_at1_still_needs_a_proof_by_its_cnf_key() {
    // A stolen bound AT1 on a route that leaves validation to the token server: its `cnf.jkt`
    // cannot be edited without breaking the signature the token server checks, so a proof by
    // the thief's own key must be refused here, before any exchange.
    let issuer = Issuer::start().await;
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&(config(&sts.url(), &upstream.url(), "") + "dpop = \"required\"\n")).await;
    let (owner, thief) = (Forge::new(), Forge::new());
    let at1 = issuer.token(Some(&owner.jkt()));
    let htu = format!("http://{}/r", gw.addr);

    let stolen = call(
        gw.addr,
        "/r",
        Some(format!("DPoP {at1}")),
        &[&thief.proof(&htu, &at1, |_, _| {})],
    )
    .await;
    assert_proof_refused(&stolen, "thief's key");
    assert!(
        sts.calls() == 0,
        "a refused proof never reaches the token server"
    );

    let owned = call(
        gw.addr,
        "/r",
        Some(format!("DPoP {at1}")),
        &[&owner.proof(&htu, &at1, |_, _| {})],
    )
    .await;
    assert_eq!(owned.status, 200, "{}", owned.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_server_refusing_a_bound_subject_token_is_a_dpop_challenge_to_the_caller() {
    // Keycloak, for one, answers invalid_grant to a token exchange whose subject token is
    // DPoP-bound. The caller hears 401 invalid_token under the scheme it used, so a DPoP client
    // is not told to come back with Bearer.
    let sts =
        TokenServer::scripted(|_, _| chaingate_test_support::Reply::error(400, "invalid_grant"))
            .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&(config(&sts.url(), &upstream.url(), "") + "dpop = \"allowed\"\n")).await;
    let key = ProofKey::generate().unwrap();
    let at1 = "bound-caller-token";
    let proof = key
        .proof("GET", &format!("http://{}/r", gw.addr), Some(at1), None)
        .unwrap();

    let dpop = call(gw.addr, "/r", Some(format!("DPoP {at1}")), &[&proof]).await;
    assert_eq!(dpop.status, 401, "{}", dpop.body);
    let c = challenges(&dpop);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("DPoP error=\"invalid_token\""), "{c:?}");
    assert_eq!(sts.calls(), 1);

    let bearer = call(gw.addr, "/r", Some("Bearer plain-token".into()), &[]).await;
    assert_eq!(bearer.status, 401, "{}", bearer.body);
    let c = challenges(&bearer);
    assert!(
        c[0].starts_with("Bearer ") && c[0].contains("error=\"invalid_token\""),
        "{c:?}"
    );
    assert!(
        !upstream.received().iter().any(|_| true),
        "nothing reached the upstream"
    );
}
