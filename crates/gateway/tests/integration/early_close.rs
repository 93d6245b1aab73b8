//! An upstream that answers before it has read the whole request and then closes (as node does
//! past its 16 KB head limit, or any server refusing an upload with 413): the caller gets that
//! answer whole, or a complete 502, never a response cut short.

use chaingate_test_support as support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const TOKEN: &str = "early-close-caller-token";

/// The early answer's body: long enough to span several reads.
fn early_body() -> String {
    "refused: ".to_string() + &"x".repeat(6000)
}

/// Reads at most `read` bytes of each request, answers `status` with [`early_body`] and
/// `Connection: close`, and closes with the rest unread (the kernel then resets the connection).
/// Over TLS when `tls` is given.
async fn early_closer(
    status: u16,
    read: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            answer_early(stream, status, read).await;
                        }
                    }
                    None => answer_early(stream, status, read).await,
                }
            });
        }
    });
    addr
}

async fn answer_early<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16, read: usize) {
    let mut seen = 0;
    let mut buf = [0u8; 4096];
    while seen < read {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen += n,
        }
    }
    let body = early_body();
    let head = format!(
        "HTTP/1.1 {status} Refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // One write, out at once (no Nagle delay): the answer has left before the reset.
    let _ = stream.write_all((head + &body).as_bytes()).await;
    let _ = stream.flush().await;
    // Dropped with unread input: an RST, not a FIN, follows the answer.
}

/// Sends `head` then `body` (ignoring write errors once the gateway stops reading), and returns
/// everything the gateway answered.
async fn call(gw: SocketAddr, head: String, body: Vec<u8>) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(gw).await.unwrap();
    let (mut read, mut write) = stream.split();
    let send = async {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        std::future::pending::<()>().await
    };
    let mut out = Vec::new();
    let receive = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
            if let (_, true, _) = parse(&out) {
                break;
            }
        }
    };
    tokio::select! {
        _ = send => unreachable!(),
        _ = receive => {}
    }
    out
}

/// The status and whether the body is exactly as long as its `Content-Length` says.
fn parse(answer: &[u8]) -> (u16, bool, String) {
    let text = String::from_utf8_lossy(answer).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, false, text);
    };
    let status = head[9..12].parse().unwrap_or(0);
    let length: Option<usize> = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    });
    (status, length == Some(body.len()), body.to_string())
}

async fn gateway_before(upstream: SocketAddr) -> (TokenServer, chaingate_gateway::Running) {
    let sts = TokenServer::start().await;
    let gw = gateway(&config(&sts.url(), &format!("http://{upstream}"), "")).await;
    (sts, gw)
}

/// Sends a 4 MiB upload; the upstream refuses it with 413 after one byte.
async fn upload(gw: SocketAddr) -> (u16, bool, String) {
    let body = vec![b'u'; 4 * 1024 * 1024];
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    parse(&call(gw, head, body).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_refusing_a_long_head_early_gets_its_answer_through_whole() {
    // 40 KB of fields: under chaingate's 60 KiB, over the upstream's 16 KB.
    let upstream = early_closer(431, 16 * 1024, None).await;
    let (_sts, gw) = gateway_before(upstream).await;
    for _ in 0..5 {
        let head = format!(
            "GET /x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(40 * 1024)
        );
        let answer = call(gw.addr, head, Vec::new()).await;
        let (status, whole, body) = parse(&answer);
        assert!(whole, "a truncated {status}: {} bytes of body", body.len());
        assert_eq!((status, body), (431, early_body()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_refusing_an_upload_early_gets_its_answer_through_whole() {
    let upstream = early_closer(413, 1, None).await;
    let (_sts, gw) = gateway_before(upstream).await;
    for _ in 0..5 {
        let (status, whole, body) = upload(gw.addr).await;
        assert!(whole, "a truncated {status}: {} bytes of body", body.len());
        assert_eq!((status, body), (413, early_body()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_refusing_an_upload_early_gets_its_answer_through_whole() {
    let pki = support::tls::pki();
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let identity = chaingate_core::config::TlsIdentity {
        certs: CertificateDer::pem_file_iter(&pki.cert_file)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap(),
        key: PrivateKeyDer::from_pem_file(&pki.key_file).unwrap(),
    };
    // The early closer speaks HTTP/1.1 only: no h2 by ALPN.
    let mut tls = (*chaingate_core::tls::server_config(&identity).unwrap()).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let upstream = early_closer(413, 1, Some(acceptor)).await;
    let sts = TokenServer::start().await;
    let with_ca = config(
        &sts.url(),
        &format!("https://localhost:{}", upstream.port()),
        "",
    )
    .replace(
        "domain = \"billing\"\n",
        &format!(
            "domain = \"billing\"\nca_file = {:?}\n",
            pki.ca_file.display().to_string()
        ),
    );
    let gw = gateway(&with_ca).await;
    for _ in 0..5 {
        let (status, whole, body) = upload(gw.addr).await;
        assert!(whole, "a truncated {status}: {} bytes of body", body.len());
        assert_eq!((status, body), (413, early_body()));
    }
}
