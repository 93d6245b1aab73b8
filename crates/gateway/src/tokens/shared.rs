//! The tokens stage's side of the shared tier (`cache::shared`): which Redis key a caller's
//! token has, a first-tier miss that asks the fleet before exchanging, and remote evictions
//! applied to this replica's first tier.

use std::sync::Arc;

use super::{CachedToken, Caller, DomainTokens};
use crate::authn::InboundToken;
use crate::cache::Key;
use crate::config::Targets;
use crate::error::Error;
pub(crate) use crate::fleet::SharedTier;
use crate::fleet::{Claim, SharedCounters, SharedKey};

/// A domain's use of the shared tier.
#[derive(Debug)]
pub(super) struct DomainShared {
    pub(super) tier: Arc<SharedTier>,
    pub(super) counters: SharedCounters,
    /// Redis key → first-tier key, for evictions other replicas announce (digests both).
    pub(super) index: moka::future::Cache<Arc<str>, Key>,
}

/// The process's shared tier, if `[cache.shared]` is configured (made once: restart-only).
pub(crate) fn shared_tier(
    config: &crate::config::Config,
    metrics: &super::TokensMetrics,
) -> Result<Option<Arc<SharedTier>>, rustls::Error> {
    config
        .shared_cache
        .as_ref()
        .map(|settings| SharedTier::new(settings, metrics.shared().clone()))
        .transpose()
        .map_err(|e| rustls::Error::General(format!("cache.shared: {e}")))
}

impl DomainTokens {
    /// Where the fleet keeps this caller's token: keyed by domain (and its settings' digest, so
    /// a changed domain never reuses a token), scope, the route's targets' digest and AT1.
    pub(super) fn shared_key(
        &self,
        tier: &SharedTier,
        scope: Option<&str>,
        targets: Option<&Targets>,
        at1: InboundToken<'_>,
    ) -> SharedKey {
        let parts: [&[u8]; 5] = [
            self.name().as_bytes(),
            &self.built_from.domain,
            &[u8::from(scope.is_some())],
            scope.unwrap_or("").as_bytes(),
            at1.expose().as_bytes(),
        ];
        // Without targets, the key replicas of the previous version use too.
        match targets {
            None => tier.key(&parts),
            Some(targets) => {
                let [a, b, c, d, e] = parts;
                tier.key(&[a, b, c, d, e, &targets.digest])
            }
        }
    }

    /// A first-tier miss with the shared tier: another replica's token, or one exchange for
    /// the fleet (under the lease), stored for the others.
    pub(super) async fn load_shared(
        &self,
        shared: &DomainShared,
        key: Key,
        (scope, targets): (Option<&str>, Option<&Targets>),
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> Result<Arc<CachedToken>, Error> {
        let skey = self.shared_key(&shared.tier, scope, targets, at1);
        shared.index.insert(skey.id().clone(), key).await;
        let claim = shared.tier.claim(&skey, 0, &shared.counters).await;
        if let Claim::Filled(entry) = &claim {
            if let Some(token) = CachedToken::from_shared(entry, at1, self.dpop_key()) {
                return Ok(token);
            }
        }
        let issued = match self.exchange(scope, targets, at1, caller).await {
            Ok(issued) => issued,
            Err(e) => {
                if matches!(claim, Claim::Leased) {
                    shared.tier.release(&skey).await;
                }
                return Err(e);
            }
        };
        let token = CachedToken::cached(issued, at1, None, &self.settings)?;
        shared.tier.put(&skey, &token.to_shared()).await;
        Ok(token)
    }
}

/// Drops from `tokens`' first tier what other replicas evicted, until the domain is replaced.
pub(super) async fn apply_remote_evictions(
    tokens: std::sync::Weak<DomainTokens>,
    mut evicted: tokio::sync::broadcast::Receiver<Arc<str>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let id = match evicted.recv().await {
            Ok(id) => id,
            // Missed some under a burst: those entries just live to their expiry.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Some(tokens) = tokens.upgrade() else {
            return;
        };
        let Some(shared) = &tokens.shared else {
            return;
        };
        if let Some(key) = shared.index.remove(&id).await {
            tokens.cache.evict(&key).await;
            shared.counters.remote.inc();
            // No request asked: the route is unknown, the subject only as the key's digest.
            let fleet: Arc<str> = Arc::from("");
            let caller = Caller::new(&fleet, tokens.audit, || None);
            tokens.audit_eviction(None, "fleet").emit(&caller, None);
        }
    }
}
