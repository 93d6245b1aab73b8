//! Shed: refuse at once (503 + `Retry-After`, RFC 9110 §15.6.4) rather than queue, past
//! `limits.max_concurrent_requests` in flight. Queueing would only add latency a caller's own
//! timeout then throws away; a refusal lets it retry elsewhere.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// One request's place under the bound. It is held until the response body has ended and, for
/// a request with a body, until that body has gone upstream too: a long download or upload is
/// in flight for all of its length, not only until the response head.
#[derive(Debug)]
pub(crate) enum Permit {
    /// Held by one body (or by the request path until the response is made).
    One(OwnedSemaphorePermit),
    /// Shared by the request body and the response body; freed when both have ended.
    Shared(Arc<OwnedSemaphorePermit>),
}

impl Permit {
    /// Two holders of this place, for the request body and the response body: it is freed
    /// when both are dropped. Only requests with a body pay for the `Arc`.
    pub(crate) fn share(self) -> (Self, Self) {
        let shared = match self {
            Self::One(one) => Arc::new(one),
            Self::Shared(shared) => shared,
        };
        (Self::Shared(shared.clone()), Self::Shared(shared))
    }
}

/// A body that holds a [`Permit`] until it ends (or is dropped, e.g. when the caller leaves).
#[derive(Debug)]
pub(crate) struct InFlight<B> {
    inner: B,
    permit: Option<Permit>,
}

impl<B> InFlight<B> {
    /// `inner`, not counted yet: the request path hands the permit over with [`Self::hold`].
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            permit: None,
        }
    }

    /// Holds `permit` until this body ends.
    pub(crate) fn hold(&mut self, permit: Permit) {
        self.permit = Some(permit);
    }

    /// The wrapped body.
    pub(crate) fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

/// Hands the request's place to its response body (when it streams from the upstream), so it
/// is freed when the last byte has gone to the caller.
pub(crate) fn until_body_ends(
    mut response: http::Response<crate::Body>,
    permit: Option<Permit>,
) -> http::Response<crate::Body> {
    if let (http_body_util::Either::Left(body), Some(permit)) = (response.body_mut(), permit) {
        body.hold(permit);
    }
    response
}

impl<B> Body for InFlight<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The in-flight bound of one gateway generation.
#[derive(Debug)]
pub(crate) struct Shed {
    in_flight: Arc<Semaphore>,
    retry_after: Duration,
}

impl Shed {
    pub(crate) fn new(max_concurrent_requests: usize, retry_after: Duration) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_concurrent_requests)),
            retry_after,
        }
    }

    /// A permit for one request, held until both of its bodies have ended.
    pub(crate) fn admit(&self) -> Result<Permit, Error> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map(Permit::One)
            .map_err(|_| Error::Overloaded {
                retry_after: self.retry_after,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_a_request_is_refused_with_retry_after() {
        let shed = Shed::new(1, Duration::from_secs(3));
        let held = shed.admit().unwrap();
        assert!(matches!(
            shed.admit(),
            Err(Error::Overloaded { retry_after }) if retry_after == Duration::from_secs(3)
        ));
        drop(held);
        assert!(shed.admit().is_ok(), "a finished request frees its permit");
    }
}
