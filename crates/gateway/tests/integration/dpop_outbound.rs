//! DPoP toward the token server and the upstream (RFC 9449): a token server and a resource
//! server in the test check every proof with the RFC's rules, each asks for a nonce first, and
//! both see the same key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chaingate_oauth::dpop::{self, Expect, ProofError, ProofKey};
use chaingate_test_support::{config, gateway, get, logs::Logs, metrics, serve};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

const AS_NONCE: &str = "as-nonce.1";
const RS_NONCE: &str = "rs-nonce.1";

/// What the servers saw, for the assertions.
#[derive(Debug, Default)]
struct Seen {
    /// Thumbprints of the keys of the proofs the token server accepted.
    token_jkts: Vec<String>,
    /// Token requests by outcome: nonce asked, issued.
    token_nonce_asked: usize,
    token_issued: usize,
    /// Resource requests: proofs accepted (their jti and jkt), nonce asked, refused otherwise.
    resource_ok: Vec<(String, String)>,
    resource_nonce_asked: usize,
    resource_refused: Vec<&'static str>,
    jtis: HashSet<String>,
    /// Every header value either server received, to look for AT1.
    headers: Vec<String>,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn one_proof(req: &Request<Incoming>) -> Option<String> {
    let mut all = req.headers().get_all("dpop").iter();
    let proof = all.next()?.to_str().ok()?.to_string();
    all.next().is_none().then_some(proof)
}

/// A token server that requires DPoP with its nonce (RFC 9449 §8) and issues bound tokens.
async fn token_server(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let addr = Arc::new(Mutex::new(None::<SocketAddr>));
    let at = addr.clone();
    let bound = serve(move |req: Request<Incoming>| {
        let (seen, at) = (seen.clone(), at.clone());
        async move {
            let me = at.lock().unwrap().expect("address known before the first request");
            let proof = one_proof(&req);
            seen.lock()
                .unwrap()
                .headers
                .extend(req.headers().values().map(|v| format!("{v:?}")));
            let _ = req.into_body().collect().await;
            let Some(proof) = proof else {
                return json(StatusCode::BAD_REQUEST, r#"{"error":"invalid_dpop_proof"}"#.into());
            };
            let htu = format!("http://{me}/token");
            let check = Expect {
                htm: "POST",
                htu: &htu,
                access_token: None,
                nonces: &[AS_NONCE],
                max_age: 60,
                skew: 5,
            };
            let mut seen = seen.lock().unwrap();
            match dpop::verify(&proof, &check) {
                Ok(p) if seen.jtis.insert(p.jti.clone()) => {
                    seen.token_issued += 1;
                    seen.token_jkts.push(p.jkt);
                    let n = seen.token_issued;
                    json(
                        StatusCode::OK,
                        format!(
                            r#"{{"access_token":"at2-bound-{n}","token_type":"DPoP","expires_in":300}}"#
                        ),
                    )
                }
                Err(ProofError::Nonce) => {
                    seen.token_nonce_asked += 1;
                    let mut r = json(
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"use_dpop_nonce","error_description":"nonce required"}"#
                            .into(),
                    );
                    r.headers_mut()
                        .insert("dpop-nonce", AS_NONCE.parse().unwrap());
                    r
                }
                _ => json(StatusCode::BAD_REQUEST, r#"{"error":"invalid_dpop_proof"}"#.into()),
            }
        }
    })
    .await;
    *addr.lock().unwrap() = Some(bound);
    bound
}

/// A resource server that accepts only `DPoP` tokens with a proof bound to the key the token
/// server saw, with its own nonce (RFC 9449 §7.1, §9).
async fn resource_server(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let addr = Arc::new(Mutex::new(None::<SocketAddr>));
    let at = addr.clone();
    let bound = serve(move |req: Request<Incoming>| {
        let (seen, at) = (seen.clone(), at.clone());
        async move {
            let me = at.lock().unwrap().expect("address known before the first request");
            let mut seen = seen.lock().unwrap();
            seen.headers
                .extend(req.headers().values().map(|v| format!("{v:?}")));
            let refuse = |seen: &mut Seen, why: &'static str| {
                seen.resource_refused.push(why);
                let mut r = json(StatusCode::UNAUTHORIZED, "{}".into());
                r.headers_mut().insert(
                    "www-authenticate",
                    r#"DPoP error="invalid_dpop_proof", algs="ES256""#.parse().unwrap(),
                );
                r
            };
            let authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let Some(token) = authorization.strip_prefix("DPoP ") else {
                return refuse(&mut seen, "scheme");
            };
            let Some(proof) = one_proof(&req) else {
                return refuse(&mut seen, "no proof");
            };
            let htu = format!("http://{me}{}", req.uri().path());
            let check = Expect {
                htm: req.method().as_str(),
                htu: &htu,
                access_token: Some(token),
                nonces: &[RS_NONCE],
                max_age: 60,
                skew: 5,
            };
            match dpop::verify(&proof, &check) {
                Ok(p) => {
                    if !seen.token_jkts.contains(&p.jkt) {
                        return refuse(&mut seen, "binding");
                    }
                    if !seen.jtis.insert(p.jti.clone()) {
                        return refuse(&mut seen, "replay");
                    }
                    seen.resource_ok.push((p.jti, p.jkt));
                    let mut r = json(StatusCode::OK, format!(r#"{{"token":"{token}"}}"#));
                    // §9: a nonce may come with any answer; the same one here.
                    r.headers_mut()
                        .insert("dpop-nonce", RS_NONCE.parse().unwrap());
                    r
                }
                Err(ProofError::Nonce) => {
                    seen.resource_nonce_asked += 1;
                    let mut r = json(StatusCode::UNAUTHORIZED, "{}".into());
                    r.headers_mut().insert(
                        "www-authenticate",
                        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
                            .parse()
                            .unwrap(),
                    );
                    r.headers_mut()
                        .insert("dpop-nonce", RS_NONCE.parse().unwrap());
                    r
                }
                Err(e) => refuse(&mut seen, e.reason()),
            }
        }
    })
    .await;
    *addr.lock().unwrap() = Some(bound);
    bound
}

#[tokio::test]
async fn bound_tokens_are_exchanged_and_forwarded_with_a_fresh_proof_each_and_both_nonces() {
    let logs = Logs::global();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let token = token_server(seen.clone()).await;
    let resource = resource_server(seen.clone()).await;
    let toml = config(
        &format!("http://{token}/token"),
        &format!("http://{resource}"),
        "",
    )
    .replace(
        "scope = \"invoices.read\"",
        "scope = \"invoices.read\"\ndpop = true",
    );
    let running = gateway(&toml).await;

    let first = get(running.addr, "/invoices/1?x=1", Some("at1-dpop-caller")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("at2-bound-1"), "{}", first.body);
    let second = get(running.addr, "/invoices/2", Some("at1-dpop-caller")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let head = chaingate_test_support::send(
        &chaingate_test_support::client(),
        Request::head(format!("http://{}/invoices/3", running.addr))
            .header("authorization", "Bearer at1-dpop-caller")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);

    {
        let seen = seen.lock().unwrap();
        // One exchange: asked for the nonce once, then issued; the cache served the rest.
        assert_eq!((seen.token_nonce_asked, seen.token_issued), (1, 1));
        // The upstream asked for its nonce once (the first request was sent again with it), then
        // every request came with it and a proof of its own by the key the token is bound to.
        assert_eq!(seen.resource_nonce_asked, 1);
        assert!(
            seen.resource_refused.is_empty(),
            "{:?}",
            seen.resource_refused
        );
        assert_eq!(seen.resource_ok.len(), 3);
        let jkt = &seen.token_jkts[0];
        assert!(seen.resource_ok.iter().all(|(_, k)| k == jkt));
        assert!(!seen.headers.iter().any(|h| h.contains("at1-dpop-caller")));
    }

    // Nothing of a proof or a token in the logs or the metrics.
    let scrape = metrics(&running).await;
    for text in [logs.text(), scrape] {
        assert!(!text.contains("at2-bound"), "a token leaked");
        assert!(!text.contains("eyJ0eXAiOiJkcG9w"), "a DPoP proof leaked");
    }
}

#[tokio::test]
async fn a_configured_key_signs_the_proofs_and_a_bearer_answer_stays_bearer() {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("dpop.pem");
    std::fs::write(&key_file, &pem).unwrap();
    let jkt = ProofKey::from_pem(pem.as_bytes())
        .unwrap()
        .jkt()
        .to_string();

    let proofs = Arc::new(Mutex::new(Vec::<String>::new()));
    let p = proofs.clone();
    let token = serve(move |req: Request<Incoming>| {
        let p = p.clone();
        async move {
            if let Some(proof) = one_proof(&req) {
                p.lock().unwrap().push(proof);
            }
            // A server without DPoP support answers with a bearer token (RFC 9449 §5).
            json(
                StatusCode::OK,
                r#"{"access_token":"at2-plain","token_type":"Bearer","expires_in":300}"#.into(),
            )
        }
    })
    .await;
    let upstream = chaingate_test_support::Upstream::start().await;
    let toml = config(&format!("http://{token}/token"), &upstream.url(), "").replace(
        "scope = \"invoices.read\"",
        &format!(
            "scope = \"invoices.read\"\ndpop = true\ndpop_key_file = \"{}\"",
            key_file.display()
        ),
    );
    let running = gateway(&toml).await;
    let answer = get(running.addr, "/x", Some("at1-keyed")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let proofs = proofs.lock().unwrap();
    assert_eq!(proofs.len(), 1);
    let htu = format!("http://{token}/token");
    let check = Expect {
        htm: "POST",
        htu: &htu,
        access_token: None,
        nonces: &[],
        max_age: 60,
        skew: 5,
    };
    assert_eq!(dpop::verify(&proofs[0], &check).unwrap().jkt, jkt);
    let received = upstream.received();
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer at2-plain")
    );
    assert_eq!(received[0].header("dpop"), None);
}

#[tokio::test]
async fn a_dpop_key_file_without_dpop_or_unreadable_names_the_key() {
    let base = config("http://127.0.0.1:9/token", "http://127.0.0.1:9", "");
    let stray = base.replace(
        "scope = \"invoices.read\"",
        "scope = \"invoices.read\"\ndpop_key_file = \"/nonexistent\"",
    );
    let err = chaingate_gateway::config::Config::from_toml(&stray).unwrap_err();
    assert!(
        err.to_string().contains("domains.billing.dpop_key_file"),
        "{err}"
    );
    let missing = base.replace(
        "scope = \"invoices.read\"",
        "scope = \"invoices.read\"\ndpop = true\ndpop_key_file = \"/nonexistent\"",
    );
    let err = chaingate_gateway::config::Config::from_toml(&missing).unwrap_err();
    assert!(
        err.to_string().contains("domains.billing.dpop_key_file"),
        "{err}"
    );
}
