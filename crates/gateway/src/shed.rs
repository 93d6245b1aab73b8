//! Shed: refuse at once (503 + `Retry-After`, RFC 9110 §15.6.4) rather than queue, past
//! `limits.max_concurrent_requests` in flight. Queueing would only add latency a caller's own
//! timeout then throws away; a refusal lets it retry elsewhere.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

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

    /// A permit for one request, held until its response head is back from the upstream.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.in_flight
            .clone()
            .try_acquire_owned()
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
