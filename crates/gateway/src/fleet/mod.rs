//! The fleet's tier (`[cache.shared]`): tokens on Valkey/Redis for the whole fleet, behind every
//! replica's own cache (moka stays the first tier: a hit never leaves the process). Used by the
//! tokens stage only.
//!
//! - A first-tier miss reads here before exchanging. On a shared miss one replica takes a lease
//!   (`SET NX PX`) and exchanges; the others poll for its answer up to `lease_ttl`, then exchange
//!   themselves. The answer is written with the expiry the first tier uses.
//! - Keys are HMACs and values AEAD-sealed (`seal.rs`): Redis never holds a readable token.
//! - An eviction (an upstream refused the token) deletes the value and is published, so every
//!   replica drops its first-tier copy.
//! - Redis down, slow or wrong never fails a request: each command has a deadline, a breaker
//!   stops waiting on a Redis that keeps failing, and every failure falls back to exchanging.

use std::sync::Arc;
use std::time::Duration;

use redis::FromRedisValue;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::SharedCacheSettings;

mod breaker;
mod connection;
mod metrics;
mod seal;
use breaker::Breaker;
use connection::Connection;
pub(crate) use metrics::{SharedCounters, SharedMetrics};
use seal::{Sealer, Unsealed};

/// A token as the shared tier stores it. Plain data; sealed before it leaves the process.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Entry {
    /// The access token (AT2).
    #[serde(rename = "t")]
    pub token: String,
    /// False for an RFC 8693 `N_A` token.
    #[serde(rename = "b")]
    pub bearer: bool,
    /// A DPoP-bound token's key thumbprint (RFC 9449 §6.1): only a replica holding that key
    /// may use it. Absent for a bearer token (and in entries older replicas wrote).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The response's `ruri` origin, if any.
    #[serde(rename = "r")]
    pub ruri: Option<String>,
    /// When it stops being used, in Unix milliseconds (replicas share the wall clock).
    #[serde(rename = "e")]
    pub expires_unix_ms: u64,
    /// Its lifetime as issued, in milliseconds (for refresh-ahead's share).
    #[serde(rename = "l")]
    pub ttl_ms: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("expires_unix_ms", &self.expires_unix_ms)
            .finish_non_exhaustive()
    }
}

/// A token's place in Redis: the value's key and its lease's, in one Cluster slot.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SharedKey {
    value: Arc<str>,
    lease: Arc<str>,
}

impl SharedKey {
    /// The value's Redis key: what eviction messages name.
    pub(crate) fn id(&self) -> &Arc<str> {
        &self.value
    }
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// What a first-tier miss learns from the shared tier.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Another replica has the token (found at once, or after waiting on its lease).
    Filled(Entry),
    /// This replica holds the lease: it exchanges, then [`SharedTier::put`]s or
    /// [`SharedTier::release`]s.
    Leased,
    /// No help here (Redis unavailable, or the lease holder took too long): exchange alone.
    Alone,
}

/// `MGET value lease`.
type ValueAndLease = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Why a command did not answer.
#[derive(Debug)]
enum Failure {
    /// The breaker is open: not tried.
    Skipped,
    /// Past the deadline, or Redis answered with an error.
    Unavailable,
}

/// The fleet's tier; one per process, shared by every domain and kept across reloads.
pub(crate) struct SharedTier {
    connection: Connection,
    sealer: Sealer,
    prefix: String,
    lease_ttl: Duration,
    timeout: Duration,
    breaker: Breaker,
    metrics: SharedMetrics,
    /// Redis keys another replica evicted, for every domain's first tier.
    evicted: broadcast::Sender<Arc<str>>,
    /// Tells this replica's own eviction messages from the others'.
    replica: String,
    subscriber: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedTier {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl SharedTier {
    /// Sets up the tier; connects lazily, so a Redis that is down at start delays nothing.
    pub(crate) fn new(
        settings: &SharedCacheSettings,
        metrics: SharedMetrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let (connection, subscribe_to) = connection::connect(settings)?;
        let (evicted, _) = broadcast::channel(1024);
        let replica = format!("{:016x}", rand_u64());
        let channel = format!("{}evicted", settings.key_prefix);
        let subscriber = tokio::spawn(connection::subscribe(
            subscribe_to,
            channel,
            replica.clone(),
            evicted.clone(),
            settings.connect_timeout,
        ));
        Ok(Arc::new(Self {
            connection,
            sealer: Sealer::new(&settings.encryption_key),
            prefix: settings.key_prefix.clone(),
            lease_ttl: settings.lease_ttl,
            timeout: settings.timeout,
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_open),
            metrics,
            evicted,
            replica,
            subscriber,
        }))
    }

    /// The tier's metric families (for per-domain counters).
    pub(crate) fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// Where the token for `parts` (domain, scope, caller's token...) lives: an HMAC, never a
    /// plain hash. The `{..}` hash tag keeps value and lease in one Cluster slot.
    pub(crate) fn key(&self, parts: &[&[u8]]) -> SharedKey {
        let digest = self.sealer.index(parts);
        SharedKey {
            value: format!("{}{{{digest}}}:t", self.prefix).into(),
            lease: format!("{}{{{digest}}}:l", self.prefix).into(),
        }
    }

    /// Redis keys other replicas evicted; see [`SharedTier::evict`].
    pub(crate) fn evictions(&self) -> broadcast::Receiver<Arc<str>> {
        self.evicted.subscribe()
    }

    /// The token for `key` if a replica has stored one expiring after `newer_than` (Unix ms;
    /// 0 for a first request, the token in use's expiry for a renewal); else the lease, or a
    /// wait for the replica holding it. Never an error: without Redis, [`Claim::Alone`].
    pub(crate) async fn claim(
        &self,
        key: &SharedKey,
        newer_than: u64,
        counters: &SharedCounters,
    ) -> Claim {
        let deadline = Instant::now() + self.lease_ttl;
        let mut poll = Duration::from_millis(5);
        let mut waited = false;
        loop {
            let found: Result<ValueAndLease, _> = self
                .run(redis::cmd("MGET").arg(&*key.value).arg(&*key.lease))
                .await;
            let Ok((value, lease)) = found else {
                return Claim::Alone;
            };
            let found = value
                .and_then(|v| self.open(key, &v))
                .filter(|entry| entry.expires_unix_ms > newer_than);
            if let Some(entry) = found {
                counters.hit(waited);
                return Claim::Filled(entry);
            }
            if lease.is_none() {
                let taken: Result<Option<String>, _> = self
                    .run(
                        redis::cmd("SET")
                            .arg(&*key.lease)
                            .arg(&self.replica)
                            .arg("NX")
                            .arg("PX")
                            .arg(millis(self.lease_ttl)),
                    )
                    .await;
                match taken {
                    Ok(Some(_)) => {
                        counters.miss();
                        return Claim::Leased;
                    }
                    // Another replica took it between the two commands: wait on it.
                    Ok(None) => {}
                    Err(_) => return Claim::Alone,
                }
            }
            if Instant::now() + poll > deadline {
                counters.lease_timed_out();
                return Claim::Alone;
            }
            waited = true;
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_millis(50));
        }
    }

    /// Stores `entry` for the fleet until it expires, and gives up the lease.
    pub(crate) async fn put(&self, key: &SharedKey, entry: &Entry) {
        let left = entry.expires_unix_ms.saturating_sub(now_unix_ms());
        if left == 0 {
            self.release(key).await;
            return;
        }
        let plain = serde_json::to_vec(entry).expect("an entry serializes");
        let sealed = self.sealer.seal(key.value.as_bytes(), &plain);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&*key.value)
            .arg(sealed)
            .arg("PX")
            .arg(left)
            .ignore()
            .cmd("DEL")
            .arg(&*key.lease)
            .ignore();
        let _: Result<(), _> = self.run_pipe(&pipe).await;
    }

    /// Gives up the lease without a token (the exchange failed): the next replica may try.
    pub(crate) async fn release(&self, key: &SharedKey) {
        let _: Result<(), _> = self.run(redis::cmd("DEL").arg(&*key.lease)).await;
    }

    /// Drops the fleet's copy of `key` and tells every replica to drop its own.
    pub(crate) async fn evict(&self, key: &SharedKey) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(&*key.value)
            .ignore()
            .cmd("PUBLISH")
            .arg(format!("{}evicted", self.prefix))
            .arg(format!("{} {}", self.replica, key.value))
            .ignore();
        let _: Result<(), _> = self.run_pipe(&pipe).await;
    }

    fn open(&self, key: &SharedKey, value: &[u8]) -> Option<Entry> {
        match self.sealer.open(key.value.as_bytes(), value) {
            Ok(plain) => match serde_json::from_slice(&plain) {
                Ok(entry) => Some(entry),
                Err(_) => {
                    self.metrics.tampered.inc();
                    None
                }
            },
            Err(Unsealed::UnknownKey) => {
                self.metrics.unknown_key.inc();
                None
            }
            Err(Unsealed::Tampered) => {
                tracing::warn!("a shared cache value failed authentication; ignored");
                self.metrics.tampered.inc();
                None
            }
        }
    }

    async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Failure> {
        self.guarded(self.connection.query(cmd)).await
    }

    async fn run_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Failure> {
        self.guarded(self.connection.query_pipe(pipe)).await
    }

    /// One command under the breaker and the deadline.
    async fn guarded<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        if !self.breaker.allow() {
            return Err(Failure::Skipped);
        }
        let outcome = tokio::time::timeout(self.timeout, command).await;
        match outcome {
            Ok(Ok(value)) => {
                if self.breaker.succeeded() {
                    self.metrics.breaker_open.set(0);
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "shared cache command failed");
                self.failed();
                Err(Failure::Unavailable)
            }
            Err(_) => {
                tracing::debug!("shared cache command timed out");
                self.failed();
                Err(Failure::Unavailable)
            }
        }
    }

    fn failed(&self) {
        self.metrics.unavailable.inc();
        if self.breaker.failed() {
            tracing::warn!("shared cache unavailable; going without it for a while");
            self.metrics.breaker_open.set(1);
        }
    }
}

/// The wall clock in Unix milliseconds: what replicas agree on (their `Instant`s differ).
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
