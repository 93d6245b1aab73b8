//! Traces: W3C Trace Context (`traceparent`/`tracestate`) continued from the caller and passed on,
//! one server span per request and one client span per call chaingate makes (token exchange,
//! registration, reciprocal delivery, discovery), exported over OTLP/HTTP (`export.rs`).
//!
//! Spans are `tracing` spans on the target [`TARGET`], turned into OpenTelemetry spans by
//! `tracing-opentelemetry`. With `[tracing]` absent no layer wants that target, so every
//! `span!` below is disabled at its callsite (one relaxed load) and the request path pays
//! nothing else; the log layer never sees these spans either (see [`is_trace_span`]).
//!
//! Attributes never carry a token, secret, assertion or full subject: routes, domains, grant
//! names, statuses, counts and OAuth error codes only.

mod export;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use export::{Pipeline, PipelineError};

/// The `tracing` target of every span meant for export.
pub const TARGET: &str = "chaingate::trace";

/// W3C Trace Context §3.2; a constant name spares the per-request parse of a `&str` lookup.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The caller's `traceparent`, as sent.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<http::HeaderValue> {
    headers.get(TRACEPARENT).cloned()
}

/// Whether `metadata` is one of the exported spans, which the log layer leaves out: log lines
/// stay flat, and with tracing off the spans stay disabled.
pub fn is_trace_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target() == TARGET
}

/// A client span for one outbound call of `$name` (a low-cardinality operation name), with
/// extra `tracing` fields; current while the instrumented future runs.
macro_rules! client_span {
    ($name:literal $(, $($field:tt)*)?) => {
        tracing::info_span!(
            target: $crate::trace::TARGET,
            $name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            $($($field)*)?
        )
    };
}
pub(crate) use client_span;

/// Makes `span` continue the caller's trace when `headers` carry a valid `traceparent`
/// (W3C Trace Context §3.2); otherwise it starts a trace and sampling decides.
pub(crate) fn continue_from(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Only fails when the span is already closed, which it cannot be here.
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's context as `traceparent`/`tracestate` into `headers`, replacing the
/// caller's, so the next hop's parent is chaingate's span. Nothing when tracing is off: the
/// caller's fields then pass through untouched.
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// A server span for `request`, continuing the caller's trace. Its name and route are set once
/// the route is known ([`record_route`]), its status at the end ([`record_response`]).
pub(crate) fn server_span<B>(request: &http::Request<B>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        chaingate.route = tracing::field::Empty,
        chaingate.cache = tracing::field::Empty,
        chaingate.coalesced = tracing::field::Empty,
    );
    continue_from(&span, request.headers());
    span
}

/// Names the server span after its route (OpenTelemetry HTTP semantic conventions:
/// `{method} {http.route}`).
pub(crate) fn record_route(span: &Span, method: &http::Method, route: &crate::config::Route) {
    if span.is_disabled() {
        return;
    }
    // `otel.name` is read only before the span starts, and the parent set above started it.
    span.context()
        .span()
        .update_name(format!("{method} {}", route.path_prefix));
    span.record("http.route", &*route.path_prefix);
    span.record("chaingate.route", &*route.name);
}

/// The response's status and the cache's answer; a 5xx marks the span failed (semantic
/// conventions: 4xx is the caller's, not the server's).
pub(crate) fn record_response(span: &Span, status: http::StatusCode, cache: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    // As i64: the bridge turns unsigned integers into strings.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(cache) = cache {
        span.record("chaingate.cache", cache);
    }
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// A client span's answer: its status, and failed when it is not a success.
pub(crate) fn record_client_status(span: &Span, status: http::StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if !status.is_success() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records on the current (request) span whether its token miss waited on another request's
/// exchange (concurrent misses share one).
pub(crate) fn record_coalesced(coalesced: bool) {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("chaingate.coalesced", coalesced);
    }
}

/// `span`'s trace id (32 lowercase hex digits), if tracing is on and the span is sampled: the
/// exemplar on the request-duration histogram.
pub(crate) fn sampled_trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The id an audit event shares with the trace: the current span's trace id with tracing on;
/// else the trace id of the caller's `traceparent` (the trace the caller's own tracer records);
/// else a fresh random one, so the events of one request can still be told apart.
pub(crate) fn correlation_id(traceparent: Option<&http::HeaderValue>) -> String {
    let span = Span::current();
    if !span.is_disabled() {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if span_context.is_valid() {
            return span_context.trace_id().to_string();
        }
    }
    if let Some(id) = traceparent
        .and_then(|v| v.to_str().ok())
        .and_then(parent_trace_id)
    {
        return id.to_owned();
    }
    let mut bytes = [0u8; 16];
    // aws-lc-rs's system RNG; a failure leaves zeros, still a well-formed id.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace id of a W3C Trace Context `traceparent` (§3.2): `version-traceid-parentid-flags`,
/// lowercase hex, version `ff` and all-zero ids invalid.
fn parent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        // Version 00 has exactly four fields; later versions may add more (§3.2.4).
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_id_is_the_callers_trace_id_without_tracing() {
        let value = |s: &'static str| http::HeaderValue::from_static(s);
        let caller = value("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            correlation_id(Some(&caller)),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // Malformed (W3C Trace Context §3.2.2.3: all-zero or uppercase ids, version ff, extra
        // fields in version 00): a fresh id instead.
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            let fresh = correlation_id(Some(&value(bad)));
            assert_eq!(fresh.len(), 32, "{bad}");
            assert_ne!(fresh, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        }
        assert_eq!(
            parent_trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_ne!(correlation_id(None), correlation_id(None));
    }
}
