//! The gateway's metric label sets. Label values come from config names, never from
//! requests, so cardinality is bounded by the config.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;

/// `{domain="<config name>"}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DomainLabel {
    /// The `[domains.X]` name.
    pub domain: Arc<str>,
}

/// `{route="<config name>"}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    /// The `[[routes]]` name.
    pub route: Arc<str>,
}
