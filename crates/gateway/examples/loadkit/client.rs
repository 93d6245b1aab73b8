//! Bounded HTTP/1.1 clients: one connection per task, requests sent in sequence on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::Barrier;
use tokio::time::Instant;

/// Every request and every connect gets at most this long; the bench never hangs.
const DEADLINE: Duration = Duration::from_secs(30);

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Sends one GET and drains the body; returns the status code (0 on a transport error).
async fn get(sender: &mut SendRequest<Empty<Bytes>>, path: &str, token: &str) -> u16 {
    let request = Request::get(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .expect("request");
    let attempt = async {
        sender.ready().await.ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    };
    tokio::time::timeout(DEADLINE, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Connects `n` clients first, then releases them together so every request misses at once.
pub(crate) async fn burst(addr: SocketAddr, path: &str, token: &str, n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sender = connect(addr).await;
        let (barrier, path, token) = (barrier.clone(), path.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let started = Instant::now();
            let status = get(&mut sender, &path, &token).await;
            (status, started.elapsed())
        }));
    }
    let mut ok = 0;
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (status, took) = task.await.expect("burst task");
        ok += usize::from(status == 200);
        slowest = slowest.max(took);
    }
    println!(
        "burst n={n} ok={ok} slowest_ms={:.2}",
        slowest.as_secs_f64() * 1000.0
    );
}

/// Sends `n` requests with tokens `<prefix>0..n` (or `<prefix>0` each time when `same`).
pub(crate) async fn fill(
    addr: SocketAddr,
    path: &str,
    prefix: &str,
    n: usize,
    conc: usize,
    same: bool,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conc);
    for _ in 0..conc {
        let mut sender = connect(addr).await;
        let (next, failed) = (next.clone(), failed.clone());
        let (path, prefix) = (path.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let token = format!("{prefix}{}", if same { 0 } else { i });
                if get(&mut sender, &path, &token).await != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("fill task");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fill n={n} failed={} secs={secs:.2} rps={:.0}",
        failed.load(Ordering::Relaxed),
        n as f64 / secs
    );
}
