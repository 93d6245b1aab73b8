//! Lingering close, as nginx's `lingering_close`: when the server ends a connection while the
//! client may still be sending (a 431, 413 or 400 answered before the request was read to its
//! end), closing at once would make the kernel answer the unread bytes with a reset, and the reset
//! can destroy the response before the client reads it (RFC 9112 §9.6). So the write side is shut
//! (the client sees the response end), and what still arrives is read and thrown away until the
//! client closes, goes quiet for [`IDLE`], or [`TOTAL`] has passed; only then is the socket closed.
//!
//! A connection the client closed first (its end of stream was read) closes at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long a lingering connection may stay quiet before it is closed (nginx `lingering_timeout`).
pub(crate) const IDLE: Duration = Duration::from_secs(5);
/// The most a connection lingers in all (nginx `lingering_time`).
pub(crate) const TOTAL: Duration = Duration::from_secs(30);

/// A TCP stream that lingers when dropped before its peer closed. Holds `slot` (the listener's
/// connection permit) until the socket is really closed, so lingering sockets count against the
/// connection cap.
#[derive(Debug)]
pub(crate) struct Lingering<P: Send + Unpin + 'static> {
    stream: Option<TcpStream>,
    slot: Option<P>,
    peer_closed: bool,
}

impl<P: Send + Unpin + 'static> Lingering<P> {
    /// Wraps an accepted stream and the permit it holds.
    pub(crate) fn new(stream: TcpStream, slot: P) -> Self {
        Self {
            stream: Some(stream),
            slot: Some(slot),
            peer_closed: false,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("present until drop"))
    }
}

impl<P: Send + Unpin + 'static> Drop for Lingering<P> {
    fn drop(&mut self) {
        let (Some(stream), slot) = (self.stream.take(), self.slot.take()) else {
            return;
        };
        if self.peer_closed {
            return;
        }
        // Outside a runtime (process exit) there is no one left to answer: close at once.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                linger(stream).await;
                drop(slot);
            });
        }
    }
}

/// Shuts the write side, then discards input until EOF, [`IDLE`] of silence or [`TOTAL`].
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8 * 1024];
    let drain = async {
        loop {
            match tokio::time::timeout(IDLE, stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(TOTAL, drain).await;
}

impl<P: Send + Unpin + 'static> AsyncRead for Lingering<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = this.stream().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            this.peer_closed = true;
        }
        polled
    }
}

impl<P: Send + Unpin + 'static> AsyncWrite for Lingering<P> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_client_still_sending_reads_the_whole_answer_then_sees_the_end() {
        let (mut client, server) = pair().await;
        let (permit_tx, permit_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server = Lingering::new(server, permit_tx);
        // The server reads a little, answers, and drops the connection with input unread.
        let mut head = [0u8; 4];
        let sending = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..64 {
                if client.write_all(&chunk).await.is_err() {
                    return Err(client);
                }
            }
            let mut answer = Vec::new();
            client
                .read_to_end(&mut answer)
                .await
                .map(|_| answer)
                .map_err(|_| client)
        });
        server.read_exact(&mut head).await.unwrap();
        server.write_all(b"HTTP/1.1 431 \r\n\r\n").await.unwrap();
        drop(server);
        let answer = sending
            .await
            .unwrap()
            .expect("no reset: every byte was written and read");
        assert_eq!(answer, b"HTTP/1.1 431 \r\n\r\n");
        // The permit is released once the socket is closed.
        assert!(permit_rx.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_client_is_closed_after_the_idle_limit() {
        let (mut client, server) = pair().await;
        let (permit_tx, permit_rx) = tokio::sync::oneshot::channel::<()>();
        let dropped = tokio::time::Instant::now();
        drop(Lingering::new(server, permit_tx));
        let mut buf = [0u8; 1];
        assert_eq!(
            client.read(&mut buf).await.unwrap(),
            0,
            "the write side was shut"
        );
        // The client neither sends nor closes: the socket is released after IDLE, not before.
        assert!(permit_rx.await.is_err());
        let lingered = dropped.elapsed();
        assert!(lingered >= IDLE && lingered < TOTAL, "{lingered:?}");
    }

    #[tokio::test]
    async fn a_connection_the_client_closed_first_closes_at_once() {
        let (client, server) = pair().await;
        let (permit_tx, permit_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server = Lingering::new(server, permit_tx);
        drop(client);
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        drop(server);
        // Released in the drop itself, with no lingering task left to run.
        let mut permit_rx = permit_rx;
        assert_eq!(
            permit_rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        );
    }
}
