//! Fetching and caching trusted issuers' JWKS over HTTP(S): bounded time and size, rate-limited.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

use super::keys::KeySet;

/// The outgoing HTTP/1.1 client: HTTPS verified against the native roots, or plain HTTP.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
/// The authority's one outgoing HTTP client, built on first use.
pub type SharedClient = Arc<tokio::sync::OnceCell<Result<HttpClient, String>>>;

/// Fetch limits shared by all remote key sets.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Upper bound on one whole request, connect through last body byte.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes; a bigger one fails the fetch.
    pub max_bytes: usize,
    /// How long a fetched key set is used before it is fetched again.
    pub cache_ttl: Duration,
    /// Least time between two fetch attempts of one JWKS, however many unknown `kid`s arrive,
    /// so tokens with made-up `kid`s cannot make us hammer the issuer.
    pub min_refetch_interval: Duration,
}

/// A builder for the one HTTP client the authority uses, created on first use.
pub fn http_client() -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("cannot load native root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// One issuer's remote JWKS with its cache.
pub struct RemoteKeys {
    uri: http::Uri,
    algorithms: Vec<Algorithm>,
    limits: FetchLimits,
    client: SharedClient,
    state: Mutex<State>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    /// A key set for the JWKS (RFC 7517 §5) at `uri`, keeping only keys for `algorithms`.
    /// Nothing is fetched until the first [`RemoteKeys::keys`] call.
    pub fn new(
        uri: http::Uri,
        algorithms: Vec<Algorithm>,
        limits: FetchLimits,
        client: SharedClient,
    ) -> Self {
        Self {
            uri,
            algorithms,
            limits,
            client,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether keys have been fetched at least once.
    pub fn is_loaded(&self) -> bool {
        self.state
            .try_lock()
            .is_ok_and(|state| state.keys.is_some())
    }

    /// The current key set. Fetches when nothing is cached or the cache is stale, and refetches
    /// when `want_kid` is not in the cached set (at most once per `min_refetch_interval`).
    /// A failed fetch keeps serving the last good set; it is an error only while none was fetched.
    pub async fn keys(&self, want_kid: Option<&str>) -> Result<Arc<KeySet>, String> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let fresh = state
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < self.limits.cache_ttl);
        let missing_kid = match (&state.keys, want_kid) {
            (Some(keys), Some(kid)) => !keys.has_kid(kid),
            (None, _) => true,
            (Some(_), None) => false,
        };
        let may_refetch = state
            .last_attempt
            .is_none_or(|t| now.duration_since(t) >= self.limits.min_refetch_interval);
        if (!fresh || missing_kid) && may_refetch {
            state.last_attempt = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = Some(Arc::new(keys));
                    state.fetched_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(jwks_uri = %self.uri, error = %e, "JWKS fetch failed");
                    if state.keys.is_none() {
                        return Err(format!("the issuer's keys are unavailable ({e})"));
                    }
                }
            }
        }
        state
            .keys
            .clone()
            .ok_or_else(|| "the issuer's keys are unavailable".to_string())
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let request = http::Request::get(self.uri.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        // Exported when the gateway's `[tracing]` is on (its target), else disabled.
        let span = tracing::info_span!(
            target: "chaingate::trace",
            "jwks fetch",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            url.full = %self.uri,
        );
        let body = send(&self.client, request, &self.limits)
            .instrument(span.clone())
            .await
            .inspect_err(|_| {
                span.record("otel.status_code", "ERROR");
            })?;
        KeySet::from_jwks(&body, &self.algorithms)
    }
}

/// Sends `request`, requires 200 and returns the body, within the time and size limits.
pub async fn send(
    client: &SharedClient,
    request: http::Request<Full<Bytes>>,
    limits: &FetchLimits,
) -> Result<Bytes, String> {
    let client = client
        .get_or_init(|| async { http_client() })
        .await
        .as_ref()
        .map_err(Clone::clone)?;
    let limit = limits.max_bytes;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("body unreadable or larger than {limit} bytes: {e}"))?;
        Ok::<_, String>(body.to_bytes())
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .map_err(|_| format!("timed out after {:?}", limits.timeout))?
}
