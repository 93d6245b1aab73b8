//! Configuration: TOML files parsed into serde structs, validated once into typed values.
//!
//! Everything downstream of [`Config::from_toml`] works with parsed `Uri`s, `SocketAddr`s,
//! `Duration`s, loaded PEMs and secrets; nothing parses configuration again.

mod assertion_file;
mod chaining;
mod client_auth;
mod digest;
mod domain;
mod dpop;
mod env;
mod file;
mod grant;
mod matching;
mod protected_resource;
mod reciprocal;
mod registration;
mod response_metadata;
mod route;
mod route_dpop;
mod scope_strategy;
mod shared_cache;
mod shared_signals;
mod targets;
mod tracing;
mod txn_token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use assertion_file::{AssertionFile, AssertionFileError, AssertionType};
pub(crate) use chaingate_core::config::{load_certs, load_identity, validate_scope};
pub use chaingate_core::config::{
    parse_duration, parse_toml, parse_toml_with_env, read_file, ConfigError, TlsIdentity,
};
pub use chaining::{step_one, Chaining, ChainingProfile};
pub(crate) use client_auth::basic_authorization;
pub use domain::{AssertionAudience, AssertionKey, ClientAuth, Domain, Protection, TokenEndpoint};
pub use dpop::DpopKey;
pub use grant::{Grant, OAuthTokenFormat, TokenExchange, TOKEN_TYPE_PREFIX};
pub use matching::{Conditions, HostMatch};
pub use protected_resource::{ProtectedResource, WELL_KNOWN};
pub use reciprocal::Reciprocal;
pub use registration::Registration;
pub use response_metadata::{origin, ResponseMetadata};
pub(crate) use route::ValidateKeys;
pub use route::{Route, Upstream, Validate};
pub use route_dpop::{InboundDpop, DEFAULT_DPOP_MAX_AGE};
pub use scope_strategy::ScopeStrategy;
pub use shared_cache::{SharedCacheServer, SharedCacheSettings};
pub use shared_signals::SharedSignals;
pub use targets::{ExchangeMode, Targets};
pub use tracing::TracingSettings;
pub use txn_token::{TxnEdge, TxnMode, TxnVerify};

use digest::Digest;
use domain::validate_domain;
use env::config_env;
pub use env::{effective_toml, ENV_PREFIX};
use file::FileConfig;
use route::{validate_route, validate_subject_domains};

/// The validated gateway configuration.
#[derive(Debug)]
pub struct Config {
    /// `listen`: the data port (HTTP/1.1 and HTTP/2; TLS when `[tls]` is set).
    pub listen: SocketAddr,
    /// `admin_listen`: the admin port (`/live`, `/ready`, `/metrics`); keep it off the data port.
    pub admin_listen: SocketAddr,
    /// `[tls]`: the certificate chain and key for inbound TLS; `None`: cleartext.
    pub tls: Option<TlsIdentity>,
    /// `[domains.<name>]`: the downstream OAuth domains, in name order.
    pub domains: Vec<Arc<Domain>>,
    /// `[[routes]]`, in file order: the first whose path prefix matches wins.
    pub routes: Vec<Route>,
    /// `[cache]`: bounds and lifetimes of the per-domain token caches.
    pub cache: CacheSettings,
    /// `[cache.shared]`: the fleet-wide second tier, if configured (restart-only).
    pub shared_cache: Option<SharedCacheSettings>,
    /// `[timeouts]`: deadlines on the inbound and outbound sides.
    pub timeouts: Timeouts,
    /// `[limits]`: caps on concurrency, connections and request sizes.
    pub limits: Limits,
    /// `[shutdown]`: how a SIGTERM drains.
    pub shutdown: ShutdownSettings,
    /// `[log]`: log format and the access log.
    pub log: LogSettings,
    /// `[reload]`: hot reload of the config and the files it names.
    pub reload: ReloadSettings,
    /// `[tracing]`: OpenTelemetry traces over OTLP/HTTP (restart-only); `None`: off.
    pub tracing: Option<TracingSettings>,
    /// `[shared_signals]`: the SSF transmitter whose revocation events evict cached tokens.
    pub shared_signals: Option<SharedSignals>,
    /// Runtime worker threads (restart-only); `None`: the CPUs the process may use.
    pub worker_threads: Option<usize>,
    /// Digest of the text and overrides this config was read from.
    source_digest: [u8; 32],
}

/// Watching the config file (and the files it names) for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// `reload.enabled`: re-read the files and apply changes; `false`: changes need a restart.
    pub enabled: bool,
    /// How often the files are re-read; Kubernetes updates mounted ConfigMaps and Secrets
    /// within about a minute, so a few seconds here costs nothing.
    pub interval: Duration,
}

/// `[cache]`: the token cache, one per domain; every bound applies per domain.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// `cache.max_entries`: tokens kept per domain, at least 1; beyond it the cache evicts.
    pub max_entries: u64,
    /// Upper bound of the cache's memory, tokens and bookkeeping together (approximate).
    pub max_bytes: u64,
    /// How long a token the token server refused stays refused without asking again.
    pub negative_ttl: Duration,
    /// Renew a token in use in the background once this share of its lifetime has passed.
    pub refresh_ahead: Option<f64>,
    /// Subtracted from a token's lifetime so it is never used at the edge of expiry.
    pub expiry_skew: Duration,
    /// Lifetime assumed when a token response has no `expires_in`.
    pub default_ttl: Duration,
}

/// `[timeouts]`: deadlines of the data path (the token endpoint's is per domain).
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// A request body that sends nothing this long while forwarded is cut off.
    pub body_idle: Duration,
    /// An HTTP/1 request head must have arrived within this (restart-only).
    pub header_read: Duration,
    /// Deadline of an inbound TLS handshake (restart-only).
    pub tls_handshake: Duration,
    /// TCP connect to an upstream; past it the caller gets 502.
    pub upstream_connect: Duration,
    /// From sending the request until the upstream's response head; past it the caller gets 504.
    pub upstream_response: Duration,
    /// How long idle keep-alive connections to upstreams and token endpoints are kept.
    pub pool_idle: Duration,
}

/// `[limits]`: overload and size caps on the data port.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once; beyond it 503 with `Retry-After` at once, never a queue.
    pub max_concurrent_requests: usize,
    /// Inbound connections open at once on the data port.
    pub max_connections: usize,
    /// Longer request targets get 414.
    pub max_uri_bytes: usize,
    /// Longer bearer tokens get 400 `invalid_request` before any digest or exchange.
    pub max_token_bytes: usize,
    /// Header fields in an HTTP/1 request; more get 431 (restart-only).
    pub max_headers: usize,
    /// Bytes in a request head (request line and all fields; HTTP/2: the header list); more get
    /// 431 before authentication or exchange (restart-only).
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per inbound connection (restart-only).
    pub max_h2_streams: u32,
    /// `Retry-After` sent with 503s that have no better estimate.
    pub retry_after: Duration,
}

/// `[shutdown]`: the drain after SIGTERM.
#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    /// Time between `/ready` turning 503 and the listener closing, so endpoints can update.
    pub drain_delay: Duration,
    /// How long in-flight requests get to finish before the process exits anyway.
    pub drain_timeout: Duration,
}

/// `log.format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text, one line per event (`"plain"`, the default).
    Plain,
    /// One JSON object per line, for log collectors (`"json"`).
    Json,
}

impl<'de> serde::Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "plain" => Ok(Self::Plain),
            "json" => Ok(Self::Json),
            _ => Err(serde::de::Error::custom("not plain or json")),
        }
    }
}

/// `[log]`: logging (the filter itself comes from `RUST_LOG`).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `log.format` (restart-only).
    pub format: LogFormat,
    /// `log.access_log`: one `chaingate::access` line per request.
    pub access_log: bool,
    /// `log.audit`: one `chaingate::audit` event per token decision.
    pub audit: bool,
    /// `log.access_log_buffer`: bytes of lines gathered before one write; 0 writes each line at
    /// once (restart-only).
    pub access_log_buffer: usize,
    /// `log.access_log_flush`: the longest a line waits in the buffer (restart-only).
    pub access_log_flush: Duration,
}

// === impl Config ===

impl Config {
    /// What `chaingate check` warns about without refusing the config: routes that can never
    /// match because an earlier one takes every request they would.
    pub fn warnings(&self) -> Vec<String> {
        matching::shadowed(&self.routes)
    }

    /// Reads and validates a config file, with `CHAINGATE_*` overrides from `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(&read_file(path)?, env)
    }

    /// Parses and validates a config without environment overrides.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses and validates a config; the one place config text becomes typed values.
    ///
    /// `CHAINGATE_A__B=v` in `env` overrides key `a.b` (see [`parse_toml_with_env`]);
    /// the command-line variables `CHAINGATE_CONFIG` and `CHAINGATE_LOG_FORMAT` are not keys.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<_> = config_env(env).collect();
        let mut source = Digest::new();
        source.part(text.as_bytes());
        for (name, value) in &env {
            source.part(name.as_bytes());
            source.part(value.as_bytes());
        }
        let source_digest = source.finish();
        let file: FileConfig = parse_toml_with_env(text, ENV_PREFIX, env)?;
        let token_endpoint_timeout = file.timeouts.token_endpoint;

        let mut domains = Vec::with_capacity(file.domains.len());
        for (name, domain) in &file.domains {
            domains.push(Arc::new(validate_domain(
                name,
                domain,
                token_endpoint_timeout,
            )?));
        }
        validate_subject_domains(&domains)?;
        chaining::validate_chaining_domains(&domains)?;
        if file.routes.is_empty() {
            return Err(ConfigError::key(
                "routes",
                "at least one [[routes]] entry is required",
            ));
        }
        let mut routes = file
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| validate_route(i, route, &domains))
            .collect::<Result<Vec<_>, _>>()?;
        protected_resource::resolve(file.protected_resource.as_ref(), &file.routes, &mut routes)?;
        let at_least_one = |key: &str, n: usize| match n {
            0 => Err(ConfigError::key(key, "must be at least 1")),
            n => Ok(n),
        };
        let (cache, timeouts, limits) = (&file.cache, &file.timeouts, &file.limits);

        Ok(Self {
            listen: file.listen,
            admin_listen: file.admin_listen,
            tls: file
                .tls
                .as_ref()
                .map(|tls| {
                    load_identity(
                        &tls.cert_file,
                        &tls.key_file,
                        "tls.cert_file",
                        "tls.key_file",
                    )
                })
                .transpose()?,
            domains,
            routes,
            cache: CacheSettings {
                max_entries: match cache.max_entries {
                    0 => return Err(ConfigError::key("cache.max_entries", "must be at least 1")),
                    n => n,
                },
                max_bytes: cache.max_bytes,
                negative_ttl: cache.negative_ttl,
                refresh_ahead: match cache.refresh_ahead {
                    0.0 => None,
                    x if x > 0.0 && x < 1.0 => Some(x),
                    _ => {
                        return Err(ConfigError::key(
                            "cache.refresh_ahead",
                            "a share of the lifetime between 0 and 1 (0 turns it off)",
                        ))
                    }
                },
                expiry_skew: cache.expiry_skew,
                default_ttl: cache.default_ttl,
            },
            shared_cache: cache
                .shared
                .as_ref()
                .map(shared_cache::shared_cache)
                .transpose()?,
            timeouts: Timeouts {
                body_idle: timeouts.body_idle,
                header_read: timeouts.header_read,
                tls_handshake: timeouts.tls_handshake,
                upstream_connect: timeouts.upstream_connect,
                upstream_response: timeouts.upstream_response,
                pool_idle: timeouts.pool_idle,
            },
            limits: Limits {
                max_concurrent_requests: at_least_one(
                    "limits.max_concurrent_requests",
                    limits.max_concurrent_requests,
                )?,
                max_connections: at_least_one("limits.max_connections", limits.max_connections)?,
                max_uri_bytes: limits.max_uri_bytes,
                max_token_bytes: limits.max_token_bytes,
                max_headers: limits.max_headers,
                max_header_bytes: match limits.max_header_bytes {
                    n if (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&n) => n,
                    _ => {
                        return Err(ConfigError::key(
                            "limits.max_header_bytes",
                            format!("between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} bytes"),
                        ))
                    }
                },
                max_h2_streams: limits.max_h2_streams,
                retry_after: limits.retry_after,
            },
            shutdown: ShutdownSettings {
                drain_delay: file.shutdown.drain_delay,
                drain_timeout: file.shutdown.drain_timeout,
            },
            log: LogSettings {
                format: file.log.format,
                access_log: file.log.access_log,
                audit: file.log.audit,
                access_log_buffer: match file.log.access_log_buffer {
                    n if n > MAX_ACCESS_LOG_BUFFER => {
                        return Err(ConfigError::key(
                            "log.access_log_buffer",
                            format!("at most {MAX_ACCESS_LOG_BUFFER} bytes"),
                        ))
                    }
                    n => n,
                },
                access_log_flush: match file.log.access_log_flush {
                    d if d.is_zero() || d > Duration::from_secs(60) => {
                        return Err(ConfigError::key(
                            "log.access_log_flush",
                            "must be between 1ms and 60s",
                        ))
                    }
                    d => d,
                },
            },
            reload: ReloadSettings {
                enabled: file.reload.enabled,
                interval: file.reload.interval,
            },
            tracing: file.tracing.as_ref().map(tracing::tracing).transpose()?,
            shared_signals: file
                .shared_signals
                .as_ref()
                .map(shared_signals::shared_signals)
                .transpose()?,
            worker_threads: match file.worker_threads {
                Some(0) => return Err(ConfigError::key("worker_threads", "must be at least 1")),
                other => other,
            },
            source_digest,
        })
    }
}

/// hyper's smallest HTTP/1 read buffer, which bounds the request head.
const MIN_HEADER_BYTES: usize = 8 * 1024;
/// Past this a head is an attack, not a request (nginx's largest default is 4 × 8 KiB).
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The largest access log batch: past a few MiB a batch only delays lines and holds memory.
const MAX_ACCESS_LOG_BUFFER: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;
