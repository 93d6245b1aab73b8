//! The monitoring artifacts in a real Prometheus (Debian's `prometheus` server) scraping a live
//! gateway: every PromQL expression of `deploy/monitoring/rules.yaml` and every query of
//! `deploy/monitoring/grafana-dashboard.json` must evaluate on the server, the dashboard's core
//! panels must have data, and a token server that goes down must fire the exchange-failure
//! alerts. promtool (deploy/validate.sh) parses and unit-tests the same PromQL against synthetic
//! series; this runs it against the series chaingate really exports, through a real scrape.

mod artifacts;
mod server;
mod traffic;

use chaingate_test_support as support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::{config, gateway, TokenServer, Upstream};
use tokio::time::Instant;

use artifacts::{concrete, dashboard_queries, rule_exprs, shortened};
use server::{eventually, Prometheus};
use traffic::{Cuttable, Traffic};

/// Scrape and rule-evaluation interval: short, so that the test sees the rules react within
/// seconds.
const INTERVAL: Duration = Duration::from_secs(1);
/// The shipped rules' `for:` durations and range windows are minutes to hours. The test's copy
/// divides each by this: minutes become seconds, so a `[5m]` window still spans five scrapes
/// (one per [`INTERVAL`]) and every rule keeps its proportions.
const SPEEDUP: u32 = 60;
/// Overall patience for anything the test waits on; events normally take seconds.
const DEADLINE: Duration = Duration::from_secs(90);
/// The target labels the PodMonitor's relabelling gives chaingate's series in a cluster, which
/// the rules aggregate by and the dashboard filters on.
const NAMESPACE: &str = "chaingate-e2e";
const POD: &str = "demo-app-7d4b9c-x2x8q";
/// Families with samples only when a feature this test leaves unconfigured is used (config
/// reloads, self-registration, Reciprocal OAuth, response metadata, incremental scopes; the
/// deploy test drives them). A dashboard query naming one may return an empty result; every
/// other one, on the core families (requests, exchanges, the cache), must show data, so a
/// misspelt metric or label in it fails here.
const FEATURE_FAMILIES: &[&str] = &[
    "chaingate_config_reloads_total",
    "chaingate_registrations_total",
    "chaingate_registered",
    "chaingate_reciprocal_deliveries_total",
    "chaingate_response_metadata_refusals_total",
    "chaingate_scope_upgrades_total",
];
/// The alerts a token-server outage must fire.
const OUTAGE_ALERTS: &[&str] = &[
    "ChaingateTokenServerUnreachable",
    "ChaingateTokenExchangeErrorRatioHigh",
];

fn monitoring(file: &str) -> PathBuf {
    support::workspace_root()
        .join("deploy/monitoring")
        .join(file)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_evaluates_the_rules_and_dashboard_and_fires_on_a_token_server_outage() {
    let sts = TokenServer::start().await;
    let token_server = Cuttable::start(sts.addr).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(
        &format!("http://{}/token", token_server.addr),
        &upstream.url(),
        "",
    ))
    .await;

    let shipped = std::fs::read_to_string(monitoring("rules.yaml")).unwrap();
    let (rules, changed) = shortened(&shipped);
    assert!(
        changed >= 10,
        "shortened only {changed} durations:\n{rules}"
    );
    let prometheus = Prometheus::start(gw.admin_addr, &rules).await;
    let traffic = Traffic::start(gw.addr);
    // Shared borrows for the polling closures' futures.
    let prom = &prometheus;

    // The server loaded every rule of the file, and evaluates them without error.
    let exprs = &rule_exprs(&shipped);
    eventually("every rule loaded and evaluated healthy", || async move {
        let loaded = prom.rules().await?;
        let names: Vec<&str> = loaded.iter().filter_map(|r| r["name"].as_str()).collect();
        let in_file: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
        if names != in_file {
            return Err(format!("loaded {names:?}, the file has {in_file:?}"));
        }
        match loaded.iter().find(|r| r["health"] != "ok") {
            Some(rule) => Err(format!("rule not healthy: {rule}")),
            None => Ok(()),
        }
    })
    .await;

    // Healthy traffic reached Prometheus, the rules were evaluated on it, and no exchange
    // alert is active.
    let issued = &format!(
        r#"rate(chaingate_token_exchanges_total{{namespace="{NAMESPACE}",pod="{POD}",domain="billing",outcome="issued"}}[{}s])"#,
        4 * INTERVAL.as_secs()
    );
    eventually("issued exchanges scraped", || async move {
        let result = prom.query(issued).await?;
        let rate = result[0]["value"][1].as_str().unwrap_or("0");
        match rate.parse::<f64>() {
            Ok(r) if r > 0.0 => Ok(()),
            _ => Err(format!("{issued}: {result}")),
        }
    })
    .await;
    let before = &prom.last_evaluations().await.unwrap();
    eventually("a rule evaluation after the scrape", || async move {
        let now = prom.last_evaluations().await?;
        if now != *before {
            Ok(())
        } else {
            Err(format!("still {now:?}"))
        }
    })
    .await;
    let active = prometheus.alerts().await.unwrap();
    assert!(
        !active
            .iter()
            .any(|a| OUTAGE_ALERTS.contains(&a["labels"]["alertname"].as_str().unwrap_or(""))),
        "exchange alerts active while the token server is up: {active:?}"
    );

    // The token server goes down; new callers need exchanges, which fail.
    token_server.cut().await;
    let cut_at = Instant::now();
    let firing = eventually("the exchange-failure alerts firing", || async move {
        let alerts = prom.alerts().await?;
        let firing: Vec<Value> = alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter(|a| OUTAGE_ALERTS.contains(&a["labels"]["alertname"].as_str().unwrap_or("")))
            .cloned()
            .collect();
        if firing.len() == OUTAGE_ALERTS.len() {
            Ok(firing)
        } else {
            Err(format!("active alerts: {alerts:?}"))
        }
    })
    .await;
    eprintln!(
        "{OUTAGE_ALERTS:?} firing {:?} after the token server went down",
        cut_at.elapsed()
    );
    for alert in &firing {
        let labels = &alert["labels"];
        assert_eq!(labels["domain"], "billing", "{alert}");
        assert_eq!(labels["namespace"], NAMESPACE, "{alert}");
        assert!(labels["severity"].is_string(), "{alert}");
    }

    // Every rule expression, as shipped (original windows), evaluates.
    for (name, expr) in exprs {
        if let Err(e) = prometheus.query(expr).await {
            panic!("rule {name}: `{expr}` does not evaluate: {e}");
        }
    }

    // Every dashboard query evaluates, and those on the core families have data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let all_values: BTreeMap<String, String> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["allValue"].as_str()?.to_string(),
            ))
        })
        .collect();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 8, "too few dashboard queries: {queries:?}");
    let mut with_data = 0;
    for (title, expr) in &queries {
        let promql = &concrete(expr, &all_values);
        let needs_feature = super::deploy::metric_names(expr)
            .iter()
            .any(|name| FEATURE_FAMILIES.contains(&name.as_str()));
        if !needs_feature {
            eventually(
                &format!("panel {title:?}: data for `{promql}`"),
                || async move {
                    let result = prom.query(promql).await?;
                    match result.as_array() {
                        Some(series) if !series.is_empty() => Ok(()),
                        _ => Err(result.to_string()),
                    }
                },
            )
            .await;
            with_data += 1;
        } else if let Err(e) = prom.query(promql).await {
            panic!("panel {title:?}: `{promql}` does not evaluate: {e}");
        }
    }
    assert!(with_data >= 6, "only {with_data} core panel queries");
    drop(traffic);
}
