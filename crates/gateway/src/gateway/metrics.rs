//! The gateway's request metrics: `chaingate_requests_total{route,code}`,
//! `chaingate_request_duration_seconds{route}` and `chaingate_exchange_skipped_total{route}`,
//! and the families every generation shares.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::RouteLabel;
use chaingate_core::metrics::{latency_buckets, latency_histogram};

/// One route's `chaingate_requests_total` children by status code. Each is created on first use,
/// so the exposition lists only codes that happened, then kept: the family's lookup takes a lock
/// and hashes the labels, which every request would otherwise pay.
pub(super) struct StatusCounters {
    family: Family<RouteCode, Counter>,
    route: Arc<str>,
    /// Indexed by `status - 100`; 100..=599 covers every status hyper produces or forwards.
    by_status: Box<[OnceLock<Counter>]>,
}

impl StatusCounters {
    pub(super) fn new(family: &Family<RouteCode, Counter>, route: &Arc<str>) -> Self {
        Self {
            family: family.clone(),
            route: route.clone(),
            by_status: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(super) fn inc(&self, status: StatusCode) {
        let code = status.as_u16();
        let child = || {
            self.family.get_or_create_owned(&RouteCode {
                route: self.route.clone(),
                code,
            })
        };
        match self.by_status.get(usize::from(code).wrapping_sub(100)) {
            Some(slot) => slot.get_or_init(child).inc(),
            None => child().inc(),
        };
    }
}

impl std::fmt::Debug for StatusCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCounters")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteCode {
    route: Arc<str>,
    code: u16,
}

/// `chaingate_requests_total{route,code}` and `chaingate_request_duration_seconds{route}`.
#[derive(Debug, Clone)]
pub(super) struct RequestMetrics {
    pub(super) requests: Family<RouteCode, Counter>,
    pub(super) duration: DurationFamily,
    /// Requests that forwarded the caller's own token (`exchange = "if_needed"` or `"never"`).
    pub(super) skipped: Family<RouteLabel, Counter>,
}

impl RequestMetrics {
    pub(super) fn register(registry: &mut Registry, exemplars: bool) -> Self {
        let requests = Family::default();
        registry.register(
            "chaingate_requests",
            "Requests served, by route and status code",
            requests.clone(),
        );
        let (name, help) = (
            "chaingate_request_duration",
            "Time from request head to response head, by route",
        );
        let duration = if exemplars {
            let family = Family::new_with_constructor(
                (|| HistogramWithExemplars::new(latency_buckets()))
                    as fn() -> HistogramWithExemplars<TraceExemplar>,
            );
            registry.register_with_unit(name, help, Unit::Seconds, family.clone());
            DurationFamily::Exemplars(family)
        } else {
            let family = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
            registry.register_with_unit(name, help, Unit::Seconds, family.clone());
            DurationFamily::Plain(family)
        };
        let skipped = Family::default();
        registry.register(
            "chaingate_exchange_skipped",
            "Requests forwarded with the caller's own token, no exchange (route exchange setting)",
            skipped.clone(),
        );
        Self {
            requests,
            duration,
            skipped,
        }
    }
}

/// The request-duration family: with tracing on, each bucket keeps the trace id of its last
/// sampled observation (an OpenMetrics exemplar, so a latency spike leads to its trace).
#[derive(Debug, Clone)]
pub(super) enum DurationFamily {
    Plain(Family<RouteLabel, Histogram>),
    Exemplars(Family<RouteLabel, HistogramWithExemplars<TraceExemplar>>),
}

impl DurationFamily {
    pub(super) fn child(&self, route: &RouteLabel) -> RouteDuration {
        match self {
            Self::Plain(family) => RouteDuration::Plain(family.get_or_create_owned(route)),
            Self::Exemplars(family) => RouteDuration::Exemplars(family.get_or_create_owned(route)),
        }
    }
}

/// One route's duration histogram.
#[derive(Debug)]
pub(super) enum RouteDuration {
    Plain(Histogram),
    Exemplars(HistogramWithExemplars<TraceExemplar>),
}

impl RouteDuration {
    /// Observes `seconds`, with `span`'s trace id as the exemplar when it is sampled.
    pub(super) fn observe(&self, seconds: f64, span: &tracing::Span) {
        match self {
            Self::Plain(histogram) => histogram.observe(seconds),
            Self::Exemplars(histogram) => histogram.observe(
                seconds,
                crate::trace::sampled_trace_id(span).map(|trace_id| TraceExemplar { trace_id }),
                None,
            ),
        }
    }
}

/// An exemplar's labels: the trace it came from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TraceExemplar {
    trace_id: String,
}
