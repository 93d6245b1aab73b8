//! A running `chaingate run` process, as the CLI tests start it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chaingate");

pub(crate) fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chaingate.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A running `chaingate run` process with its log lines collected.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Runs `config_text` with every log level on.
    pub(crate) fn start(config_text: &str) -> Self {
        Self::start_logging(config_text, "trace")
    }

    /// Runs `config_text` with `RUST_LOG` set to `level`.
    pub(crate) fn start_logging(config_text: &str, level: &str) -> Self {
        let (dir, path) = write_config(config_text);
        let mut child = Command::new(BIN)
            .args(["run", "--log-format", "json", "--config"])
            .arg(&path)
            .env("RUST_LOG", level)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("chaingate ready") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = tx.send((
                        v["listen"].as_str().unwrap().parse().unwrap(),
                        v["admin"].as_str().unwrap().parse().unwrap(),
                    ));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (addr, admin) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("chaingate reports ready");
        Self {
            child,
            addr,
            admin,
            logs,
            _dir: dir,
        }
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let step = Duration::from_millis(20);
        for _ in 0..=within.as_millis() / step.as_millis() {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(step);
        }
        panic!("chaingate did not exit within {within:?}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Process {
    /// A field of `/proc/<pid>/status`, in its unit (kB for memory).
    pub(crate) fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// User and system CPU time the process has used, in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        // utime + stime, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}
