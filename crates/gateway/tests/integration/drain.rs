//! Drain: readiness off first, an optional delay for endpoints to update, then HTTP/1
//! `Connection: close` and HTTP/2 GOAWAY while in-flight requests finish.

use chaingate_test_support as support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;

const AT1: &str = "drain-caller-token";

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_under_load_fails_no_request() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // The delay is long next to what the clients need to notice readiness (one request): they
    // stop on the event, so no load on the machine can stretch their reaction past it.
    let extra = "[shutdown]\ndrain_delay = \"3s\"\ndrain_timeout = \"5s\"\n";
    let gw = gateway(&config(&sts.url(), &upstream.url(), extra)).await;
    let (addr, admin) = (gw.addr, gw.admin_addr);

    // Clients behave like a Service's endpoints: they stop sending once readiness has been off
    // for a moment (the propagation the drain delay exists to cover).
    let ready = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (ready, served) = (ready.clone(), served.clone());
            tokio::spawn(async move {
                let client = client();
                let (mut ok, mut failed) = (0, Vec::new());
                while ready.load(Ordering::Relaxed) {
                    let path = if i % 2 == 0 { "/fast" } else { "/slow/150" };
                    let request = Request::get(format!("http://{addr}{path}"))
                        .header("authorization", format!("Bearer {AT1}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match client.request(request).await {
                        Ok(response) if response.status() == 200 => {
                            let _ = response.into_body().collect().await;
                            ok += 1;
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) => failed.push(response.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // The load runs until it has been served a while (counted, not timed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < 40 {
        assert!(tokio::time::Instant::now() < deadline, "the load never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.begin_shutdown();
    assert_eq!(
        get(admin, "/ready", None).await.status,
        503,
        "readiness turns off at once"
    );
    ready.store(false, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the drain: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 20, "the load ran ({total} requests)");
    tokio::time::timeout(Duration::from_secs(10), gw.wait())
        .await
        .expect("drain finishes");
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_gets_connection_close_and_http2_gets_goaway_while_in_flight_requests_finish() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    assert_eq!(get(gw.addr, "/warm", Some(AT1)).await.status, 200);

    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let h2_conn = tokio::spawn(conn);

    let request = |version| {
        Request::get(format!("http://{}/slow/1500", gw.addr))
            .version(version)
            .header("authorization", format!("Bearer {AT1}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let h1_in_flight = h1.send_request(request(http::Version::HTTP_11));
    let h2_in_flight = h2.send_request(request(http::Version::HTTP_2));
    let h1_in_flight = tokio::spawn(h1_in_flight);
    let h2_in_flight = tokio::spawn(h2_in_flight);
    // Both are in flight once the upstream has them (an event, not a guess at how long it takes).
    upstream.wait_for(2, "/slow/").await;
    gw.begin_shutdown();

    let h1_response = h1_in_flight.await.unwrap().unwrap();
    assert_eq!(h1_response.status(), 200);
    assert_eq!(h1_response.headers()["connection"], "close");
    let h2_response = h2_in_flight.await.unwrap().unwrap();
    assert_eq!(h2_response.status(), 200);
    let _ = h2_response.into_body().collect().await;
    // After GOAWAY the server ends the connection once its streams are done.
    tokio::time::timeout(Duration::from_secs(5), h2_conn)
        .await
        .expect("h2 connection closed")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), gw.wait())
        .await
        .expect("drain finishes");
}
