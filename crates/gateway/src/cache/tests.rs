//! The generic cache under paused time: expiry follows `tokio::time`, misses coalesce, only
//! remembered errors become negative entries, and those expire too.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::registry::Registry;

use super::*;

#[derive(Debug)]
struct Value {
    n: usize,
    expires_at: Instant,
    ttl: Duration,
}

impl Expiring for Value {
    fn expires_at(&self) -> Instant {
        self.expires_at
    }
    fn ttl(&self) -> Duration {
        self.ttl
    }
    fn size_bytes(&self) -> usize {
        8
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Failure {
    Refused,
    Unavailable,
}

fn remember(e: &Failure) -> bool {
    *e == Failure::Refused
}

fn cache(negative_ttl: Duration) -> ReadThrough<Value, Failure> {
    let metrics = CacheMetrics::register(&mut Registry::default());
    ReadThrough::new(
        Bounds {
            max_entries: 100,
            max_bytes: 1 << 20,
            negative_ttl,
        },
        metrics.counters(&Arc::from("test")),
    )
}

fn value(n: usize, ttl: Duration) -> Arc<Value> {
    Arc::new(Value {
        n,
        expires_at: Instant::now() + ttl,
        ttl,
    })
}

#[test]
fn keys_are_length_prefixed_keyed_hashes() {
    assert_eq!(Key::of(&[b"a", b"b"]), Key::of(&[b"a", b"b"]));
    assert_ne!(Key::of(&[b"ab", b"c"]), Key::of(&[b"a", b"bc"]));
    assert_ne!(Key::of(&[b"a"]).with(b"x"), Key::of(&[b"a"]));
    assert_eq!(format!("{:?}", Key::of(&[b"secret"])), "Key(..)");
}

#[tokio::test(start_paused = true)]
async fn a_value_is_served_until_its_lifetime_ends_on_tokio_time() {
    let cache = cache(Duration::ZERO);
    let key = Key::of(&[b"k"]);
    let first = cache
        .load(
            key,
            async { Ok(value(1, Duration::from_secs(60))) },
            remember,
        )
        .await
        .unwrap();
    assert_eq!(first.0.n, 1);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(cache.get(&key, |_| true).await.map(|v| v.n), Some(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(cache.get(&key, |_| true).await.is_none(), "expired");
    let second = cache
        .load(
            key,
            async { Ok(value(2, Duration::from_secs(60))) },
            remember,
        )
        .await
        .unwrap();
    assert_eq!(second.0.n, 2, "an expired entry is loaded again");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_load() {
    let cache = Arc::new(cache(Duration::ZERO));
    let loads = Arc::new(AtomicUsize::new(0));
    let key = Key::of(&[b"k"]);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .load(
                        key,
                        async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok(value(7, Duration::from_secs(60)))
                        },
                        remember,
                    )
                    .await
                    .map(|(v, loaded)| (v.n, loaded))
            })
        })
        .collect();
    let mut loaders = 0;
    for task in tasks {
        let (n, loaded) = task.await.unwrap().unwrap();
        assert_eq!(n, 7);
        loaders += usize::from(loaded);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        loaders, 1,
        "exactly one caller is told it loaded; 15 waited"
    );
}

#[tokio::test(start_paused = true)]
async fn only_remembered_errors_become_negative_entries_and_they_expire() {
    let cache = cache(Duration::from_secs(5));
    let key = Key::of(&[b"k"]);
    let loads = AtomicUsize::new(0);
    let failing = |error: Failure| {
        let loads = &loads;
        async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Err::<Arc<Value>, _>(error)
        }
    };
    // A transient failure is not remembered: the next request tries again.
    assert_eq!(
        cache
            .load(key, failing(Failure::Unavailable), remember)
            .await
            .unwrap_err(),
        Failure::Unavailable
    );
    assert_eq!(
        cache
            .load(key, failing(Failure::Refused), remember)
            .await
            .unwrap_err(),
        Failure::Refused
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // A refusal is: answered without loading until the negative TTL has passed.
    assert_eq!(
        cache
            .load(key, failing(Failure::Refused), remember)
            .await
            .unwrap_err(),
        Failure::Refused
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "answered from the negative entry"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    let fresh = cache
        .load(
            key,
            async { Ok(value(3, Duration::from_secs(60))) },
            remember,
        )
        .await;
    assert_eq!(fresh.map(|v| v.0.n), Ok(3));
}

#[tokio::test(start_paused = true)]
async fn a_zero_negative_ttl_remembers_nothing() {
    let cache = cache(Duration::ZERO);
    let key = Key::of(&[b"k"]);
    let _ = cache
        .load(
            key,
            async { Err::<Arc<Value>, _>(Failure::Refused) },
            remember,
        )
        .await;
    assert!(cache.rejected(&key).await.is_none());
}

/// moka evicts on its own clock, so this asks the expiry policy directly: a replaced value (a
/// renewal) gets its own lifetime, not what was left of the one it replaced.
#[test]
#[allow(clippy::disallowed_types)]
fn a_replaced_value_lives_for_its_own_lifetime() {
    let key = Key::of(&[b"k"]);
    let renewed = value(2, Duration::from_secs(3600));
    let left_of_old = Some(Duration::from_secs(1));
    assert_eq!(
        EntryLifetime.expire_after_update(&key, &renewed, std::time::Instant::now(), left_of_old),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        EntryLifetime.expire_after_create(&key, &renewed, std::time::Instant::now()),
        Some(Duration::from_secs(3600))
    );
}
