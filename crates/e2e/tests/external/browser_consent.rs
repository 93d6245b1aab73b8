//! End to end in headless Chromium: sign in, consent naming the end-user application and every
//! intermediary, approve, land on a loopback redirect URI served here, exchange the code; then
//! incremental authorization shows the earlier scope as already granted.
//!
//! Installs what it needs when missing: Debian's `chromium` (apt-get, as root) and the pinned
//! `playwright-core` (`npm ci --prefix crates/e2e/browser`). Writes `consent.png`,
//! `consent-incremental.png` and `consent-phone.png` to `$CARGO_TARGET_DIR` (else `target/`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use chaingate_authority::{spawn, AuthorityConfig};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const CHROMIUM: &str = "/usr/bin/chromium";
const IAT: &str = "browser-test-initial-token";

/// apt-get install chromium when the binary is missing (idempotent; we run as root).
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let status = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .expect("cannot run apt-get");
    assert!(
        status.success() && Path::new(CHROMIUM).exists(),
        "installing chromium failed"
    );
}

fn ensure_playwright(dir: &Path) {
    if dir.join("node_modules/playwright-core").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .status()
        .expect("npm is on PATH");
    assert!(
        status.success(),
        "npm ci --prefix crates/e2e/browser failed"
    );
}

fn artifact_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| chaingate_test_support::workspace_root().join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A logo as SVG: a rounded square in `color` with a letter.
fn logo(color: &str, letter: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" fill="{color}"/><text x="32" y="43" font-family="sans-serif" font-size="30" font-weight="bold" fill="#fff" text-anchor="middle">{letter}</text></svg>"##
    )
}

/// The client's side on loopback: serves logos and the redirect URI, reporting each callback.
async fn client_site() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (ctype, body) = match req.uri().path() {
                        "/cb" => {
                            let _ = tx.send(req.uri().query().unwrap_or("").to_string());
                            ("text/html", "<!DOCTYPE html><title>Done</title><p>Signed in. You can close this window.</p>".to_string())
                        }
                        "/eua.svg" => ("image/svg+xml", logo("#7c3aed", "T")),
                        "/relay.svg" => ("image/svg+xml", logo("#0891b2", "R")),
                        "/analytics.svg" => ("image/svg+xml", logo("#ea580c", "A")),
                        "/client.svg" => ("image/svg+xml", logo("#1d4ed8", "B")),
                        _ => ("text/plain", "not found".to_string()),
                    };
                    let response = http::Response::builder()
                        .header("content-type", ctype)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (base, rx)
}

async fn call(req: http::Request<Full<Bytes>>) -> (http::StatusCode, Value) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client.request(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

fn query(q: &str) -> HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sees_every_party_and_approves_in_chromium() {
    let browser_dir = chaingate_test_support::workspace_root().join("crates/e2e/browser");
    ensure_chromium();
    ensure_playwright(&browser_dir);
    let (site, mut callbacks) = client_site().await;
    let authority = spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "127.0.0.1:0"
default_audience = "https://api.example/v1"
dev_mode = true

[[users]]
username = "alice"
password = "correct horse battery staple"

[registration]
initial_access_tokens = ["{IAT}"]
scope = "read:returns write:returns profile"
"#
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let issuer = authority.issuer().to_string();
    let redirect_uri = format!("{site}/cb");

    // Register the client with its end-user application and intermediaries (RFC 7591).
    let metadata = json!({
        "client_name": "Acme Tax Backend",
        "client_uri": format!("{site}/"),
        "logo_uri": format!("{site}/client.svg"),
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "read:returns write:returns profile",
        "end_user_application": {
            "name": "TaxPal for iPhone", "uri": format!("{site}/"), "logo_uri": format!("{site}/eua.svg")
        },
        "intermediaries": [
            { "name": "Relay Cloud", "uri": format!("{site}/relay"), "logo_uri": format!("{site}/relay.svg") },
            { "name": "Insight Analytics", "uri": format!("{site}/analytics"), "logo_uri": format!("{site}/analytics.svg") }
        ]
    });
    let (status, reg) = call(
        http::Request::post(format!("{issuer}/register"))
            .header("authorization", format!("Bearer {IAT}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(metadata.to_string())))
            .unwrap(),
    )
    .await;
    assert_eq!(status, http::StatusCode::CREATED, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();

    let (verifier1, challenge1) = pkce();
    let (verifier2, challenge2) = pkce();
    let url = |scope: &str, challenge: &str, state: &str, incremental: bool| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if incremental {
            q.append_pair("include_granted_scopes", "true");
        }
        format!("{issuer}/authorize?{}", q.finish())
    };
    let artifacts = artifact_dir();
    let screenshot = artifacts.join("consent.png");
    let screenshot2 = artifacts.join("consent-incremental.png");
    let screenshot_phone = artifacts.join("consent-phone.png");
    let config = json!({
        "url1": url("read:returns profile", &challenge1, "state-one", false),
        "url2": url("write:returns", &challenge2, "state-two", true),
        "username": "alice",
        "password": "correct horse battery staple",
        "names": ["TaxPal for iPhone", "Acme Tax Backend", "Relay Cloud", "Insight Analytics"],
        "already": "read:returns",
        "fresh": "write:returns",
        "redirect_prefix": redirect_uri,
        "screenshot": screenshot,
        "screenshot2": screenshot2,
        "screenshot_phone": screenshot_phone,
    });

    let started = tokio::time::Instant::now();
    let output = tokio::process::Command::new("node")
        .arg(browser_dir.join("consent.mjs"))
        .arg(config.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the browser script did not finish within 60s")
        .expect("cannot run `node`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\nbrowser part took {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "browser script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser checks passed"), "{stdout}");
    assert!(screenshot.is_file() && screenshot2.is_file());

    // The loopback redirect URI received both codes; exchange them like the client would.
    let mut codes = Vec::new();
    for _ in 0..2 {
        let q = tokio::time::timeout(Duration::from_secs(5), callbacks.recv())
            .await
            .expect("no callback")
            .unwrap();
        codes.push(query(&q));
    }
    let auth = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
    let mut scopes = Vec::new();
    for (q, verifier, state) in [
        (&codes[0], &verifier1, "state-one"),
        (&codes[1], &verifier2, "state-two"),
    ] {
        assert_eq!(q["state"], state);
        assert_eq!(q["iss"], issuer);
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &q["code"])
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let (status, tokens) = call(
            http::Request::post(format!("{issuer}/token"))
                .header("authorization", &auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await;
        assert_eq!(status, http::StatusCode::OK, "{tokens}");
        scopes.push(tokens["scope"].as_str().unwrap().to_string());
    }
    assert_eq!(
        scopes,
        ["profile read:returns", "profile read:returns write:returns"]
    );
    authority.shutdown().await;
}
