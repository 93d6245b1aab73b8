//! The gateway's config file as written: serde structs, unknown keys rejected. The top-level
//! sections are typed (durations, addresses, enums parsed by serde, the key path in every error)
//! and each holds its defaults in its `Default`; the domain and route tables are validated key by
//! key in `domain.rs` and `route.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use chaingate_core::config::SecretText;
use chaingate_core::config::{duration, listen_addr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(deserialize_with = "listen_addr")]
    pub(crate) listen: SocketAddr,
    #[serde(deserialize_with = "listen_addr")]
    pub(crate) admin_listen: SocketAddr,
    pub(crate) tls: Option<FileTls>,
    #[serde(default)]
    pub(crate) domains: BTreeMap<String, FileDomain>,
    #[serde(default)]
    pub(crate) routes: Vec<FileRoute>,
    #[serde(default)]
    pub(crate) cache: FileCache,
    #[serde(default)]
    pub(crate) timeouts: FileTimeouts,
    #[serde(default)]
    pub(crate) limits: FileLimits,
    #[serde(default)]
    pub(crate) shutdown: FileShutdown,
    #[serde(default)]
    pub(crate) log: FileLog,
    #[serde(default)]
    pub(crate) reload: FileReload,
    /// `[tracing]`: absent, no spans are made.
    pub(crate) tracing: Option<super::tracing::FileTracing>,
    /// `[shared_signals]`: absent, no security events are taken.
    pub(crate) shared_signals: Option<super::shared_signals::FileSharedSignals>,
    /// `[protected_resource]`: RFC 9728 metadata every route inherits; absent, none is served.
    pub(crate) protected_resource: Option<super::protected_resource::FileProtectedResource>,
    /// Runtime worker threads; default: the CPUs the process may use.
    pub(crate) worker_threads: Option<usize>,
}

/// `[reload]`, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileReload {
    pub(crate) enabled: bool,
    #[serde(deserialize_with = "duration")]
    pub(crate) interval: Duration,
}

impl Default for FileReload {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDomain {
    pub(crate) token_endpoint: Option<String>,
    /// RFC 8414 discovery instead of a fixed `token_endpoint`.
    pub(crate) issuer: Option<String>,
    pub(crate) discovery_refresh: Option<String>,
    #[serde(default = "default_grant")]
    pub(crate) grant: String,
    /// Optional with `registration` (then issued by the server).
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<SecretText>,
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Unset means `client_secret_basic`, or the file assertion with `client_assertion_file`
    /// (see [`FileDomain::auth_method`]).
    pub(crate) auth_method: Option<String>,
    /// A JWT written by the platform (projected service account token, JWT-SVID), sent as the
    /// client assertion; `client_assertion_type` is `jwt-bearer` (default) or `jwt-spiffe`.
    pub(crate) client_assertion_file: Option<PathBuf>,
    pub(crate) client_assertion_type: Option<String>,
    /// private_key_jwt: PKCS#8 PEM key, optional `kid`, `aud` and algorithm.
    pub(crate) client_key_file: Option<PathBuf>,
    pub(crate) client_key_id: Option<String>,
    pub(crate) client_assertion_audience: Option<String>,
    pub(crate) client_assertion_alg: Option<String>,
    /// tls_client_auth: client certificate chain and key (PEM).
    pub(crate) client_cert_file: Option<PathBuf>,
    pub(crate) client_cert_key_file: Option<PathBuf>,
    pub(crate) scope: Option<String>,
    /// `bare` (default) sends AT1 alone; `authorization` sends the whole `Bearer AT1` value.
    pub(crate) oauth_token_format: Option<String>,
    // RFC 8693 token exchange.
    pub(crate) subject_token_type: Option<String>,
    #[serde(default)]
    pub(crate) audience: OneOrMany,
    #[serde(default)]
    pub(crate) resource: OneOrMany,
    pub(crate) requested_token_type: Option<String>,
    pub(crate) actor_token_file: Option<PathBuf>,
    pub(crate) actor_token_type: Option<String>,
    /// Extra form parameters for provider quirks (e.g. `requested_token_use = "on_behalf_of"`).
    #[serde(default)]
    pub(crate) extra_params: BTreeMap<String, SecretText>,
    /// Another domain whose token (exchanged from the caller's) is this domain's subject token.
    pub(crate) subject_domain: Option<String>,
    /// `identity-chaining` / `id-jag`: the caller's authority, where the grant is obtained.
    pub(crate) chaining_domain: Option<String>,
    /// The grant's `audience` at the chaining domain; default this domain's `issuer`.
    pub(crate) chaining_audience: Option<String>,
    #[serde(default)]
    pub(crate) allow_insecure_http: bool,
    /// PEM bundle of CAs trusted for this token endpoint instead of the system roots.
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) timeout: Option<String>,
    /// Protection of the token server: retries, retry budget, circuit breaker, in-flight cap.
    pub(crate) retries: Option<u32>,
    pub(crate) retry_budget_percent: Option<u32>,
    pub(crate) breaker_failures: Option<u32>,
    pub(crate) breaker_open: Option<String>,
    pub(crate) max_in_flight: Option<usize>,
    /// Reciprocal OAuth: chaingate as party A's agent.
    pub(crate) reciprocal: Option<super::reciprocal::FileReciprocal>,
    pub(crate) registration: Option<super::registration::FileRegistration>,
    /// `per-route` (default) or `incremental`: see `scope_strategy.rs`.
    pub(crate) scope_strategy: Option<String>,
    /// `ignore` (default) or `verify` the token response's `Link` ruri/duri.
    pub(crate) response_metadata: Option<String>,
    /// RFC 9449: DPoP proofs on token requests, DPoP-bound tokens forwarded with a proof each.
    #[serde(default)]
    pub(crate) dpop: bool,
    /// PKCS#8 PEM key for the proofs; without it, one generated per process (ES256).
    pub(crate) dpop_key_file: Option<PathBuf>,
}

/// A key that takes one string or a list of them.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// Whether the key was written at all (an empty list counts).
    pub(crate) fn is_set(&self) -> bool {
        !matches!(self, Self::None)
    }

    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(v) => vec![v.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

// Hand-written so that a secret in the file can never be printed through `{:?}`.
impl std::fmt::Debug for FileDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDomain")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoute {
    pub(crate) name: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) upstream: String,
    pub(crate) domain: String,
    pub(crate) scope: Option<String>,
    /// PEM bundle of CAs trusted for an `https` upstream instead of the system roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// Local JWT checks of the caller's token before any exchange.
    pub(crate) validate: Option<FileValidate>,
    /// What a token's `ruri` must name instead of `upstream` (response_metadata = "verify").
    pub(crate) resource_uri: Option<String>,
    /// Whether the caller may (or must) present a DPoP-bound token with a proof (RFC 9449).
    #[serde(default)]
    pub(crate) dpop: super::route_dpop::InboundDpop,
    /// Oldest acceptable proof `iat` on a DPoP route.
    pub(crate) dpop_max_age: Option<String>,
    /// At the edge: a Txn-Token from a Transaction Token Service for every request.
    pub(crate) txn_token: Option<super::txn_token::FileTxnToken>,
    /// Inside the trust domain: the incoming Txn-Token is checked.
    pub(crate) txn_token_verify: Option<super::txn_token::FileTxnVerify>,
    /// The one path this route takes, instead of `path_prefix`.
    pub(crate) path: Option<String>,
    /// Only requests for this host (`Host` or `:authority`; the port only if given here).
    pub(crate) host: Option<String>,
    /// Only requests with one of these methods.
    pub(crate) methods: Option<Vec<String>>,
    /// Only requests carrying each of these fields once, with exactly this value.
    pub(crate) headers: Option<BTreeMap<String, String>>,
    /// RFC 8693 `audience` for this route's tokens, instead of the domain's.
    #[serde(default)]
    pub(crate) audience: OneOrMany,
    /// RFC 8707 `resource` for this route's tokens, instead of the domain's.
    #[serde(default)]
    pub(crate) resource: OneOrMany,
    /// RFC 9396 `authorization_details`: an array of tables, each with a string `type`.
    pub(crate) authorization_details: Option<Vec<serde_json::Value>>,
    /// `always` (default), `if_needed` or `never`: whether the caller's token is exchanged.
    #[serde(default)]
    pub(crate) exchange: super::targets::ExchangeMode,
    /// This route's RFC 9728 metadata, over the top-level `[protected_resource]`.
    pub(crate) protected_resource: Option<super::protected_resource::FileProtectedResource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileValidate {
    pub(crate) issuer: String,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) audience: OneOrMany,
    pub(crate) algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) required_claims: Vec<String>,
    /// Expected `typ` header; default `at+jwt` (RFC 9068), `""` to accept any.
    pub(crate) typ: Option<String>,
    pub(crate) clock_skew: Option<String>,
    pub(crate) jwks_min_refetch_interval: Option<String>,
    #[serde(default)]
    pub(crate) allow_insecure_http: bool,
}

/// `[cache]`, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileCache {
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: u64,
    #[serde(deserialize_with = "duration")]
    pub(crate) negative_ttl: Duration,
    /// Share of a token's lifetime after which a hit starts a background renewal (0 < x < 1;
    /// 0 turns it off).
    pub(crate) refresh_ahead: f64,
    #[serde(deserialize_with = "duration")]
    pub(crate) expiry_skew: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) default_ttl: Duration,
    /// `[cache.shared]`: absent, every replica caches alone.
    pub(crate) shared: Option<super::shared_cache::FileSharedCache>,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
            negative_ttl: Duration::from_secs(5),
            refresh_ahead: 0.8,
            expiry_skew: Duration::from_secs(30),
            default_ttl: Duration::from_secs(60),
            shared: None,
        }
    }
}

/// `[timeouts]`, with their defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileTimeouts {
    #[serde(deserialize_with = "duration")]
    pub(crate) header_read: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) tls_handshake: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) upstream_connect: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) upstream_response: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) body_idle: Duration,
    /// The default of every domain's `timeout`.
    #[serde(deserialize_with = "duration")]
    pub(crate) token_endpoint: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) pool_idle: Duration,
}

impl Default for FileTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(2),
            upstream_response: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            token_endpoint: Duration::from_secs(5),
            pool_idle: Duration::from_secs(90),
        }
    }
}

/// `[limits]`, with their defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_uri_bytes: usize,
    pub(crate) max_token_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_h2_streams: u32,
    #[serde(deserialize_with = "duration")]
    pub(crate) retry_after: Duration,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 10_000,
            max_connections: 16_384,
            max_uri_bytes: 8 * 1024,
            max_token_bytes: 8 * 1024,
            max_headers: 100,
            // Envoy's default (`max_request_headers_kb` = 60).
            max_header_bytes: 60 * 1024,
            max_h2_streams: 256,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// `[shutdown]`, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileShutdown {
    #[serde(deserialize_with = "duration")]
    pub(crate) drain_delay: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) drain_timeout: Duration,
}

impl Default for FileShutdown {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// `[log]`, with its defaults.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileLog {
    pub(crate) format: super::LogFormat,
    pub(crate) access_log: bool,
    pub(crate) audit: bool,
    pub(crate) access_log_buffer: usize,
    #[serde(deserialize_with = "duration")]
    pub(crate) access_log_flush: Duration,
}

impl Default for FileLog {
    fn default() -> Self {
        Self {
            format: super::LogFormat::Plain,
            access_log: true,
            audit: true,
            // nginx's `access_log ... buffer=64k flush=1s`: one write(2) per ~400 lines under load,
            // and no line waits longer than a second when it is quiet.
            access_log_buffer: 64 * 1024,
            access_log_flush: Duration::from_secs(1),
        }
    }
}

fn default_grant() -> String {
    "chain".to_string()
}

impl FileDomain {
    /// `auth_method`, defaulted: `client_secret_basic` (RFC 6749 §2.3.1).
    pub(crate) fn auth_method(&self) -> &str {
        self.auth_method.as_deref().unwrap_or("client_secret_basic")
    }
}
