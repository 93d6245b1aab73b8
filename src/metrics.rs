//! Shared metric plumbing: the registry, label types and histogram buckets.
//!
//! Each stage registers its own metric struct on the registry passed in (no globals). Label
//! values come from config names, never from requests, so cardinality is bounded by the config.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// `{domain="<config name>"}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabel {
    pub domain: Arc<str>,
}

/// `{route="<config name>"}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<str>,
}

/// Latency buckets from 100 µs to ~6.5 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The content type of the text `prometheus_client::encoding::text::encode` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
