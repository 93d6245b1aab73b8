//! The one accept loop both servers use: TLS termination, HTTP/1.1 + HTTP/2, a connection cap,
//! and a graceful drain.
//!
//! Connections are tracked by hyper-util's `GracefulShutdown`, so a drain sends HTTP/1
//! `Connection: close` on the next response and an HTTP/2 GOAWAY, then waits for in-flight work.
//! A connection the server ends while the client may still be sending lingers (see `linger`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::drain::Watch;
use crate::linger::Lingering;

/// Where a request came from, as the listener saw it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The remote socket address.
    pub addr: SocketAddr,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// `X-Forwarded-For`, formatted once per connection rather than once per request.
    forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer of a connection accepted from `addr`.
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        let forwarded_for = HeaderValue::try_from(addr.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Self {
            addr,
            tls,
            forwarded_for,
        }
    }

    /// The peer's IP address as a header value (`X-Forwarded-For`, RFC 7239 `for=`).
    pub fn forwarded_for(&self) -> &HeaderValue {
        &self.forwarded_for
    }
}

/// Per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// How long a TLS handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
    /// How long in-flight connections get to finish once the drain begins.
    pub drain_timeout: Duration,
    /// Connections open at once; past it the listener stops accepting (the kernel's backlog
    /// holds the rest) rather than letting memory grow with every idle connection.
    pub max_connections: usize,
}

/// Accepts connections until `stop` is signalled, then drains the tracked ones within
/// `limits.drain_timeout`.
pub async fn serve<S, F, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    limits: ServeLimits,
    mut stop: Watch,
    handler: S,
) where
    S: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
            _ = stop.signaled() => break,
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
                        let _ = stream.set_nodelay(true);
                        // The slot goes with the socket: held until it is really closed.
                        let stream = Lingering::new(stream, slot);
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
            _ = stop.signaled() => break,
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

impl<S, F, B> Connection<S>
where
    S: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
        // `map`, not `async move { Ok(response.await) }`: an async block keeps the captured
        // future and the awaited one side by side, doubling what hyper moves into its
        // connection state for every request.
        let service =
            service_fn(move |request| handler(request, peer.clone()).map(Ok::<_, Infallible>));
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
