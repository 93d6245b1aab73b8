//! `chaingate_shared_cache_*`: what the shared tier did for each domain, and its health.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainResult {
    domain: Arc<str>,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainOutcome {
    domain: Arc<str>,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainOrigin {
    domain: Arc<str>,
    origin: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The families, registered once; per-domain handles come from [`SharedMetrics::counters`].
#[derive(Debug, Clone)]
pub(crate) struct SharedMetrics {
    lookups: Family<DomainResult, Counter>,
    lease_waits: Family<DomainOutcome, Counter>,
    evictions: Family<DomainOrigin, Counter>,
    pub(super) unavailable: Counter,
    pub(super) tampered: Counter,
    pub(super) unknown_key: Counter,
    pub(super) breaker_open: Gauge,
}

impl SharedMetrics {
    /// Registers the families on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let lookups = Family::default();
        registry.register(
            "chaingate_shared_cache_lookups",
            "First-tier misses looked up in the shared tier, by result (hit: another replica's token)",
            lookups.clone(),
        );
        let lease_waits = Family::default();
        registry.register(
            "chaingate_shared_cache_lease_waits",
            "Waits on another replica's exchange, by outcome (filled, or timed_out after lease_ttl)",
            lease_waits.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "chaingate_shared_cache_evictions",
            "Tokens dropped fleet-wide, by origin (local: an upstream refused it here; remote: another replica said so)",
            evictions.clone(),
        );
        let errors: Family<Kind, Counter> = Family::default();
        registry.register(
            "chaingate_shared_cache_errors",
            "Shared tier failures, by kind (unavailable: timeout or Redis error; tampered: a value that failed authentication)",
            errors.clone(),
        );
        let ignored: Family<Reason, Counter> = Family::default();
        registry.register(
            "chaingate_shared_cache_ignored",
            "Values left unread, by reason (unknown_key: sealed under another encryption key)",
            ignored.clone(),
        );
        let breaker_open = Gauge::default();
        registry.register(
            "chaingate_shared_cache_breaker_open",
            "1 while the shared tier is skipped after repeated failures",
            breaker_open.clone(),
        );
        Self {
            lookups,
            lease_waits,
            evictions,
            unavailable: errors.get_or_create_owned(&Kind {
                kind: "unavailable",
            }),
            tampered: errors.get_or_create_owned(&Kind { kind: "tampered" }),
            unknown_key: ignored.get_or_create_owned(&Reason {
                reason: "unknown_key",
            }),
            breaker_open,
        }
    }

    /// The counters of `domain`.
    pub(crate) fn counters(&self, domain: &Arc<str>) -> SharedCounters {
        let result = |result| DomainResult {
            domain: domain.clone(),
            result,
        };
        let outcome = |outcome| DomainOutcome {
            domain: domain.clone(),
            outcome,
        };
        let origin = |origin| DomainOrigin {
            domain: domain.clone(),
            origin,
        };
        SharedCounters {
            hits: self.lookups.get_or_create_owned(&result("hit")),
            misses: self.lookups.get_or_create_owned(&result("miss")),
            filled: self.lease_waits.get_or_create_owned(&outcome("filled")),
            timed_out: self.lease_waits.get_or_create_owned(&outcome("timed_out")),
            local: self.evictions.get_or_create_owned(&origin("local")),
            remote: self.evictions.get_or_create_owned(&origin("remote")),
        }
    }
}

/// One domain's shared-tier counters.
#[derive(Debug, Clone)]
pub(crate) struct SharedCounters {
    hits: Counter,
    misses: Counter,
    filled: Counter,
    timed_out: Counter,
    local: Counter,
    /// Public to the tokens stage, which applies remote evictions to its first tier.
    pub(crate) remote: Counter,
}

impl SharedCounters {
    pub(super) fn hit(&self, after_waiting: bool) {
        self.hits.inc();
        if after_waiting {
            self.filled.inc();
        }
    }
    pub(super) fn miss(&self) {
        self.misses.inc();
    }
    pub(super) fn lease_timed_out(&self) {
        self.timed_out.inc();
    }
    /// An upstream refused the token here and the fleet was told.
    pub(crate) fn evicted_here(&self) {
        self.local.inc();
    }
}
