//! Debian's `redis-server` for the shared-cache tests: installed if missing, started on loopback
//! on a free port, stopped by PID (and on drop).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// Serves TLS only (on `port`), so readiness is a TCP connect, not a PING.
    tls: bool,
    /// A sentinel's config file, removed with the server.
    conf: Option<PathBuf>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(conf) = self.conf.take() {
            let _ = std::fs::remove_file(conf);
        }
    }
}

impl RedisServer {
    /// A fresh server with nothing persisted.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server speaking TLS only, with `pki`'s certificate (for `localhost` and 127.0.0.1).
    pub async fn start_tls(pki: &crate::tls::TestPki) -> Self {
        let path = |p: &std::path::Path| p.display().to_string();
        Self::start_inner(
            &[
                "--tls-cert-file",
                &path(&pki.cert_file),
                "--tls-key-file",
                &path(&pki.key_file),
                "--tls-ca-cert-file",
                &path(&pki.ca_file),
                "--tls-auth-clients",
                "no",
            ],
            true,
        )
        .await
    }

    /// A fresh server with extra `redis-server` arguments (e.g. cluster mode).
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_inner(extra, false).await
    }

    /// A Sentinel monitoring `master` as `service` (quorum 1), once it knows the master.
    pub async fn start_sentinel(master: &RedisServer, service: &str) -> Self {
        let conf = tempfile::NamedTempFile::new()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        // Sentinel rewrites its config file: a fresh one per sentinel, as the first argument.
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {service} 127.0.0.1 {} 1\nsentinel resolve-hostnames no\n",
                master.port
            ),
        )
        .unwrap();
        let path = conf.display().to_string();
        let mut sentinel = Self::start_inner(&[&path, "--sentinel"], false).await;
        sentinel.conf = Some(conf);
        for _ in 0..200 {
            let known = sentinel
                .command(&["SENTINEL", "get-master-addr-by-name", service])
                .await;
            if known.is_some_and(|r| r == "*2") {
                return sentinel;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the sentinel never learned of {service}");
    }

    async fn start_inner(extra: &[&str], tls: bool) -> Self {
        crate::apt::ensure("redis-server", "redis-server");
        let mut dir = tempfile::tempdir().unwrap();
        // A port no other test holds: reserved until just before redis binds it.
        for _ in 0..20 {
            let reserved = super::ReservedPort::new();
            let port = reserved.addr.port();
            drop(reserved);
            let mut server = Self {
                child: None,
                port,
                dir,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                tls,
                conf: None,
            };
            if server.spawn().await {
                return server;
            }
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
        }
        panic!("redis-server did not start");
    }

    async fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let ports: Vec<&str> = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        // A config file (a sentinel's) must come first.
        let (file, extra) = match self.extra.first() {
            Some(first) if !first.starts_with("--") => (Some(first.clone()), &self.extra[1..]),
            _ => (None, &self.extra[..]),
        };
        let child = Command::new("redis-server")
            .args(file)
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        for _ in 0..200 {
            let up = if self.tls {
                tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            } else {
                self.command(&["PING"]).await.is_some_and(|r| r == "+PONG")
            };
            if up {
                return true;
            }
            if let Some(child) = &mut self.child {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.kill();
        false
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (cluster node files live there).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        for _ in 0..40 {
            if self.spawn().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// One command over RESP; the first line of the reply, or None if nothing answered.
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out += &format!("${}\r\n{arg}\r\n", arg.len());
        }
        stream.write_all(out.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some(text.lines().next().unwrap_or("").to_string())
    }
}

/// A Redis Cluster of `n` masters on loopback, slots assigned and the state `ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl RedisCluster {
    pub async fn start(n: usize) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        for _ in 0..200 {
            let mut ok = true;
            for node in &nodes {
                let info = cluster_info(node.port).await;
                ok &= info.contains("cluster_state:ok");
            }
            if ok {
                return Self { nodes };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    /// Every node's URL, as seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

async fn cluster_info(port: u16) -> String {
    let Ok(output) = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .await
    else {
        return String::new();
    };
    String::from_utf8_lossy(&output.stdout).into_owned()
}
