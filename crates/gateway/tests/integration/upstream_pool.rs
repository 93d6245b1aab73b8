//! The plain-http upstream pool, seen from a raw-socket upstream that counts its connections:
//! keep-alive reuse, an idle connection the upstream closed, and a response the caller abandoned.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chaingate_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An HTTP/1.1 upstream on a raw socket: `/big` sends a body larger than socket buffers,
/// anything else a short keep-alive answer. [`Self::close_idle`] closes every idle connection,
/// as an upstream's idle timeout would (no `Connection: close`). Reports each close it makes.
struct RawUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<()>,
    close: tokio::sync::broadcast::Sender<()>,
}

const BIG: usize = 8 * 1024 * 1024;

impl RawUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, closed) = mpsc::unbounded_channel();
        let (close, _) = tokio::sync::broadcast::channel(4);
        let closing = close.clone();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                let mut close = closing.subscribe();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let read = tokio::select! {
                            read = socket.read(&mut chunk) => read,
                            _ = close.recv() => {
                                drop(socket);
                                let _ = tx.send(());
                                return;
                            }
                        };
                        let Ok(n) = read else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        let body = if path == "/big" {
                            vec![b'x'; BIG]
                        } else {
                            b"hello".to_vec()
                        };
                        let response =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if socket.write_all(response.as_bytes()).await.is_err()
                            || socket.write_all(&body).await.is_err()
                        {
                            let _ = tx.send(());
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            closed,
            close,
        }
    }

    fn close_idle(&self) {
        self.close.send(()).unwrap();
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn setup() -> (TokenServer, RawUpstream, chaingate_gateway::Running) {
    let sts = TokenServer::start().await;
    let upstream = RawUpstream::start().await;
    let gw = gateway(&config(
        &sts.url(),
        &format!("http://{}", upstream.addr),
        "",
    ))
    .await;
    (sts, upstream, gw)
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let (_sts, upstream, gw) = setup().await;
    for _ in 0..5 {
        let answer = get(gw.addr, "/one", Some("caller-token")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.as_str()),
            (200, "hello")
        );
    }
    assert_eq!(upstream.connections(), 1, "kept alive and reused");
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced_without_an_error() {
    let (_sts, mut upstream, gw) = setup().await;
    assert_eq!(
        get(gw.addr, "/first", Some("caller-token")).await.status,
        200
    );
    // The upstream closes the idle connection the gateway still holds.
    upstream.close_idle();
    upstream.closed.recv().await.unwrap();
    let answer = get(gw.addr, "/after", Some("caller-token")).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "hello")
    );
    assert_eq!(
        upstream.connections(),
        2,
        "a new connection for the second request"
    );
}

#[tokio::test]
async fn a_response_the_caller_abandons_does_not_poison_the_next_request() {
    let (_sts, mut upstream, gw) = setup().await;
    // Read the head of a large response, then hang up mid-body.
    let mut caller = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    caller
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\nauthorization: Bearer caller-token\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = caller.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    drop(caller);
    // The gateway closes that upstream connection rather than reuse it half-read.
    upstream.closed.recv().await.unwrap();
    let answer = get(gw.addr, "/after", Some("caller-token")).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "hello")
    );
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_large_response_is_streamed_whole_and_its_connection_reused() {
    let (_sts, upstream, gw) = setup().await;
    let answer = get(gw.addr, "/big", Some("caller-token")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), BIG);
    assert_eq!(get(gw.addr, "/one", Some("caller-token")).await.status, 200);
    assert_eq!(
        upstream.connections(),
        1,
        "read to the end, so back in the pool"
    );
}
