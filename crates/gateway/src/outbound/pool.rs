//! A lean pool of HTTP/1.1 connections for plain-http upstreams.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::body::UpstreamBody;
use crate::config::Upstream;
use crate::error::Error;
use chaingate_core::keep_reading::KeepReading;

/// Keep-alive HTTP/1.1 connections to one plain-http upstream.
///
/// hyper-util's client pays per request for a pool key, a boxed future, a `Host` string and a
/// spawned task that waits for the connection to become idle again. Here a connection goes back
/// into the list as soon as its request is handed over, and checkout takes the most recently used
/// one that is ready; one still streaming its previous response is skipped, never waited for.
pub(crate) struct Http1Pool {
    /// `host:port`, for connecting.
    target: String,
    /// `Host` for every request: the upstream's authority.
    host: HeaderValue,
    connections: Mutex<Vec<Pooled>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

struct Pooled {
    sender: SendRequest<UpstreamBody>,
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
            connections: Mutex::new(Vec::new()),
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
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, Error> {
        for _ in 0..ATTEMPTS {
            let (mut sender, reused) = match self.checkout() {
                Some(sender) => (sender, true),
                // Boxed: a new connection is the exception on a warm pool.
                None => (Box::pin(self.connect()).await?, false),
            };
            let response = sender.try_send_request(request);
            // The request is handed over; the connection can serve another once it is done.
            self.checkin(sender);
            match response.await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    // Closed under us before the request left: safe to try another connection.
                    Some(unsent) if reused => request = unsent,
                    _ => {
                        tracing::debug!(error = %e.error(), "upstream request failed");
                        return Err(Error::UpstreamUnavailable);
                    }
                },
            }
        }
        Err(Error::UpstreamUnavailable)
    }

    fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut connections = self.lock();
        let mut i = connections.len();
        while i > 0 {
            i -= 1;
            let sender = &connections[i].sender;
            if sender.is_ready() {
                return Some(connections.swap_remove(i).sender);
            }
            if sender.is_closed() {
                connections.swap_remove(i);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<UpstreamBody>) {
        if !sender.is_closed() {
            self.lock().push(Pooled {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, Error> {
        let connect = tokio::net::TcpStream::connect(self.target.as_str());
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
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(KeepReading::new(stream)))
                .await
                .map_err(|e| {
                    tracing::debug!(error = %e, "upstream handshake failed");
                    Error::UpstreamUnavailable
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(sender)
    }

    /// Drops closed connections and idle ones older than the idle timeout.
    fn prune(&self, now: Instant) {
        self.lock().retain(|c| {
            let expired = c.sender.is_ready() && now.duration_since(c.since) > self.idle_timeout;
            !(c.sender.is_closed() || expired)
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Pooled>> {
        // The list holds no invariant a panic could break; keep serving.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
