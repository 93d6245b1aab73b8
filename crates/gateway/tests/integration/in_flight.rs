//! `limits.max_concurrent_requests` counts a request until both of its bodies have ended: a
//! streaming download and an upload still going up are in flight, not only until the head.

use chaingate_test_support as support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::sync::mpsc;

const TOKEN: &str = "in-flight-caller-token";

type ChunkSender = mpsc::Sender<Bytes>;
type Streamed =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A body fed from a channel: it ends when the sender is dropped.
fn channel_body() -> (ChunkSender, Streamed) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(Frame::data(chunk)), rx))
    })
    .boxed();
    (tx, StreamBody::new(stream))
}

/// An upstream whose `/download` streams until the test drops the sender it hands out, and
/// whose `/upload` answers at once while it goes on reading the request body in the background.
async fn streaming_upstream() -> (SocketAddr, mpsc::Receiver<ChunkSender>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (senders_tx, senders_rx) = mpsc::channel::<ChunkSender>(8);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let senders_tx = senders_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let senders_tx = senders_tx.clone();
                    async move {
                        let body = if request.uri().path() == "/download" {
                            let (tx, body) = channel_body();
                            tx.send(Bytes::from_static(b"first chunk")).await.unwrap();
                            senders_tx.send(tx).await.unwrap();
                            BodyExt::boxed_unsync(body)
                        } else {
                            tokio::spawn(request.into_body().collect());
                            BodyExt::boxed_unsync(Full::new(Bytes::from_static(b"ok")))
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, senders_rx)
}

async fn connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

fn request<B>(method: &str, path: &str, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gw")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .unwrap()
}

/// Waits (bounded) for the gateway to admit a request again once the held place is freed: the
/// release happens when the connection tasks see the body end, a moment after the test does.
async fn admitted_again(addr: SocketAddr) -> u16 {
    for _ in 0..200 {
        let status = get(addr, "/other", Some(TOKEN)).await.status.as_u16();
        if status != 503 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    503
}

async fn setup() -> (
    TokenServer,
    chaingate_gateway::Running,
    mpsc::Receiver<ChunkSender>,
) {
    let sts = TokenServer::start().await;
    let (upstream, senders) = streaming_upstream().await;
    let gw = gateway(&config(
        &sts.url(),
        &format!("http://{upstream}"),
        "[limits]\nmax_concurrent_requests = 1\n",
    ))
    .await;
    (sts, gw, senders)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_download_holds_its_place_until_its_last_byte() {
    let (_sts, gw, mut senders) = setup().await;
    let mut download = connect::<Full<Bytes>>(gw.addr).await;
    let response = download
        .send_request(request("GET", "/download", Full::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let feed = senders.recv().await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first chunk");

    // The head has been answered, the body is still streaming: the one place is taken.
    assert_eq!(get(gw.addr, "/other", Some(TOKEN)).await.status, 503);

    feed.send(Bytes::from_static(b"last chunk")).await.unwrap();
    drop(feed);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "last chunk");
    assert_eq!(admitted_again(gw.addr).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_holds_its_place_until_it_has_gone_upstream() {
    let (_sts, gw, _senders) = setup().await;
    let (feed, upload_body) = channel_body();
    let mut upload = connect::<Streamed>(gw.addr).await;
    feed.send(Bytes::from_static(b"part one")).await.unwrap();
    // The upstream answers before reading the body; the caller is still sending.
    let response = upload
        .send_request(request("POST", "/upload", upload_body))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(answer, "ok");

    assert_eq!(get(gw.addr, "/other", Some(TOKEN)).await.status, 503);

    feed.send(Bytes::from_static(b"part two")).await.unwrap();
    drop(feed);
    assert_eq!(admitted_again(gw.addr).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_leaves_mid_download_frees_its_place() {
    let (_sts, gw, mut senders) = setup().await;
    let mut download = connect::<Full<Bytes>>(gw.addr).await;
    let response = download
        .send_request(request("GET", "/download", Full::default()))
        .await
        .unwrap();
    let _feed = senders.recv().await.unwrap();
    assert_eq!(get(gw.addr, "/other", Some(TOKEN)).await.status, 503);
    // The caller hangs up with the upstream still streaming.
    drop(response);
    drop(download);
    assert_eq!(admitted_again(gw.addr).await, 200);
}
