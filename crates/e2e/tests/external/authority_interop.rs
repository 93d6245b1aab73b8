//! Interop: the authority against oauth4webapi (crates/e2e/interop/authority.mjs, run with node),
//! and the gateway as an RFC 9728 protected resource read by oauth4webapi (resource.mjs).
//!
//! The test installs the pinned npm packages itself (`npm ci --prefix crates/e2e/interop`) when they
//! are missing, so `cargo test` on a fresh machine with Node needs nothing else.

use chaingate_test_support as support;

use chaingate_authority::{spawn, AuthorityConfig};

const DOMAIN_A: &str = r#"
listen = "127.0.0.1:0"
default_audience = "urn:a:gateway"

[[clients]]
client_id = "app"
client_secret = "app-secret"
grants = ["client_credentials"]
scope = "a:read"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth4webapi_discovers_and_runs_client_credentials_and_token_exchange() {
    let dir = support::npm_packages("interop", "oauth4webapi");
    let a = spawn(AuthorityConfig::from_toml(DOMAIN_A).unwrap())
        .await
        .unwrap();
    let b_config = format!(
        r#"
listen = "127.0.0.1:0"
default_audience = "urn:b:api"

[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["token-exchange", "chain"]
scope = "b:read"

[[trusted_issuers]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
audiences = ["urn:a:gateway"]
scope_map = {{ "a:read" = "b:read" }}
"#,
        a = a.issuer()
    );
    let b = spawn(AuthorityConfig::from_toml(&b_config).unwrap())
        .await
        .unwrap();

    passes(
        tokio::process::Command::new("node")
            .arg(dir.join("authority.mjs"))
            .args(["--issuer", b.issuer()])
            .args(["--client-id", "gateway", "--client-secret", "gw-secret"])
            .args(["--audience", "urn:b:api"])
            .args(["--subject-issuer", a.issuer()])
            .args([
                "--subject-client-id",
                "app",
                "--subject-client-secret",
                "app-secret",
            ])
            .args(["--subject-audience", "urn:a:gateway"]),
    )
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

/// chaingate as an RFC 9728 protected resource, read by oauth4webapi the way an MCP client
/// starts (crates/e2e/interop/resource.mjs): the challenge's `resource_metadata`, the document
/// checked against the resource identifier, the authorization server it names, a token from
/// there, and the call through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth4webapi_walks_the_mcp_flow_through_the_gateway() {
    let dir = support::npm_packages("interop", "oauth4webapi");
    let domains = support::authority::Domains::start().await;
    let upstream = support::Upstream::start().await;
    // The identifier names the gateway's own address, so the client reaches it by the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let toml = format!(
        r#"
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:0"

[protected_resource]
resource = "{resource}"
authorization_servers = ["{a}"]
scopes_supported = ["a:read"]

[domains.billing]
token_endpoint = "{b}/token"
grant = "chain"
client_id = "gateway"
client_secret = "gw-secret"
auth_method = "client_secret_basic"
allow_insecure_http = true
scope = "b:read"

[[routes]]
path_prefix = "/"
upstream = "{up}"
domain = "billing"
"#,
        a = domains.a.issuer(),
        b = domains.b.issuer(),
        up = upstream.url(),
    );
    let gw = support::gateway(&toml).await;
    passes(
        tokio::process::Command::new("node")
            .arg(dir.join("resource.mjs"))
            .args(["--resource", &resource])
            .args(["--client-id", "app", "--client-secret", "app-secret"])
            .args(["--scope", "a:read"]),
    )
    .await;
    assert_eq!(
        upstream.received().len(),
        1,
        "only the call with A's token went through"
    );
    gw.begin_shutdown();
}

/// Runs a prepared `node` script: it must exit 0 within 60 s and report its checks passed.
async fn passes(command: &mut tokio::process::Command) {
    let output = command.kill_on_drop(true).output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("node did not finish within 60s")
        .expect("cannot run `node` (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "interop script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}
