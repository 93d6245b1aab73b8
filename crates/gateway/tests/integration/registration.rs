//! Gateway self-registration (RFC 7591/7592) with client intermediary metadata, end to end:
//! against the chaingate authority (in process) and against panva's oidc-provider.

use chaingate_test_support as support;
use chaingate_test_support::logs::Logs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};
use http_body_util::Full;
use serde_json::{json, Value};
use support::*;

const IAT: &str = "iat-0123456789abcdef-registration";
const APP_SECRET: &str = "registration-app-secret";

// === authorities ===

/// A: issues the callers' tokens. B: registers the gateway and accepts A's tokens.
struct Authorities {
    a: RunningAuthority,
    b: RunningAuthority,
}

async fn authority_a() -> RunningAuthority {
    authority::spawn(
        AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\ndefault_audience = \"urn:a:gateway\"\n[[clients]]\nclient_id = \"app\"\nclient_secret = \"{APP_SECRET}\"\ngrants = [\"client_credentials\"]\nscope = \"a:read a:write\"\n"
        ))
        .unwrap(),
    )
    .await
    .unwrap()
}

async fn authority_b(listen: &str, a: &str) -> RunningAuthority {
    authority::spawn(
        AuthorityConfig::from_toml(&format!(
            r#"
listen = "{listen}"
default_audience = "urn:b:api"

[registration]
initial_access_tokens = ["{IAT}"]
scope = "b:read b:write"

[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read", "a:write" = "b:write" }}
"#
        ))
        .unwrap(),
    )
    .await
    .unwrap()
}

impl Authorities {
    async fn start() -> Self {
        let a = authority_a().await;
        let b = authority_b("127.0.0.1:0", a.issuer()).await;
        Self { a, b }
    }
}

/// A caller's token from A (client_credentials).
async fn at1(issuer_a: &str) -> String {
    let request = http::Request::post(format!("{issuer_a}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("app:{APP_SECRET}"))),
        )
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials&scope=a:read",
        )))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200, "AT1 from A: {}", answer.body);
    answer.json()["access_token"].as_str().unwrap().to_string()
}

// === gateway ===

struct Files {
    _dir: tempfile::TempDir,
    iat: PathBuf,
    state: PathBuf,
}

impl Files {
    fn new(iat: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            iat: dir.path().join("iat"),
            state: dir.path().join("state").join("b.json"),
            _dir: dir,
        };
        std::fs::create_dir(files.state.parent().unwrap()).unwrap();
        if let Some(token) = iat {
            std::fs::write(&files.iat, format!("{token}\n")).unwrap();
        }
        files
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.state).unwrap()).unwrap()
    }
}

/// `endpoint`: `issuer = ...` or `token_endpoint` + registration `endpoint` lines.
fn gateway_config(
    domain_lines: &str,
    registration_lines: &str,
    files: &Files,
    intermediary: &str,
    upstream: &Upstream,
) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[shutdown]
drain_delay = "0s"
drain_timeout = "5s"

[domains.b]
{domain_lines}
grant = "chain"
auth_method = "client_secret_basic"
allow_insecure_http = true
timeout = "2s"
scope = "b:read"

[domains.b.registration]
{registration_lines}
initial_access_token_file = {iat:?}
state_file = {state:?}
client_name = "chaingate test gateway"
software_id = "chaingate"
end_user_application = {{ name = "Tax Helper", uri = "https://taxhelper.example/", description = "Files your taxes" }}

[[domains.b.registration.intermediaries]]
name = "{intermediary}"
uri = "https://relay.example/"

[[routes]]
name = "b"
path_prefix = "/"
upstream = "{upstream}"
domain = "b"
"#,
        iat = files.iat.display().to_string(),
        state = files.state.display().to_string(),
        upstream = upstream.url(),
    )
}

fn fixed(b: &str) -> (String, String) {
    (
        format!("token_endpoint = \"{b}/token\""),
        format!("endpoint = \"{b}/register\""),
    )
}

async fn ready_status(gw: &chaingate_gateway::Running) -> u16 {
    get(gw.admin_addr, "/ready", None).await.status.as_u16()
}

async fn wait_ready(gw: &chaingate_gateway::Running) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while ready_status(gw).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never became ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn outcome(gw: &chaingate_gateway::Running, outcome: &str) -> f64 {
    let scrape = metrics(gw).await;
    sample(
        &scrape,
        &format!("chaingate_registrations_total{{domain=\"b\",outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn wait_outcome(gw: &chaingate_gateway::Running, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while outcome(gw, name).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no registration outcome {name}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stop(gw: chaingate_gateway::Running) {
    gw.begin_shutdown();
    gw.wait().await;
}

/// RFC 7592 read of the stored registration, as the authority sees it.
async fn read_registration(state: &Value) -> (u16, Value) {
    let request = http::Request::get(state["registration_client_uri"].as_str().unwrap())
        .header(
            "authorization",
            format!(
                "Bearer {}",
                state["registration_access_token"].as_str().unwrap()
            ),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&client(), request).await;
    let body = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status.as_u16(), body)
}

async fn delete_registration(state: &Value) -> u16 {
    let request = http::Request::delete(state["registration_client_uri"].as_str().unwrap())
        .header(
            "authorization",
            format!(
                "Bearer {}",
                state["registration_access_token"].as_str().unwrap()
            ),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(), request).await.status.as_u16()
}

/// The `client_id` claim of the token the upstream received.
fn upstream_client_id(upstream: &Upstream) -> String {
    let received = upstream.received();
    let auth = received.last().unwrap().header("authorization").unwrap();
    let at2 = auth.strip_prefix("Bearer ").unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(at2.split('.').nth(1).unwrap())
        .unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["client_id"].as_str().unwrap().to_string()
}

// === against the chaingate authority ===

#[tokio::test]
async fn the_gateway_registers_at_start_and_serves_with_the_issued_credentials() {
    let logs = Logs::global();
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    // No initial access token yet: registration fails and is retried, re-reading the file.
    let files = Files::new(None);
    let b = auth.b.issuer().to_string();
    let gw = gateway(&gateway_config(
        &format!("issuer = \"{b}\""),
        "",
        &files,
        "Cloud Relay",
        &upstream,
    ))
    .await;
    assert_eq!(ready_status(&gw).await, 503);
    let token = at1(auth.a.issuer()).await;
    let early = get(gw.addr, "/orders", Some(&token)).await;
    assert_eq!(early.status, 503, "{}", early.body);
    assert!(early.header("retry-after").is_some());

    wait_outcome(&gw, "failed").await;
    std::fs::write(&files.iat, IAT).unwrap();
    wait_ready(&gw).await;
    let answer = get(gw.addr, "/orders", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let state = files.state();
    let client_id = state["client_id"].as_str().unwrap().to_string();
    assert_eq!(upstream_client_id(&upstream), client_id);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&files.state)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (status, seen) = read_registration(&state).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["client_name"], "chaingate test gateway");
    assert_eq!(
        seen["grant_types"],
        json!(["http://oauth.net/grant_type/chain"])
    );
    assert_eq!(seen["scope"], "b:read");
    assert_eq!(seen["end_user_application"]["name"], "Tax Helper");
    assert_eq!(
        seen["end_user_application"]["description"],
        "Files your taxes"
    );
    assert_eq!(seen["intermediaries"][0]["name"], "Cloud Relay");
    assert_eq!(seen["intermediaries"][0]["uri"], "https://relay.example/");

    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            "chaingate_registrations_total{domain=\"b\",outcome=\"registered\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &scrape,
            "chaingate_registrations_total{domain=\"b\",outcome=\"failed\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&scrape, "chaingate_registered{domain=\"b\"}"),
        Some(1.0)
    );
    stop(gw).await;

    let logs = logs.text();
    assert!(logs.contains("client registration"), "{logs}");
    assert!(logs.contains(&client_id));
    for secret in [
        IAT,
        state["client_secret"].as_str().unwrap(),
        state["registration_access_token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(!scrape.contains(state["client_secret"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_reuses_the_registration_and_a_changed_intermediary_updates_it() {
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let (domain, registration) = fixed(auth.b.issuer());
    let config = |intermediary: &str| {
        gateway_config(&domain, &registration, &files, intermediary, &upstream)
    };

    let gw = gateway(&config("Relay One")).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "registered").await, 1.0);
    stop(gw).await;
    let first = files.state();

    let gw = gateway(&config("Relay One")).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "reused").await, 1.0);
    assert_eq!(outcome(&gw, "registered").await, 0.0);
    assert_eq!(files.state()["client_id"], first["client_id"]);
    let token = at1(auth.a.issuer()).await;
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    stop(gw).await;

    let gw = gateway(&config("Relay Two")).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "updated").await, 1.0);
    assert_eq!(outcome(&gw, "registered").await, 0.0);
    let state = files.state();
    assert_eq!(state["client_id"], first["client_id"]);
    let (status, seen) = read_registration(&state).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["intermediaries"],
        json!([{ "name": "Relay Two", "uri": "https://relay.example/" }])
    );
    assert_eq!(seen["end_user_application"]["name"], "Tax Helper");
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    assert_eq!(
        upstream_client_id(&upstream),
        first["client_id"].as_str().unwrap()
    );
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_naming_a_deleted_client_leads_to_a_new_registration() {
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let (domain, registration) = fixed(auth.b.issuer());
    let config = gateway_config(&domain, &registration, &files, "Relay", &upstream);
    let gw = gateway(&config).await;
    wait_ready(&gw).await;
    stop(gw).await;
    let old = files.state();
    assert_eq!(delete_registration(&old).await, 204);

    let gw = gateway(&config).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "registered").await, 1.0);
    assert_eq!(outcome(&gw, "reused").await, 0.0);
    let new = files.state();
    assert_ne!(new["client_id"], old["client_id"]);
    let token = at1(auth.a.issuer()).await;
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    assert_eq!(
        upstream_client_id(&upstream),
        new["client_id"].as_str().unwrap()
    );
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_made_at_another_server_is_not_reused() {
    let first = Authorities::start().await;
    let second = Authorities::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let config = |b: &str| {
        let (domain, registration) = fixed(b);
        gateway_config(&domain, &registration, &files, "Relay", &upstream)
    };
    let gw = gateway(&config(first.b.issuer())).await;
    wait_ready(&gw).await;
    stop(gw).await;
    let old = files.state();

    let gw = gateway(&config(second.b.issuer())).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "registered").await, 1.0);
    assert_eq!(outcome(&gw, "reused").await, 0.0);
    let new = files.state();
    assert!(new["registration_client_uri"]
        .as_str()
        .unwrap()
        .starts_with(second.b.issuer()));
    assert_ne!(new["client_id"], old["client_id"]);
    let token = at1(second.a.issuer()).await;
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_on_shutdown_removes_the_registration_and_the_state_file() {
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let (domain, registration) = fixed(auth.b.issuer());
    let registration = format!("{registration}\ndelete_on_shutdown = true");
    let gw = gateway(&gateway_config(
        &domain,
        &registration,
        &files,
        "Relay",
        &upstream,
    ))
    .await;
    wait_ready(&gw).await;
    let state = files.state();
    assert_eq!(read_registration(&state).await.0, 200);
    stop(gw).await;
    assert_eq!(read_registration(&state).await.0, 401);
    assert!(!files.state.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_endpoint_down_at_start_is_retried_until_it_answers() {
    let a = authority_a().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let reserved = ReservedPort::new();
    let b_addr: SocketAddr = reserved.addr;
    let b = format!("http://{b_addr}");
    let (domain, registration) = fixed(&b);
    let gw = gateway(&gateway_config(
        &domain,
        &registration,
        &files,
        "Relay",
        &upstream,
    ))
    .await;
    wait_outcome(&gw, "failed").await;
    assert_eq!(ready_status(&gw).await, 503);
    assert_eq!(get(gw.admin_addr, "/live", None).await.status, 200);

    drop(reserved);
    let b = authority_b(&b_addr.to_string(), a.issuer()).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "registered").await, 1.0);
    let token = at1(a.issuer()).await;
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    stop(gw).await;
    drop(b);
}

#[tokio::test]
async fn a_refused_initial_access_token_keeps_the_gateway_unready_and_out_of_the_logs() {
    let logs = Logs::global();
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    let wrong = "wrong-initial-access-token-value";
    let files = Files::new(Some(wrong));
    let (domain, registration) = fixed(auth.b.issuer());
    let gw = gateway(&gateway_config(
        &domain,
        &registration,
        &files,
        "Relay",
        &upstream,
    ))
    .await;
    wait_outcome(&gw, "failed").await;
    assert_eq!(ready_status(&gw).await, 503);
    assert_eq!(outcome(&gw, "registered").await, 0.0);
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(&scrape, "chaingate_registered{domain=\"b\"}"),
        Some(0.0)
    );
    let token = at1(auth.a.issuer()).await;
    let answer = get(gw.addr, "/x", Some(&token)).await;
    assert_eq!(answer.status, 503);
    assert!(!files.state.exists());
    stop(gw).await;
    let logs = logs.text();
    assert!(logs.contains("client registration failed"), "{logs}");
    assert!(logs.contains("initial access token was refused"), "{logs}");
    assert!(
        !logs.contains(wrong),
        "the initial access token reached the logs"
    );
    assert!(!scrape.contains(wrong));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_changes_an_intermediary_updates_the_registration_without_a_gap() {
    chaingate_core::tls::install_crypto_provider();
    let auth = Authorities::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let (domain, registration) = fixed(auth.b.issuer());
    let config = |intermediary: &str| {
        gateway_config(&domain, &registration, &files, intermediary, &upstream)
            .replace("[shutdown]", "[reload]\ninterval = \"50ms\"\n\n[shutdown]")
    };
    let path = files.state.parent().unwrap().join("chaingate.toml");
    std::fs::write(&path, config("Relay One")).unwrap();
    let gw = chaingate_gateway::spawn_with_reload(
        chaingate_gateway::config::Config::load(&path, std::iter::empty()).unwrap(),
        Some(chaingate_gateway::reload::ReloadSource {
            path: path.clone(),
            env: Vec::new(),
        }),
    )
    .await
    .unwrap();
    wait_ready(&gw).await;
    let client_id = files.state()["client_id"].clone();
    let token = at1(auth.a.issuer()).await;

    std::fs::write(&path, config("Relay Two")).unwrap();
    // Every request is served while the new domain reads back and updates the registration.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while outcome(&gw, "updated").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "never updated");
        let answer = get(gw.addr, "/x", Some(&token)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(ready_status(&gw).await, 200);
    let state = files.state();
    assert_eq!(state["client_id"], client_id);
    let (_, seen) = read_registration(&state).await;
    assert_eq!(seen["intermediaries"][0]["name"], "Relay Two");
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
    stop(gw).await;
}

/// A registration server that issues a secret expiring in 3 s, and does not rotate it on read.
async fn expiring_registrar() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = Arc::new(Mutex::new(String::new()));
    let (log, origin) = (seen.clone(), base.clone());
    let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
        let (log, origin) = (log.clone(), origin.clone());
        async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let origin = origin.lock().unwrap().clone();
            let posts = {
                let mut log = log.lock().unwrap();
                log.push(format!("{} {}", req.method(), req.uri().path()));
                log.iter().filter(|l| l.starts_with("POST")).count()
            };
            let issued = |n: usize, expires: u64| {
                json!({
                    "client_id": format!("c{n}"), "client_secret": format!("s{n}"),
                    "client_secret_expires_at": expires,
                    "registration_access_token": format!("t{n}"),
                    "registration_client_uri": format!("{origin}/register/c{n}"),
                })
            };
            let (status, body) = match (req.method().as_str(), req.uri().path()) {
                ("POST", "/register") if posts == 1 => (201, issued(1, now + 3)),
                ("POST", "/register") => (201, issued(posts, 0)),
                ("GET", "/register/c1") => (200, issued(1, now + 1)),
                _ => (404, json!({})),
            };
            let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            response
        }
    })
    .await;
    *base.lock().unwrap() = format!("http://{addr}");
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_secret_is_renewed_by_a_new_registration_when_a_read_does_not_rotate_it() {
    let (registrar, seen) = expiring_registrar().await;
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let gw = gateway(&gateway_config(
        &format!("token_endpoint = \"{}\"", sts.url()),
        &format!("endpoint = \"{registrar}/register\""),
        &files,
        "Relay",
        &upstream,
    ))
    .await;
    wait_ready(&gw).await;
    let basic =
        |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    assert_eq!(get(gw.addr, "/x", Some("caller-token-1")).await.status, 200);
    assert_eq!(
        sts.requests()[0].authorization.as_deref(),
        Some(basic("c1", "s1").as_str())
    );

    // The renewal reads the registration back; the secret it gets is still expiring, so a new
    // registration replaces it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while outcome(&gw, "registered").await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(files.state()["client_id"], "c2");
    assert!(seen
        .lock()
        .unwrap()
        .contains(&"GET /register/c1".to_string()));
    assert_eq!(get(gw.addr, "/x", Some("caller-token-2")).await.status, 200);
    let last = sts.requests().last().unwrap().authorization.clone();
    assert_eq!(last.as_deref(), Some(basic("c2", "s2").as_str()));
    assert_eq!(ready_status(&gw).await, 200);
    stop(gw).await;
}

// === against oidc-provider ===

#[tokio::test(flavor = "multi_thread")]
async fn registration_works_against_oidc_provider_and_is_read_back_on_restart() {
    let config = json!({
        "client_jwks": { "keys": [] },
        "secrets": { "app": APP_SECRET, "gw-basic": "unused-basic-secret", "gw-post": "unused-post-secret" },
        "registration": { "initial_access_token": IAT },
    });
    let (peer, a, b, _tmp) = oidc_provider::start_peer(&config).await;
    let upstream = Upstream::start().await;
    let files = Files::new(Some(IAT));
    let toml = gateway_config(
        &format!("issuer = \"{b}\""),
        "",
        &files,
        "Cloud Relay",
        &upstream,
    );
    let gw = gateway(&toml).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "registered").await, 1.0);
    let token = at1(&a).await;
    let answer = get(gw.addr, "/orders", Some(&token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let state = files.state();
    assert_eq!(
        upstream_client_id(&upstream),
        state["client_id"].as_str().unwrap()
    );
    let (status, seen) = read_registration(&state).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["intermediaries"][0]["name"], "Cloud Relay");
    assert_eq!(seen["end_user_application"]["name"], "Tax Helper");
    assert_eq!(
        seen["grant_types"],
        json!(["http://oauth.net/grant_type/chain"])
    );
    stop(gw).await;

    // Restart: RFC 7592 read, same client.
    let gw = gateway(&toml).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "reused").await, 1.0);
    assert_eq!(outcome(&gw, "registered").await, 0.0);
    assert_eq!(files.state()["client_id"], state["client_id"]);
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);
    stop(gw).await;

    // A changed intermediary: RFC 7592 update (oidc-provider rotates the registration token).
    let gw = gateway(&toml.replace("Cloud Relay", "Other Relay")).await;
    wait_ready(&gw).await;
    assert_eq!(outcome(&gw, "updated").await, 1.0);
    let updated = files.state();
    assert_eq!(updated["client_id"], state["client_id"]);
    let (status, seen) = read_registration(&updated).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["intermediaries"][0]["name"], "Other Relay");
    assert_eq!(get(gw.addr, "/orders", Some(&token)).await.status, 200);
    stop(gw).await;
    peer.stop().await;
}
