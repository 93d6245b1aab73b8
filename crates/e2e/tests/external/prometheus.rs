//! The monitoring artifacts in a real Prometheus (Debian's `prometheus` server) scraping a live
//! gateway: every PromQL expression of `deploy/monitoring/rules.yaml` and every query of
//! `deploy/monitoring/grafana-dashboard.json` must evaluate on the server, the dashboard's core
//! panels must have data, and a token server that goes down must fire the exchange-failure
//! alerts. promtool (deploy/validate.sh) parses and unit-tests the same PromQL against synthetic
//! series; this runs it against the series chaingate really exports, through a real scrape.

use chaingate_test_support as support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

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

// === the Prometheus server ===

/// Installs Debian's prometheus when the machine has none (.ci/run does it beforehand).
fn ensure_installed() {
    if Command::new("prometheus").arg("--version").output().is_ok() {
        return;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = [
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "prometheus",
    ];
    assert!(
        apt(&install) || (apt(&["update", "-qq"]) && apt(&install)),
        "the Prometheus server is not installed and apt-get could not install it \
         (Debian package `prometheus`)"
    );
}

/// One `prometheus` process on loopback with its own data directory, killed on drop.
struct Prometheus {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Prometheus {
    /// Scrapes chaingate's admin listener `target` every [`INTERVAL`] with `rules` loaded.
    async fn start(target: SocketAddr, rules: &str) -> Self {
        ensure_installed();
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("rules.yaml");
        std::fs::write(&rules_file, rules).unwrap();
        let interval = format!("{}s", INTERVAL.as_secs());
        let config = format!(
            r#"global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
rule_files:
  - {rules_file:?}
scrape_configs:
  - job_name: chaingate
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
        labels:
          namespace: {NAMESPACE}
          pod: {POD}
          container: chaingate
"#
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        // Another test may take the reserved port between its release and prometheus' bind.
        for _ in 0..10 {
            let reserved = ReservedPort::new();
            server.addr = reserved.addr;
            drop(reserved);
            if server.spawn(&config_file).await {
                return server;
            }
        }
        panic!("prometheus did not start:\n{}", server.log());
    }

    /// Starts the process and waits until it is ready; false if it exited (a taken port).
    async fn spawn(&mut self, config: &Path) -> bool {
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if try_get(self.addr, "/-/ready")
                .await
                .is_some_and(|(status, _)| status == 200)
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("prometheus was not ready within 30s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the HTTP API; the `data` of a `status: success` answer, or why not.
    async fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = try_get(self.addr, path)
            .await
            .ok_or_else(|| format!("{path}: prometheus does not answer"))?;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("{path}: {status}, {e}: {body}"))?;
        match json["status"].as_str() {
            Some("success") => Ok(json["data"].clone()),
            _ => Err(format!("{path}: {status}: {body}")),
        }
    }

    /// An instant query's result vector (or scalar/string answer), or the server's error.
    async fn query(&self, promql: &str) -> Result<Value, String> {
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let data = self.api(&format!("/api/v1/query?query={encoded}")).await?;
        Ok(data["result"].clone())
    }

    /// The loaded rules, flattened over their groups.
    async fn rules(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/rules").await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// When the rule groups were last evaluated (changes with every evaluation).
    async fn last_evaluations(&self) -> Result<Vec<String>, String> {
        let data = self.api("/api/v1/rules").await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["lastEvaluation"].to_string())
            .collect())
    }

    /// Active alerts (pending or firing).
    async fn alerts(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }
}

/// `GET http://addr/path` that reports a refused or broken connection as `None` instead of
/// failing the test (the server may not be up yet).
async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt as _;
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client().request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` until it yields `Ok`, at most [`DEADLINE`]; the panic shows the last `Err`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {DEADLINE:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

// === the token server, cut at will ===

/// A TCP relay in front of the token server. Dropping it closes its port and every connection
/// through it, so the gateway meets a token server that is down (connection refused, reset),
/// not one that answers errors.
struct Cuttable {
    addr: SocketAddr,
    relay: JoinHandle<()>,
}

impl Cuttable {
    async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = tokio::spawn(async move {
            // Owned by this task: aborting it drops the listener and aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, relay }
    }

    /// Takes the token server down; returns once the port is closed.
    async fn cut(mut self) {
        self.relay.abort();
        let _ = (&mut self.relay).await;
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Callers while the test runs: every round one request with a new caller token (a cache miss,
/// so an exchange) and one with a steady token (a cache hit once exchanged). Bounded in time
/// and count; stops on drop.
struct Traffic(JoinHandle<()>);

impl Traffic {
    fn start(gateway: SocketAddr) -> Self {
        Self(tokio::spawn(async move {
            for round in 0..2_000u32 {
                let fresh = format!("prometheus-caller-{round}");
                get(gateway, &format!("/invoices/{round}"), Some(&fresh)).await;
                get(
                    gateway,
                    "/invoices/steady",
                    Some("prometheus-caller-steady"),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === the artifacts ===

/// A Prometheus duration (`90s`, `5m`, `1h30m`), in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Some(total)
}

fn shortened_duration(text: &str) -> Option<String> {
    let ms = duration_ms(text)? / u64::from(SPEEDUP);
    Some(if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    })
}

/// `rules` with every `for:` and every range window (`[5m]`) divided by [`SPEEDUP`], and how
/// many it changed. The shipped thresholds are minutes to hours: at their length the alerts
/// could not fire within a test.
fn shortened(rules: &str) -> (String, usize) {
    let mut changed = 0;
    let mut out = String::new();
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("for:") {
            let short = shortened_duration(value.trim())
                .unwrap_or_else(|| panic!("`{line}`: not a Prometheus duration"));
            out += &format!("{}for: {short}\n", &line[..line.len() - trimmed.len()]);
            changed += 1;
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            out += &rest[..=open];
            rest = &rest[open + 1..];
            let window = rest.find(']').map(|close| &rest[..close]);
            if let Some(short) = window.and_then(shortened_duration) {
                out += &short;
                rest = &rest[window.unwrap().len()..];
                changed += 1;
            }
        }
        out += rest;
        out.push('\n');
    }
    (out, changed)
}

/// `(rule name, expr)` for every rule of a Prometheus rule file, as the file spells them:
/// `- alert:` / `- record:` names, `expr:` as a block scalar (`|`, `>`) or a plain one-liner,
/// the forms the shipped file uses. The caller checks the count against what the server
/// loaded, so a form this misses cannot go unnoticed.
fn rule_exprs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut name = String::new();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(n) = item
            .strip_prefix("alert:")
            .or_else(|| item.strip_prefix("record:"))
        {
            name = n.trim().to_string();
        }
        let Some(value) = trimmed.strip_prefix("expr:").map(str::trim) else {
            continue;
        };
        let expr = if value.starts_with('|') || value.starts_with('>') {
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            value.trim_matches(['"', '\'']).to_string()
        };
        exprs.push((name.clone(), expr.trim().to_string()));
    }
    exprs
}

/// Every panel query of the dashboard (rows' nested panels too), with its panel title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `expr` as Grafana would send it with namespace and pod picked (the test's target labels)
/// and every other variable on "All" (its `allValue`). Grafana's `$__rate_interval` is
/// max(4 × scrape interval, `$__interval` + scrape interval), with `$__interval` the scrape
/// interval on short ranges: 4 × [`INTERVAL`].
fn concrete(expr: &str, all_values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out += &rest[..at];
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let start = usize::from(braced);
        let len = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start);
        let name = &rest[start..start + len];
        rest = &rest[start + len + usize::from(braced)..];
        let interval = INTERVAL.as_secs();
        out += &match name {
            "__rate_interval" => format!("{}s", 4 * interval),
            "__interval" => format!("{interval}s"),
            "namespace" => NAMESPACE.to_string(),
            "pod" => POD.to_string(),
            other => all_values.get(other).cloned().unwrap_or_else(|| {
                panic!("dashboard variable ${other} in `{expr}` has no allValue")
            }),
        };
    }
    out + rest
}

// === the test ===

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

#[test]
fn durations_are_shortened_in_for_and_range_windows_only() {
    let (text, changed) = shortened(
        "    for: 10m\n  expr: rate(x{a=~\"[0-9]\"}[5m]) / rate(y[1h30m]) > 0\n  for: 2h\n",
    );
    assert_eq!(
        text,
        "    for: 10s\n  expr: rate(x{a=~\"[0-9]\"}[5s]) / rate(y[90s]) > 0\n  for: 120s\n"
    );
    assert_eq!(changed, 4);
    assert_eq!(shortened_duration("30s").as_deref(), Some("500ms"));
    assert_eq!(duration_ms("5x"), None);
}

#[test]
fn rule_expressions_are_read_as_the_file_spells_them() {
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(x)\n            > 1\n        for: 5m\n      - record: r:b\n        expr: \"up == 1\"\n";
    assert_eq!(
        rule_exprs(rules),
        [
            ("A".to_string(), "sum(x)\n> 1".to_string()),
            ("r:b".to_string(), "up == 1".to_string()),
        ]
    );
}

#[test]
fn dashboard_variables_become_concrete_promql() {
    let all = BTreeMap::from([("route".to_string(), ".*".to_string())]);
    assert_eq!(
        concrete(
            r#"rate(m{namespace=~"$namespace", pod=~"${pod}", route=~"$route"}[$__rate_interval])"#,
            &all
        ),
        format!(r#"rate(m{{namespace=~"{NAMESPACE}", pod=~"{POD}", route=~".*"}}[4s])"#)
    );
}
