//! The Prometheus server: installed when missing, one process per test on a free loopback
//! port, and its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{client, ReservedPort};
use tokio::time::Instant;

use super::{support, DEADLINE, INTERVAL, NAMESPACE, POD};

/// One `prometheus` process on loopback with its own data directory, killed on drop.
pub(super) struct Prometheus {
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
    pub(super) async fn start(target: SocketAddr, rules: &str) -> Self {
        support::apt::ensure("prometheus", "prometheus");
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
    pub(super) async fn query(&self, promql: &str) -> Result<Value, String> {
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let data = self.api(&format!("/api/v1/query?query={encoded}")).await?;
        Ok(data["result"].clone())
    }

    /// The loaded rules, flattened over their groups.
    pub(super) async fn rules(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/rules").await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// When the rule groups were last evaluated (changes with every evaluation).
    pub(super) async fn last_evaluations(&self) -> Result<Vec<String>, String> {
        let data = self.api("/api/v1/rules").await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["lastEvaluation"].to_string())
            .collect())
    }

    /// Active alerts (pending or firing).
    pub(super) async fn alerts(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }
}

/// `GET http://addr/path` that reports a refused or broken connection as `None` instead of
/// failing the test (the server may not be up yet).
pub(super) async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
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
pub(super) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
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
