//! Incremental grants (draft-ietf-oauth-incremental-authz-04 applied to a gateway's own tokens):
//! one entry per (domain, caller token) whose scope grows to the union the routes have needed.
//!
//! A route needing scopes S is served by the entry when it holds S. Otherwise the entry is
//! re-exchanged for (held ∪ S) under the cache's per-key lock, so concurrent requests for one
//! caller wait for the exchange in flight and use its token when it covers them. Scopes the
//! server declined (§6.2) are not asked for again while that token lives (§6.1): the request is
//! forwarded with the token held and the upstream decides.

use std::sync::Arc;
use std::time::Duration;

use chaingate_oauth::scope::Scopes;

use super::{CachedToken, Caller, DomainTokens, TokenResult};
use crate::authn::InboundToken;
use crate::cache::{Key, Lookup, Op};
use crate::error::Error;

/// How long a caller's grown scope is remembered without requests, past its token's expiry.
pub(super) const UNION_MEMORY: Duration = Duration::from_secs(3600);

impl DomainTokens {
    /// A miss of an incremental domain: the caller's grant re-exchanged for the union of what it
    /// held and `needed` (the hit, a grant that serves `needed`, is checked by the caller).
    pub(super) async fn grow(
        self: &Arc<Self>,
        key: Key,
        needed: Scopes,
        targets: Option<&crate::config::Targets>,
        at1: InboundToken<'_>,
        caller: &Caller<'_>,
    ) -> TokenResult {
        let remembered = self.grown.get(&key).await;
        let needed = &needed;
        let grown = self
            .cache
            .try_compute(key, |live| async move {
                if live.as_ref().is_some_and(|c| c.serves(needed)) {
                    return Ok(Op::Nop);
                }
                let held = live
                    .as_ref()
                    .and_then(|c| c.scope.clone())
                    .or(remembered)
                    .unwrap_or_default();
                let ask = held.union(needed);
                // Its own negative entry: a refused union must not block a smaller request of
                // the same caller.
                let refusal_key = key.with(ask.to_string().as_bytes());
                if let Some(refusal) = self.cache.rejected(&refusal_key).await {
                    return Err(refusal);
                }
                if live.is_some() {
                    self.upgrades.inc();
                }
                let asked = Some(ask.to_string()).filter(|a| !a.is_empty());
                let fresh = match self.exchange(asked.as_deref(), targets, at1, caller).await {
                    Ok(issued) => CachedToken::cached(issued, at1, Some(&ask), &self.settings),
                    Err(error) => Err(error),
                };
                match fresh {
                    Ok(fresh) => {
                        if let Some(scope) = &fresh.scope {
                            self.grown.insert(key, scope.clone()).await;
                        }
                        self.index_subject(key, (None, None), at1).await;
                        Ok(Op::Put(fresh))
                    }
                    Err(error) => {
                        self.cache
                            .reject(refusal_key, &error, Error::is_refusal)
                            .await;
                        Err(error)
                    }
                }
            })
            .await?;
        match grown {
            Some(token) => Ok((token, Lookup::Miss)),
            // Unreachable: the closure either keeps a live entry or puts one.
            None => Err(Error::ExchangeFailed("token cache lost the entry")),
        }
    }

    /// Stores an incremental renewal unless an upgrade landed meanwhile: never shrink a grant.
    pub(super) async fn store_renewal(&self, key: Key, fresh: Arc<CachedToken>) {
        let Some(held) = fresh.scope.clone() else {
            self.cache.insert(key, fresh).await;
            return;
        };
        let now = tokio::time::Instant::now();
        self.cache
            .compute(key, |current| async move {
                let keep = current.is_some_and(|c| {
                    c.expires_at > now && c.scope.as_ref().is_some_and(|s| !held.covers(s))
                });
                if keep {
                    Op::Nop
                } else {
                    Op::Put(fresh)
                }
            })
            .await;
    }
}
