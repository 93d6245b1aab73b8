//! Protecting a token server that struggles, and the callers waiting on it: a retry budget, a
//! circuit breaker and a cap on exchanges in flight (docs/reliability.md, promises 4 and 12).
//!
//! Retries happen only for connect errors, 5xx and 429, with jittered exponential backoff, and
//! only while the budget allows (first attempts deposit `retry_budget_percent`, a floor of
//! `RETRY_FLOOR_PER_SEC` refills each second), so a failing server never sees more than a bounded
//! multiple of the real traffic. The breaker opens after `breaker_failures` consecutive
//! unavailable answers and fails fast until `breaker_open` has passed; then one probe decides.
//! A token server that answers, even with a refusal, is alive.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::config::Protection;
use crate::error::Error;

const RETRY_FLOOR_PER_SEC: f64 = 10.0;
const MAX_BUDGET: f64 = 100.0;
const BACKOFF_BASE: Duration = Duration::from_millis(25);

#[derive(Debug)]
pub(super) struct Guard {
    settings: Protection,
    in_flight: Semaphore,
    breaker: Mutex<Breaker>,
    budget: Mutex<Budget>,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
    /// A background renewal is going through the open breaker as its probe.
    renewal_probing: bool,
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
    refilled: Instant,
}

/// Leave to call the token server; the permit bounds exchanges in flight.
pub(super) struct Admission<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Guard {
    pub(super) fn new(settings: Protection) -> Self {
        Self {
            in_flight: Semaphore::new(settings.max_in_flight),
            settings,
            breaker: Mutex::new(Breaker::default()),
            budget: Mutex::new(Budget {
                tokens: RETRY_FLOOR_PER_SEC,
                refilled: Instant::now(),
            }),
        }
    }

    /// Fails fast while the breaker is open or too many exchanges are in flight.
    pub(super) fn admit(
        &self,
        fallback_retry_after: Duration,
    ) -> Result<Admission<'_>, (Error, &'static str)> {
        let probe = {
            let mut breaker = self.lock_breaker();
            if let Some(until) = breaker.open_until {
                let now = Instant::now();
                if now < until {
                    let retry_after = until - now;
                    return Err((Error::ExchangeUnavailable { retry_after }, "circuit open"));
                }
                if breaker.probing {
                    return Err(self.busy_probe("circuit half-open"));
                }
                breaker.probing = true;
            }
            breaker.probing
        };
        self.in_flight_slot(
            fallback_retry_after,
            probe.then_some(|b: &mut Breaker| b.probing = false),
        )
    }

    /// For a background renewal: as [`Self::admit`], except that while the breaker is open one
    /// renewal at a time goes through as its probe. A token in use must get its chances to be
    /// renewed before it expires, and a storm of failing callers (new tokens during an outage)
    /// must not take them away; one at a time keeps an outage's extra load at one request.
    pub(super) fn admit_renewal(
        &self,
        fallback_retry_after: Duration,
    ) -> Result<Admission<'_>, (Error, &'static str)> {
        let probe = {
            let mut breaker = self.lock_breaker();
            if breaker.open_until.is_some() {
                if breaker.renewal_probing {
                    return Err(self.busy_probe("circuit open, a renewal is probing"));
                }
                breaker.renewal_probing = true;
            }
            breaker.renewal_probing
        };
        self.in_flight_slot(
            fallback_retry_after,
            probe.then_some(|b: &mut Breaker| b.renewal_probing = false),
        )
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn busy_probe(&self, reason: &'static str) -> (Error, &'static str) {
        let retry_after = self.settings.breaker_open;
        (Error::ExchangeUnavailable { retry_after }, reason)
    }

    /// One of the `max_in_flight` places. When they are all taken, `undo` gives back the probe
    /// this admission claimed: no `record` will come for it, and a probe left claimed would keep
    /// the breaker half-open for good.
    fn in_flight_slot(
        &self,
        fallback_retry_after: Duration,
        undo: Option<fn(&mut Breaker)>,
    ) -> Result<Admission<'_>, (Error, &'static str)> {
        let Ok(permit) = self.in_flight.try_acquire() else {
            if let Some(undo) = undo {
                undo(&mut self.lock_breaker());
            }
            let retry_after = fallback_retry_after;
            return Err((
                Error::ExchangeUnavailable { retry_after },
                "too many exchanges in flight",
            ));
        };
        self.deposit();
        Ok(Admission { _permit: permit })
    }

    /// Records how an exchange ended: `true` if the token server answered at all.
    pub(super) fn record(&self, server_answered: bool) {
        let mut breaker = self.lock_breaker();
        breaker.renewal_probing = false;
        if server_answered {
            *breaker = Breaker::default();
            return;
        }
        breaker.consecutive_failures += 1;
        if breaker.probing || breaker.consecutive_failures >= self.settings.breaker_failures {
            if breaker.open_until.is_none() || breaker.probing {
                tracing::warn!(
                    failures = breaker.consecutive_failures,
                    "token server circuit open"
                );
            }
            breaker.open_until = Some(Instant::now() + self.settings.breaker_open);
            breaker.probing = false;
        }
    }

    pub(super) fn is_open(&self) -> bool {
        let breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        breaker
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// The wait before retry `attempt` (1-based), if the settings and the budget allow one.
    pub(super) fn retry_delay(&self, attempt: u32, hint: Option<Duration>) -> Option<Duration> {
        if attempt > self.settings.retries {
            return None;
        }
        {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            refill(&mut budget);
            if budget.tokens < 1.0 {
                return None;
            }
            budget.tokens -= 1.0;
        }
        let ceiling = BACKOFF_BASE * 2u32.saturating_pow(attempt - 1);
        // Full jitter: spreads the retries of many gateways hitting one server.
        let mut byte = [0u8; 1];
        let _ = aws_lc_rs::rand::fill(&mut byte);
        let jittered = ceiling.mul_f64(f64::from(byte[0]) / 255.0);
        Some(hint.map_or(jittered, |h| h.max(jittered)))
    }

    fn deposit(&self) {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        refill(&mut budget);
        budget.tokens =
            (budget.tokens + f64::from(self.settings.retry_budget_percent) / 100.0).min(MAX_BUDGET);
    }
}

fn refill(budget: &mut Budget) {
    let now = Instant::now();
    let elapsed = now.duration_since(budget.refilled).as_secs_f64();
    budget.tokens = (budget.tokens + elapsed * RETRY_FLOOR_PER_SEC).min(MAX_BUDGET);
    budget.refilled = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(retries: u32, failures: u32) -> Guard {
        Guard::new(Protection {
            retries,
            retry_budget_percent: 20,
            breaker_failures: failures,
            breaker_open: Duration::from_secs(5),
            max_in_flight: 2,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_refused_for_want_of_a_place_does_not_wedge_the_breaker() {
        let g = guard(0, 3);
        for _ in 0..3 {
            let _admitted = g.admit(Duration::from_secs(1)).unwrap();
            g.record(false);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        // Both places taken (max_in_flight = 2): the half-open probe cannot start.
        let held = (
            g.in_flight.try_acquire().unwrap(),
            g.in_flight.try_acquire().unwrap(),
        );
        assert!(g.admit(Duration::from_secs(1)).is_err());
        assert!(g.admit_renewal(Duration::from_secs(1)).is_err());
        drop(held);
        // The claims were given back: the next caller and the next renewal may probe.
        assert!(g.admit_renewal(Duration::from_secs(1)).is_ok());
        assert!(
            g.admit(Duration::from_secs(1)).is_ok(),
            "not wedged half-open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_probe_an_open_breaker_one_at_a_time() {
        let g = guard(0, 3);
        for _ in 0..3 {
            let _admitted = g.admit(Duration::from_secs(1)).unwrap();
            g.record(false);
        }
        assert!(
            g.admit(Duration::from_secs(1)).is_err(),
            "callers fail fast"
        );
        let probe = g
            .admit_renewal(Duration::from_secs(1))
            .expect("a renewal probes");
        assert!(
            g.admit_renewal(Duration::from_secs(1)).is_err(),
            "one renewal at a time"
        );
        assert!(
            g.admit(Duration::from_secs(1)).is_err(),
            "callers still fail fast"
        );
        drop(probe);
        // It failed: the breaker stays open, and the next renewal may probe again.
        g.record(false);
        assert!(g.is_open());
        let probe = g
            .admit_renewal(Duration::from_secs(1))
            .expect("the next renewal probes");
        drop(probe);
        // It succeeded: closed for everyone.
        g.record(true);
        assert!(!g.is_open());
        assert!(g.admit(Duration::from_secs(1)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_fails_fast_and_one_probe_closes_it() {
        let g = guard(0, 3);
        for _ in 0..3 {
            let _admitted = g.admit(Duration::from_secs(1)).unwrap();
            g.record(false);
        }
        assert!(g.is_open());
        assert!(g.admit(Duration::from_secs(1)).is_err(), "open: fail fast");
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = g.admit(Duration::from_secs(1)).unwrap();
        assert!(
            g.admit(Duration::from_secs(1)).is_err(),
            "one probe at a time"
        );
        drop(probe);
        g.record(true);
        assert!(!g.is_open());
        assert!(g.admit(Duration::from_secs(1)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_at_once() {
        let g = guard(0, 1);
        let _ = g.admit(Duration::ZERO).unwrap();
        g.record(false);
        tokio::time::advance(Duration::from_secs(6)).await;
        let _ = g.admit(Duration::ZERO).unwrap();
        g.record(false);
        assert!(g.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_exchanges_are_capped() {
        let g = guard(0, 5);
        let a = g.admit(Duration::ZERO).unwrap();
        let _b = g.admit(Duration::ZERO).unwrap();
        assert!(g.admit(Duration::ZERO).is_err());
        drop(a);
        assert!(g.admit(Duration::ZERO).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_by_count_and_budget() {
        let g = guard(2, 5);
        assert!(g.retry_delay(1, None).is_some());
        assert!(g.retry_delay(3, None).is_none(), "no more than `retries`");
        // The floor refills 10 per second; without time passing the budget runs dry.
        let granted = (0..50).filter(|_| g.retry_delay(1, None).is_some()).count();
        assert!(granted < 15, "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_hint_is_waited_for_in_full() {
        // A fresh budget, so a delay is granted: it is the server's hint, never the shorter
        // jittered backoff (BACKOFF_BASE is far below 2 s).
        let g = guard(2, 5);
        let delay = g.retry_delay(1, Some(Duration::from_secs(2)));
        assert_eq!(delay, Some(Duration::from_secs(2)));
        // Without a hint, the jittered backoff of the first retry stays under its ceiling.
        let backoff = g.retry_delay(1, None).expect("budget left");
        assert!(backoff <= BACKOFF_BASE, "{backoff:?}");
    }
}
