//! `chaingate_registrations_total{domain,outcome}` and `chaingate_registered{domain}`.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::DomainLabel;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(super) enum RegOutcome {
    Registered,
    Reused,
    Updated,
    Failed,
    Deleted,
}

impl RegOutcome {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Reused => "reused",
            Self::Updated => "updated",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

impl EncodeLabelValue for RegOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegLabel {
    domain: Arc<str>,
    outcome: RegOutcome,
}

/// Self-registration results by domain, and whether issued credentials are in use.
#[derive(Debug, Clone)]
pub(crate) struct RegistrationMetrics {
    registrations: Family<RegLabel, Counter>,
    registered: Family<DomainLabel, Gauge>,
}

impl RegistrationMetrics {
    /// Registers `chaingate_registrations_total{domain,outcome}` and `chaingate_registered{domain}`
    /// on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let registrations = Family::default();
        registry.register(
            "chaingate_registrations",
            "Self-registration (RFC 7591/7592) results, by domain and outcome",
            registrations.clone(),
        );
        let registered = Family::default();
        registry.register(
            "chaingate_registered",
            "1 while the domain's self-registered credentials are in use",
            registered.clone(),
        );
        Self {
            registrations,
            registered,
        }
    }

    pub(super) fn domain(&self, domain: &Arc<str>) -> DomainRegistrationMetrics {
        let counter = |outcome| {
            self.registrations.get_or_create_owned(&RegLabel {
                domain: domain.clone(),
                outcome,
            })
        };
        DomainRegistrationMetrics {
            registered: counter(RegOutcome::Registered),
            reused: counter(RegOutcome::Reused),
            updated: counter(RegOutcome::Updated),
            failed: counter(RegOutcome::Failed),
            deleted: counter(RegOutcome::Deleted),
            active: self.registered.get_or_create_owned(&DomainLabel {
                domain: domain.clone(),
            }),
        }
    }
}

#[derive(Debug)]
pub(super) struct DomainRegistrationMetrics {
    registered: Counter,
    reused: Counter,
    updated: Counter,
    failed: Counter,
    deleted: Counter,
    pub(super) active: Gauge,
}

impl DomainRegistrationMetrics {
    pub(super) fn count(&self, outcome: RegOutcome) {
        match outcome {
            RegOutcome::Registered => &self.registered,
            RegOutcome::Reused => &self.reused,
            RegOutcome::Updated => &self.updated,
            RegOutcome::Failed => &self.failed,
            RegOutcome::Deleted => &self.deleted,
        }
        .inc();
    }
}
