//! `[cache.shared]` against a real Valkey/Redis (Debian's redis-server, started per test): one
//! exchange per caller for the whole fleet, nothing readable in Redis, fleet-wide eviction, and
//! never a failed request because of Redis.

use chaingate_test_support as support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::redis::{RedisCluster, RedisServer};
use support::*;

const SECRET: &str = "gateway-secret-value";

/// A 32-byte key in a file, as `encryption_key_file` takes it.
fn key_file(dir: &std::path::Path, byte: u8) -> std::path::PathBuf {
    let path = dir.join(format!("cache-key-{byte}"));
    std::fs::write(&path, [byte; 32]).unwrap();
    path
}

fn shared_section(server: &str, key: &std::path::Path, extra: &str) -> String {
    // A short open breaker, so a test sees Redis used again soon after it returns.
    let breaker = if extra.contains("breaker_open") {
        ""
    } else {
        "breaker_open = \"300ms\"\n"
    };
    format!(
        "[cache.shared]\n{server}\nencryption_key_file = {:?}\n{breaker}{extra}\n",
        key.display().to_string()
    )
}

fn replica_config(sts: &TokenServer, upstream: &str, shared: &str) -> String {
    config(&sts.url(), upstream, shared)
}

/// A token server whose tokens are long and easy to find in a scan of Redis.
async fn token_server(delay: Duration) -> TokenServer {
    TokenServer::scripted(move |n, _| {
        Reply::raw(
            200,
            &format!(
                r#"{{"access_token":"fleet-at2-{n}-Zq8mW3xKpL7vN2rT","token_type":"Bearer","expires_in":300}}"#
            ),
        )
        .delayed(delay)
    })
    .await
}

/// A redis-server, a key file, a token server answering after `delay`, an upstream, and the
/// `[cache.shared]` section naming the server and the key.
struct Setup {
    redis: RedisServer,
    _dir: tempfile::TempDir,
    sts: TokenServer,
    upstream: Upstream,
    shared: String,
}

async fn setup(delay: Duration) -> Setup {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let shared = shared_section(
        &format!("url = \"{}\"", redis.url()),
        &key_file(dir.path(), 1),
        "",
    );
    Setup {
        redis,
        _dir: dir,
        sts: token_server(delay).await,
        upstream: Upstream::start().await,
        shared,
    }
}

/// `n` concurrent requests from `caller`, spread round-robin over `fleet`; their answers.
async fn burst(fleet: &[chaingate_gateway::Running], n: usize, caller: &str) -> Vec<Answer> {
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let (addr, caller) = (fleet[i % fleet.len()].addr, caller.to_string());
            tokio::spawn(async move { get(addr, "/", Some(&caller)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    answers
}

async fn replicas(n: usize, toml: &str) -> Vec<chaingate_gateway::Running> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(gateway(toml).await);
    }
    all
}

fn shared_sample(scrape: &str, series: &str) -> f64 {
    sample(scrape, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_caller_across_three_replicas_costs_one_exchange() {
    let Setup {
        redis: _redis,
        sts,
        upstream,
        shared,
        _dir,
    } = setup(Duration::ZERO).await;
    let fleet = replicas(3, &replica_config(&sts, &upstream.url(), &shared)).await;
    for gw in &fleet {
        let answer = get(gw.addr, "/", Some("fleet-caller")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.json()["authorization"],
            "Bearer fleet-at2-0-Zq8mW3xKpL7vN2rT"
        );
    }
    assert_eq!(sts.calls(), 1, "one exchange for the fleet");
    let scrape = metrics(&fleet[2]).await;
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_lookups_total{domain="billing",result="hit"}"#
        ),
        1.0
    );
    // A hit stays on the first tier: no more shared lookups for the next requests.
    for gw in &fleet {
        assert_eq!(get(gw.addr, "/", Some("fleet-caller")).await.status, 200);
    }
    let scrape = metrics(&fleet[2]).await;
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_lookups_total{domain="billing",result="hit"}"#
        ),
        1.0,
        "a first-tier hit went to Redis"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_first_requests_over_three_replicas_cost_one_exchange() {
    // Slow enough that every replica misses while the first exchange is in flight.
    let Setup {
        redis: _redis,
        sts,
        upstream,
        shared,
        _dir,
    } = setup(Duration::from_millis(300)).await;
    let fleet = replicas(3, &replica_config(&sts, &upstream.url(), &shared)).await;
    for answer in burst(&fleet, 50, "burst-caller").await {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.json()["authorization"],
            "Bearer fleet-at2-0-Zq8mW3xKpL7vN2rT"
        );
    }
    assert_eq!(sts.calls(), 1, "50 first requests over 3 replicas");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_cluster_serves_the_fleet_too() {
    let cluster = RedisCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let sts = token_server(Duration::from_millis(200)).await;
    let upstream = Upstream::start().await;
    let nodes = cluster
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let shared = shared_section(
        &format!("cluster_nodes = [{nodes}]"),
        &key_file(dir.path(), 1),
        "",
    );
    let fleet = replicas(3, &replica_config(&sts, &upstream.url(), &shared)).await;
    // Callers whose keys land on different slots, each over the three replicas at once.
    for caller in ["cluster-a", "cluster-b", "cluster-c", "cluster-d"] {
        for answer in burst(&fleet, 9, caller).await {
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
    assert_eq!(sts.calls(), 4, "one exchange per caller across the cluster");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_under_load_fails_no_request() {
    let Setup {
        mut redis,
        sts,
        upstream,
        shared,
        _dir,
    } = setup(Duration::ZERO).await;
    let fleet = replicas(2, &replica_config(&sts, &upstream.url(), &shared)).await;
    let addrs: Vec<_> = fleet.iter().map(|g| g.addr).collect();
    let running = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    // Every request a first-tier miss (a new caller), so each one goes through Redis.
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (running, served, addrs) = (running.clone(), served.clone(), addrs.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut i = 0;
                while running.load(Ordering::Relaxed) {
                    i += 1;
                    let caller = format!("load-{w}-{i}");
                    let answer = get(addrs[i % 2], "/", Some(&caller)).await;
                    if answer.status != 200 {
                        failed.push(answer.status.as_u16());
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
                failed
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let served = served.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while served.load(Ordering::Relaxed) < n {
                assert!(tokio::time::Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(50).await;
    redis.kill();
    let at_kill = served.load(Ordering::Relaxed);
    wait_for(at_kill + 100).await;
    redis.restart().await;
    let at_restart = served.load(Ordering::Relaxed);
    wait_for(at_restart + 100).await;
    running.store(false, Ordering::Relaxed);
    for worker in load {
        assert_eq!(worker.await.unwrap(), Vec::<u16>::new(), "failed requests");
    }
    let scrape = metrics(&fleet[0]).await;
    assert!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_errors_total{kind="unavailable"}"#
        ) >= 1.0,
        "the outage was seen"
    );
    // Back in use: a caller seen by one replica is a shared hit at the other.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let caller = format!("after-restart-{n}");
        let before = sts.calls();
        assert_eq!(get(fleet[0].addr, "/", Some(&caller)).await.status, 200);
        assert_eq!(get(fleet[1].addr, "/", Some(&caller)).await.status, 200);
        if sts.calls() == before + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shared tier was never used again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key and value in Redis.
async fn dump(redis: &RedisServer) -> Vec<(Vec<u8>, Vec<u8>)> {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    for key in keys {
        let value: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        all.push((key, value.unwrap_or_default()));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_holds_no_token_no_piece_of_one_and_no_secret() {
    let Setup {
        redis,
        sts,
        upstream,
        shared,
        _dir,
    } = setup(Duration::ZERO).await;
    let fleet = replicas(2, &replica_config(&sts, &upstream.url(), &shared)).await;
    let callers: Vec<String> = (0..10)
        .map(|i| format!("inbound-caller-token-{i}-Hs82kQ"))
        .collect();
    for caller in &callers {
        for gw in &fleet {
            assert_eq!(get(gw.addr, "/", Some(caller)).await.status, 200);
        }
    }
    let stored = dump(&redis).await;
    assert!(stored.len() >= 10, "{} keys", stored.len());
    let mut secrets: Vec<String> = callers.clone();
    secrets.extend((0..10).map(|n| format!("fleet-at2-{n}-Zq8mW3xKpL7vN2rT")));
    secrets.push(SECRET.to_string());
    secrets.push("billing".to_string());
    for (key, value) in &stored {
        for secret in &secrets {
            // No piece of it either: every 8-byte window.
            for piece in secret.as_bytes().windows(8) {
                assert!(
                    !key.windows(8).any(|w| w == piece) && !value.windows(8).any(|w| w == piece),
                    "a piece of {secret:?} is readable in Redis"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_under_a_rotated_out_key_is_ignored_and_a_tampered_one_rejected() {
    let Setup {
        redis,
        sts,
        upstream,
        shared,
        _dir,
    } = setup(Duration::ZERO).await;
    let toml = replica_config(&sts, &upstream.url(), &shared);
    let first = gateway(&toml).await;
    assert_eq!(
        get(first.addr, "/", Some("rotating-caller")).await.status,
        200
    );
    let client = ::redis::Client::open(redis.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored = dump(&redis).await;
    let (key, value) = stored
        .iter()
        .find(|(k, _)| k.ends_with(b":t"))
        .expect("the token's value")
        .clone();
    let rewrite = |bytes: Vec<u8>| {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let _: () = ::redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    // Sealed under another key id (as after a rotation): ignored, not an error.
    let mut other_kid = value.clone();
    other_kid[1] ^= 0xff;
    rewrite(other_kid).await;
    let second = gateway(&toml).await;
    assert_eq!(
        get(second.addr, "/", Some("rotating-caller")).await.status,
        200
    );
    assert_eq!(sts.calls(), 2, "exchanged instead");
    let scrape = metrics(&second).await;
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_ignored_total{reason="unknown_key"}"#
        ),
        1.0
    );
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_errors_total{kind="tampered"}"#
        ),
        0.0
    );
    // Edited in Redis: rejected and counted, and the request still served.
    let mut tampered = value.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    rewrite(tampered).await;
    let third = gateway(&toml).await;
    assert_eq!(
        get(third.addr, "/", Some("rotating-caller")).await.status,
        200
    );
    assert_eq!(sts.calls(), 3);
    let scrape = metrics(&third).await;
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_errors_total{kind="tampered"}"#
        ),
        1.0
    );
    drop(conn);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_401_at_one_replica_evicts_the_token_fleet_wide() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sts = token_server(Duration::ZERO).await;
    let shared = shared_section(
        &format!("url = \"{}\"", redis.url()),
        &key_file(dir.path(), 1),
        "",
    );
    // Replica one's upstream considers the first token revoked; replica two's accepts any.
    let refusing = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let mut response =
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from(auth.clone())));
        if auth.starts_with("Bearer fleet-at2-0-") {
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".parse().unwrap(),
            );
        }
        response
    })
    .await;
    let accepting = Upstream::start().await;
    let one = gateway(&replica_config(
        &sts,
        &format!("http://{refusing}"),
        &shared,
    ))
    .await;
    let two = gateway(&replica_config(&sts, &accepting.url(), &shared)).await;
    let caller = Some("evicted-caller");
    // Replica two has the first token in its own cache.
    let answer = get(two.addr, "/", caller).await;
    assert_eq!(
        answer.json()["authorization"],
        "Bearer fleet-at2-0-Zq8mW3xKpL7vN2rT"
    );
    // Replica one gets it from Redis, its upstream refuses it: evicted everywhere, exchanged.
    let answer = get(one.addr, "/", caller).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "Bearer fleet-at2-1-Zq8mW3xKpL7vN2rT");
    assert_eq!(sts.calls(), 2);
    // Replica two hears of it (pub/sub) and drops its copy: the next request there uses the
    // new token from Redis, with no exchange of its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared_sample(
        &metrics(&two).await,
        r#"chaingate_shared_cache_evictions_total{domain="billing",origin="remote"}"#,
    ) < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica two never heard of the eviction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = get(two.addr, "/", caller).await;
    assert_eq!(
        answer.json()["authorization"],
        "Bearer fleet-at2-1-Zq8mW3xKpL7vN2rT"
    );
    assert_eq!(sts.calls(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_ca_file_is_verified_and_an_untrusted_server_is_not_used() {
    let pki = support::tls::pki();
    let redis = RedisServer::start_tls(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let sts = token_server(Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let url = format!("url = \"rediss://localhost:{}\"", redis.port);
    let trusted = shared_section(
        &url,
        &key_file(dir.path(), 1),
        &format!("ca_file = {:?}", pki.ca_file.display().to_string()),
    );
    let fleet = replicas(2, &replica_config(&sts, &upstream.url(), &trusted)).await;
    for gw in &fleet {
        assert_eq!(get(gw.addr, "/", Some("tls-caller")).await.status, 200);
    }
    assert_eq!(sts.calls(), 1, "shared over TLS");
    // Without the CA the server's certificate is not trusted: no shared tier, but served.
    let untrusted = shared_section(&url, &key_file(dir.path(), 1), "");
    let alone = replicas(2, &replica_config(&sts, &upstream.url(), &untrusted)).await;
    for gw in &alone {
        assert_eq!(
            get(gw.addr, "/", Some("untrusting-caller")).await.status,
            200
        );
    }
    assert_eq!(sts.calls(), 3, "each replica exchanged alone");
    let scrape = metrics(&alone[0]).await;
    assert!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_errors_total{kind="unavailable"}"#
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_found_through_sentinel_serves_the_fleet() {
    let master = RedisServer::start().await;
    let sentinel = RedisServer::start_sentinel(&master, "tokens").await;
    let dir = tempfile::tempdir().unwrap();
    let sts = token_server(Duration::from_millis(200)).await;
    let upstream = Upstream::start().await;
    let shared = shared_section(
        &format!(
            "sentinel_nodes = [\"{}\"]\nsentinel_service = \"tokens\"",
            sentinel.url()
        ),
        &key_file(dir.path(), 1),
        "",
    );
    let fleet = replicas(3, &replica_config(&sts, &upstream.url(), &shared)).await;
    for answer in burst(&fleet, 12, "sentinel-caller").await {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(
        sts.calls(),
        1,
        "one exchange through the master the sentinel named"
    );
    // The token is on the master itself.
    assert!(master.command(&["DBSIZE"]).await.is_some_and(|r| r != ":0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_never_answers_opens_the_breaker_and_fails_no_request() {
    // Accepts connections, reads, never replies: every command runs into `timeout`.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let sts = token_server(Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let shared = shared_section(
        &format!("url = \"redis://{addr}\""),
        &key_file(dir.path(), 1),
        "timeout = \"50ms\"\nbreaker_open = \"1h\"",
    );
    let gw = gateway(&replica_config(&sts, &upstream.url(), &shared)).await;
    for i in 0..20 {
        let answer = get(gw.addr, "/", Some(&format!("slow-redis-{i}"))).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(sts.calls(), 20, "every caller exchanged directly");
    let scrape = metrics(&gw).await;
    assert_eq!(
        shared_sample(&scrape, "chaingate_shared_cache_breaker_open"),
        1.0,
        "the breaker stopped the waiting"
    );
    // Three timed-out commands opened it; after that Redis is not asked at all.
    assert_eq!(
        shared_sample(
            &scrape,
            r#"chaingate_shared_cache_errors_total{kind="unavailable"}"#
        ),
        3.0
    );
}
