//! A generic read-through cache: keyed-hash keys, per-entry lifetimes, negative entries and
//! coalesced misses, over moka. It knows nothing of OAuth or HTTP: `tokens` decides what a value
//! is, how long it lives and which errors are worth remembering.
//!
//! Entries are re-checked against `tokio::time` on every read, because moka evicts on its own
//! clock; so expiry follows paused time in tests and never serves a value past its lifetime.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::Expiry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::LazyLock;

mod metrics;
pub(crate) use metrics::{CacheMetrics, Lookup};
pub(crate) use moka::ops::compute::Op;

/// What an entry costs besides its value: key, timestamps, moka's bookkeeping (measured in
/// `benches/load`: about 590 bytes per entry in all).
const ENTRY_OVERHEAD_BYTES: usize = 512;

/// A keyed 128-bit hash of the parts that identify an entry: the cache never holds what it was
/// keyed by, and without the process's random key no one can compute, let alone collide, a key.
/// SipHash (std's `RandomState`) rather than SHA-256: a key never leaves the process, and the
/// digest was 8 % of a warm request's user-space instructions (`benches/load/callgrind.sh`).
/// A tier shared between processes needs a digest they agree on (`chaingate_oauth::digest`).
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) struct Key([u64; 2]);

/// The process's secret hash key, drawn from the OS at first use. One for the process, not per
/// cache: keys are compared across config generations, which keep their caches.
static HASH_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key of `parts`, length-prefixed so that shifting a boundary changes the key.
    pub(crate) fn of(parts: &[&[u8]]) -> Self {
        // Two 64-bit lanes of one keyed PRF, told apart by a leading byte.
        let lane = |lane: u8| {
            let mut hasher = HASH_KEY.build_hasher();
            hasher.write_u8(lane);
            for part in parts {
                hasher.write_usize(part.len());
                hasher.write(part);
            }
            hasher.finish()
        };
        Self([lane(0), lane(1)])
    }

    /// A key derived from this one and `extra` (e.g. one request of an entry, for its own
    /// negative entry).
    pub(crate) fn with(&self, extra: &[u8]) -> Self {
        Self::of(&[&self.0[0].to_le_bytes(), &self.0[1].to_le_bytes(), extra])
    }
}

/// A cached value's lifetime and size.
pub(crate) trait Expiring: Send + Sync + 'static {
    /// When the value stops being served.
    fn expires_at(&self) -> Instant;
    /// Its whole lifetime, for moka's own eviction.
    fn ttl(&self) -> Duration;
    /// Approximate bytes held, for the byte bound.
    fn size_bytes(&self) -> usize;
}

/// Bounds and the negative-entry lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    /// Entries at most.
    pub max_entries: u64,
    /// Bytes at most, values and bookkeeping together (approximate).
    pub max_bytes: u64,
    /// How long a remembered error answers for its key; zero remembers none.
    pub negative_ttl: Duration,
}

/// The counters one cache records into.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// Lookups answered from the cache.
    pub hits: Counter,
    /// Lookups that had to load.
    pub misses: Counter,
    /// Entries held, refreshed at scrape time.
    pub size: Gauge,
}

/// One read-through cache of `V`, whose loads fail with `E`.
pub(crate) struct ReadThrough<V, E> {
    entries: Cache<Key, Arc<V>>,
    /// Recent errors worth remembering, so a bad input cannot make the loader hammer its
    /// source.
    /// Each with its end on `tokio::time` (moka's own TTL is the backstop on its clock).
    rejected: Cache<Key, (E, Instant)>,
    negative_ttl: Duration,
    counters: Counters,
}

impl<V, E> std::fmt::Debug for ReadThrough<V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl<V: Expiring, E: Clone + Send + Sync + 'static> ReadThrough<V, E> {
    /// An empty cache within `bounds`.
    pub(crate) fn new(bounds: Bounds, counters: Counters) -> Self {
        // Bounded by entries and by bytes at once: each entry weighs at least one unit, and more
        // when its value is larger than `max_bytes / max_entries`.
        let unit = (bounds.max_bytes / bounds.max_entries.max(1)).max(1);
        Self {
            entries: Cache::builder()
                .max_capacity(bounds.max_entries)
                .weigher(move |_key, value: &Arc<V>| {
                    let bytes = (value.size_bytes() + ENTRY_OVERHEAD_BYTES) as u64;
                    u32::try_from(bytes.div_ceil(unit))
                        .unwrap_or(u32::MAX)
                        .max(1)
                })
                .expire_after(EntryLifetime)
                .build(),
            rejected: Cache::builder()
                .max_capacity(bounds.max_entries.min(10_000))
                .time_to_live(bounds.negative_ttl.max(Duration::from_millis(1)))
                .build(),
            negative_ttl: bounds.negative_ttl,
            counters,
        }
    }

    /// A hit: the live value for `key`, if `usable` accepts it. Counts hits only; a `None`
    /// must be followed by a load ([`Self::load`] or [`Self::try_compute`]), which counts the
    /// miss.
    pub(crate) async fn get(&self, key: &Key, usable: impl FnOnce(&V) -> bool) -> Option<Arc<V>> {
        let cached = self.entries.get(key).await?;
        if cached.expires_at() <= Instant::now() {
            // Expired on our clock before moka's: the next load must not find it.
            self.entries.invalidate(key).await;
            return None;
        }
        if !usable(&cached) {
            return None;
        }
        self.counters.hits.inc();
        Some(cached)
    }

    /// A miss: runs `load` once for all concurrent callers of `key` (they share its value or
    /// its error) and caches the value. An error for which `remember` is true answers this key
    /// for the negative TTL. The flag: whether this caller's `load` made the value (false: it
    /// waited on another caller's).
    pub(crate) async fn load<F>(
        &self,
        key: Key,
        load: F,
        remember: fn(&E) -> bool,
    ) -> Result<(Arc<V>, bool), E>
    where
        F: Future<Output = Result<Arc<V>, E>>,
    {
        self.counters.misses.inc();
        if let Some(error) = self.rejected(&key).await {
            return Err(error);
        }
        match self.entries.entry(key).or_try_insert_with(load).await {
            Ok(entry) => {
                let fresh = entry.is_fresh();
                Ok((entry.into_value(), fresh))
            }
            Err(error) => {
                let error = (*error).clone();
                self.reject(key, &error, remember).await;
                Err(error)
            }
        }
    }

    /// Serialized per key: `f` sees the live value (if any) and decides whether to keep it,
    /// replace it, or fail. Concurrent callers of one key wait for each other, so a caller
    /// that waited sees the value the previous one put.
    pub(crate) async fn try_compute<F, Fut>(&self, key: Key, f: F) -> Result<Option<Arc<V>>, E>
    where
        F: FnOnce(Option<Arc<V>>) -> Fut,
        Fut: Future<Output = Result<Op<Arc<V>>, E>>,
    {
        self.counters.misses.inc();
        let now = Instant::now();
        let done = self
            .entries
            .entry(key)
            .and_try_compute_with(|current| {
                f(current
                    .map(moka::Entry::into_value)
                    .filter(|c| c.expires_at() > now))
            })
            .await?;
        Ok(done.into_entry().map(moka::Entry::into_value))
    }

    /// Like [`Self::try_compute`], for a decision that cannot fail and is not a lookup (e.g.
    /// storing a renewal).
    pub(crate) async fn compute<F, Fut>(&self, key: Key, f: F)
    where
        F: FnOnce(Option<Arc<V>>) -> Fut,
        Fut: Future<Output = Op<Arc<V>>>,
    {
        self.entries
            .entry(key)
            .and_compute_with(|current| f(current.map(moka::Entry::into_value)))
            .await;
    }

    /// The remembered error for `key`, if any.
    pub(crate) async fn rejected(&self, key: &Key) -> Option<E> {
        let (error, until) = self.rejected.get(key).await?;
        if until > Instant::now() {
            return Some(error);
        }
        self.rejected.invalidate(key).await;
        None
    }

    /// Remembers `error` for `key` if `remember` says so (and negative entries are on).
    pub(crate) async fn reject(&self, key: Key, error: &E, remember: fn(&E) -> bool) {
        if !self.negative_ttl.is_zero() && remember(error) {
            let until = Instant::now() + self.negative_ttl;
            self.rejected.insert(key, (error.clone(), until)).await;
        }
    }

    /// Stores `value` for `key`, replacing what was there.
    pub(crate) async fn insert(&self, key: Key, value: Arc<V>) {
        self.entries.insert(key, value).await;
    }

    /// Drops the entry for `key`; whether one was there (live or not yet swept).
    pub(crate) async fn remove(&self, key: &Key) -> bool {
        self.entries.remove(key).await.is_some()
    }

    /// Drops the entry for `key`.
    pub(crate) async fn evict(&self, key: &Key) {
        self.entries.invalidate(key).await;
    }

    /// Refreshes the size gauge; called at scrape time.
    pub(crate) async fn update_size_metric(&self) {
        // moka counts lazily; settle pending inserts and evictions so the gauge is exact.
        self.entries.run_pending_tasks().await;
        self.counters
            .size
            .set(i64::try_from(self.entries.entry_count()).unwrap_or(i64::MAX));
    }
}

/// moka's per-entry expiry: each entry lives for its value's TTL.
struct EntryLifetime;

// moka's trait names std's Instant; the value is ignored, all our clocks are tokio's.
#[allow(clippy::disallowed_types)]
impl<V: Expiring> Expiry<Key, Arc<V>> for EntryLifetime {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<V>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl())
    }

    /// A replaced value (a renewal) lives for its own TTL from now. moka's default keeps the
    /// old deadline, which evicted every renewed token when the token it replaced would have
    /// expired (found by the chaos run: warm callers failed one lifetime in).
    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Arc<V>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl())
    }
}

#[cfg(test)]
mod tests;
