//! An upstream connection that keeps reading after the upstream stopped reading.
//!
//! RFC 9112 §9.6: a server may answer before it has read the whole request (413 for an upload,
//! 431 for a long head) and then close. Closing with the request's rest unread makes the
//! upstream's kernel reset the connection, and from then on every write fails. hyper's client
//! takes that write error for the request's fate and drops the answer already waiting in the
//! receive buffer, so the caller got 502 (or a response cut short) instead of the upstream's own
//! refusal. Here, once the peer has reset or shut its side, the request's remaining bytes are
//! discarded instead of failing, and reading goes on: the caller gets the answer, whole, or, if
//! the reset took it too, a read error and a complete 502.
//!
//! Used by every upstream and token-endpoint connection: the gateway's plain-http pool wraps its
//! streams directly, hyper-util's pooled client gets them from [`TcpConnector`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Wraps an upstream transport; see the module docs.
#[derive(Debug)]
pub struct KeepReading<T> {
    inner: T,
    /// The peer refused further input: writes are discarded from here on.
    write_gone: bool,
}

impl<T> KeepReading<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            write_gone: false,
        }
    }

    /// Whether `e` means the peer will read nothing more on this connection.
    fn peer_stopped_reading(&mut self, e: &io::Error) -> bool {
        let gone = matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        );
        if gone {
            tracing::debug!(error = %e, "upstream stopped reading; the rest of the request is dropped");
            self.write_gone = true;
        }
        gone
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for KeepReading<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KeepReading<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if this.peer_stopped_reading(&e) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let all = || bufs.iter().map(|b| b.len()).sum();
        if this.write_gone {
            return Poll::Ready(Ok(all()));
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) if this.peer_stopped_reading(&e) => Poll::Ready(Ok(all())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_gone {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if this.peer_stopped_reading(&e) => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_gone {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(Err(e)) if this.peer_stopped_reading(&e) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl Connection for KeepReading<TcpStream> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// hyper-util's TCP connector, its streams wrapped in [`KeepReading`] (TLS goes on top).
#[derive(Debug, Clone)]
pub struct TcpConnector(pub HttpConnector);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = std::pin::Pin<
    Box<dyn Future<Output = Result<TokioIo<KeepReading<TcpStream>>, BoxError>> + Send>,
>;

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TokioIo<KeepReading<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        // Boxed: once per new connection, never per request.
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let stream = connecting.await?.into_inner();
            Ok(TokioIo::new(KeepReading::new(stream)))
        })
    }
}
