//! `scope_strategy = "incremental"`: one grant per caller and domain that grows to the union of
//! the routes' scopes, against a token endpoint that grants what it is asked (or less).
//!
//! The workload test prints the exchanges each strategy needs; run it with
//! `cargo test --test incremental_scopes -- --nocapture` (and `--ignored` for the longer run).

use chaingate_test_support as support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::time::Instant;

const ROUTES: [&str; 4] = ["a", "b", "c", "d"];

/// A token endpoint that grants the requested scope (minus `withheld`), echoing it in `scope`.
async fn token_server(lifetime: u64, withheld: &'static str, delay: Duration) -> TokenServer {
    TokenServer::scripted(move |n, request| {
        let asked = request.param("scope").unwrap_or("");
        let granted: Vec<&str> = asked
            .split(' ')
            .filter(|s| !s.is_empty() && *s != withheld)
            .collect();
        Reply::raw(
            200,
            &format!(
                r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":{lifetime},"scope":"{}"}}"#,
                granted.join(" ")
            ),
        )
        .delayed(delay)
    })
    .await
}

/// One domain `api` with a route `/<s>` needing scope `<s>` for each of [`ROUTES`].
fn gateway_toml(token_url: &str, upstream: &str, strategy: &str, refresh_ahead: f64) -> String {
    let routes: String = ROUTES
        .iter()
        .map(|s| {
            format!(
                "[[routes]]\nname = \"{s}\"\npath_prefix = \"/{s}\"\nupstream = \"{upstream}\"\ndomain = \"api\"\nscope = \"{s}\"\n"
            )
        })
        .collect();
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[cache]
expiry_skew = "0s"
refresh_ahead = {refresh_ahead}

[domains.api]
token_endpoint = "{token_url}"
client_id = "gateway"
client_secret = "gateway-secret-value"
allow_insecure_http = true
timeout = "5s"
scope_strategy = "{strategy}"

{routes}"#
    )
}

/// The token the upstream received for the last request.
fn last_token(upstream: &Upstream) -> String {
    let received = upstream.received();
    let last = received.last().expect("the upstream received a request");
    last.header("authorization").unwrap_or("").to_string()
}

struct Counts {
    exchanges: usize,
    upgrades: f64,
}

/// `callers` callers each hit every route `passes` times per round, for `rounds` rounds, with
/// every token expired between rounds. Refresh-ahead is off and the clock is tokio's (the tests
/// run it paused: it moves only in the sleeps between rounds), so the counts are exact on any
/// machine.
async fn workload(strategy: &str, callers: usize, rounds: usize, passes: usize) -> Counts {
    const LIFETIME: u64 = 3;
    let server = token_server(LIFETIME, "", Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(&server.url(), &upstream.url(), strategy, 0.0)).await;
    for round in 0..rounds {
        let started = Instant::now();
        for caller in 0..callers {
            let at1 = format!("caller-{caller}-token");
            for _ in 0..passes {
                for scope in ROUTES {
                    let answer = get(gw.addr, &format!("/{scope}/x"), Some(&at1)).await;
                    assert_eq!(
                        answer.status, 200,
                        "{strategy} round {round}: {}",
                        answer.body
                    );
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(LIFETIME),
            "the paused clock moved during a round"
        );
        // Let every token of this round expire: the next round starts over, as after a pause.
        tokio::time::sleep(Duration::from_secs(LIFETIME) + Duration::from_millis(200)).await;
    }
    let scrape = metrics(&gw).await;
    let issued = sample(
        &scrape,
        r#"chaingate_token_exchanges_total{domain="api",outcome="issued"}"#,
    )
    .unwrap_or(0.0);
    assert_eq!(issued as usize, server.calls(), "every exchange is counted");
    Counts {
        exchanges: server.calls(),
        upgrades: sample(&scrape, r#"chaingate_scope_upgrades_total{domain="api"}"#).unwrap_or(0.0),
    }
}

async fn compare(callers: usize, rounds: usize, passes: usize) -> (Counts, Counts) {
    let (per_route, incremental) = tokio::join!(
        workload("per-route", callers, rounds, passes),
        workload("incremental", callers, rounds, passes)
    );
    let requests = callers * rounds * passes * ROUTES.len();
    println!(
        "{callers} callers x {} routes x {passes} passes x {rounds} token lifetimes = {requests} requests: \
         per-route {} exchanges, incremental {} exchanges ({} scope upgrades), saved {:.0}%",
        ROUTES.len(),
        per_route.exchanges,
        incremental.exchanges,
        incremental.upgrades,
        100.0 * (1.0 - incremental.exchanges as f64 / per_route.exchanges as f64)
    );
    assert!(incremental.exchanges <= per_route.exchanges);
    (per_route, incremental)
}

#[tokio::test(start_paused = true)]
async fn incremental_needs_fewer_exchanges_than_per_route() {
    let (callers, rounds, passes) = (4, 3, 2);
    let (per_route, incremental) = compare(callers, rounds, passes).await;
    // Per route: one token per (caller, route) per lifetime.
    assert_eq!(per_route.exchanges, callers * ROUTES.len() * rounds);
    assert_eq!(per_route.upgrades, 0.0);
    // Incremental: the first lifetime grows a → a b → a b c → a b c d (three upgrades);
    // every later one asks for the remembered union at once.
    assert_eq!(incremental.exchanges, callers * (ROUTES.len() + rounds - 1));
    assert_eq!(incremental.upgrades, (callers * (ROUTES.len() - 1)) as f64);
}

/// A longer run for the numbers in the README.
#[tokio::test(start_paused = true)]
#[ignore = "prints exchanges per strategy"]
async fn exchanges_saved_over_a_longer_run() {
    compare(20, 6, 3).await;
}

// Paused time: token lifetimes of a second or two pass exactly, whatever the load.
#[tokio::test(start_paused = true)]
async fn the_grant_grows_to_the_union_and_is_asked_for_whole_after_expiry() {
    let server = token_server(1, "", Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(
        &server.url(),
        &upstream.url(),
        "incremental",
        0.0,
    ))
    .await;
    for path in ["/a", "/b", "/a", "/b"] {
        assert_eq!(get(gw.addr, path, Some("caller")).await.status, 200);
    }
    // One token serves both routes once it holds both scopes.
    assert_eq!(last_token(&upstream), "Bearer at2-1");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(gw.addr, "/c", Some("caller")).await.status, 200);
    let asked: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.param("scope").unwrap_or("").to_string())
        .collect();
    assert_eq!(asked, ["a", "a b", "a b c"]);
    // Another caller's grant is its own.
    assert_eq!(get(gw.addr, "/d", Some("other")).await.status, 200);
    assert_eq!(server.requests()[3].param("scope"), Some("d"));
}

// Paused time: token lifetimes of a second or two pass exactly, whatever the load.
#[tokio::test(start_paused = true)]
async fn a_scope_the_server_withholds_is_not_asked_for_again_while_the_token_lives() {
    let server = token_server(1, "d", Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(
        &server.url(),
        &upstream.url(),
        "incremental",
        0.0,
    ))
    .await;
    for path in ["/a", "/b", "/d", "/d", "/d", "/a"] {
        assert_eq!(get(gw.addr, path, Some("caller")).await.status, 200);
    }
    // a, a b, a b d (granted a b); then /d is forwarded with the token held: the upstream decides.
    assert_eq!(server.calls(), 3);
    assert_eq!(upstream.received().len(), 6);
    assert_eq!(last_token(&upstream), "Bearer at2-2");
    // Once that token has expired, asking again is fair (-04 §6.1 is about immediate repeats).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(gw.addr, "/d", Some("caller")).await.status, 200);
    assert_eq!(server.calls(), 4);
    assert_eq!(server.requests()[3].param("scope"), Some("a b d"));
}

// Paused time: token lifetimes of a second or two pass exactly, whatever the load.
#[tokio::test(start_paused = true)]
async fn concurrent_requests_wait_for_the_exchange_in_flight() {
    let server = token_server(60, "", Duration::from_millis(200)).await;
    let upstream = Upstream::start().await;
    let gw = Arc::new(
        gateway(&gateway_toml(
            &server.url(),
            &upstream.url(),
            "incremental",
            0.0,
        ))
        .await,
    );
    let burst = |paths: Vec<&'static str>| {
        let gw = gw.clone();
        async move {
            let requests = paths
                .into_iter()
                .map(|path| {
                    let addr = gw.addr;
                    tokio::spawn(async move { get(addr, path, Some("caller")).await.status })
                })
                .collect::<Vec<_>>();
            for request in requests {
                assert_eq!(request.await.unwrap(), 200);
            }
        }
    };
    burst(vec!["/a"; 16]).await;
    assert_eq!(
        server.calls(),
        1,
        "one exchange for a burst needing the same scope"
    );
    // /a is served by the grant held; the /b requests share one upgrade.
    burst(["/a", "/b"].repeat(8)).await;
    assert_eq!(server.calls(), 2);
    assert_eq!(server.requests()[1].param("scope"), Some("a b"));
}

// Paused time: token lifetimes of a second or two pass exactly, whatever the load.
#[tokio::test(start_paused = true)]
async fn refresh_ahead_renews_the_whole_union() {
    let server = token_server(2, "", Duration::ZERO).await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(
        &server.url(),
        &upstream.url(),
        "incremental",
        0.5,
    ))
    .await;
    for path in ["/a", "/b"] {
        assert_eq!(get(gw.addr, path, Some("caller")).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past half its lifetime: served, and renewed in the background.
    assert_eq!(get(gw.addr, "/a", Some("caller")).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.calls() < 3 {
        assert!(Instant::now() < deadline, "no background renewal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests()[2].param("scope"), Some("a b"));
    // The renewed token serves both routes without another exchange.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(get(gw.addr, "/b", Some("caller")).await.status, 200);
        if last_token(&upstream) == "Bearer at2-2" {
            break;
        }
        assert!(Instant::now() < deadline, "renewed token never used");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.calls(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_union_is_remembered_and_the_grant_held_keeps_serving() {
    let server = TokenServer::scripted(|n, request| {
        let asked = request.param("scope").unwrap_or("");
        if asked.split(' ').any(|s| s == "c") {
            return Reply::error(400, "invalid_scope");
        }
        Reply::raw(
            200,
            &format!(r#"{{"access_token":"at2-{n}","token_type":"Bearer","expires_in":60}}"#),
        )
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(
        &server.url(),
        &upstream.url(),
        "incremental",
        0.0,
    ))
    .await;
    assert_eq!(get(gw.addr, "/a", Some("caller")).await.status, 200);
    // "a c" is refused: 403, and asked only once within the negative TTL.
    for _ in 0..2 {
        assert_eq!(get(gw.addr, "/c", Some("caller")).await.status, 403);
    }
    assert_eq!(server.calls(), 2);
    // No scope in the response: the requested one is held (RFC 6749 §5.1), and still serves /a.
    assert_eq!(get(gw.addr, "/a", Some("caller")).await.status, 200);
    assert_eq!(server.calls(), 2);
    assert_eq!(last_token(&upstream), "Bearer at2-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_refusal_evicts_the_grant_and_the_union_is_asked_for_again() {
    let server = token_server(60, "", Duration::ZERO).await;
    // Refuses the first token it sees, like a resource server whose token was revoked.
    let addr = serve(|request: http::Request<hyper::body::Incoming>| async move {
        let refused = request
            .headers()
            .get("authorization")
            .is_some_and(|v| v == "Bearer at2-1");
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        if refused {
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".parse().unwrap(),
            );
        }
        response
    })
    .await;
    let gw = gateway(&gateway_toml(
        &server.url(),
        &format!("http://{addr}"),
        "incremental",
        0.0,
    ))
    .await;
    assert_eq!(get(gw.addr, "/a", Some("caller")).await.status, 200);
    // at2-1 holds "a b" and is refused: evicted, re-exchanged for the same union, sent again.
    assert_eq!(get(gw.addr, "/b", Some("caller")).await.status, 200);
    let asked: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.param("scope").unwrap_or("").to_string())
        .collect();
    assert_eq!(asked, ["a", "a b", "a b"]);
}
