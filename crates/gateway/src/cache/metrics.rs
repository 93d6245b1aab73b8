//! `chaingate_token_cache_lookups_total{domain,result}`, `chaingate_token_cache_entries{domain}`
//! and `chaingate_scope_upgrades_total{domain}`.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::DomainLabel;

/// Whether a lookup was served from the cache.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl EncodeLabelValue for Lookup {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Hit => "hit",
                Self::Miss => "miss",
            },
        )
    }
}

impl Lookup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DomainResult {
    pub(super) domain: Arc<str>,
    pub(super) result: Lookup,
}

/// `chaingate_token_cache_lookups_total{domain,result}`, `chaingate_token_cache_entries{domain}`
/// and `chaingate_scope_upgrades_total{domain}`.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    pub(super) lookups: Family<DomainResult, Counter>,
    pub(super) entries: Family<DomainLabel, Gauge>,
    pub(super) scope_upgrades: Family<DomainLabel, Counter>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = Family::default();
        registry.register(
            "chaingate_token_cache_lookups",
            "Token cache lookups, by result",
            lookups.clone(),
        );
        let entries = Family::default();
        registry.register(
            "chaingate_token_cache_entries",
            "Tokens currently cached",
            entries.clone(),
        );
        let scope_upgrades = Family::default();
        registry.register(
            "chaingate_scope_upgrades",
            "Re-exchanges of an incremental grant because a route needed a scope it lacked",
            scope_upgrades.clone(),
        );
        Self {
            lookups,
            entries,
            scope_upgrades,
        }
    }
}
