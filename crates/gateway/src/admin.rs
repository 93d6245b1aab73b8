//! The admin port. Endpoints:
//!
//! - `GET /live`: 200 while the process serves; touches nothing else.
//! - `GET /ready`: 200 once config is loaded, listeners are bound and every domain has its token
//!   endpoint (discovery) and credentials (self-registration); 503 before, while a domain has
//!   lost its credentials (expired registered secret) or its `client_assertion_file` is
//!   missing, unreadable, malformed or expired (the body names the domain and the reason), and
//!   from the moment a drain starts.
//! - `GET /metrics`: Prometheus metrics: OpenMetrics when the scraper asks for it (`Accept`),
//!   else the Prometheus 0.0.4 text format.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;

use crate::gateway::Gateway;
use crate::Body;
use chaingate_core::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};

/// Readiness, shared by the admin endpoint and the lifecycle that flips it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready (startup done) or not (a drain started); `/ready` follows.
    pub(crate) fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// The flag last set; `/ready` also needs every domain of the gateway to be ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The admin port's handler: liveness, readiness and metrics (see the module docs).
#[derive(Debug)]
pub(crate) struct Admin {
    /// The process-wide readiness flag behind `GET /ready`.
    pub readiness: Readiness,
    /// The metrics registry `GET /metrics` encodes.
    pub registry: Registry,
    /// The live gateway, swapped on reload: its domains' readiness and gauges are read per request.
    pub gateway: Arc<arc_swap::ArcSwap<Gateway>>,
}

impl Admin {
    /// Answers one admin request: `GET`/`HEAD` on `/live`, `/ready` or `/metrics`, 404 for
    /// other paths, 405 for other methods.
    pub(crate) async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match request.uri().path() {
            "/live" => text(StatusCode::OK, "live\n"),
            // Live check too: a self-registered domain whose secret expired is not ready.
            "/ready" => self.ready(),
            "/metrics" => {
                self.gateway.load_full().update_gauges().await;
                let mut body = String::with_capacity(16 * 1024);
                if prometheus_client::encoding::text::encode(&mut body, &self.registry).is_err() {
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "metrics encoding failed\n",
                    );
                }
                // Prometheus asks for OpenMetrics; older scrapers and promtool read the 0.0.4 text.
                let openmetrics = request
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("application/openmetrics-text"));
                let (body, content_type) = if openmetrics {
                    (body, OPENMETRICS_CONTENT_TYPE)
                } else {
                    (
                        chaingate_core::metrics::to_prometheus_text(&body),
                        PROMETHEUS_TEXT_CONTENT_TYPE,
                    )
                };
                let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl Admin {
    /// `GET /ready`. A domain whose assertion file cannot be sent is named after the
    /// `not ready` line (domain and reason only: the path and the token stay in the logs' and
    /// the file's hands).
    fn ready(&self) -> Response<Body> {
        let gateway = self.gateway.load();
        // Live check too: a self-registered domain whose secret expired is not ready.
        let started = self.readiness.is_ready() && gateway.is_ready();
        let unusable = gateway.unusable_assertions();
        let refused = gateway.refused_chaining();
        if started && unusable.is_empty() && refused.is_empty() {
            return text(StatusCode::OK, "ready\n");
        }
        let mut body = String::from("not ready\n");
        for (domain, error) in unusable {
            body.push_str(&format!(
                "domain {domain}: client_assertion_file {}\n",
                error.reason()
            ));
        }
        for (domain, why) in refused {
            body.push_str(&format!("domain {domain}: chaining_domain {why}\n"));
        }
        text(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
