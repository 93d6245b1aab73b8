//! Tokens: the caller's token (AT1) becomes the route's downstream token (AT2). The only caller
//! of the cache and of the exchange, so every rule about which token is used lives here:
//!
//! - per route scope, one entry per (domain, scope, AT1); or incremental, one grant per
//!   (domain, AT1) grown to the union the routes needed (`incremental.rs`);
//! - concurrent misses share one exchange; refusals are negative entries;
//! - a token in use is renewed ahead of expiry in the background (refresh-ahead);
//! - a domain with a subject domain exchanges that domain's token, itself cached (multi-hop);
//! - response metadata (draft-sakimura-oauth-meta) is checked before a token is cached, and its
//!   `ruri` against the route before it is forwarded (`metadata.rs`);
//! - an RFC 8693 `N_A` token may be a hop's subject, never forwarded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub(crate) use crate::audit::Caller;
use crate::audit::Decision;
use crate::authn::InboundToken;
use crate::cache::{Bounds, CacheMetrics, Key, ReadThrough};
use crate::config::{CacheSettings, Config, Domain, Route, ScopeStrategy, Targets};
use crate::error::Error;
pub(crate) use crate::exchange::TxnRequest;
use crate::exchange::{ExchangeMetrics, Exchanger, Issued, OnBehalf};
use crate::fleet::{Claim, SharedMetrics};
use crate::metrics::DomainLabel;
use crate::trace;
use chaingate_oauth::scope::Scopes;

mod incremental;
mod metadata;
mod shared;
mod subjects;
mod token;
pub(crate) use crate::cache::Lookup;
pub(crate) use metadata::MetadataMetrics;
use shared::{apply_remote_evictions, DomainShared};
pub(crate) use shared::{shared_tier, SharedTier};
pub(crate) use subjects::SubjectId;
use subjects::Subjects;
pub(crate) use token::CachedToken;

#[cfg(test)]
mod tests;

/// A domain's token for the caller, and whether the cache had it.
pub(crate) type TokenResult = Result<(Arc<CachedToken>, Lookup), Error>;

/// What a renewal asks for: the scope, and an incremental entry's whole held scope.
type Renewal = (Option<String>, Option<Scopes>);

/// The exchange's metrics, `chaingate_token_cache_*`, `chaingate_scope_upgrades_total` and the
/// response-metadata refusals.
#[derive(Debug, Clone)]
pub(crate) struct TokensMetrics {
    exchange: ExchangeMetrics,
    cache: CacheMetrics,
    scope_upgrades: Family<DomainLabel, Counter>,
    metadata: MetadataMetrics,
    shared: SharedMetrics,
}

impl TokensMetrics {
    /// Registers the families on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let exchange = ExchangeMetrics::register(registry);
        let cache = CacheMetrics::register(registry);
        let scope_upgrades = Family::default();
        registry.register(
            "chaingate_scope_upgrades",
            "Re-exchanges of an incremental grant because a route needed a scope it lacked",
            scope_upgrades.clone(),
        );
        Self {
            exchange,
            cache,
            scope_upgrades,
            metadata: MetadataMetrics::register(registry),
            shared: SharedMetrics::register(registry),
        }
    }

    /// The shared tier's families, for [`SharedTier::new`].
    pub(crate) fn shared(&self) -> &SharedMetrics {
        &self.shared
    }
}

/// What a domain's runtime was built from: equal means it, and its cached tokens, can be kept
/// across a reload. The domain's fingerprint covers its settings and the contents of the files
/// it names; the rest are the gateway-wide settings baked in at construction.
#[derive(Clone, PartialEq)]
struct BuiltFrom {
    domain: [u8; 32],
    cache: CacheSettings,
    pool_idle: Duration,
    retry_after: Duration,
    /// The subject domain's, so a kept hop never points at a replaced domain.
    subject: Option<Box<BuiltFrom>>,
    /// `[shared_signals]` is set: entries are indexed by subject.
    subjects: bool,
    /// The chaining domain's fingerprint (`identity-chaining`/`id-jag`), so its change rebuilds.
    chaining: Option<[u8; 32]>,
}

// The fingerprint digests the domain's secrets: never shown, not even as a digest.
impl std::fmt::Debug for BuiltFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltFrom")
            .field("cache", &self.cache)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// One domain's tokens: its exchanger, its cache, its checks, and the domain whose token is its
/// subject (multi-hop).
#[derive(Debug)]
pub(crate) struct DomainTokens {
    exchanger: Arc<Exchanger>,
    cache: ReadThrough<CachedToken, Error>,
    /// Incremental domains: the scope each caller's grant has grown to, remembered past the
    /// token's expiry so the next exchange asks for the whole union at once.
    grown: moka::future::Cache<Key, Scopes>,
    metadata: metadata::MetadataCheck,
    subject: Option<Arc<DomainTokens>>,
    /// `identity-chaining`/`id-jag`: the exchanger of step 1 at the chaining domain.
    chaining: Option<Arc<Exchanger>>,
    settings: CacheSettings,
    upgrades: Counter,
    built_from: BuiltFrom,
    /// The fleet's tier behind this domain's cache (per-scope domains only).
    shared: Option<DomainShared>,
    /// `log.audit` when the domain was built: the fleet's evictions, which no request carries.
    audit: bool,
    /// With `[shared_signals]`: whose tokens each entry was exchanged for, so a revocation
    /// event can evict them.
    subjects: Option<Subjects>,
}

impl DomainTokens {
    /// Builds every domain of `config`, subject domains first, keeping those of `previous`
    /// whose config is unchanged (and with them their cached tokens).
    pub(crate) fn build_all(
        config: &Config,
        metrics: &TokensMetrics,
        previous: &[Arc<DomainTokens>],
        shared: Option<&Arc<SharedTier>>,
    ) -> Result<Vec<Arc<DomainTokens>>, rustls::Error> {
        let mut built: Vec<Arc<DomainTokens>> = Vec::with_capacity(config.domains.len());
        for domain in &config.domains {
            Self::build(domain, config, metrics, previous, shared, &mut built)?;
        }
        Ok(built)
    }

    fn build(
        domain: &Arc<Domain>,
        config: &Config,
        metrics: &TokensMetrics,
        previous: &[Arc<DomainTokens>],
        shared: Option<&Arc<SharedTier>>,
        built: &mut Vec<Arc<DomainTokens>>,
    ) -> Result<Arc<DomainTokens>, rustls::Error> {
        if let Some(done) = built.iter().find(|d| d.name() == &domain.name) {
            return Ok(done.clone());
        }
        // Config validation refuses cycles and bounds the depth, so this recursion ends.
        let subject = match domain.subject_domain.as_deref() {
            Some(name) => {
                let parent = config
                    .domains
                    .iter()
                    .find(|d| *d.name == *name)
                    .expect("subject domains name validated domains");
                Some(Self::build(
                    parent, config, metrics, previous, shared, built,
                )?)
            }
            None => None,
        };
        let built_from = BuiltFrom {
            domain: domain.fingerprint(),
            cache: config.cache.clone(),
            pool_idle: config.timeouts.pool_idle,
            retry_after: config.limits.retry_after,
            subject: subject.as_ref().map(|s| Box::new(s.built_from.clone())),
            subjects: config.shared_signals.is_some(),
            chaining: chaining_domain(domain, config).map(|(a, _)| a.fingerprint()),
        };
        let tokens = match previous.iter().find(|d| d.built_from == built_from) {
            Some(kept) => kept.clone(),
            None => {
                let exchanger = Exchanger::new(
                    domain.clone(),
                    config.timeouts.pool_idle,
                    config.limits.retry_after,
                    &metrics.exchange,
                )?;
                if let Some(replaced) = previous.iter().find(|d| d.name() == &domain.name) {
                    exchanger.inherit_registration(&replaced.exchanger);
                }
                let chaining = chaining_domain(domain, config)
                    .map(|(a, chaining)| {
                        Exchanger::new(
                            Arc::new(crate::config::step_one(a, chaining)),
                            config.timeouts.pool_idle,
                            config.limits.retry_after,
                            &metrics.exchange,
                        )
                    })
                    .transpose()?;
                let settings = &config.cache;
                let shared = shared
                    .filter(|_| domain.scope_strategy != ScopeStrategy::Incremental)
                    .map(|tier| DomainShared {
                        tier: tier.clone(),
                        counters: tier.metrics().counters(&domain.name),
                        index: moka::future::Cache::builder()
                            .max_capacity(settings.max_entries)
                            .time_to_live(Duration::from_secs(24 * 3600))
                            .build(),
                    });
                let tokens = Arc::new(DomainTokens {
                    cache: ReadThrough::new(
                        Bounds {
                            max_entries: settings.max_entries,
                            max_bytes: settings.max_bytes,
                            negative_ttl: settings.negative_ttl,
                        },
                        metrics.cache.counters(&domain.name),
                    ),
                    grown: moka::future::Cache::builder()
                        .max_capacity(settings.max_entries)
                        .time_to_idle(incremental::UNION_MEMORY)
                        .build(),
                    metadata: metadata::MetadataCheck::new(domain, &metrics.metadata),
                    upgrades: metrics.scope_upgrades.get_or_create_owned(&DomainLabel {
                        domain: domain.name.clone(),
                    }),
                    settings: settings.clone(),
                    exchanger,
                    subject,
                    chaining,
                    built_from,
                    shared,
                    audit: config.log.audit,
                    subjects: config
                        .shared_signals
                        .is_some()
                        .then(|| Subjects::new(settings.max_entries)),
                });
                if let Some(shared) = &tokens.shared {
                    tokio::spawn(apply_remote_evictions(
                        Arc::downgrade(&tokens),
                        shared.tier.evictions(),
                    ));
                }
                tokens
            }
        };
        built.push(tokens.clone());
        Ok(tokens)
    }

    /// The domain's config name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.exchanger.domain().name
    }

    /// The exchanger, for readiness and deregistration.
    pub(crate) fn exchanger(&self) -> &Exchanger {
        &self.exchanger
    }

    /// A Txn-Token from this domain's token endpoint acting as a Transaction Token Service:
    /// one per request, never cached (draft-ietf-oauth-transaction-tokens-10 §7).
    pub(crate) async fn txn_token(
        &self,
        req: &TxnRequest<'_>,
    ) -> Result<chaingate_oauth::secret::Secret, Error> {
        self.exchanger.txn_token(req).await
    }

    /// Step 1's exchanger (`identity-chaining`/`id-jag`), for readiness.
    pub(crate) fn chaining(&self) -> Option<&Exchanger> {
        self.chaining.as_deref()
    }

    /// The token to forward on `route`: this domain's token for the route's scope, checked
    /// against the route and forwardable.
    pub(crate) async fn for_route(
        self: &Arc<Self>,
        route: &Route,
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> TokenResult {
        let (token, lookup) = self
            .get(route.scope.as_deref(), route.targets.as_ref(), at1, caller)
            .await?;
        self.forwardable(&token, route)?;
        Ok((token, lookup))
    }

    /// The upstream refused the token we chose although the cache held it: drop it and
    /// exchange a fresh one (RFC 6750 §3.1 `invalid_token`).
    pub(crate) async fn refused(
        self: &Arc<Self>,
        route: &Route,
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> TokenResult {
        let scope = route.scope.as_deref();
        let targets = route.targets.as_deref();
        self.cache.evict(&self.key(scope, targets, at1)).await;
        self.audit_eviction(scope, "upstream")
            .emit(caller, Some(at1));
        if let Some(shared) = &self.shared {
            // The whole fleet drops it, not only this replica.
            let key = self.shared_key(&shared.tier, scope, targets, at1);
            shared.index.invalidate(key.id()).await;
            shared.tier.evict(&key).await;
            shared.counters.evicted_here();
        }
        self.for_route(route, at1, caller).await
    }

    /// The audit event of an eviction: the upstream refused the token, or another replica did.
    fn audit_eviction<'s>(&'s self, scope: Option<&'s str>, origin: &'static str) -> Decision<'s> {
        Decision {
            decision: "evicted",
            domain: self.name(),
            grant: self.exchanger.domain().grant.name(),
            scope_requested: scope,
            scope_granted: None,
            error: "",
            renewal: false,
            origin,
        }
    }

    /// Refreshes scrape-time gauges (cache size).
    pub(crate) async fn update_gauges(&self) {
        self.cache.update_size_metric().await;
    }

    /// The domain's DPoP key, if it uses DPoP.
    fn dpop_key(&self) -> Option<&Arc<chaingate_oauth::dpop::ProofKey>> {
        self.exchanger.domain().dpop.as_ref().map(|d| &d.key)
    }

    fn forwardable(&self, token: &CachedToken, route: &Route) -> Result<(), Error> {
        if !token.bearer {
            return Err(Error::ExchangeFailed("an N_A token cannot be forwarded"));
        }
        self.metadata.check_route(token, route)
    }

    fn incremental(&self) -> bool {
        self.exchanger.domain().scope_strategy == ScopeStrategy::Incremental
    }

    /// The cache key of the caller's token for a request needing `scope`: one per scope, or
    /// one per caller for an incremental domain; and one per route targets (audience, resource,
    /// authorization details) in both. A scope of "" and no scope differ.
    fn key(&self, scope: Option<&str>, targets: Option<&Targets>, at1: InboundToken<'_>) -> Key {
        let scope = if self.incremental() { None } else { scope };
        token_key(self.name(), scope, targets, at1)
    }

    /// This domain's token for the caller: cached, or exchanged once for all concurrent
    /// callers.
    async fn get(
        self: &Arc<Self>,
        scope: Option<&str>,
        targets: Option<&Arc<Targets>>,
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> TokenResult {
        let key = self.key(scope, targets.map(Arc::as_ref), at1);
        if self.incremental() {
            let needed = Scopes::parse(scope.unwrap_or(""));
            if let Some(hit) = self.cache.get(&key, |t| t.serves(&needed)).await {
                if self.subject.is_none()
                    && self.chaining.is_none()
                    && hit.should_refresh(self.settings.refresh_ahead)
                {
                    // The renewal asks for the held union, so no route loses its scope.
                    let held = hit.scope.clone().unwrap_or_default();
                    let renewal = (Some(held.to_string()), Some(held));
                    self.refresh_ahead(&hit, key, at1, (renewal, targets), caller);
                }
                return Ok((hit, Lookup::Hit));
            }
            // Boxed, like the per-scope miss below: only a miss carries the exchange's future.
            return Box::pin(self.grow(key, needed, targets.map(Arc::as_ref), at1, caller)).await;
        }
        if let Some(hit) = self.cache.get(&key, |_| true).await {
            // Refresh ahead: a token in use is renewed before it expires, so a steady caller
            // never waits on the token server; if the renewal fails, this one keeps serving.
            if self.subject.is_none()
                && self.chaining.is_none()
                && hit.should_refresh(self.settings.refresh_ahead)
            {
                let renewal = (scope.map(str::to_owned), None);
                self.refresh_ahead(&hit, key, at1, (renewal, targets), caller);
            }
            return Ok((hit, Lookup::Hit));
        }
        // Boxed: the exchange's future is large, and every hit would otherwise carry it.
        let targets = targets.map(Arc::as_ref);
        let load = async {
            if let Some(shared) = &self.shared {
                let ask = (scope, targets);
                return self.load_shared(shared, key, ask, at1, caller).await;
            }
            let issued = self.exchange(scope, targets, at1, caller).await?;
            CachedToken::cached(issued, at1, None, &self.settings)
        };
        let (token, loaded) = Box::pin(self.cache.load(key, load, Error::is_refusal)).await?;
        trace::record_coalesced(!loaded);
        if loaded {
            self.index_subject(key, (scope, targets), at1).await;
        }
        Ok((token, Lookup::Miss))
    }

    /// One exchange (after the subject domain's, for a multi-hop domain), with the domain's
    /// response metadata checks.
    async fn exchange(
        &self,
        scope: Option<&str>,
        targets: Option<&Targets>,
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> Result<Issued, Error> {
        let on_behalf = OnBehalf { caller, at1 };
        // Both steps per exchange: the grant is never cached (an ID-JAG is single-use).
        if let Some(step) = &self.chaining {
            let issued = self
                .exchanger
                .exchange_chained(step, at1.expose(), (scope, targets), on_behalf)
                .await?;
            return self.metadata.check_issued(issued);
        }
        let issued = match &self.subject {
            None => {
                self.exchanger
                    .exchange(at1.expose(), scope, targets, on_behalf)
                    .await?
            }
            Some(parent) => {
                let (subject, _) = parent_token(parent, at1, caller).await?;
                self.exchanger
                    .exchange(subject.token(), scope, targets, on_behalf)
                    .await?
            }
        };
        self.metadata.check_issued(issued)
    }

    /// Renews a cached token in the background; on any failure the one in use keeps serving,
    /// and a later request tries again after [`CachedToken::renewal_backoff`], so an outage
    /// shorter than the time left never expires a token in use. `held`: an incremental entry's
    /// scope, asked for whole so no route loses its scope.
    fn refresh_ahead(
        self: &Arc<Self>,
        current: &Arc<CachedToken>,
        key: Key,
        at1: InboundToken<'_>,
        ((scope, held), targets): (Renewal, Option<&Arc<Targets>>),
        caller: &Caller<'_>,
    ) {
        let targets = targets.cloned();
        let at1 = at1.expose().to_owned();
        let domain = self.clone();
        let current = current.clone();
        let caller = caller.detach();
        tokio::spawn(async move {
            let scope = scope.filter(|s| !s.is_empty());
            let token = InboundToken::already_accepted(&at1);
            let caller = caller.caller();
            let on_behalf = OnBehalf {
                caller: &caller,
                at1: token,
            };
            // With the shared tier, one replica renews for the fleet: a newer token another
            // replica stored is taken as this one's renewal.
            let mut lease = None;
            if let Some(shared) = &domain.shared {
                let skey =
                    domain.shared_key(&shared.tier, scope.as_deref(), targets.as_deref(), token);
                match shared
                    .tier
                    .claim(&skey, current.expires_unix_ms(), &shared.counters)
                    .await
                {
                    Claim::Filled(entry) => {
                        if let Some(fresh) =
                            CachedToken::from_shared(&entry, token, domain.dpop_key())
                        {
                            domain.store_renewal(key, fresh).await;
                            return;
                        }
                    }
                    Claim::Leased => lease = Some(skey),
                    Claim::Alone => {}
                }
            }
            let Ok(issued) = domain
                .exchanger
                .renew(&at1, scope.as_deref(), targets.as_deref(), on_behalf)
                .await
                .and_then(|issued| domain.metadata.check_issued(issued))
            else {
                if let (Some(shared), Some(skey)) = (&domain.shared, &lease) {
                    shared.tier.release(skey).await;
                }
                tokio::time::sleep(current.renewal_backoff()).await;
                current.renewal_failed();
                return;
            };
            match CachedToken::cached(issued, token, held.as_ref(), &domain.settings) {
                Ok(fresh) => {
                    if let Some(shared) = &domain.shared {
                        let skey = domain.shared_key(
                            &shared.tier,
                            scope.as_deref(),
                            targets.as_deref(),
                            token,
                        );
                        shared.tier.put(&skey, &fresh.to_shared()).await;
                    }
                    domain.store_renewal(key, fresh).await
                }
                // An answer that cannot be cached (e.g. already expired) is a failed renewal
                // too: the token in use must be renewed again later, not marked as renewing
                // until it expires.
                Err(_) => {
                    tokio::time::sleep(current.renewal_backoff()).await;
                    current.renewal_failed();
                }
            }
        });
    }
}

/// The keyed hash of (domain, scope, AT1) and the route's targets' digest: the raw token is
/// never kept. A scope of "" and no scope must not share an entry. A route without targets has
/// the key it had before targets existed.
fn token_key(
    domain: &str,
    scope: Option<&str>,
    targets: Option<&Targets>,
    at1: InboundToken<'_>,
) -> Key {
    let parts: [&[u8]; 4] = [
        domain.as_bytes(),
        scope.unwrap_or("").as_bytes(),
        at1.expose().as_bytes(),
        &[u8::from(scope.is_some())],
    ];
    match targets {
        None => Key::of(&parts),
        Some(targets) => {
            let [a, b, c, d] = parts;
            Key::of(&[a, b, c, d, &targets.digest])
        }
    }
}

/// Boxed, because hops recurse (config validation bounds the depth).
fn parent_token<'a>(
    parent: &'a Arc<DomainTokens>,
    at1: InboundToken<'a>,
    caller: &'a Caller<'a>,
) -> Pin<Box<dyn Future<Output = TokenResult> + Send + 'a>> {
    let scope = parent.exchanger.domain().scope.as_deref();
    Box::pin(parent.get(scope, None, at1, caller))
}

/// The chaining domain of an `identity-chaining`/`id-jag` domain, with the profile's settings.
fn chaining_domain<'c>(
    domain: &'c Domain,
    config: &'c Config,
) -> Option<(&'c Domain, &'c crate::config::Chaining)> {
    let crate::config::Grant::Chained(chaining) = &domain.grant else {
        return None;
    };
    let a = config.domains.iter().find(|d| d.name == chaining.domain)?;
    Some((a, chaining))
}
