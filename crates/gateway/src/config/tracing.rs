//! `[tracing]`: OpenTelemetry traces exported over OTLP/HTTP, validated once here. Absent, no
//! span is made (restart-only, like the log format: the subscriber is built at start).

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::ConfigError;
use chaingate_core::config::duration;

/// `[tracing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTracing {
    /// The OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; spans go to `<base>/v1/traces`
    /// (the OTLP exporter specification's `OTEL_EXPORTER_OTLP_ENDPOINT` rule).
    pub(crate) otlp_endpoint: String,
    #[serde(default = "default_ratio")]
    pub(crate) sample_ratio: f64,
    /// `Name: value` lines sent with every export (a collector's API key): a secret.
    pub(crate) headers_file: Option<PathBuf>,
    #[serde(default = "default_service_name")]
    pub(crate) service_name: String,
    /// PEM roots for an `https://` collector instead of the system's.
    pub(crate) ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    #[serde(default)]
    pub(crate) batch: FileBatch,
}

/// `[tracing.batch]`: the batch span processor's limits.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileBatch {
    pub(crate) max_queue_size: usize,
    pub(crate) max_export_batch_size: usize,
    #[serde(deserialize_with = "duration")]
    pub(crate) scheduled_delay: Duration,
}

// The OpenTelemetry SDK's own defaults (OTEL_BSP_*).
impl Default for FileBatch {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(5),
        }
    }
}

fn default_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "chaingate".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[tracing]`, validated.
#[derive(Clone)]
pub struct TracingSettings {
    /// Where spans are posted: `<otlp_endpoint>/v1/traces`.
    pub traces_url: Uri,
    /// Share of new traces sampled; a caller's `traceparent` decides for its own (parent-based).
    pub sample_ratio: f64,
    /// Sent with every export; may hold credentials, never printed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Roots for an `https://` collector; `None`: the system's.
    pub ca_certs: Option<Vec<CertificateDer<'static>>>,
    /// Deadline of one export request.
    pub timeout: Duration,
    /// Spans held while the collector is slow; past it new spans are dropped, never requests.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// The longest a finished span waits before it is sent.
    pub scheduled_delay: Duration,
}

impl PartialEq for TracingSettings {
    fn eq(&self, other: &Self) -> bool {
        self.traces_url == other.traces_url
            && self.sample_ratio == other.sample_ratio
            && self.headers == other.headers
            && self.service_name == other.service_name
            && self.ca_certs == other.ca_certs
            && self.timeout == other.timeout
            && self.max_queue_size == other.max_queue_size
            && self.max_export_batch_size == other.max_export_batch_size
            && self.scheduled_delay == other.scheduled_delay
    }
}

/// Header values may be API keys: only their names are shown.
impl std::fmt::Debug for TracingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingSettings")
            .field("traces_url", &self.traces_url)
            .field("sample_ratio", &self.sample_ratio)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Validates `[tracing]`.
pub(crate) fn tracing(file: &FileTracing) -> Result<TracingSettings, ConfigError> {
    let key = |field: &str| format!("tracing.{field}");
    let base = file.otlp_endpoint.trim_end_matches('/');
    let traces_url: Uri = format!("{base}/v1/traces").parse().map_err(|_| {
        ConfigError::key(
            key("otlp_endpoint"),
            "not a URL (e.g. http://127.0.0.1:4318)",
        )
    })?;
    if !matches!(traces_url.scheme_str(), Some("http" | "https")) || traces_url.host().is_none() {
        return Err(ConfigError::key(
            key("otlp_endpoint"),
            "an http:// or https:// URL with a host (e.g. http://127.0.0.1:4318)",
        ));
    }
    if !(0.0..=1.0).contains(&file.sample_ratio) {
        return Err(ConfigError::key(
            key("sample_ratio"),
            "a share between 0 and 1 (1.0 samples every new trace)",
        ));
    }
    let headers = match &file.headers_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::key(
                    key("headers_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            parse_headers(&text).map_err(|line| {
                // The line number only: the line may hold a credential.
                ConfigError::key(
                    key("headers_file"),
                    format!("line {line} is not `Name: value`"),
                )
            })?
        }
        None => Vec::new(),
    };
    if file.service_name.trim().is_empty() {
        return Err(ConfigError::key(key("service_name"), "must not be empty"));
    }
    if file.timeout.is_zero() {
        return Err(ConfigError::key(key("timeout"), "must be at least 1ms"));
    }
    let batch = &file.batch;
    if batch.max_queue_size == 0 {
        return Err(ConfigError::key(
            key("batch.max_queue_size"),
            "must be at least 1",
        ));
    }
    if batch.max_export_batch_size == 0 || batch.max_export_batch_size > batch.max_queue_size {
        return Err(ConfigError::key(
            key("batch.max_export_batch_size"),
            "between 1 and batch.max_queue_size",
        ));
    }
    if batch.scheduled_delay.is_zero() {
        return Err(ConfigError::key(
            key("batch.scheduled_delay"),
            "must be at least 1ms",
        ));
    }
    let ca_certs = file
        .ca_file
        .as_deref()
        .map(|path| super::load_certs(&key("ca_file"), path))
        .transpose()?;
    Ok(TracingSettings {
        traces_url,
        sample_ratio: file.sample_ratio,
        headers,
        service_name: file.service_name.clone(),
        ca_certs,
        timeout: file.timeout,
        max_queue_size: batch.max_queue_size,
        max_export_batch_size: batch.max_export_batch_size,
        scheduled_delay: batch.scheduled_delay,
    })
}

/// `Name: value` per line; blank lines and `#` comments skipped. Err: the 1-based bad line.
fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, usize> {
    let mut headers = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').and_then(|(name, value)| {
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let mut value = HeaderValue::from_str(value.trim()).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        });
        headers.push(parsed.ok_or(number + 1)?);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_file_lines() {
        let parsed = parse_headers("# collector\nAuthorization: Basic abc\n\nx-tenant:  t1 \n")
            .expect("valid");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "authorization");
        assert_eq!(parsed[1].1, "t1");
        assert_eq!(parse_headers("ok: 1\nno colon here\n"), Err(2));
        assert_eq!(parse_headers("bad name: 1\n"), Err(1));
    }
}
