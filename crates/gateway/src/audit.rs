//! Audit events: one structured `chaingate::audit` event per token decision, so an access decision
//! can be proven after the fact. Schema (every field always present, `""` when it does not apply):
//!
//! | field | meaning |
//! |---|---|
//! | `decision` | `issued`, `refused` (the token server said no), `error` (no answer, 5xx, timeout, unusable answer), `refreshed` (a background renewal succeeded), `evicted` |
//! | `domain`, `route` | config names; `route` is `""` for a fleet-wide eviction |
//! | `grant` | `chain`, `token-exchange` or `jwt-bearer` |
//! | `scope_requested`, `scope_granted` | as sent and as answered (RFC 6749 §5.1: absent = as requested) |
//! | `subject_digest` | SHA-256 of the caller's token (AT1), first 16 bytes in hex: the same on every replica, reveals nothing |
//! | `error` | the token server's OAuth error code (RFC 6749 §5.2) or the failure class (`timeout`, `unreachable`, `unavailable status`, ...) |
//! | `renewal` | `true` for a background renewal (refresh-ahead) |
//! | `origin` | for `evicted`: `upstream` (an upstream `invalid_token`, RFC 6750 §3.1) or `fleet` (another replica's) |
//! | `correlation_id` | the request's trace id (see [`crate::trace::correlation_id`]) |
//!
//! A cache hit is not a decision and logs nothing; concurrent misses share one exchange and one
//! event. Nothing of a token, secret or assertion is in an event. `log.audit = false` or
//! `RUST_LOG=chaingate::audit=off` turns them off.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use crate::authn::InboundToken;

/// The target of every audit event.
pub(crate) const TARGET: &str = "chaingate::audit";

/// Who a decision was made for: the route and the request's correlation id, made only if an
/// event is written.
#[derive(Debug)]
pub(crate) struct Caller<'a> {
    pub(crate) route: &'a Arc<str>,
    /// `Some` when audit events are on: the caller's `traceparent`, if it sent one.
    audit: Option<Option<HeaderValue>>,
    correlation: OnceLock<String>,
}

impl<'a> Caller<'a> {
    /// `traceparent`: read only when `audit` is on.
    pub(crate) fn new(
        route: &'a Arc<str>,
        audit: bool,
        traceparent: impl FnOnce() -> Option<HeaderValue>,
    ) -> Self {
        Self {
            route,
            audit: audit.then(traceparent),
            correlation: OnceLock::new(),
        }
    }

    /// Whether decisions for this caller are written.
    pub(crate) fn audited(&self) -> bool {
        self.audit.is_some()
    }

    fn correlation_id(&self) -> &str {
        self.correlation.get_or_init(|| {
            crate::trace::correlation_id(self.audit.as_ref().and_then(Option::as_ref))
        })
    }

    /// What a background renewal started for this caller keeps of it.
    pub(crate) fn detach(&self) -> Detached {
        Detached {
            route: self.route.clone(),
            correlation: self.audited().then(|| self.correlation_id().to_owned()),
        }
    }
}

/// A [`Caller`] kept by a spawned task (refresh-ahead).
#[derive(Debug, Clone)]
pub(crate) struct Detached {
    route: Arc<str>,
    /// `Some` when audit events are on.
    correlation: Option<String>,
}

impl Detached {
    /// The caller again, for the task's decisions.
    pub(crate) fn caller(&self) -> Caller<'_> {
        let caller = Caller::new(&self.route, self.correlation.is_some(), || None);
        if let Some(id) = &self.correlation {
            let _ = caller.correlation.set(id.clone());
        }
        caller
    }
}

/// One decision's facts.
#[derive(Debug)]
pub(crate) struct Decision<'a> {
    pub(crate) decision: &'static str,
    pub(crate) domain: &'a str,
    pub(crate) grant: &'static str,
    pub(crate) scope_requested: Option<&'a str>,
    pub(crate) scope_granted: Option<&'a str>,
    pub(crate) error: &'static str,
    pub(crate) renewal: bool,
    pub(crate) origin: &'static str,
}

impl Decision<'_> {
    /// Writes the event for `caller`, whose token is `at1` (digested).
    pub(crate) fn emit(&self, caller: &Caller<'_>, at1: Option<InboundToken<'_>>) {
        if !caller.audited() {
            return;
        }
        tracing::info!(
            target: TARGET,
            decision = self.decision,
            domain = self.domain,
            route = &**caller.route,
            grant = self.grant,
            scope_requested = self.scope_requested.unwrap_or(""),
            // RFC 6749 §5.1: no `scope` in the answer means the scope requested.
            scope_granted = self.scope_granted.or(self.scope_requested).unwrap_or(""),
            subject_digest = at1.map(subject_digest).unwrap_or_default(),
            error = self.error,
            renewal = self.renewal,
            origin = self.origin,
            correlation_id = caller.correlation_id(),
            "token decision"
        );
    }
}

/// SHA-256 of the token, first 16 bytes as hex.
fn subject_digest(at1: InboundToken<'_>) -> String {
    let digest = chaingate_oauth::digest::sha256(at1.expose().as_bytes());
    chaingate_oauth::digest::hex(&digest[..16])
}
