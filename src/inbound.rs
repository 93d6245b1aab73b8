//! Inbound: accept loops for the data and admin ports, TLS termination, HTTP/1.1 + HTTP/2.
//!
//! Connections are tracked by hyper-util's `GracefulShutdown`, so a drain sends HTTP/1
//! `Connection: close` on the next response and an HTTP/2 GOAWAY, then waits for in-flight work.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Limits, Timeouts};
use crate::outbound::Peer;

/// HTTP server settings shared by every connection of a listener.
pub fn http_builder(timeouts: &Timeouts, limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Accepts connections until `stop` flips, then drains the tracked ones within `drain_timeout`.
/// Per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
    /// Connections open at once; past it the listener stops accepting (the kernel's backlog
    /// holds the rest) rather than letting memory grow with every idle connection.
    pub max_connections: usize,
}

pub async fn serve<S, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
    handler: S,
) where
    S: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<crate::Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let ServeLimits {
        handshake_timeout,
        drain_timeout,
        max_connections,
    } = limits;
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let peer = Peer::new(addr, tls.is_some());
                    let connection = Connection {
                        builder: builder.clone(),
                        handler: handler.clone(),
                        peer,
                    };
                    let watcher = graceful.watcher();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => connection.serve(TokioIo::new(stream), watcher).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => connection.serve(TokioIo::new(stream), watcher).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: back off, never stop serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        }
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(open, "drain timeout elapsed with connections still open");
    }
}

struct Connection<S> {
    builder: auto::Builder<TokioExecutor>,
    handler: S,
    peer: Peer,
}

impl<S, F> Connection<S>
where
    S: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<crate::Body>> + Send + 'static,
{
    async fn serve<I>(self, io: I, watcher: hyper_util::server::graceful::Watcher)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Self {
            builder,
            handler,
            peer,
        } = self;
        let service = service_fn(move |request| {
            let response = handler(request, peer.clone());
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder.serve_connection(io, service).into_owned();
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    }
}

/// A TLS acceptor for the data port, if TLS is configured.
pub fn tls_acceptor(config: Option<Arc<rustls::ServerConfig>>) -> Option<TlsAcceptor> {
    config.map(TlsAcceptor::from)
}

/// Binds a listener, naming the address in the error.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
