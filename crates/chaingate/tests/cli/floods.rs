//! The gateway process's own memory and CPU under attack, measured from `/proc/<pid>`: nothing
//! else runs in the process, so a figure is the gateway's alone (in the integration tests the
//! gateway shares its process with every other test).

use chaingate_test_support as support;

use std::time::Duration;

use support::h2raw::{self, flood, saw_goaway};
use support::*;
use tokio::io::AsyncWriteExt;

use crate::process::Process;

const AT1: &str = "floods-caller-token";

async fn still_serves(gw: &Process) {
    let answer = tokio::time::timeout(Duration::from_secs(5), get(gw.addr, "/", Some(AT1))).await;
    assert_eq!(answer.expect("a control request is answered").status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_floods_leave_the_gateway_process_memory_flat() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = Process::start_logging(&config(&sts.url(), &upstream.url(), ""), "info");
    still_serves(&gw).await;
    let before = gw.status_kib("VmRSS");
    let answer = flood(gw.addr, h2raw::rapid_reset()).await;
    assert!(saw_goaway(&answer), "rapid reset: told to go away");
    still_serves(&gw).await;
    let _ = flood(gw.addr, h2raw::continuation_flood()).await;
    still_serves(&gw).await;
    let _ = flood(gw.addr, h2raw::empty_data_flood()).await;
    still_serves(&gw).await;
    let grown = gw.status_kib("VmRSS").saturating_sub(before);
    // 20 000 streams, 10 000 CONTINUATION frames and 100 000 DATA frames: a per-frame leak of
    // even a few hundred bytes would show as tens of MiB.
    assert!(
        grown < 16 * 1024,
        "the gateway's RSS grew by {grown} KiB during the floods"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_close_notify_mid_request_does_not_make_the_gateway_spin() {
    // CVE-2024-32650 / RUSTSEC-2024-0336: close_notify during or after a request made rustls spin.
    let pki = support::tls::pki();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = Process::start_logging(
        &config(&sts.url(), &upstream.url(), &pki.gateway_tls_section()),
        "info",
    );
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(pki.roots())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let mut held = Vec::new();
    for _ in 0..8 {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut stream = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tls-caller\r\nContent-Length: 5\r\n\r\nab")
            .await
            .unwrap();
        // close_notify mid-body, with the TCP connection left open.
        stream.get_mut().1.send_close_notify();
        let _ = stream.flush().await;
        held.push(stream);
    }
    let before = gw.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = gw.cpu_seconds() - before;
    // Idle, the process uses next to nothing; a spinning connection takes a whole core.
    assert!(
        spent < 0.3,
        "{spent} s of the gateway's CPU in 1 s with idle half-closed TLS connections"
    );
    drop(held);
    assert_eq!(get(gw.admin, "/live", None).await.status, 200);
}
