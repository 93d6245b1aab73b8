//! A lean pool of HTTP/1.1 connections for plain-http upstreams, each driven by the request
//! that uses it.
//!
//! A hyper client connection is a future that must be polled to move bytes. hyper-util's pool
//! (and this one before) spawned it as a task of its own: every request then crossed a channel
//! into that task and its response back, two extra wake-ups per request. Here the connection
//! travels with the request instead, as Pingora's and haproxy's do: the request's own future
//! polls it until the response head arrives, the response body ([`PooledBody`]) polls it while
//! the caller reads, and at the body's end it goes back to the idle list. An idle connection is
//! not polled at all; one the upstream closed meanwhile is found out at checkout (the request
//! had not left, so it goes to another connection) or by the reaper.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::UpstreamBody;
use crate::config::Upstream;
use crate::error::Error;

/// Keep-alive HTTP/1.1 connections to one plain-http upstream.
pub(crate) struct Http1Pool {
    /// `host:port`, for connecting.
    target: String,
    /// `Host` for every request: the upstream's authority.
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

/// One upstream connection: the handle requests are sent on and the future that moves them.
struct Driven {
    sender: SendRequest<UpstreamBody>,
    /// `None` once finished: dropping it is what cancels a request still queued on it, handing
    /// the request back unsent.
    connection: Option<Connection<TokioIo<TcpStream>, UpstreamBody>>,
}

struct Idle {
    driven: Driven,
    since: Instant,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Requests that never reached a reused connection are retried this many times.
const ATTEMPTS: usize = 3;

/// Why a request got no response on a connection.
enum Failed {
    /// The connection was gone before the request left: safe to send it elsewhere.
    Unsent(Request<UpstreamBody>),
    /// Sent (or partly): not ours to repeat.
    Lost(String),
}

impl Driven {
    /// Polls the connection once; `true` when it has finished (closed by either side or failed).
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(connection) = &mut self.connection else {
            return true;
        };
        let finished = match Pin::new(connection).poll(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "upstream connection closed with an error");
                true
            }
            Poll::Pending => false,
        };
        if finished {
            self.connection = None;
        }
        finished
    }

    /// Sends `request` and drives the connection until the response head is in.
    async fn exchange(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, Failed> {
        // Ready: an idle connection the upstream closed says so when first polled (the FIN is
        // read), before the request is queued on it; a live one signals that it wants one.
        let ready = std::future::poll_fn(|cx| {
            if self.poll_connection(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|result| result.is_ok())
        })
        .await;
        if !ready {
            return Err(Failed::Unsent(request));
        }
        let response = self.sender.try_send_request(request);
        let mut response = std::pin::pin!(response);
        let mut finished = false;
        let result = std::future::poll_fn(|cx| {
            if !finished && self.poll_connection(cx) {
                finished = true;
            }
            match response.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(result),
                // The connection is gone, so the response future is about to say why; poll it
                // again rather than wait for a wake-up that will not come.
                Poll::Pending if finished => response.as_mut().poll(cx),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        result.map_err(|mut e| match e.take_message() {
            Some(unsent) => Failed::Unsent(unsent),
            None => Failed::Lost(e.into_error().to_string()),
        })
    }
}

impl Http1Pool {
    pub(super) fn new(
        upstream: &Upstream,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        let authority = &upstream.authority;
        let pool = Arc::new(Self {
            target: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or(HeaderValue::from_static("localhost")),
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            idle_timeout,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap(Arc::downgrade(&pool), idle_timeout));
        }
        pool
    }

    pub(super) fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub(super) async fn send(
        self: &Arc<Self>,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, Error> {
        for _ in 0..ATTEMPTS {
            let (mut driven, reused) = match self.checkout() {
                Some(driven) => (driven, true),
                // Boxed: a new connection is the exception on a warm pool.
                None => (Box::pin(self.connect()).await?, false),
            };
            match driven.exchange(request).await {
                Ok(response) => {
                    let pool = Arc::downgrade(self);
                    return Ok(response.map(|body| PooledBody {
                        body,
                        driven: Some(driven),
                        pool,
                    }));
                }
                Err(Failed::Unsent(unsent)) if reused => request = unsent,
                Err(Failed::Unsent(_)) => {
                    tracing::debug!("upstream closed a new connection before the request");
                    return Err(Error::UpstreamUnavailable);
                }
                Err(Failed::Lost(error)) => {
                    tracing::debug!(%error, "upstream request failed");
                    return Err(Error::UpstreamUnavailable);
                }
            }
        }
        Err(Error::UpstreamUnavailable)
    }

    /// The most recently used idle connection.
    fn checkout(&self) -> Option<Driven> {
        self.lock().pop().map(|idle| idle.driven)
    }

    fn checkin(&self, driven: Driven) {
        if !driven.sender.is_closed() {
            self.lock().push(Idle {
                driven,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Driven, Error> {
        let connect = TcpStream::connect(self.target.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "upstream connect failed");
                return Err(Error::UpstreamUnavailable);
            }
            Err(_) => {
                tracing::debug!("upstream connect timed out");
                return Err(Error::UpstreamUnavailable);
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "upstream handshake failed");
                Error::UpstreamUnavailable
            })?;
        Ok(Driven {
            sender,
            connection: Some(connection),
        })
    }

    /// Drops idle connections past the idle timeout, and those the upstream has closed (each
    /// polled once, with no one to wake: it is polled for real when next checked out).
    fn prune(&self, now: Instant) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.lock().retain_mut(|idle| {
            now.duration_since(idle.since) <= self.idle_timeout
                && !idle.driven.poll_connection(&mut cx)
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // The list holds no invariant a panic could break; keep serving.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes idle connections past `timeout`, like hyper-util's pool timer; ends with the pool.
async fn reap(pool: Weak<Http1Pool>, timeout: Duration) {
    let mut tick = tokio::time::interval(timeout.max(Duration::from_millis(100)) / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.prune(now);
    }
}

/// An upstream response body that drives its connection while it is read, and hands the
/// connection back to the pool once it has been read to the end. Dropped before the end (the
/// caller went away), the connection is closed: what is left of the response is not ours.
pub struct PooledBody {
    body: Incoming,
    driven: Option<Driven>,
    pool: Weak<Http1Pool>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let (Some(driven), Some(pool)) = (self.driven.take(), self.pool.upgrade()) {
            pool.checkin(driven);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(driven) = &mut this.driven {
            if driven.poll_connection(cx) {
                // Finished: whatever it had read is in the body's channel already.
                this.driven = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // hyper stops reading a body whose length says it is done, without asking for the end.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
