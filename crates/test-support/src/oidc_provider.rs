//! The independent OAuth peer: panva's oidc-provider as domains A and B (crates/e2e/interop/oidc-provider.mjs).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The node process; killed on drop whatever happens to the test.
pub struct Peer {
    child: Child,
    /// B's token endpoint over HTTPS with client certificates, when the config asked for `mtls`.
    pub mtls_token_endpoint: Option<String>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Peer {
    /// SIGTERM, then the script must close its servers and exit 0.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("node still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .expect("node exits within 5s of SIGTERM")
            .unwrap();
        assert!(exit.success(), "node exited with {exit}");
        // The issuers line was the only thing on stdout.
        let rest = self.stdout.next_line().await.unwrap();
        assert_eq!(rest, None, "unexpected stdout line");
    }
}

/// Starts the peer with `config` (client JWKS and secrets); returns it with A's and B's issuers.
pub async fn start_peer(config: &Value) -> (Peer, String, String, tempfile::TempDir) {
    let dir = super::npm_packages("interop", "oidc-provider");
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("peer.json");
    std::fs::write(&config_path, serde_json::to_vec(config).unwrap()).unwrap();

    let mut child = Command::new("node")
        .arg(dir.join("oidc-provider.mjs"))
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run `node` (is Node.js installed?)");
    // The script's log, shown with the test's output.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("[oidc-provider] {line}");
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), stdout.next_line())
        .await
        .expect("the peer prints its issuers within 15s")
        .unwrap()
        .expect("the peer prints one JSON line");
    let issuers: Value = serde_json::from_str(&line).unwrap();
    let a = issuers["a"]["issuer"].as_str().unwrap().to_owned();
    let b = issuers["b"]["issuer"].as_str().unwrap().to_owned();
    assert!(a.starts_with("http://127.0.0.1:"), "{a}");
    assert!(b.starts_with("http://127.0.0.1:"), "{b}");
    let mtls_token_endpoint = issuers["b"]["mtls_token_endpoint"]
        .as_str()
        .map(str::to_owned);
    let peer = Peer {
        child,
        stdout,
        mtls_token_endpoint,
    };
    (peer, a, b, tmp)
}
