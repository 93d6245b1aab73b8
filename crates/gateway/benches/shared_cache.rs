//! The shared tier, measured side by side with and without `[cache.shared]`, against a real
//! redis-server and gateways on loopback (in this process):
//!
//! 1. exchanges for R replicas × C callers, each caller reaching every replica;
//! 2. the latency of a first-tier miss the shared tier answers, next to a first-tier hit and to
//!    a miss that exchanges (token server in process, answering at once);
//! 3. the warm path (first-tier hits) with the shared tier configured and without.
//!
//! Run: `cargo bench -p chaingate-gateway --bench shared_cache` (REPLICAS, CALLERS, SECONDS in the
//! environment change the sizes). Figures: README, "Shared cache".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chaingate_test_support::redis::RedisServer;
use chaingate_test_support::{config, gateway, get, TokenServer, Upstream};
use tokio::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    chaingate_core::tls::install_crypto_provider();
    let replicas = env("REPLICAS", 3);
    let callers = env("CALLERS", 100);
    let seconds = env("SECONDS", 3) as u64;
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cache-key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let shared = format!(
        "[cache.shared]\nurl = \"{}\"\nencryption_key_file = {:?}\n",
        redis.url(),
        key.display().to_string()
    );
    let upstream = Upstream::start().await;

    println!("| measure | without shared tier | with shared tier |");
    println!("|---|---:|---:|");

    // 1. Exchanges for the fleet.
    let mut exchanges = Vec::new();
    for extra in ["", shared.as_str()] {
        let sts = TokenServer::start().await;
        let toml = config(&sts.url(), &upstream.url(), extra);
        let mut fleet = Vec::new();
        for _ in 0..replicas {
            fleet.push(gateway(&toml).await);
        }
        for c in 0..callers {
            for gw in &fleet {
                assert_eq!(
                    get(gw.addr, "/", Some(&format!("caller-{c}"))).await.status,
                    200
                );
            }
        }
        exchanges.push(sts.calls());
    }
    println!(
        "| exchanges, {replicas} replicas × {callers} callers (one token lifetime) | {} | {} |",
        exchanges[0], exchanges[1]
    );

    // 2. Latency of one request by how it is answered (sequential, so no queueing).
    let sts = TokenServer::start().await;
    let plain = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    let a = gateway(&config(&sts.url(), &upstream.url(), &shared)).await;
    let b = gateway(&config(&sts.url(), &upstream.url(), &shared)).await;
    let (mut hit, mut exchanged, mut from_shared) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..callers {
        let caller = format!("latency-{c}");
        let started = Instant::now();
        get(plain.addr, "/", Some(&caller)).await;
        exchanged.push(started.elapsed());
        let started = Instant::now();
        get(plain.addr, "/", Some(&caller)).await;
        hit.push(started.elapsed());
        get(a.addr, "/", Some(&caller)).await;
        let started = Instant::now();
        get(b.addr, "/", Some(&caller)).await;
        from_shared.push(started.elapsed());
    }
    for v in [&mut hit, &mut exchanged, &mut from_shared] {
        v.sort();
    }
    println!(
        "| request latency p50 / p99: first-tier hit | {} / {} | |",
        micros(percentile(&hit, 0.5)),
        micros(percentile(&hit, 0.99))
    );
    println!(
        "| request latency p50 / p99: first-tier miss | {} / {} (exchange) | {} / {} (shared hit) |",
        micros(percentile(&exchanged, 0.5)),
        micros(percentile(&exchanged, 0.99)),
        micros(percentile(&from_shared, 0.5)),
        micros(percentile(&from_shared, 0.99))
    );

    // 3. The warm path: first-tier hits, 8 concurrent callers, for `seconds`, both configs
    // alternated twice (A B B A) so drift on a shared machine falls on both.
    let warm = |addr: std::net::SocketAddr| async move {
        let done = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let done = done.clone();
                tokio::spawn(async move {
                    let client = chaingate_test_support::client();
                    while Instant::now() < until {
                        let request = http::Request::get(format!("http://{addr}/"))
                            .header("authorization", "Bearer warm-caller")
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap();
                        let response = client.request(request).await.unwrap();
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        done.load(Ordering::Relaxed) as f64 / seconds as f64
    };
    let mut rates = [0.0f64; 2];
    let mut redis_commands = 0;
    for which in [0, 1, 1, 0] {
        let addr = if which == 0 { plain.addr } else { a.addr };
        get(addr, "/", Some("warm-caller")).await;
        let before = commands_processed(&redis).await;
        rates[which] += warm(addr).await / 2.0;
        // Less the INFO command itself.
        redis_commands += commands_processed(&redis).await - before - 1;
    }
    println!(
        "| warm path, requests/s (8 callers, client in process) | {:.0} | {:.0} ({:.2}×) |",
        rates[0],
        rates[1],
        rates[1] / rates[0]
    );
    println!("| Redis commands during the warm runs | — | {redis_commands} |");
}

/// Redis' `total_commands_processed`.
async fn commands_processed(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}
