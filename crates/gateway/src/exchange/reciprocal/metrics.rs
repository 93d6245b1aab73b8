//! `chaingate_reciprocal_deliveries_total{domain,outcome}`.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How one offer ended: the label of `chaingate_reciprocal_deliveries_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
// Each variant reads as its `outcome` label value (`delivery_failed`), which is the contract.
#[allow(clippy::enum_variant_names)]
pub(crate) enum Delivery {
    /// Party B accepted the code.
    Delivered,
    /// Already delivered (or being delivered) for this caller and scope.
    Duplicate,
    /// B asked for scopes outside `reciprocal.scopes`; nothing was sent anywhere.
    Declined,
    /// Party A has neither a pre-consent policy nor the user's consent for it.
    ConsentRequired,
    /// Party A did not issue a code (unreachable, refused, malformed answer).
    CodeFailed,
    /// Party B did not accept the code.
    DeliveryFailed,
    /// Too many deliveries in flight; a later exchange offers it again.
    Dropped,
}

impl EncodeLabelValue for Delivery {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Delivered => "delivered",
                Self::Duplicate => "duplicate",
                Self::Declined => "declined",
                Self::ConsentRequired => "consent_required",
                Self::CodeFailed => "code_failed",
                Self::DeliveryFailed => "delivery_failed",
                Self::Dropped => "dropped",
            },
        )
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DeliveryLabel {
    pub(super) domain: Arc<str>,
    pub(super) outcome: Delivery,
}

/// `chaingate_reciprocal_deliveries_total{domain,outcome}`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReciprocalMetrics {
    pub(super) deliveries: Family<DeliveryLabel, Counter>,
}

impl ReciprocalMetrics {
    /// Registers `chaingate_reciprocal_deliveries_total` on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "chaingate_reciprocal_deliveries",
            "Reciprocal OAuth offers handled for a domain's token responses, by outcome",
            metrics.deliveries.clone(),
        );
        metrics
    }
}
