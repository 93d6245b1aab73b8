//! The deploy artifacts against the real gateway.
//!
//! - Every `chaingate_*` metric named in `deploy/monitoring/` (alert rules, rule tests,
//!   PrometheusRule, PodMonitor, Grafana dashboard) must exist in a real `/metrics` scrape, so a
//!   renamed metric cannot silently blank a dashboard or an alert. The scrape is saved to
//!   `<target dir>/chaingate-metrics.txt` for `promtool check metrics` (deploy/validate.sh).
//!   A name counts only when the scrape has *samples* of it, not merely a `# HELP`/`# TYPE`
//!   declaration: every family is registered at start whether or not its feature is configured,
//!   so a declaration proves neither the label set the rules select on nor that the feature
//!   produces it. The gateway below therefore configures each feature the artifacts watch
//!   (self-registration, `response_metadata = "verify"`, Reciprocal OAuth, incremental scopes)
//!   and drives it into the series the alerts fire on.
//! - The kustomize sample `chaingate.toml` must load, bind the ports the manifests name, and
//!   drain within the pod's grace period.

use chaingate_test_support as support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// Metric names the deploy artifacts reference before chaingate exports them. Every entry
/// needs a reason; the test fails once an entry shows up in the scrape, so remove it then.
const NOT_YET_IMPLEMENTED: &[&str] = &[];

const GOOD: &str = "deploy-caller-token-ok";
const REJECTED: &str = "deploy-caller-token-rejected";
const FAILING: &str = "deploy-caller-token-server-error";
/// The token server answers this caller's exchange with a Reciprocal OAuth request.
const RECIPROCAL: &str = "deploy-caller-token-reciprocal";

fn repo() -> &'static Path {
    chaingate_test_support::workspace_root()
}

/// `$CARGO_TARGET_DIR` (relative to the package root when relative), else `target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo().join(dir),
        _ => repo().join("target"),
    }
}

/// Every `chaingate_[a-z0-9_]+` token in `text` that starts a word.
pub(super) fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "chaingate_";
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(PREFIX) {
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if !starts_word {
            continue;
        }
        let len = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len() - at);
        let name = text[at..at + len].trim_end_matches('_');
        if name.len() > PREFIX.len() {
            names.insert(name.to_string());
        }
    }
    names
}

/// Metric names referenced by the monitoring artifacts, with the file naming each first.
fn referenced_names() -> Vec<(String, String)> {
    let dir = repo().join("deploy/monitoring");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in metric_names(&text) {
            if seen.insert(name.clone()) {
                let shown = file.strip_prefix(repo()).unwrap_or(&file).display();
                names.push((name, shown.to_string()));
            }
        }
    }
    names
}

/// What a scrape exports: metric family names (`# TYPE` lines; OpenMetrics names counters
/// without `_total`) and the names on sample lines.
struct Scrape {
    families: BTreeSet<String>,
    samples: BTreeSet<String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut families = BTreeSet::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some(name) = rest.split(' ').next() {
                    families.insert(name.to_string());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_string());
            }
        }
        Self { families, samples }
    }

    /// Whether the scrape has samples of `name`: `name` is a sample name, or a family name
    /// (as a description may give it) whose samples carry a suffix. A family that is only
    /// declared (`# HELP`/`# TYPE` and no sample) does not count; see the module docs.
    fn exports(&self, name: &str) -> bool {
        self.samples.contains(name)
            || ["_total", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .any(|suffix| self.samples.contains(&format!("{name}{suffix}")))
    }

    /// Declared by a `# TYPE` line (with or without the sample suffix), for the error message.
    fn declares(&self, name: &str) -> bool {
        self.families.contains(name)
            || ["_total", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .any(|base| self.families.contains(base))
    }
}

/// A JWT-shaped caller token (chaingate reads `sub` for Reciprocal OAuth; nobody checks the
/// signature here).
fn jwt_shaped(sub: &str) -> String {
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"ES256","typ":"at+jwt"}"#),
        b64(&format!(r#"{{"sub":"{sub}","jti":"1"}}"#))
    )
}

/// An RFC 8414 discovery document naming its own `/token`, whose token responses carry no
/// `Link` metadata: a `response_metadata = "verify"` domain refuses them (`missing`, 502).
async fn issuer_without_response_metadata() -> String {
    use bytes::Bytes;
    use http::Response;
    use http_body_util::Full;
    let addr = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let issuer = format!("http://{}", req.headers()["host"].to_str().unwrap());
        let body = if req.uri().path() == "/.well-known/oauth-authorization-server" {
            format!(r#"{{"issuer":"{issuer}","token_endpoint":"{issuer}/token"}}"#)
        } else {
            r#"{"access_token":"at2-meta","token_type":"Bearer","expires_in":300}"#.to_string()
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    })
    .await;
    format!("http://{addr}")
}

/// Polls `path` until it answers `status` (discovery and background work take a moment).
async fn until_status(addr: std::net::SocketAddr, path: &str, token: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = get(addr, path, Some(token)).await;
        if answer.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}; last {}: {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the scrape until `series` is above zero; returns the scrape.
async fn until_positive(admin: std::net::SocketAddr, series: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = get(admin, "/metrics", None).await.body;
        if sample(&text, series).is_some_and(|v| v > 0.0) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never rose above zero:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Domains and routes for the features the seed-draft alerts and panels watch, each set up so
/// that the series the alerts fire on exist (`config()` puts this before its default route, and
/// the first matching prefix wins).
/// - `partner`: self-registration against a closed port, so `chaingate_registered` stays 0,
///   `failed` counts up and its requests get 503 (ChaingateSelfRegistrationMissing/Failing).
/// - `verified`: `response_metadata = "verify"` against an issuer that sends no links
///   (`chaingate_response_metadata_refusals_total{reason="missing"}`, 502).
/// - `peer`: Reciprocal OAuth with party A's code endpoint down (`code_failed`).
/// - `catalog`: `scope_strategy = "incremental"` with two routes of different scopes
///   (`chaingate_scope_upgrades_total`).
fn seed_draft_features(
    token_url: &str,
    upstream: &str,
    issuer: &str,
    nowhere: &str,
    files: &Path,
) -> String {
    let iat = files.join("iat");
    std::fs::write(&iat, "deploy-initial-access-token\n").unwrap();
    let state = files.join("partner.json");
    format!(
        r#"
[domains.partner]
token_endpoint = "{nowhere}/token"
grant = "chain"
allow_insecure_http = true
timeout = "500ms"

[domains.partner.registration]
endpoint = "{nowhere}/register"
initial_access_token_file = {iat:?}
state_file = {state:?}
client_name = "chaingate deploy test"

[domains.verified]
issuer = "{issuer}"
grant = "chain"
client_id = "gateway-a"
client_secret = "gateway-secret-value"
allow_insecure_http = true
timeout = "500ms"
response_metadata = "verify"

[domains.peer]
token_endpoint = "{token_url}"
grant = "chain"
client_id = "gateway-a"
client_secret = "gateway-secret-value"
allow_insecure_http = true
timeout = "500ms"

[domains.peer.reciprocal]
code_endpoint = "{nowhere}/reciprocal/code"
recipient = "peer-at-a"
client_id = "agent-at-a"
client_secret = "agent-secret"
scopes = ["calendar.read"]
allow_insecure_http = true
timeout = "500ms"

[domains.catalog]
token_endpoint = "{token_url}"
grant = "chain"
client_id = "gateway-a"
client_secret = "gateway-secret-value"
allow_insecure_http = true
timeout = "500ms"
scope_strategy = "incremental"

[[routes]]
name = "partner"
path_prefix = "/partner/"
upstream = "{upstream}"
domain = "partner"

[[routes]]
name = "verified"
path_prefix = "/verified/"
upstream = "{upstream}"
domain = "verified"
resource_uri = "https://api.example"

[[routes]]
name = "peer"
path_prefix = "/peer/"
upstream = "{upstream}"
domain = "peer"

[[routes]]
name = "catalog-read"
path_prefix = "/catalog/read"
upstream = "{upstream}"
domain = "catalog"
scope = "catalog.read"

[[routes]]
name = "catalog-write"
path_prefix = "/catalog/write"
upstream = "{upstream}"
domain = "catalog"
scope = "catalog.write"
"#,
        iat = iat.display().to_string(),
        state = state.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_deploy_artifacts_use_is_exported() {
    let sts = TokenServer::scripted(|n, request| match request.param("oauth_token") {
        // outcome="error": the token server fails; the caller gets 503.
        Some(FAILING) => Reply::error(500, "server_error"),
        // outcome="rejected": the token server refuses AT1; the caller gets 401.
        Some(REJECTED) => Reply::error(400, "invalid_grant"),
        // The token response asks for a token back (Reciprocal OAuth, domain `peer`).
        Some(token) if token == jwt_shaped(RECIPROCAL) => Reply::raw(
            200,
            &format!(
                r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":300,"reciprocal":"calendar.read"}}"#
            ),
        ),
        _ => Reply::issue(n, Some(300)),
    })
    .await;
    let upstream = Upstream::start().await;
    let issuer = issuer_without_response_metadata().await;
    let nowhere = format!("http://{}", closed_port().await);
    let files = tempfile::tempdir().unwrap();
    let extra = seed_draft_features(&sts.url(), &upstream.url(), &issuer, &nowhere, files.path());
    let gw = gateway(&config(&sts.url(), &upstream.url(), &extra)).await;

    // A miss (exchange issued), then a hit, both 200.
    assert_eq!(get(gw.addr, "/invoices/1", Some(GOOD)).await.status, 200);
    assert_eq!(get(gw.addr, "/invoices/2", Some(GOOD)).await.status, 200);
    // No token: 401 without an exchange.
    assert_eq!(get(gw.addr, "/invoices/3", None).await.status, 401);
    // Token refused by the token server: 401.
    assert_eq!(
        get(gw.addr, "/invoices/4", Some(REJECTED)).await.status,
        401
    );
    // Token server error: 503.
    assert_eq!(get(gw.addr, "/invoices/5", Some(FAILING)).await.status, 503);

    // Self-registration failing: no credentials, 503, and `failed` counted.
    until_positive(
        gw.admin_addr,
        r#"chaingate_registrations_total{domain="partner",outcome="failed"}"#,
    )
    .await;
    assert_eq!(get(gw.addr, "/partner/1", Some(GOOD)).await.status, 503);
    // A token response without ruri/duri links: refused with 502 once discovery is done.
    until_status(gw.addr, "/verified/1", GOOD, 502).await;
    // Reciprocal OAuth: the caller is served, the background delivery fails at party A.
    let reciprocal = jwt_shaped(RECIPROCAL);
    assert_eq!(get(gw.addr, "/peer/1", Some(&reciprocal)).await.status, 200);
    until_positive(
        gw.admin_addr,
        r#"chaingate_reciprocal_deliveries_total{domain="peer",outcome="code_failed"}"#,
    )
    .await;
    // Incremental scopes: the second route's scope grows the caller's grant.
    assert_eq!(get(gw.addr, "/catalog/read", Some(GOOD)).await.status, 200);
    assert_eq!(get(gw.addr, "/catalog/write", Some(GOOD)).await.status, 200);

    let answer = get(gw.admin_addr, "/metrics", None).await;
    assert_eq!(answer.status, 200);
    let text = answer.body;

    let out = target_dir().join("chaingate-metrics.txt");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    eprintln!("scrape written to {}", out.display());

    // The requests above produced every series the alerts and panels are about.
    for series in [
        r#"chaingate_requests_total{route="default",code="200"}"#,
        r#"chaingate_requests_total{route="default",code="401"}"#,
        r#"chaingate_requests_total{route="default",code="503"}"#,
        r#"chaingate_request_duration_seconds_count{route="default"}"#,
        r#"chaingate_token_exchanges_total{domain="billing",outcome="issued"}"#,
        r#"chaingate_token_exchanges_total{domain="billing",outcome="rejected"}"#,
        r#"chaingate_token_exchanges_total{domain="billing",outcome="error"}"#,
        r#"chaingate_token_exchange_duration_seconds_count{domain="billing"}"#,
        r#"chaingate_token_cache_lookups_total{domain="billing",result="hit"}"#,
        r#"chaingate_token_cache_lookups_total{domain="billing",result="miss"}"#,
        r#"chaingate_token_cache_entries{domain="billing"}"#,
        r#"chaingate_registrations_total{domain="partner",outcome="failed"}"#,
        r#"chaingate_response_metadata_refusals_total{domain="verified",reason="missing"}"#,
        r#"chaingate_reciprocal_deliveries_total{domain="peer",outcome="code_failed"}"#,
        r#"chaingate_scope_upgrades_total{domain="catalog"}"#,
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series} missing or zero in the scrape:\n{text}"
        );
    }
    // What ChaingateSelfRegistrationMissing fires on; only registering domains have the gauge.
    assert_eq!(
        sample(&text, r#"chaingate_registered{domain="partner"}"#),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains(r#"chaingate_registered{domain="billing"}"#));

    let scrape = Scrape::parse(&text);
    let referenced = referenced_names();
    assert!(
        referenced.len() >= 6,
        "found too few metric names in deploy/monitoring: {referenced:?}"
    );
    let mut missing = Vec::new();
    for (name, file) in &referenced {
        let allowed = NOT_YET_IMPLEMENTED.contains(&name.as_str());
        match (scrape.exports(name), allowed) {
            (true, true) => missing.push(format!(
                "{name} is exported now: remove it from NOT_YET_IMPLEMENTED"
            )),
            (false, false) if scrape.declares(name) => missing.push(format!(
                "{name} (used in {file}) is declared but has no samples: drive its feature above"
            )),
            (false, false) => missing.push(format!("{name} (used in {file}) is not exported")),
            _ => {}
        }
    }
    for name in NOT_YET_IMPLEMENTED {
        if !referenced.iter().any(|(n, _)| n == name) {
            missing.push(format!(
                "{name} is in NOT_YET_IMPLEMENTED but no longer referenced: remove it"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{}\nexported families: {:?}",
        missing.join("\n"),
        scrape.families
    );
}

#[test]
fn metric_names_are_found_as_words_only() {
    let text = r#"expr: sum(rate(chaingate_requests_total{code=~"5.."}[5m])) / x_chaingate_no
"chaingate_token_cache_entries{domain=~\"$domain\"}" chaingate_ alone, chaingate_a_b_"#;
    let names: Vec<String> = metric_names(text).into_iter().collect();
    assert_eq!(
        names,
        [
            "chaingate_a_b",
            "chaingate_requests_total",
            "chaingate_token_cache_entries"
        ]
    );
}

#[test]
fn a_declared_family_without_samples_does_not_count_as_exported() {
    let scrape = Scrape::parse(
        "# HELP chaingate_quiet Declared only.\n# TYPE chaingate_quiet counter\n\
         # TYPE chaingate_busy counter\nchaingate_busy_total{domain=\"a\"} 1\n\
         # TYPE chaingate_lat histogram\nchaingate_lat_bucket{le=\"+Inf\"} 1\n",
    );
    assert!(!scrape.exports("chaingate_quiet_total"));
    assert!(scrape.declares("chaingate_quiet_total"));
    assert!(scrape.exports("chaingate_busy_total"));
    assert!(scrape.exports("chaingate_busy"));
    assert!(scrape.exports("chaingate_lat_bucket"));
    assert!(scrape.exports("chaingate_lat"));
    assert!(!scrape.exports("chaingate_lat_count"));
}

/// The first `key: <integer>` value in a YAML file (enough for the plain manifests here).
fn yaml_int(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{key} <integer>` line"))
}

#[test]
fn the_kustomize_config_loads_and_drains_within_the_grace_period() {
    let base = repo().join("deploy/kustomize/base");
    let toml = std::fs::read_to_string(base.join("chaingate.toml")).unwrap();
    let deployment = std::fs::read_to_string(base.join("deployment.yaml")).unwrap();

    // client_secret_file points into the Secret mount; stand a file in for it.
    let secret_path = "/var/run/secrets/chaingate/billing/client-secret";
    assert!(toml.contains(&format!("client_secret_file = \"{secret_path}\"")));
    assert!(deployment.contains("mountPath: /var/run/secrets/chaingate/billing\n"));
    assert!(
        !deployment.contains("subPath"),
        "secrets are mounted as directories"
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "replace-me\n").unwrap();
    let toml = toml.replace(secret_path, &secret.display().to_string());

    let config =
        chaingate_gateway::config::Config::from_toml(&toml).expect("base chaingate.toml loads");
    // The ports the manifests name (chaingate-http 8080, chaingate-admin 9901) on all addresses.
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9901");
    assert!(deployment.contains("name: chaingate-http\n              containerPort: 8080"));
    assert!(deployment.contains("name: chaingate-admin\n              containerPort: 9901"));

    // Grace period > app preStop sleep + drain_delay + drain_timeout (native sidecar order:
    // the app stops first, then chaingate drains).
    let grace = Duration::from_secs(yaml_int(&deployment, "terminationGracePeriodSeconds:"));
    let pre_stop = Duration::from_secs(yaml_int(&deployment, "seconds:"));
    let drain = config.shutdown.drain_delay + config.shutdown.drain_timeout;
    assert!(
        config.shutdown.drain_delay > Duration::ZERO,
        "drain_delay lets endpoint removal propagate"
    );
    assert!(
        pre_stop + drain < grace,
        "preStop {pre_stop:?} + drain {drain:?} must stay below the grace period {grace:?}"
    );
}
