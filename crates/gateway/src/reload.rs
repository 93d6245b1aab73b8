//! Hot reload: the config file and the files it names are re-read periodically; a changed, valid
//! config replaces the running gateway atomically, an invalid one is counted and ignored.
//!
//! Polling (not inotify) because Kubernetes updates mounted ConfigMaps and Secrets by swapping a
//! `..data` symlink, which file watchers easily miss; re-reading a few small files every couple
//! of seconds is cheap and follows every kind of swap. Domains whose settings did not change keep
//! their cached tokens (see `Gateway::new`).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chaingate_core::drain;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::access_log::AccessLog;
use crate::config::{read_file, Config};
use crate::gateway::{Gateway, GatewayMetrics};

/// Where a reloadable config comes from.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The config file, re-read every `reload.interval` (with the files it names).
    pub path: PathBuf,
    /// `CHAINGATE_*` overrides, captured at start (a process's environment does not change).
    pub env: Vec<(String, String)>,
}

pub(crate) struct Reloader {
    pub(crate) source: ReloadSource,
    pub(crate) applied: Config,
    pub(crate) current: Arc<ArcSwap<Gateway>>,
    pub(crate) metrics: GatewayMetrics,
    /// The process's access log, handed to every generation.
    pub(crate) access_log: AccessLog,
    pub(crate) reloads: ReloadMetrics,
}

impl Reloader {
    pub(crate) async fn run(mut self, mut stop: drain::Watch) {
        let interval = self.applied.reload.interval;
        let mut applied_digest = self.applied.digest();
        let mut last_rejected: Option<String> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.signaled() => return,
            }
            let loaded = read_file(&self.source.path).and_then(|text| {
                Config::from_toml_with_env(&text, self.source.env.iter().cloned())
            });
            let next = match loaded {
                Ok(next) => next,
                Err(e) => {
                    let message = e.to_string();
                    // Count and log each distinct bad version once, not every poll.
                    if last_rejected.as_deref() != Some(message.as_str()) {
                        self.reloads.error.inc();
                        tracing::warn!(error = %message, "config reload rejected; the running config stays");
                        last_rejected = Some(message);
                    }
                    continue;
                }
            };
            last_rejected = None;
            let digest = next.digest();
            if digest == applied_digest {
                continue;
            }
            let restart_only = self.applied.restart_only_changes(&next);
            if !restart_only.is_empty() {
                tracing::warn!(keys = ?restart_only, "these keys take effect only at restart; their running values stay");
            }
            let previous = self.current.load_full();
            match Gateway::new(&next, &self.metrics, Some(&previous), &self.access_log) {
                Ok(gateway) => {
                    self.current.store(Arc::new(gateway));
                    self.reloads.success.inc();
                    tracing::info!("config reloaded");
                    self.applied = next;
                    applied_digest = digest;
                }
                Err(e) => {
                    self.reloads.error.inc();
                    tracing::warn!(error = %e, "config reload failed; the running config stays");
                    applied_digest = digest;
                }
            }
        }
    }
}

// === metrics ===

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum ReloadResult {
    Success,
    Error,
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Success => "success",
                Self::Error => "error",
            },
        )
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: ReloadResult,
}

/// `chaingate_config_reloads_total{result="success|error"}`.
#[derive(Debug, Clone)]
pub(crate) struct ReloadMetrics {
    success: Counter,
    error: Counter,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let family = Family::<ResultLabel, Counter>::default();
        registry.register(
            "chaingate_config_reloads",
            "Config reloads, by result (error: invalid config, the running one stays)",
            family.clone(),
        );
        // Both series exist from the start, so an alert on `error` has a baseline.
        Self {
            success: family.get_or_create_owned(&ResultLabel {
                result: ReloadResult::Success,
            }),
            error: family.get_or_create_owned(&ResultLabel {
                result: ReloadResult::Error,
            }),
        }
    }
}
