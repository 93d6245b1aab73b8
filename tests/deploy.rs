//! The deploy artifacts against the real gateway.
//!
//! - Every `chaingate_*` metric named in `deploy/monitoring/` (alert rules, rule tests,
//!   PrometheusRule, PodMonitor, Grafana dashboard) must exist in a real `/metrics` scrape, so a
//!   renamed metric cannot silently blank a dashboard or an alert. The scrape is saved to
//!   `<target dir>/chaingate-metrics.txt` for `promtool check metrics` (deploy/validate.sh).
//! - The kustomize sample `chaingate.toml` must load, bind the ports the manifests name, and
//!   drain within the pod's grace period.

mod support;

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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `$CARGO_TARGET_DIR` (relative to the package root when relative), else `target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo().join(dir),
        _ => repo().join("target"),
    }
}

/// Every `chaingate_[a-z0-9_]+` token in `text` that starts a word.
fn metric_names(text: &str) -> BTreeSet<String> {
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

    /// Whether `name` is exported: as a sample name, or as a family that a query or a text
    /// may name with or without its sample suffix (`_total`, `_bucket`, `_sum`, `_count`).
    fn exports(&self, name: &str) -> bool {
        if self.samples.contains(name) || self.families.contains(name) {
            return true;
        }
        ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|base| self.families.contains(base))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_deploy_artifacts_use_is_exported() {
    let sts = TokenServer::scripted(|n, request| match request.param("oauth_token") {
        // outcome="error": the token server fails; the caller gets 503.
        Some(FAILING) => Reply::error(500, "server_error"),
        // outcome="rejected": the token server refuses AT1; the caller gets 401.
        Some(REJECTED) => Reply::error(400, "invalid_grant"),
        _ => Reply::issue(n, Some(300)),
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;

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
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series} missing or zero in the scrape:\n{text}"
        );
    }

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

    let config = chaingate::config::Config::from_toml(&toml).expect("base chaingate.toml loads");
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
