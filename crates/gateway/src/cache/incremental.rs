//! Incremental grants (draft-ietf-oauth-incremental-authz-04 applied to a gateway's own tokens):
//! one entry per (domain, caller token) whose scope grows to the union the routes have needed.
//!
//! A route needing scopes S is served by the entry when it holds S. Otherwise the entry is
//! re-exchanged for (held ∪ S) under moka's per-key lock, so concurrent requests for one caller
//! wait for the exchange in flight and use its token when it covers them. Scopes the server
//! declined (§6.2) are not asked for again while that token lives (§6.1): the request is
//! forwarded with the token held and the upstream decides.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::Op;
use tokio::time::Instant;

use super::{CacheKey, CachedToken, Lookup, TokenCache};
use crate::authn::InboundToken;
use crate::error::Error;
use crate::exchange::Issued;

/// How long a caller's grown scope is remembered without requests, past its token's expiry.
pub(super) const UNION_MEMORY: Duration = Duration::from_secs(3600);

/// A scope as a set of tokens (RFC 6749 §3.3: space-separated, order does not matter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Box<str>>);

impl Scopes {
    pub fn parse(scope: &str) -> Self {
        let mut tokens: Vec<Box<str>> = scope.split_ascii_whitespace().map(Box::from).collect();
        tokens.sort_unstable();
        tokens.dedup();
        Self(tokens)
    }

    /// Whether every token of `other` is in this set.
    pub fn covers(&self, other: &Self) -> bool {
        other.0.iter().all(|t| self.0.binary_search(t).is_ok())
    }

    pub fn union(&self, other: &Self) -> Self {
        let mut tokens = self.0.clone();
        tokens.extend(other.0.iter().cloned());
        tokens.sort_unstable();
        tokens.dedup();
        Self(tokens)
    }

    /// The tokens of this set that `other` lacks.
    pub fn minus(&self, other: &Self) -> Self {
        Self(
            self.0
                .iter()
                .filter(|t| other.0.binary_search(t).is_err())
                .cloned()
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl CachedToken {
    /// Whether this incremental token serves a route needing `needed`: it holds the scopes, or
    /// the server declined the missing ones for this token already.
    fn serves(&self, needed: &Scopes) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|held| held.covers(needed) || self.refused.covers(&needed.minus(held)))
    }
}

impl CacheKey {
    /// The key of one particular request of an incremental grant, for the negative cache: a
    /// refused union must not block a smaller request of the same caller.
    fn asking(&self, scope: &Scopes) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&self.0);
        ctx.update(scope.to_string().as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        Self(key)
    }
}

impl TokenCache {
    /// A hit: the caller's incremental token, if it is valid and serves `needed`.
    pub async fn get_covering(&self, key: &CacheKey, needed: &Scopes) -> Option<Arc<CachedToken>> {
        let cached = self.entries.get(key).await?;
        if cached.expires_at > Instant::now() && cached.serves(needed) {
            self.hits.inc();
            return Some(cached);
        }
        None
    }

    /// A miss: exchanges for (held ∪ `needed`), where held is the live entry's scope or, once
    /// it expired, the union remembered for this caller. `exchange` gets the scope to request.
    /// Serialized per key: a request that waited on another's exchange uses its token when it
    /// serves `needed`, and does not exchange again.
    pub async fn grow<F, Fut>(
        &self,
        key: CacheKey,
        token: InboundToken<'_>,
        needed: &Scopes,
        exchange: F,
    ) -> Result<(Arc<CachedToken>, Lookup), Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Issued, Error>>,
    {
        self.misses.inc();
        let remembered = self.grown.get(&key).await;
        let result = self
            .entries
            .entry(key)
            .and_try_compute_with(|current| async move {
                let live = current
                    .map(moka::Entry::into_value)
                    .filter(|c| c.expires_at > Instant::now());
                if live.as_ref().is_some_and(|c| c.serves(needed)) {
                    return Ok(Op::Nop);
                }
                let held = live
                    .as_ref()
                    .and_then(|c| c.scope.clone())
                    .or(remembered)
                    .unwrap_or_default();
                let ask = held.union(needed);
                let refusal_key = key.asking(&ask);
                if let Some(refusal) = self.rejected.get(&refusal_key).await {
                    return Err(refusal);
                }
                if live.is_some() {
                    self.upgrades.inc();
                }
                let fresh = match exchange(ask.to_string()).await {
                    Ok(issued) => self.to_cached(issued, token, Some(&ask)),
                    Err(error) => Err(error),
                };
                match fresh {
                    Ok(fresh) => {
                        if let Some(scope) = &fresh.scope {
                            self.grown.insert(key, scope.clone()).await;
                        }
                        Ok(Op::Put(fresh))
                    }
                    Err(error) => {
                        if error.is_refusal() && !self.settings.negative_ttl.is_zero() {
                            self.rejected.insert(refusal_key, error.clone()).await;
                        }
                        Err(error)
                    }
                }
            })
            .await?;
        match result.into_entry() {
            Some(entry) => Ok((entry.into_value(), Lookup::Miss)),
            // Unreachable: the closure either keeps a live entry or puts one.
            None => Err(Error::ExchangeFailed("token cache lost the entry")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sets() {
        let held = Scopes::parse("b a  a");
        assert_eq!(held.to_string(), "a b");
        assert!(held.covers(&Scopes::parse("a")));
        assert!(held.covers(&Scopes::default()));
        assert!(!held.covers(&Scopes::parse("a c")));
        assert_eq!(held.union(&Scopes::parse("c a")).to_string(), "a b c");
        assert_eq!(Scopes::parse("a b c").minus(&held).to_string(), "c");
        assert!(held.minus(&held).is_empty());
    }
}
