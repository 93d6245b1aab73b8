//! `chaingate_token_exchanges_total`, `chaingate_token_exchange_duration_seconds`, retries, the
//! circuit-breaker gauge and unusable `client_assertion_file`s, by domain.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::AssertionFileError;
use crate::metrics::DomainLabel;
use chaingate_core::metrics::latency_histogram;

/// The `outcome` label of `chaingate_token_exchanges_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `issued`: the token server issued a usable token.
    Issued,
    /// `rejected`: the token server said no with an OAuth error response (RFC 6749 §5.2).
    Rejected,
    /// `error`: unreachable, 5xx, timeout, or an answer that could not be used.
    Error,
}

impl Outcome {
    /// The label value, also the exchange span's `chaingate.outcome`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DomainOutcome {
    domain: Arc<str>,
    outcome: Outcome,
}

/// `{domain, reason}` of `chaingate_client_assertion_errors_total`: `reason` is one of four.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DomainReason {
    domain: Arc<str>,
    reason: &'static str,
}

impl DomainLabel {
    pub(super) fn outcome(&self, outcome: Outcome) -> DomainOutcome {
        DomainOutcome {
            domain: self.domain.clone(),
            outcome,
        }
    }
}

/// `chaingate_token_exchanges_total{domain,outcome}` and `..._duration_seconds{domain}`.
#[derive(Debug, Clone)]
pub(crate) struct ExchangeMetrics {
    pub(super) exchanges: Family<DomainOutcome, Counter>,
    pub(super) duration: Family<DomainLabel, Histogram>,
    pub(super) retries: Family<DomainLabel, Counter>,
    pub(super) circuit_open: Family<DomainLabel, Gauge>,
    pub(super) assertion_errors: Family<DomainReason, Counter>,
    pub(super) reciprocal: super::ReciprocalMetrics,
    pub(super) registration: super::RegistrationMetrics,
}

impl ExchangeMetrics {
    /// Registers the exchange families (and the reciprocal and registration ones) on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let exchanges = Family::default();
        registry.register(
            "chaingate_token_exchanges",
            "Token exchanges at a domain's token endpoint, by outcome",
            exchanges.clone(),
        );
        let duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "chaingate_token_exchange_duration",
            "Time spent on one token exchange, including connection setup",
            Unit::Seconds,
            duration.clone(),
        );
        let retries = Family::default();
        registry.register(
            "chaingate_token_exchange_retries",
            "Retried token requests (connect errors, 5xx, 429), within the retry budget",
            retries.clone(),
        );
        let circuit_open = Family::default();
        registry.register(
            "chaingate_token_exchange_circuit_open",
            "1 while the domain's circuit breaker fails exchanges fast",
            circuit_open.clone(),
        );
        let assertion_errors = Family::default();
        registry.register(
            "chaingate_client_assertion_errors",
            "Token requests not sent because the client_assertion_file was missing, unreadable, \
             malformed or expired",
            assertion_errors.clone(),
        );
        Self {
            exchanges,
            duration,
            retries,
            circuit_open,
            assertion_errors,
            reciprocal: super::ReciprocalMetrics::register(registry),
            registration: super::RegistrationMetrics::register(registry),
        }
    }
}

impl ExchangeMetrics {
    /// One domain's handles, resolved once so that an exchange touches no label map.
    pub(super) fn for_domain(&self, label: &DomainLabel) -> DomainExchangeMetrics {
        DomainExchangeMetrics {
            issued: self
                .exchanges
                .get_or_create_owned(&label.outcome(Outcome::Issued)),
            rejected: self
                .exchanges
                .get_or_create_owned(&label.outcome(Outcome::Rejected)),
            error: self
                .exchanges
                .get_or_create_owned(&label.outcome(Outcome::Error)),
            duration: self.duration.get_or_create_owned(label),
            retries: self.retries.get_or_create_owned(label),
            circuit_open: self.circuit_open.get_or_create_owned(label),
            assertion_errors: self.assertion_errors.clone(),
            label: label.clone(),
        }
    }
}

#[derive(Debug)]
pub(super) struct DomainExchangeMetrics {
    pub(super) issued: Counter,
    pub(super) rejected: Counter,
    pub(super) error: Counter,
    pub(super) retries: Counter,
    pub(super) circuit_open: Gauge,
    pub(super) duration: Histogram,
    /// Touched only on the (rare) error path, so its series exist only for domains that had one.
    assertion_errors: Family<DomainReason, Counter>,
    label: DomainLabel,
}

impl DomainExchangeMetrics {
    /// Counts one token request the assertion file kept from being sent.
    pub(super) fn assertion_error(&self, error: AssertionFileError) {
        self.assertion_errors
            .get_or_create(&DomainReason {
                domain: self.label.domain.clone(),
                reason: error.reason(),
            })
            .inc();
    }
}
