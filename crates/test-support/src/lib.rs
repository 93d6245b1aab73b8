//! Test helpers, written once for every suite: an in-process recording token endpoint, an echo
//! upstream, gateway spawners and h1/h2 clients (here); the reference authorities the authority
//! suites drive (`authority`, `consent`, `parties`); a test PKI (`tls`); oidc-provider from npm
//! (`oidc_provider`).
#![allow(missing_docs)] // helpers for tests; each says what it is where that is not its name

pub mod agent;
pub mod apt;
pub mod authority;
pub mod consent;
pub mod h2raw;
pub mod logs;
pub mod oidc_provider;
pub mod parties;
pub mod redis;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Serves `handler` on a fresh loopback port until the test ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The repository's root, for tests that read its files (deploy artifacts, fuzz corpora).
pub fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `crates/e2e/<folder>` with its pinned npm packages installed (`npm ci`) if `probe` is missing:
/// tests install what they need, so `cargo test` works on a fresh machine with Node.
pub fn npm_packages(folder: &str, probe: &str) -> std::path::PathBuf {
    let dir = workspace_root().join("crates/e2e").join(folder);
    if !dir.join("node_modules").join(probe).is_dir() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .expect("npm is on PATH");
        assert!(
            status.success(),
            "npm ci --prefix crates/e2e/{folder} failed"
        );
    }
    dir
}

/// `jwt` with its signature changed for certain: the signature's first character (six whole
/// bits, unlike the last one, whose spare bits a decoder may ignore) becomes another.
pub fn tamper_signature(jwt: &str) -> String {
    let at = jwt.rfind('.').expect("a JWS compact serialization") + 1;
    let replacement = if jwt[at..].starts_with('A') { "B" } else { "A" };
    format!("{}{replacement}{}", &jwt[..at], &jwt[at + 1..])
}

/// An address nothing listens on, for as long as the test process runs: the port stays bound
/// (without `SO_REUSEADDR`, never listening), so no server another test starts can take it and
/// a connection to it is always refused.
pub async fn closed_port() -> SocketAddr {
    let port = ReservedPort::new();
    let addr = port.addr;
    static HELD: Mutex<Vec<ReservedPort>> = Mutex::new(Vec::new());
    HELD.lock().unwrap().push(port);
    addr
}

/// A port held (bound, not listening: connections are refused) until dropped, for a test that
/// starts a server on it later: drop it just before binding.
#[derive(Debug)]
pub struct ReservedPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        Self {
            _socket: socket,
            addr,
        }
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

// === token endpoint ===

/// One token request as the token endpoint received it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub form: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// W3C Trace Context: the exchange span's context, when tracing is on.
    pub traceparent: Option<String>,
}

impl TokenRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the token endpoint answers to call number `n` (0-based).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub retry_after: Option<&'static str>,
}

impl Reply {
    /// A bearer token `at2-<n>` with the given lifetime.
    pub fn issue(n: usize, expires_in: Option<u64>) -> Self {
        let body = match expires_in {
            Some(s) => {
                format!(r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":{s}}}"#)
            }
            None => format!(r#"{{"access_token":"at2-{n}","token_type":"Bearer"}}"#),
        };
        Self {
            status: 200,
            body,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    pub fn error(status: u16, code: &str) -> Self {
        Self {
            status,
            body: format!(
                r#"{{"error":"{code}","error_description":"details only the gateway's log may see"}}"#
            ),
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Script = Arc<dyn Fn(usize, &TokenRequest) -> Reply + Send + Sync>;

/// A token endpoint that records every request and answers from a script.
#[derive(Clone)]
pub struct TokenServer {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

/// Address and call count only: the recorded requests carry client secrets and tokens.
impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Issues `at2-<n>` tokens valid for 300 s.
    pub async fn start() -> Self {
        Self::scripted(|n, _| Reply::issue(n, Some(300))).await
    }

    pub async fn scripted(
        script: impl Fn(usize, &TokenRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let script: Script = Arc::new(script);
        let calls = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (calls.clone(), requests.clone());
        let addr = serve(move |req: Request<Incoming>| {
            let (script, calls, requests) = (script.clone(), c.clone(), r.clone());
            async move {
                let header = |name| {
                    req.headers()
                        .get(name)
                        .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
                };
                let authorization = header(http::header::AUTHORIZATION);
                let content_type = header(http::header::CONTENT_TYPE);
                let traceparent = header(http::header::HeaderName::from_static("traceparent"));
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let form = form_urlencoded::parse(&body).into_owned().collect();
                let recorded = TokenRequest {
                    form,
                    authorization,
                    content_type,
                    traceparent,
                };
                let n = calls.fetch_add(1, Ordering::SeqCst);
                requests.lock().unwrap().push(recorded.clone());
                let reply = script(n, &recorded);
                tokio::time::sleep(reply.delay).await;
                let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                response
                    .headers_mut()
                    .insert("cache-control", "no-store".parse().unwrap());
                if let Some(after) = reply.retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", after.parse().unwrap());
                }
                response
            }
        })
        .await;
        Self {
            addr,
            calls,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

// === echo upstream ===

/// Everything an upstream received for one request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `needle` appears anywhere the upstream could see it.
    pub fn contains(&self, needle: &str) -> bool {
        self.uri.contains(needle)
            || self
                .headers
                .iter()
                .any(|(k, v)| k.contains(needle) || v.contains(needle))
            || self
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
    }
}

/// An upstream that records requests and answers with the Authorization it saw.
/// `/slow/<ms>` waits before answering; `/status/<code>` answers with that status.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

/// Address only: the recorded requests carry the tokens the upstream was sent.
impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        let addr = serve(move |req: Request<Incoming>| {
            let received = r.clone();
            async move {
                let path = req.uri().path().to_string();
                let record = Received {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    version: format!("{:?}", req.version()),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body: Bytes::new(),
                };
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let digest =
                    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
                let len = body.len();
                let authorization = record.header("authorization").unwrap_or("").to_string();
                received.lock().unwrap().push(Received { body, ..record });
                let mut status = 200;
                if let Some(ms) = path.strip_prefix("/slow/") {
                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                }
                if let Some(code) = path.strip_prefix("/status/") {
                    status = code.parse().unwrap_or(500);
                }
                let reply = format!(
                    r#"{{"authorization":"{authorization}","len":{len},"sha256":"{digest}"}}"#
                );
                let mut response = Response::new(Full::new(Bytes::from(reply)));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                let headers = response.headers_mut();
                headers.insert("content-type", "application/json".parse().unwrap());
                // Hop-by-hop fields the gateway must not relay to the caller.
                headers.insert("connection", "x-upstream-private".parse().unwrap());
                headers.insert("x-upstream-private", "1".parse().unwrap());
                headers.insert("keep-alive", "timeout=5".parse().unwrap());
                response
            }
        })
        .await;
        Self { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (30 s at most) until `n` requests whose URI contains `uri_part` have arrived: a
    /// `/slow/<ms>` request is recorded before its wait, so this means "they are in flight".
    pub async fn wait_for(&self, n: usize, uri_part: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self
            .received()
            .iter()
            .filter(|r| r.uri.contains(uri_part))
            .count()
            < n
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the requests never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// === gateway ===

/// A gateway config with one `billing` domain and a `/` route; `extra` is appended verbatim.
pub fn config(token_url: &str, upstream_url: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[cache]
expiry_skew = "0s"

[domains.billing]
token_endpoint = "{token_url}"
grant = "chain"
client_id = "gateway-a"
client_secret = "gateway-secret-value"
auth_method = "client_secret_basic"
allow_insecure_http = true
timeout = "5s"
scope = "invoices.read"

{extra}

[[routes]]
name = "default"
path_prefix = "/"
upstream = "{upstream_url}"
domain = "billing"
"#
    )
}

pub async fn gateway(toml: &str) -> chaingate_gateway::Running {
    chaingate_core::tls::install_crypto_provider();
    let config = chaingate_gateway::config::Config::from_toml(toml).expect("test config is valid");
    chaingate_gateway::spawn(config)
        .await
        .expect("gateway starts")
}

// === client ===

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response with its body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

pub async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    let response = client.request(request).await.expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET http://addr/path` with `Authorization: Bearer <token>` (if given).
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn metrics(running: &chaingate_gateway::Running) -> String {
    get(running.admin_addr, "/metrics", None).await.body
}

/// The value of one sample line in a metrics scrape, e.g. `chaingate_requests_total{route="a",code="200"}`.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        line.strip_prefix(series)?
            .trim()
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}
