//! The shared tier's breaker: consecutive failures stop chaingate waiting on Redis for a while.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Consecutive failures open it for a while; the first command after that decides.
pub(super) struct Breaker {
    failures: AtomicU32,
    /// Set while the one command after the open period is out.
    probing: AtomicBool,
    threshold: u32,
    open_for: Duration,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub(super) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            threshold,
            open_for,
            open_until: Mutex::new(None),
        }
    }

    pub(super) fn allow(&self) -> bool {
        let mut open = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *open {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half open: let this one through; another failure reopens at once.
                *open = None;
                self.failures.store(self.threshold - 1, Ordering::Relaxed);
                self.probing.store(true, Ordering::Relaxed);
                true
            }
            None => true,
        }
    }

    /// Whether this success was the probe that closed an open breaker.
    pub(super) fn succeeded(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.probing.swap(false, Ordering::Relaxed)
    }

    /// Whether this failure opened the breaker.
    pub(super) fn failed(&self) -> bool {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            let mut open = self
                .open_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let opened = open.is_none() && !self.probing.swap(false, Ordering::Relaxed);
            *open = Some(Instant::now() + self.open_for);
            return opened;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_after_consecutive_failures_and_one_probe_decides() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        assert!(breaker.allow());
        assert!(!breaker.failed() && !breaker.failed(), "two are not enough");
        assert!(!breaker.succeeded(), "a success resets the count");
        assert!(!breaker.failed() && !breaker.failed());
        assert!(breaker.failed(), "the third in a row opens it");
        assert!(!breaker.allow());
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(!breaker.allow(), "still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(breaker.allow(), "one probe once the open time is over");
        // A failed probe opens it again at once (still open: not announced a second time).
        assert!(!breaker.failed());
        assert!(!breaker.allow(), "reopened");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(breaker.allow());
        assert!(breaker.succeeded(), "a good probe closes it");
        assert!(breaker.allow() && !breaker.failed());
    }
}
