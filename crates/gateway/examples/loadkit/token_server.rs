//! A chain-grant token endpoint that answers every POST after a fixed delay.
//!
//! The delay stands in for a real authorization server so the cold path's cost is the gateway's
//! own work plus a known constant. Each AT2 is distinct and the same length (48 bytes), so the
//! cache-memory figure can subtract the token itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub(crate) async fn serve(listen: SocketAddr, latency: Duration) {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("token server bind");
    let issued = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let issued = issued.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let issued = issued.clone();
                async move {
                    // A proof makes the token DPoP-bound (RFC 9449 §5), for the DPoP config; the
                    // proof is not checked here, the bench measures the gateway.
                    let token_type = if request.headers().contains_key("dpop") {
                        "DPoP"
                    } else {
                        "Bearer"
                    };
                    // Read the whole form like a real server would before answering.
                    let _ = request.into_body().collect().await;
                    tokio::time::sleep(latency).await;
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    let body = format!(
                        r#"{{"access_token":"at2-bench-{n:020}-xxxxxxxxxxxxxxxxxxxxxxx","token_type":"{token_type}","expires_in":3600}}"#
                    );
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = StatusCode::OK;
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
