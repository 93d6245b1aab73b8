//! `chaingate demo`: the whole flow on loopback with nothing else installed.
//!
//! Authority A (domain A) hands out AT1s by client_credentials; authority B trusts A's keys and
//! speaks the chain grant; an echo upstream shows the claims of the token it received; the gateway
//! sits in front of the upstream and exchanges at B.
//!
//! Secretless toward B: a demo "cluster" key, generated at start, signs a projected-style
//! service account token that the gateway reads from a file (`client_assertion_file`), and B's
//! client `chaingate` is `federated` with that key, as with a Kubernetes projected token.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::task::JoinHandle;

use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};
use chaingate_core::drain;
use chaingate_core::serve::{self, ServeLimits};
use chaingate_gateway::config::Config;
use chaingate_oauth::keys::SigningKey;
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::{now_secs, random_id};

/// The demo cluster's service account issuer and the gateway's service account.
const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:demo:chaingate";
/// The trust domain the demo authority B issues Txn-Tokens for.
const TRUST_DOMAIN: &str = "urn:demo:trust";
/// As a projected volume with `expirationSeconds: 3600`; rewritten at half-life like the
/// kubelet (which refreshes at 80 %).
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// Everything the demo started.
#[derive(Debug)]
pub(crate) struct Demo {
    pub authority_a: RunningAuthority,
    pub authority_b: RunningAuthority,
    pub upstream: SocketAddr,
    pub gateway: chaingate_gateway::Running,
    /// A fresh AT1 from authority A, for the printed `curl` line.
    pub at1: Secret,
    app_secret: Secret,
    cluster: Cluster,
    upstream_stop: drain::Signal,
    upstream_task: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    #[error("demo config: {0}")]
    Config(#[from] chaingate_gateway::config::ConfigError),
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start the gateway: {0}")]
    Start(#[from] chaingate_gateway::StartError),
    #[error("cannot get a first token from authority A: {0}")]
    FirstToken(String),
    #[error("cannot make the demo cluster's key or token: {0}")]
    Cluster(String),
}

/// Starts both authorities, the echo upstream and the gateway (data port `port`; 0 = any).
pub(crate) async fn start(port: u16) -> Result<Demo, DemoError> {
    let app_secret = random_secret();
    let mut cluster = Cluster::new()?;
    let authority_a = authority::spawn(AuthorityConfig::from_toml(&format!(
        r#"
listen = "127.0.0.1:0"
token_ttl = "10m"
default_audience = "urn:demo:gateway"

[[clients]]
client_id = "demo-app"
client_secret = "{app}"
auth_method = "client_secret_basic"
grants = ["client_credentials"]
scope = "a:read a:write"
"#,
        app = app_secret.expose()
    ))?)
    .await?;
    let authority_b = authority::spawn(AuthorityConfig::from_toml(&format!(
        r#"
listen = "127.0.0.1:0"
token_ttl = "5m"
default_audience = "urn:demo:upstream"

[[clients]]
client_id = "chaingate"
grants = ["chain", "token-exchange"]
scope = "b:read b:write"
federated = {{ issuer = "{cluster_issuer}", subject = "{service_account}", jwks_file = {jwks:?} }}

[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:demo:gateway"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}

[txn_token_service]
audiences = ["{trust}"]
clients = ["chaingate"]
"#,
        trust = TRUST_DOMAIN,
        cluster_issuer = CLUSTER_ISSUER,
        service_account = SERVICE_ACCOUNT,
        jwks = cluster.jwks_file().display().to_string(),
        a = authority_a.issuer()
    ))?)
    .await?;
    cluster.issue_for(authority_b.issuer())?;
    let (upstream, upstream_stop, upstream_task) = echo_upstream().await?;
    let gateway = chaingate_gateway::spawn(Config::from_toml(&format!(
        r#"
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:0"

[domains.b]
token_endpoint = "{b}/token"
grant = "chain"
client_id = "chaingate"
client_assertion_file = {token:?}
allow_insecure_http = true
scope = "b:read"

[domains.tts]
token_endpoint = "{b}/token"
grant = "token-exchange"
client_id = "chaingate"
client_assertion_file = {token:?}
allow_insecure_http = true
scope = "b:read"

[[routes]]
name = "txn"
path_prefix = "/txn"
upstream = "http://{upstream}"
domain = "b"
[routes.txn_token]
domain = "tts"
audience = "{trust}"

[[routes]]
name = "demo"
path_prefix = "/"
upstream = "http://{upstream}"
domain = "b"
"#,
        trust = TRUST_DOMAIN,
        b = authority_b.issuer(),
        token = cluster.token_file().display().to_string(),
    ))?)
    .await?;
    let at1 = first_token(authority_a.issuer(), &app_secret)
        .await
        .map_err(DemoError::FirstToken)?;
    Ok(Demo {
        authority_a,
        authority_b,
        upstream,
        gateway,
        at1,
        app_secret,
        cluster,
        upstream_stop,
        upstream_task,
    })
}

impl Demo {
    /// What to print for a person: the ports, AT1, a ready `curl` line and what it will show.
    pub(crate) fn instructions(&self) -> String {
        let a = self.authority_a.issuer();
        let b = self.authority_b.issuer();
        let gw = self.gateway.addr;
        format!(
            "chaingate demo: everything on loopback\n\
             \n  authority A (domain A)  {a}   issues AT1 to client demo-app\
             \n  authority B (domain B)  {b}   trusts A; chain grant for client chaingate\
             \n                          (no secret: the gateway authenticates with a service account\
             \n                          token signed by a demo cluster key, read from {token})\
             \n  upstream (echo)         http://{up}\
             \n  gateway                 http://{gw}   admin http://{admin} (/live /ready /metrics)\
             \n\nA fresh AT1 from authority A (scope a:read a:write, valid 10 minutes):\n\n  {at1}\
             \n\nTry it:\n\n  curl -s -H \"Authorization: Bearer {at1}\" http://{gw}/hello\
             \n\nThe upstream answers with the claims of the token it received: AT2, issued by {b}\
             \nwith scope b:read, not AT1. Run it twice: the second answer comes from the cache\
             \n(see chaingate_token_cache_lookups_total at http://{admin}/metrics).\
             \n\nUnder /txn the upstream also gets a Txn-Token from {b} acting as Transaction\
             \nToken Service (trust domain {trust}), one per request:\
             \n\n  curl -s -H \"Authorization: Bearer {at1}\" http://{gw}/txn/orders\
             \n\nAnother AT1:\n\n  curl -s -u demo-app:{app} -d grant_type=client_credentials {a}/token\
             \n\nCtrl-C stops everything.\n",
            up = self.upstream,
            admin = self.gateway.admin_addr,
            at1 = self.at1.expose(),
            app = self.app_secret.expose(),
            token = self.cluster.token_file().display(),
            trust = TRUST_DOMAIN,
        )
    }

    /// Drains the gateway, then stops the upstream and both authorities.
    pub(crate) async fn shutdown(self) {
        self.gateway.begin_shutdown();
        self.gateway.wait().await;
        self.upstream_stop.signal();
        let _ = self.upstream_task.await;
        self.authority_b.shutdown().await;
        self.authority_a.shutdown().await;
        self.cluster.remove();
    }
}

/// The demo's stand-in for a cluster: its service account signing key (public half in a
/// JWKS file for authority B) and the gateway's projected token file, re-signed at half-life.
#[derive(Debug)]
struct Cluster {
    dir: std::path::PathBuf,
    key: std::sync::Arc<SigningKey>,
    refresher: Option<JoinHandle<()>>,
}

impl Cluster {
    fn new() -> Result<Self, DemoError> {
        let key = SigningKey::generate().map_err(DemoError::Cluster)?;
        let dir = std::env::temp_dir().join(format!("chaingate-demo-{}", random_id()));
        std::fs::create_dir(&dir)?;
        let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
        std::fs::write(dir.join("cluster-jwks.json"), jwks.to_string())?;
        Ok(Self {
            dir,
            key: std::sync::Arc::new(key),
            refresher: None,
        })
    }

    fn jwks_file(&self) -> std::path::PathBuf {
        self.dir.join("cluster-jwks.json")
    }

    fn token_file(&self) -> std::path::PathBuf {
        self.dir.join("token")
    }

    /// Writes the first token for `audience` and keeps it fresh.
    fn issue_for(&mut self, audience: &str) -> Result<(), DemoError> {
        write_token(&self.key, audience, &self.token_file())?;
        let (key, audience, path) = (self.key.clone(), audience.to_string(), self.token_file());
        self.refresher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(TOKEN_LIFETIME_SECS / 2)).await;
                if let Err(e) = write_token(&key, &audience, &path) {
                    tracing::warn!(error = %e, "demo: cannot refresh the service account token");
                }
            }
        }));
        Ok(())
    }

    fn remove(self) {
        if let Some(refresher) = self.refresher {
            refresher.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A projected-service-account-shaped token, written whole and renamed into place.
fn write_token(key: &SigningKey, audience: &str, path: &std::path::Path) -> Result<(), DemoError> {
    let now = now_secs();
    let claims = serde_json::json!({
        "iss": CLUSTER_ISSUER, "sub": SERVICE_ACCOUNT, "aud": [audience],
        "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME_SECS, "jti": random_id(),
        "kubernetes.io": { "namespace": "demo", "serviceaccount": { "name": "chaingate" } },
    });
    let token = key.sign("JWT", &claims).map_err(DemoError::Cluster)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn random_secret() -> Secret {
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// client_credentials at authority A.
async fn first_token(issuer: &str, app_secret: &Secret) -> Result<Secret, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("demo-app:{}", app_secret.expose()));
    let request = Request::post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    json["access_token"]
        .as_str()
        .map(Secret::new)
        .ok_or_else(|| "no access_token in the answer".to_string())
}

/// An upstream that answers with the (unverified) claims of the bearer token it received.
async fn echo_upstream() -> std::io::Result<(SocketAddr, drain::Signal, JoinHandle<()>)> {
    let listener = serve::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = drain::channel();
    let limits = ServeLimits {
        handshake_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(1),
        max_connections: 1024,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let task = tokio::spawn(serve::serve(
        listener,
        None,
        builder,
        limits,
        stopped,
        |request, _peer| async move { echo(&request) },
    ));
    Ok((addr, stop, task))
}

fn echo(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let claims = jwt_claims(bearer);
    let txn_claims = jwt_claims(
        request
            .headers()
            .get("txn-token")
            .and_then(|v| v.to_str().ok()),
    );
    let mut body = serde_json::json!({
        "upstream": "chaingate demo echo",
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "x_forwarded_for": request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        "received_token_claims": claims,
    });
    if !txn_claims.is_null() {
        body["received_txn_token_claims"] = txn_claims;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The unverified claims of a JWT, or null.
fn jwt_claims(token: Option<&str>) -> serde_json::Value {
    token
        .and_then(|token| token.split('.').nth(1))
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .unwrap_or(serde_json::Value::Null)
}
