//! The request body as it goes upstream: the caller's stream under an idle deadline, or nothing
//! (a bodyless request sent again after the upstream refused a stale token).

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::shed::InFlight;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the upstream clients send: the caller's body (holding the request's place until it has
/// gone upstream), or none.
pub(crate) type UpstreamBody = Either<InFlight<IdleTimeout<Incoming>>, Empty<Bytes>>;

/// Fails the body if the caller sends nothing for `idle` while it is being forwarded, so a
/// caller that stops mid-body cannot hold an upstream connection forever.
pub(crate) struct IdleTimeout<B> {
    /// A frame already read from `inner` (see [`first_frame`]), sent before the rest.
    first: Option<Frame<Bytes>>,
    inner: B,
    // Boxed so the body stays `Unpin`, as hyper-util's client requires.
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
}

impl<B> std::fmt::Debug for IdleTimeout<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimeout")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the deadline restarts with every frame the caller sends.
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        Self {
            first: None,
            inner,
            sleep: Box::pin(tokio::time::sleep(idle)),
            idle,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was idle too long")]
pub(super) struct BodyIdle;

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.sleep.as_mut().reset(Instant::now() + this.idle);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(std::future::Future::poll(this.sleep.as_mut(), cx));
        Poll::Ready(Some(Err(BodyIdle.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The caller's body, forwarded under the idle deadline.
pub(crate) fn forwarded(body: Incoming, idle: Duration) -> UpstreamBody {
    // Most requests have no body: no deadline to arm (and no clock to read) for those.
    if body.is_end_stream() {
        return empty();
    }
    Either::Left(InFlight::new(IdleTimeout::new(body, idle)))
}

/// The caller's chunked body failed to parse before its first frame (e.g. a chunk size that
/// overflows, RFC 9112 §7.1): the caller's fault, known before anything went upstream.
#[derive(Debug, thiserror::Error)]
#[error("the chunked request body is malformed")]
pub(crate) struct MalformedBody(#[source] pub(crate) hyper::Error);

/// Reads the first frame of a chunked body before the request goes upstream, so a malformed
/// chunk size is refused with 400 rather than found after the upstream request started (then
/// the only answer left would be 502 on a half-sent request). Only for bodies without a
/// `Content-Length`: those with one had their framing checked with the head, and their size hint
/// must stay exact for the upstream request's own framing. Waits at most `idle`, as the
/// forwarding would; a caller that sends nothing by then is forwarded and times out as before.
pub(crate) async fn first_frame(
    body: UpstreamBody,
    idle: Duration,
) -> Result<UpstreamBody, MalformedBody> {
    let Either::Left(mut upload) = body else {
        return Ok(body);
    };
    let body = upload.get_mut();
    let next = std::future::poll_fn(|cx| Pin::new(&mut body.inner).poll_frame(cx));
    match tokio::time::timeout(idle, next).await {
        Ok(Some(Ok(frame))) => body.first = Some(frame),
        Ok(Some(Err(e))) => return Err(MalformedBody(e)),
        Ok(None) | Err(_) => {}
    }
    body.sleep.as_mut().reset(Instant::now() + idle);
    Ok(Either::Left(upload))
}

/// No body: for sending a bodyless request again.
pub(crate) fn empty() -> UpstreamBody {
    Either::Right(Empty::new())
}
