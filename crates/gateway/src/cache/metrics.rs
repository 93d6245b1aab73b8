//! `chaingate_token_cache_lookups_total{domain,result}` and `chaingate_token_cache_entries{domain}`:
//! one cache per domain, labelled by the domain's config name.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::DomainLabel;

/// Whether a lookup was served from the cache.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Served from the cache.
    Hit,
    /// Loaded (and, unless it failed, cached).
    Miss,
    /// Not looked up: the route forwarded the caller's own token (`exchange`).
    Skipped,
}

impl EncodeLabelValue for Lookup {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Hit => "hit",
                Self::Miss => "miss",
                Self::Skipped => "skipped",
            },
        )
    }
}

impl Lookup {
    /// The label value, also used in the access log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainResult {
    domain: Arc<str>,
    result: Lookup,
}

/// `chaingate_token_cache_lookups_total{domain,result}` and `chaingate_token_cache_entries{domain}`.
#[derive(Debug, Clone)]
pub(crate) struct CacheMetrics {
    lookups: Family<DomainResult, Counter>,
    entries: Family<DomainLabel, Gauge>,
}

impl CacheMetrics {
    /// Registers the families on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
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
        Self { lookups, entries }
    }

    /// The counters of the cache of `domain`.
    pub(crate) fn counters(&self, domain: &Arc<str>) -> super::Counters {
        let lookup = |result| DomainResult {
            domain: domain.clone(),
            result,
        };
        super::Counters {
            hits: self.lookups.get_or_create_owned(&lookup(Lookup::Hit)),
            misses: self.lookups.get_or_create_owned(&lookup(Lookup::Miss)),
            size: self.entries.get_or_create_owned(&DomainLabel {
                domain: domain.clone(),
            }),
        }
    }
}
