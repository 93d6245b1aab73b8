//! B redeeming at an https party A (a recording mock) trusted through `ca_file`: the exact
//! redemption request, and the scope fallback when A's answer omits `scope`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::support::*;
use super::tls::{pki, TestPki};

/// What the mock token endpoint saw: the Authorization header and the form.
type Seen = Arc<Mutex<Vec<(Option<String>, Vec<(String, String)>)>>>;

/// An https token endpoint on 127.0.0.1 with the test CA's certificate; answers every request
/// with a bearer token without `scope`.
async fn mock_party_a(pki: &TestPki) -> (u16, Seen) {
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_file(&pki.cert_file).unwrap()],
            PrivateKeyDer::from_pem_file(&pki.key_file).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_string());
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .unwrap()
                                .to_bytes();
                            let form = form_urlencoded::parse(&body).into_owned().collect();
                            record.lock().unwrap().push((auth, form));
                            let reply = r#"{"access_token":"a-issued-at","token_type":"bearer","expires_in":120}"#;
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(reply),
                            ));
                            response
                                .headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
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
    (port, seen)
}

async fn party_b(port: u16, extra: &str) -> RunningAuthority {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[reciprocal]\ntoken_endpoint = \"https://localhost:{port}/token\"\n\
         client_id = \"party b\"\nclient_secret = \"s:cret&more\"\n{extra}\n{B_CLIENTS}"
    );
    spawn(AuthorityConfig::from_toml(&toml).unwrap())
        .await
        .unwrap()
}

/// Delivers `code` to `b` with a client_credentials token (the user is the client itself).
async fn deliver_cc(b: &RunningAuthority, code: &str) {
    let auth = basic("gateway-at-b", "gwb-secret");
    let token = post_form(
        &url(b, "/token"),
        Some(&auth),
        &[("grant_type", "client_credentials")],
    )
    .await
    .field("access_token");
    let r = post_form(
        &url(b, "/token"),
        Some(&auth),
        &[
            ("grant_type", RECIPROCAL),
            ("code", code),
            ("client_id", "gateway-at-b"),
            ("access_token", &token),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn redemption_is_a_plain_code_request_over_https_trusted_through_ca_file() {
    let pki = pki();
    let (port, seen) = mock_party_a(&pki).await;
    let b = party_b(
        port,
        &format!("ca_file = {:?}", pki.ca_file.display().to_string()),
    )
    .await;
    deliver_cc(&b, "code+with/odd=chars").await;
    let outcome = b
        .wait_reciprocal_redemptions(1, Duration::from_secs(10))
        .await;
    assert_eq!(outcome, (1, 0));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (auth, form) = &seen[0];
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    assert_eq!(
        auth.as_deref(),
        Some(basic("party+b", "s%3Acret%26more").as_str())
    );
    let mut names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["code", "grant_type"],
        "no redirect_uri, no client_id"
    );
    assert!(form.contains(&("grant_type".into(), "authorization_code".into())));
    assert!(form.contains(&("code".into(), "code+with/odd=chars".into())));
    let grant = b.reciprocal_grant("gateway-at-b", "gateway-at-b").unwrap();
    assert!(grant.access_token.ct_eq("a-issued-at"));
    assert_eq!(
        grant.scope, "contacts.read",
        "omitted scope = the scope asked for"
    );
    assert!(grant.refresh_token.is_none());
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused() {
    let pki = pki();
    let (port, seen) = mock_party_a(&pki).await;
    let b = party_b(port, "").await;
    deliver_cc(&b, "some-code").await;
    let outcome = b
        .wait_reciprocal_redemptions(1, Duration::from_secs(10))
        .await;
    assert_eq!(outcome, (0, 1));
    assert!(seen.lock().unwrap().is_empty());
}
