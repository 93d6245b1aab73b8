//! HTTP/2 floods against the gateway over raw frames: rapid reset (CVE-2023-44487), CONTINUATION
//! flood (RUSTSEC-2024-0332), empty DATA flood (RUSTSEC-2026-0258): the attacking connection is
//! ended or drained, and other callers are still served. The gateway process's own memory and CPU
//! under the same floods are measured by the CLI tests (`crates/chaingate/tests/cli/floods.rs`),
//! where no other test shares the process.

use chaingate_test_support as support;

use std::time::Duration;

use support::h2raw::{self, flood, saw_goaway};
use support::*;

async fn still_serves(gw: &chaingate_gateway::Running) {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        get(gw.addr, "/", Some("control-caller")),
    )
    .await;
    assert_eq!(
        answer
            .expect("a control request is answered promptly")
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_continuation_and_empty_data_floods_are_ended_and_others_still_served() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    still_serves(&gw).await;

    let answer = flood(gw.addr, h2raw::rapid_reset()).await;
    assert!(
        saw_goaway(&answer),
        "rapid reset: the connection is told to go away"
    );
    still_serves(&gw).await;
    let _ = flood(gw.addr, h2raw::continuation_flood()).await;
    still_serves(&gw).await;
    let _ = flood(gw.addr, h2raw::empty_data_flood()).await;
    still_serves(&gw).await;

    assert_eq!(
        upstream
            .received()
            .iter()
            .filter(|r| r.header("authorization").is_none())
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_h2_streams_is_what_the_server_announces() {
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3), RFC 9113 §6.5.2: what every client obeys.
    let announced = |gw: std::net::SocketAddr| async move {
        let mut hello = h2raw::PREFACE.to_vec();
        hello.extend(h2raw::frame(0x4, 0, 0, &[]));
        let answer = flood(gw, hello).await;
        h2raw::server_settings(&answer)
            .into_iter()
            .find(|(id, _)| *id == 0x3)
            .map(|(_, value)| value)
    };
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    assert_eq!(announced(gw.addr).await, Some(256), "the default");
    let gw = gateway(&config(
        &sts.url(),
        &upstream.url(),
        "[limits]\nmax_h2_streams = 7\n",
    ))
    .await;
    assert_eq!(announced(gw.addr).await, Some(7));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spray_of_distinct_tokens_is_bounded_by_the_in_flight_cap() {
    let sts =
        TokenServer::scripted(|n, _| Reply::issue(n, Some(60)).delayed(Duration::from_millis(20)))
            .await;
    let upstream = Upstream::start().await;
    let toml = config(&sts.url(), &upstream.url(), "").replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nmax_in_flight = 4\nretries = 0",
    );
    let gw = gateway(&toml).await;
    let addr = gw.addr;
    // 16 callers, each a fresh token per request, for 2 s: the token server never sees more than
    // 4 exchanges at once (so at most ~4 / 20 ms = 200 per second), the rest are shed at once.
    let sprayers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(async move {
                let (mut ok, mut shed) = (0u32, 0u32);
                let until = tokio::time::Instant::now() + Duration::from_secs(2);
                let mut i = 0u64;
                while tokio::time::Instant::now() < until {
                    i += 1;
                    match get(addr, "/", Some(&format!("spray-{w}-{i}")))
                        .await
                        .status
                        .as_u16()
                    {
                        200 => ok += 1,
                        503 => shed += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (ok, shed)
            })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for s in sprayers {
        let (o, sh) = s.await.unwrap();
        ok += o;
        shed += sh;
    }
    assert!(shed > 0, "the cap shed part of the spray");
    assert!(
        sts.calls() as u32 <= ok + 4,
        "exchanges only for requests that were served"
    );
    assert!(
        sts.calls() <= 2 * 200 + 20,
        "{} exchanges in 2 s",
        sts.calls()
    );
    still_serves(&gw).await;
}
