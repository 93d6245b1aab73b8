//! The token cache: one moka cache per domain, keyed by a digest, never by the raw token.
//!
//! Key = SHA-256 over (domain, effective scope, AT1), length-prefixed so no two inputs collide.
//! An entry lives for `expires_in − skew`, capped by AT1's own `exp` when AT1 is a JWT, and is
//! re-checked against `tokio::time` on every read because moka evicts on its own clock.
//! Concurrent misses for one key share a single exchange; errors are never stored.
//! Domains with `scope_strategy = "incremental"` key by (domain, token) alone and grow the
//! entry's scope instead (`incremental.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::HeaderValue;
use moka::future::Cache;
use moka::Expiry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::authn::InboundToken;
use crate::config::CacheSettings;
use crate::error::Error;
use crate::exchange::Issued;
use crate::metrics::DomainLabel;

mod incremental;
mod metrics;
pub use incremental::Scopes;
use metrics::DomainResult;
pub use metrics::{CacheMetrics, Lookup};

/// What an entry costs besides its token: key, timestamps, moka's bookkeeping (measured in
/// `benches/load`: about 590 bytes per entry in all).
const ENTRY_OVERHEAD_BYTES: usize = 512;

/// A digest of (domain, scope, token). The raw token is never kept.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    pub fn new(domain: &str, scope: Option<&str>, token: InboundToken<'_>) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [domain, scope.unwrap_or(""), token.expose()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        // A scope of "" and no scope must not share an entry.
        ctx.update(&[u8::from(scope.is_some())]);
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        Self(key)
    }
}

/// A downstream token (AT2), ready to be sent upstream.
pub struct CachedToken {
    /// `Bearer <AT2>`, marked sensitive so hyper never logs or indexes it.
    pub authorization: HeaderValue,
    pub expires_at: Instant,
    /// False for an RFC 8693 `N_A` token: usable as another hop's subject, never forwarded.
    pub bearer: bool,
    /// Incremental entries only: the scope held (granted, else as requested) and the part of
    /// the last request the server did not grant, which is not asked for again (-04 §6.1).
    pub scope: Option<Scopes>,
    refused: Scopes,
    /// The response's `ruri` as an origin (`scheme://host:port`), if it had a usable one.
    pub ruri: Option<Arc<str>>,
    ttl: Duration,
    /// Set once a background renewal has started for this entry.
    refreshing: std::sync::atomic::AtomicBool,
}

impl CachedToken {
    /// The token itself, e.g. as the subject token of the next hop.
    pub fn token(&self) -> &str {
        // Built from "Bearer " + a visible-ASCII token in `to_cached`.
        self.authorization.to_str().map_or("", |v| &v[7..])
    }
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One domain's tokens.
#[derive(Debug)]
pub struct TokenCache {
    entries: Cache<CacheKey, Arc<CachedToken>>,
    /// Recent refusals by the token server, so a bad token cannot make chaingate hammer it.
    /// Never a server error: those are retried by the next request.
    rejected: Cache<CacheKey, Error>,
    /// Incremental domains: the scope each caller's grant has grown to, remembered past the
    /// token's expiry so the next exchange asks for the whole union at once.
    grown: Cache<CacheKey, Scopes>,
    settings: CacheSettings,
    hits: Counter,
    misses: Counter,
    upgrades: Counter,
    size: Gauge,
}

impl TokenCache {
    pub fn new(domain: &Arc<str>, settings: &CacheSettings, metrics: &CacheMetrics) -> Self {
        let label = |result| DomainResult {
            domain: domain.clone(),
            result,
        };
        // Bounded by entries and by bytes at once: each entry weighs at least one unit, and more
        // when its token is larger than `max_bytes / max_entries`.
        let unit = (settings.max_bytes / settings.max_entries).max(1);
        Self {
            entries: Cache::builder()
                .max_capacity(settings.max_entries)
                .weigher(move |_key, value: &Arc<CachedToken>| {
                    let bytes = (value.authorization.len() + ENTRY_OVERHEAD_BYTES) as u64;
                    u32::try_from(bytes.div_ceil(unit))
                        .unwrap_or(u32::MAX)
                        .max(1)
                })
                .expire_after(EntryLifetime)
                .build(),
            rejected: Cache::builder()
                .max_capacity(settings.max_entries.min(10_000))
                .time_to_live(
                    settings
                        .negative_ttl
                        .max(std::time::Duration::from_millis(1)),
                )
                .build(),
            grown: Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_idle(incremental::UNION_MEMORY)
                .build(),
            settings: settings.clone(),
            hits: metrics.lookups.get_or_create_owned(&label(Lookup::Hit)),
            misses: metrics.lookups.get_or_create_owned(&label(Lookup::Miss)),
            upgrades: metrics.scope_upgrades.get_or_create_owned(&DomainLabel {
                domain: domain.clone(),
            }),
            size: metrics.entries.get_or_create_owned(&DomainLabel {
                domain: domain.clone(),
            }),
        }
    }

    /// Returns the cached token for `key`, or runs `exchange` once for all concurrent callers.
    pub async fn get_or_exchange<F>(
        &self,
        key: CacheKey,
        token: InboundToken<'_>,
        exchange: F,
    ) -> Result<(Arc<CachedToken>, Lookup), Error>
    where
        F: Future<Output = Result<Issued, Error>>,
    {
        match self.get(&key).await {
            Some(cached) => Ok((cached, Lookup::Hit)),
            None => self.exchange(key, token, exchange).await,
        }
    }

    /// A hit: the token for `key` if it is cached and still valid. Counts hits only; a `None`
    /// must be followed by [`Self::exchange`], which counts the miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<CachedToken>> {
        let cached = self.entries.get(key).await?;
        if cached.expires_at > Instant::now() {
            self.hits.inc();
            return Some(cached);
        }
        self.entries.invalidate(key).await;
        None
    }

    /// A miss: runs `exchange` once for all concurrent callers of `key` and caches the result.
    pub async fn exchange<F>(
        &self,
        key: CacheKey,
        token: InboundToken<'_>,
        exchange: F,
    ) -> Result<(Arc<CachedToken>, Lookup), Error>
    where
        F: Future<Output = Result<Issued, Error>>,
    {
        self.misses.inc();
        if let Some(refusal) = self.rejected.get(&key).await {
            return Err(refusal);
        }
        let entry = self
            .entries
            .entry(key)
            .or_try_insert_with(async {
                let issued = exchange.await?;
                self.to_cached(issued, token, None)
            })
            .await
            .map_err(|e| (*e).clone());
        match entry {
            Ok(entry) => Ok((entry.into_value(), Lookup::Miss)),
            Err(error) => {
                if error.is_refusal() && !self.settings.negative_ttl.is_zero() {
                    self.rejected.insert(key, error.clone()).await;
                }
                Err(error)
            }
        }
    }

    /// Stores a token exchanged in the background (refresh ahead), replacing the one in use.
    /// `asked`: the scope an incremental entry's renewal requested (its held scope).
    pub async fn refresh(
        &self,
        key: CacheKey,
        token: InboundToken<'_>,
        issued: Issued,
        asked: Option<&Scopes>,
    ) -> Result<(), Error> {
        let fresh = self.to_cached(issued, token, asked)?;
        let Some(held) = fresh.scope.clone() else {
            self.entries.insert(key, fresh).await;
            return Ok(());
        };
        // An upgrade may have landed while this renewal was under way: never shrink the grant.
        let now = Instant::now();
        self.entries
            .entry(key)
            .and_compute_with(|current| async move {
                let keep = current.is_some_and(|c| {
                    let c = c.into_value();
                    c.expires_at > now && c.scope.as_ref().is_some_and(|s| !held.covers(s))
                });
                if keep {
                    moka::ops::compute::Op::Nop
                } else {
                    moka::ops::compute::Op::Put(fresh)
                }
            })
            .await;
        Ok(())
    }

    /// Whether a hit is old enough to be renewed in the background: past `refresh_ahead` of its
    /// lifetime. Marks it, so only one renewal starts per entry.
    pub fn should_refresh(&self, cached: &CachedToken) -> bool {
        let Some(ahead) = self.settings.refresh_ahead else {
            return false;
        };
        let left = cached.expires_at.saturating_duration_since(Instant::now());
        left < cached.ttl.mul_f64(1.0 - ahead)
            && !cached
                .refreshing
                .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Drops the entry for `key`, e.g. when the upstream says the token is no longer valid.
    pub async fn evict(&self, key: &CacheKey) {
        self.entries.invalidate(key).await;
    }

    /// Refreshes the `chaingate_token_cache_entries` gauge; called at scrape time.
    pub async fn update_size_metric(&self) {
        // moka counts lazily; settle pending inserts and evictions so the gauge is exact.
        self.entries.run_pending_tasks().await;
        self.size
            .set(i64::try_from(self.entries.entry_count()).unwrap_or(i64::MAX));
    }

    /// `asked`: for an incremental entry, the scope requested (held if the response has none).
    fn to_cached(
        &self,
        issued: Issued,
        inbound: InboundToken<'_>,
        asked: Option<&Scopes>,
    ) -> Result<Arc<CachedToken>, Error> {
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", issued.access_token.expose()))
                .map_err(|_| Error::ExchangeFailed("access_token is not a usable bearer token"))?;
        authorization.set_sensitive(true);
        let lifetime = issued.expires_in.unwrap_or(self.settings.default_ttl);
        let mut ttl = lifetime.saturating_sub(self.settings.expiry_skew);
        // Never keep AT2 past AT1's own expiry: chaining must not extend a grant.
        if let Some(remaining) = jwt_remaining_lifetime(inbound.expose()) {
            ttl = ttl.min(remaining);
        }
        // Bound the entry even if a server hands out absurd lifetimes.
        ttl = ttl.min(Duration::from_secs(24 * 3600));
        // RFC 6749 §5.1: no `scope` in the response means the scope requested was granted.
        let scope = asked.map(|asked| match &issued.scope {
            Some(granted) => Scopes::parse(granted),
            None => asked.clone(),
        });
        let refused = match (asked, &scope) {
            (Some(asked), Some(held)) => asked.minus(held),
            _ => Scopes::default(),
        };
        Ok(Arc::new(CachedToken {
            authorization,
            bearer: issued.bearer,
            scope,
            refused,
            ruri: issued
                .links
                .ruri
                .as_deref()
                .and_then(crate::config::origin)
                .map(Arc::from),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            expires_at: Instant::now() + ttl,
            ttl,
        }))
    }
}

/// moka's per-entry expiry: each entry lives for the TTL computed from its token.
struct EntryLifetime;

// moka's trait names std's Instant; the value is ignored, all our clocks are tokio's.
#[allow(clippy::disallowed_types)]
impl Expiry<CacheKey, Arc<CachedToken>> for EntryLifetime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Time left before a JWT's `exp`, read without verifying it (used only to shorten a TTL).
/// `Some(ZERO)` if it has expired; `None` if the token is not a JWT with a numeric `exp`.
fn jwt_remaining_lifetime(token: &str) -> Option<Duration> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<serde_json::Value>,
    }
    let exp = serde_json::from_slice::<Exp>(&bytes).ok()?.exp?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

#[cfg(test)]
mod tests;
