//! The request path: route → shed → authn → exchange (cached) → outbound, in one function.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::authn;
use crate::cache::{CacheKey, CacheMetrics, Lookup, TokenCache};
use crate::config::{Config, Route};
use crate::error::Error;
use crate::exchange::{ExchangeMetrics, Exchanger};
use crate::metrics::{latency_histogram, RouteLabel};
use crate::outbound::{self, Peer, UpstreamClient};
use crate::Body;

/// Everything a request needs, built once at start.
#[derive(Debug)]
pub struct Gateway {
    routes: Vec<RouteRuntime>,
    domains: Vec<DomainRuntime>,
    in_flight: Arc<Semaphore>,
    metrics: RequestMetrics,
    unmatched: RouteLabel,
    unmatched_requests: StatusCounters,
    retry_after: Duration,
    upstream_timeout: Duration,
    access_log: bool,
}

#[derive(Debug)]
struct RouteRuntime {
    config: Route,
    domain: usize,
    client: UpstreamClient,
    label: RouteLabel,
    requests: StatusCounters,
    duration: Histogram,
}

#[derive(Debug)]
struct DomainRuntime {
    exchanger: Exchanger,
    cache: TokenCache,
}

impl Gateway {
    /// Builds clients, caches and metric handles from a validated config.
    pub fn new(config: Config, registry: &mut Registry) -> Result<Self, rustls::Error> {
        let metrics = RequestMetrics::register(registry);
        let exchange_metrics = ExchangeMetrics::register(registry);
        let cache_metrics = CacheMetrics::register(registry);
        let domains = config
            .domains
            .iter()
            .map(|domain| {
                Ok(DomainRuntime {
                    cache: TokenCache::new(&domain.name, &config.cache, &cache_metrics),
                    exchanger: Exchanger::new(
                        domain.clone(),
                        config.timeouts.pool_idle,
                        config.limits.retry_after,
                        &exchange_metrics,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let routes = config
            .routes
            .into_iter()
            .map(|route| {
                let label = RouteLabel {
                    route: route.name.clone(),
                };
                Ok(RouteRuntime {
                    domain: domains
                        .iter()
                        .position(|d| Arc::ptr_eq(d.exchanger.domain(), &route.domain))
                        .expect("routes name validated domains"),
                    client: outbound::client(
                        &route.upstream,
                        config.timeouts.upstream_connect,
                        config.timeouts.pool_idle,
                    )?,
                    duration: metrics.duration.get_or_create_owned(&label),
                    requests: StatusCounters::new(&metrics.requests, &label.route),
                    label,
                    config: route,
                })
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let unmatched = RouteLabel {
            route: Arc::from("(unmatched)"),
        };
        Ok(Self {
            routes,
            domains,
            in_flight: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            unmatched_requests: StatusCounters::new(&metrics.requests, &unmatched.route),
            unmatched,
            metrics,
            retry_after: config.limits.retry_after,
            upstream_timeout: config.timeouts.upstream_response,
            access_log: config.log.access_log,
        })
    }

    /// Serves one request. Never fails: every error becomes its RFC 6750 / RFC 9110 response.
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<Body> {
        let started = Instant::now();
        // Only the access log needs these once the request has moved on; cloning them shares
        // the bytes hyper parsed rather than copying the path.
        let logged = self
            .access_log
            .then(|| (request.method().clone(), request.uri().clone()));

        // Route: the first configured prefix wins; nothing else about the request picks a target.
        let path = request.uri().path();
        let Some(route) = self
            .routes
            .iter()
            .find(|r| path.starts_with(&r.config.path_prefix))
        else {
            let response = Error::NoRoute.into_response();
            self.unmatched_requests.inc(response.status());
            let duration = self.metrics.duration.get_or_create(&self.unmatched);
            self.record(&self.unmatched, &duration, &response, started, None, logged);
            return response;
        };
        let mut lookup = None;
        let response = match self.proxy(route, request, &peer, &mut lookup).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        route.requests.inc(response.status());
        self.record(
            &route.label,
            &route.duration,
            &response,
            started,
            lookup,
            logged,
        );
        response
    }

    async fn proxy(
        &self,
        route: &RouteRuntime,
        mut request: Request<Incoming>,
        peer: &Peer,
        lookup: &mut Option<Lookup>,
    ) -> Result<Response<Body>, Error> {
        // Shed: refuse at once rather than queue when too many requests are in flight.
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| Error::Overloaded {
                retry_after: self.retry_after,
            })?;

        // Authn: exactly one bearer token, from the Authorization header.
        let token = authn::bearer(request.headers(), request.uri())?;

        // Exchange: AT1 → AT2 at the route's domain, once per (AT1, domain, scope), coalesced.
        let domain = &self.domains[route.domain];
        let scope = route.config.scope.as_deref();
        let key = CacheKey::new(&domain.exchanger.domain().name, scope, token);
        let (downstream, result) = match domain.cache.get(&key).await {
            Some(hit) => (hit, Lookup::Hit),
            // Boxed: the exchange's future is large, and every hit would otherwise carry it.
            None => {
                let exchange = domain.exchanger.exchange(token, scope);
                Box::pin(domain.cache.exchange(key, token, exchange)).await?
            }
        };
        *lookup = Some(result);

        // Outbound: swap the credential, strip hop-by-hop fields, stream both bodies.
        outbound::prepare(
            &mut request,
            &route.client,
            &route.config.upstream,
            downstream.authorization.clone(),
            peer,
        );
        let response = outbound::send(&route.client, request, self.upstream_timeout).await?;
        Ok(response.map(Body::Left))
    }

    /// Refreshes scrape-time gauges (cache sizes).
    pub async fn update_gauges(&self) {
        for domain in &self.domains {
            domain.cache.update_size_metric().await;
        }
    }

    fn record(
        &self,
        label: &RouteLabel,
        duration: &Histogram,
        response: &Response<Body>,
        started: Instant,
        lookup: Option<Lookup>,
        logged: Option<(Method, Uri)>,
    ) {
        let elapsed = started.elapsed();
        duration.observe(elapsed.as_secs_f64());
        if let Some((method, uri)) = logged {
            // The path only: a query string may carry credentials a caller should not have sent.
            tracing::info!(
                target: "chaingate::access",
                route = %label.route,
                %method,
                path = uri.path(),
                status = response.status().as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                cache = lookup.map_or("none", Lookup::as_str),
            );
        }
    }
}

// === metrics ===

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteCode {
    route: Arc<str>,
    code: u16,
}

/// One route's `chaingate_requests_total` children by status code. Each is created on first use,
/// so the exposition lists only codes that happened, then kept: the family's lookup takes a lock
/// and hashes the labels, which every request would otherwise pay.
struct StatusCounters {
    family: Family<RouteCode, Counter>,
    route: Arc<str>,
    /// Indexed by `status - 100`; 100..=599 covers every status hyper produces or forwards.
    by_status: Box<[OnceLock<Counter>]>,
}

impl StatusCounters {
    fn new(family: &Family<RouteCode, Counter>, route: &Arc<str>) -> Self {
        Self {
            family: family.clone(),
            route: route.clone(),
            by_status: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    fn inc(&self, status: StatusCode) {
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

/// `chaingate_requests_total{route,code}` and `chaingate_request_duration_seconds{route}`.
#[derive(Debug, Clone)]
struct RequestMetrics {
    requests: Family<RouteCode, Counter>,
    duration: Family<RouteLabel, Histogram>,
}

impl RequestMetrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register(
            "chaingate_requests",
            "Requests served, by route and status code",
            requests.clone(),
        );
        let duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "chaingate_request_duration",
            "Time from request head to response head, by route",
            Unit::Seconds,
            duration.clone(),
        );
        Self { requests, duration }
    }
}
