//! The authority's shared state: issuer identity, keys, clients, trusted issuers, stores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::config::{
    AuthorityConfig, Client, ClientAuthMethod, Federated, FederatedKeys, KeySource, TrustedIssuer,
};
use super::config_chaining::PeerKeys;
use super::dpop;
use super::introspection::Introspector;
use super::reciprocal;
use super::refresh::RefreshStore;
use super::registration::Registry;
use super::sessions::Flows;
use super::store::ExpiringSet;
use chaingate_oauth::keys::{KeySet, SigningKey};
use chaingate_oauth::remote::{FetchLimits, RemoteKeys, SharedClient};

/// Capacity of the revocation list and of the assertion replay cache.
const STORE_CAPACITY: usize = 100_000;

/// Everything request handlers need; built once in `spawn`.
#[derive(Debug)]
pub(crate) struct Authority {
    pub(crate) issuer: String,
    /// Path prefix of the issuer URL ("" or "/tenant"), under which endpoints are served.
    pub(crate) path_prefix: String,
    pub(crate) signing: SigningKey,
    pub(crate) own_keys: KeySet,
    pub(crate) default_audience: String,
    /// Every audience this authority issues tokens for.
    pub(crate) known_audiences: Vec<String>,
    pub(crate) config: AuthorityConfig,
    /// Parallel to `config.trusted_issuers`: the remote key cache, if the keys are remote.
    remote: Vec<Option<RemoteKeys>>,
    /// Parallel to `config.trusted_issuers`: the introspection cache, if validated by introspection.
    pub(crate) introspectors: Vec<Option<Introspector>>,
    /// Federated clients' workload issuer JWKS caches (`jwks_uri`), by client id.
    federated: HashMap<String, RemoteKeys>,
    /// Parallel to `config.chaining.peers`: the remote key cache, if the peer's keys are remote.
    peer_keys: Vec<Option<RemoteKeys>>,
    pub(crate) http: SharedClient,
    pub(crate) limits: FetchLimits,
    pub(crate) replay: ExpiringSet,
    pub(crate) revoked: ExpiringSet,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
    /// Sessions, pending authorization requests, codes and consents.
    pub(crate) flows: Flows,
    pub(crate) refresh: RefreshStore,
    /// Clients created at `POST /register`.
    pub(crate) registry: Registry,
    /// Reciprocal OAuth, party B: redemption client, delivered grants, outcome counters.
    pub(crate) reciprocal: Arc<reciprocal::Runtime>,
    /// DPoP nonces (RFC 9449 §8), used when `require_dpop_nonce` is on.
    pub(crate) dpop_nonces: dpop::Nonces,
}

impl Authority {
    pub(crate) fn new(mut config: AuthorityConfig, local_addr: SocketAddr) -> Result<Self, String> {
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"))
            .trim_end_matches('/')
            .to_string();
        let path_prefix = issuer
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let signing = match config.signing_key.take() {
            Some(key) => key,
            None => SigningKey::generate()?,
        };
        let own_keys = signing.verification_set()?;
        let default_audience = config
            .default_audience
            .clone()
            .unwrap_or_else(|| issuer.clone());
        let mut known_audiences = vec![default_audience.clone()];
        let extra = config
            .audiences
            .iter()
            .chain(config.clients.iter().filter_map(|c| c.audience.as_ref()));
        for aud in extra {
            if !known_audiences.contains(aud) {
                known_audiences.push(aud.clone());
            }
        }
        let limits = FetchLimits {
            timeout: config.jwks_fetch_timeout,
            max_bytes: config.jwks_max_bytes,
            cache_ttl: config.jwks_cache_ttl,
            min_refetch_interval: config.jwks_min_refetch_interval,
        };
        let client = Arc::new(tokio::sync::OnceCell::new());
        let remote = config
            .trusted_issuers
            .iter()
            .map(|t| match &t.keys {
                KeySource::Remote(uri) => Some(RemoteKeys::new(
                    uri.clone(),
                    t.algorithms.clone(),
                    limits.clone(),
                    client.clone(),
                )),
                KeySource::Static(_) | KeySource::Introspection(_) => None,
            })
            .collect();
        let federated = config
            .clients
            .iter()
            .filter_map(|c| match &c.auth {
                ClientAuthMethod::Federated(Federated {
                    keys: FederatedKeys::Remote(uri),
                    algorithms,
                    ..
                }) => Some((
                    c.id.clone(),
                    RemoteKeys::new(
                        uri.clone(),
                        algorithms.clone(),
                        limits.clone(),
                        client.clone(),
                    ),
                )),
                _ => None,
            })
            .collect();
        let introspectors = config
            .trusted_issuers
            .iter()
            .map(|t| matches!(t.keys, KeySource::Introspection(_)).then(Introspector::default))
            .collect();
        let peer_keys = config
            .chaining
            .peers
            .iter()
            .map(|p| match &p.keys {
                Some(PeerKeys::Remote(uri)) => Some(RemoteKeys::new(
                    uri.clone(),
                    chaingate_oauth::keys::DEFAULT_ALGORITHMS.to_vec(),
                    limits.clone(),
                    client.clone(),
                )),
                _ => None,
            })
            .collect();
        let reciprocal = Arc::new(reciprocal::Runtime::new(config.reciprocal.clone())?);
        Ok(Self {
            issuer,
            path_prefix,
            signing,
            own_keys,
            default_audience,
            known_audiences,
            config,
            remote,
            federated,
            peer_keys,
            introspectors,
            http: client,
            limits,
            replay: ExpiringSet::new(STORE_CAPACITY),
            revoked: ExpiringSet::new(STORE_CAPACITY),
            failures: Mutex::new(HashMap::new()),
            flows: Flows::default(),
            refresh: RefreshStore::default(),
            registry: Registry::default(),
            reciprocal,
            dpop_nonces: dpop::Nonces::new()?,
        })
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A configured or registered client.
    pub(crate) fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.config
            .clients
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .or_else(|| self.registry.get(id))
    }

    /// The RFC 8414 metadata URL of this issuer (`duri` of draft-sakimura-oauth-meta).
    pub(crate) fn discovery_url(&self) -> String {
        let origin_end = self
            .issuer
            .find("://")
            .and_then(|i| self.issuer[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(self.issuer.len());
        format!(
            "{}/.well-known/oauth-authorization-server{}",
            &self.issuer[..origin_end],
            &self.issuer[origin_end..]
        )
    }

    pub(crate) fn trusted_issuer(&self, iss: &str) -> Option<(usize, &TrustedIssuer)> {
        self.config
            .trusted_issuers
            .iter()
            .enumerate()
            .find(|(_, t)| t.issuer == iss)
    }

    /// Verification keys of trusted issuer `index`, fetching remote ones as needed.
    pub(crate) async fn issuer_keys(
        &self,
        index: usize,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, String> {
        match (
            &self.config.trusted_issuers[index].keys,
            &self.remote[index],
        ) {
            (KeySource::Static(set), _) => Ok(Arc::new(set.clone())),
            (KeySource::Remote(_), Some(remote)) => remote.keys(kid).await,
            (KeySource::Remote(_) | KeySource::Introspection(_), _) => {
                Err("issuer keys are not configured".into())
            }
        }
    }

    /// A federated client's workload issuer keys: its `jwks_file`, or its `jwks_uri` through
    /// the cache (refetched for an unknown `kid`, at most once per `jwks_min_refetch_interval`).
    pub(crate) async fn federated_keys(
        &self,
        client_id: &str,
        federated: &Federated,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, String> {
        match (&federated.keys, self.federated.get(client_id)) {
            (FederatedKeys::Static(set), _) => Ok(Arc::new(set.clone())),
            (FederatedKeys::Remote(_), Some(remote)) => remote.keys(kid).await,
            (FederatedKeys::Remote(_), None) => {
                Err("workload issuer keys are not configured".into())
            }
        }
    }

    /// Verification keys of peer authority `index` (identity chaining), fetching remote ones.
    pub(crate) async fn peer_keys(
        &self,
        index: usize,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, String> {
        match (
            &self.config.chaining.peers[index].keys,
            &self.peer_keys[index],
        ) {
            (Some(PeerKeys::Static(set)), _) => Ok(Arc::new(set.clone())),
            (Some(PeerKeys::Remote(_)), Some(remote)) => remote.keys(kid).await,
            _ => Err("the peer authority's keys are not configured".into()),
        }
    }

    /// Whether `client_id` is locked out after too many failed authentications in a minute.
    pub(crate) fn locked_out(&self, client_id: &str) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(client_id).is_some_and(|(since, count)| {
            since.elapsed() < Duration::from_secs(60)
                && *count >= self.config.max_failed_auth_per_minute
        })
    }

    pub(crate) fn record_failure(&self, client_id: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(60));
        }
        let entry = failures
            .entry(client_id.to_string())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}
