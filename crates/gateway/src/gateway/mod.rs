//! The request path: route → shed → authn → exchange (cached) → outbound, in one function.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Method, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::authn;
use crate::authn::InboundToken;
use crate::cache::{CacheKey, Lookup, TokenCache};
use crate::config::{Config, Route, ScopeStrategy};
use crate::error::Error;
use crate::exchange::Exchanger;
use crate::metrics::RouteLabel;
use crate::outbound::{self, Peer, UpstreamClient};
use crate::validate::InboundValidator;
use crate::Body;
use chaingate_oauth::remote::SharedClient;

mod metadata;
mod metrics;
mod token;
pub use metadata::MetadataMetrics;
pub use metrics::GatewayMetrics;
use metrics::{RequestMetrics, StatusCounters};

/// A 401 whose challenge says `error="invalid_token"` (RFC 6750 §3.1).
fn refuses_token(response: &Response<hyper::body::Incoming>) -> bool {
    response.status() == http::StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}

/// Everything a request needs, built once at start.
#[derive(Debug)]
pub struct Gateway {
    routes: Vec<RouteRuntime>,
    domains: Vec<Arc<DomainRuntime>>,
    /// For each domain, the domain whose token is its subject token (multi-hop), by index.
    subject_of: Vec<Option<usize>>,
    in_flight: Arc<Semaphore>,
    metrics: RequestMetrics,
    unmatched: RouteLabel,
    unmatched_requests: StatusCounters,
    retry_after: Duration,
    max_uri_bytes: usize,
    max_token_bytes: usize,
    upstream_timeout: Duration,
    body_idle: Duration,
    access_log: bool,
}

#[derive(Debug)]
struct RouteRuntime {
    config: Route,
    validator: Option<InboundValidator>,
    domain: usize,
    client: UpstreamClient,
    label: RouteLabel,
    duration: Histogram,
    requests: StatusCounters,
}

#[derive(Debug)]
struct DomainRuntime {
    exchanger: Arc<Exchanger>,
    cache: TokenCache,
    metadata: metadata::MetadataCheck,
    /// Equal keys across reloads mean this runtime, and its cached tokens, can be kept.
    reuse_key: [u8; 32],
}

impl DomainRuntime {
    fn incremental(&self) -> bool {
        self.exchanger.domain().scope_strategy == ScopeStrategy::Incremental
    }

    /// The cache key of the caller's token for a request needing `scope`: one per scope, or
    /// one per caller for an incremental domain.
    fn key(&self, scope: Option<&str>, at1: InboundToken<'_>) -> CacheKey {
        let scope = if self.incremental() { None } else { scope };
        CacheKey::new(&self.exchanger.domain().name, scope, at1)
    }

    fn reuse_key(domain: &crate::config::Domain, config: &Config) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&domain.fingerprint());
        // The cache and exchanger settings that are baked into the runtime at construction.
        let baked = format!(
            "{:?}|{:?}|{:?}",
            config.cache, config.timeouts.pool_idle, config.limits.retry_after
        );
        ctx.update(baked.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }
}

impl Gateway {
    /// Builds clients, caches and metric handles from a validated config. Domains whose settings
    /// are unchanged from `previous` keep their exchanger and cached tokens (config reload).
    pub fn new(
        config: &Config,
        metrics: &GatewayMetrics,
        previous: Option<&Gateway>,
    ) -> Result<Self, rustls::Error> {
        let domains = config
            .domains
            .iter()
            .map(|domain| {
                let reuse_key = DomainRuntime::reuse_key(domain, config);
                if let Some(kept) = previous
                    .into_iter()
                    .flat_map(|p| p.domains.iter())
                    .find(|d| d.reuse_key == reuse_key)
                {
                    return Ok(kept.clone());
                }
                let exchanger = Exchanger::new(
                    domain.clone(),
                    config.timeouts.pool_idle,
                    config.limits.retry_after,
                    &metrics.exchange,
                )?;
                if let Some(replaced) = previous
                    .into_iter()
                    .flat_map(|p| p.domains.iter())
                    .find(|d| d.exchanger.domain().name == domain.name)
                {
                    exchanger.inherit_registration(&replaced.exchanger);
                }
                Ok(Arc::new(DomainRuntime {
                    cache: TokenCache::new(&domain.name, &config.cache, &metrics.cache),
                    exchanger,
                    metadata: metadata::MetadataCheck::new(domain, &metrics.metadata),
                    reuse_key,
                }))
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let jwks_client: SharedClient = Arc::default();
        let index_of = |name: &str| {
            domains
                .iter()
                .position(|d| *d.exchanger.domain().name == *name)
        };
        let unmatched = RouteLabel {
            route: Arc::from("(unmatched)"),
        };
        let subject_of = config
            .domains
            .iter()
            .map(|d| d.subject_domain.as_deref().and_then(index_of))
            .collect();
        let routes = config
            .routes
            .iter()
            .cloned()
            .map(|route| {
                let label = RouteLabel {
                    route: route.name.clone(),
                };
                Ok(RouteRuntime {
                    validator: route
                        .validate
                        .clone()
                        .map(|settings| InboundValidator::new(settings, jwks_client.clone())),
                    domain: domains
                        .iter()
                        .position(|d| *d.exchanger.domain().name == *route.domain.name)
                        .expect("routes name validated domains"),
                    client: outbound::client(
                        &route.upstream,
                        config.timeouts.upstream_connect,
                        config.timeouts.pool_idle,
                    )?,
                    duration: metrics.requests.duration.get_or_create_owned(&label),
                    requests: StatusCounters::new(&metrics.requests.requests, &label.route),
                    label,
                    config: route,
                })
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        Ok(Self {
            routes,
            domains,
            subject_of,
            in_flight: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            metrics: metrics.requests.clone(),
            unmatched_requests: StatusCounters::new(&metrics.requests.requests, &unmatched.route),
            unmatched,
            retry_after: config.limits.retry_after,
            max_uri_bytes: config.limits.max_uri_bytes,
            max_token_bytes: config.limits.max_token_bytes,
            upstream_timeout: config.timeouts.upstream_response,
            body_idle: config.timeouts.body_idle,
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

        // Bound the request target before anything looks at it.
        if request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len())
            > self.max_uri_bytes
        {
            let response = Error::UriTooLong.into_response();
            self.unmatched_requests.inc(response.status());
            let duration = self.metrics.duration.get_or_create(&self.unmatched);
            self.record(&self.unmatched, &duration, &response, started, None, logged);
            return response;
        }

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
        if token.expose().len() > self.max_token_bytes {
            return Err(Error::InvalidRequest("bearer token too long"));
        }

        // Validate: optional local JWT checks, so a bad token never reaches the token server.
        if let Some(validator) = &route.validator {
            validator.check(token.expose()).await?;
        }

        // Exchange: AT1 → AT2 at the route's domain, once per (AT1, domain, scope), coalesced.
        let (downstream, result) = self
            .token(route.domain, route.config.scope.as_deref(), token)
            .await?;
        *lookup = Some(result);
        if !downstream.bearer {
            return Err(Error::ExchangeFailed("an N_A token cannot be forwarded"));
        }
        let domain = &self.domains[route.domain];
        domain.metadata.check_route(&downstream, &route.config)?;

        // A bodyless request can be sent again if the upstream refuses the token we chose; keep
        // the caller's credential for that (a refcounted clone, not a copy).
        let caller = request
            .body()
            .is_end_stream()
            .then(|| request.headers().get(AUTHORIZATION).cloned())
            .flatten();

        // Outbound: swap the credential, strip hop-by-hop fields, stream both bodies.
        outbound::prepare(
            &mut request,
            &route.client,
            &route.config.upstream,
            downstream.authorization.clone(),
            peer,
        );
        let replay = caller.map(|at1| {
            (
                at1,
                request.method().clone(),
                request.uri().clone(),
                request.version(),
                request.headers().clone(),
            )
        });
        let request = request.map(|body| outbound::forwarded(body, self.body_idle));
        let response = outbound::send(&route.client, request, self.upstream_timeout).await?;

        // Feedback (RFC 6750 §3.1): the upstream says the token is not valid, though our cache
        // did. Evict it and try once more with a fresh exchange; the second answer stands.
        let Some((at1, method, uri, version, mut headers)) =
            replay.filter(|_| refuses_token(&response))
        else {
            return Ok(response.map(Body::Left));
        };
        let Some(token) = at1
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .map(|(_, t)| InboundToken::already_accepted(t))
        else {
            return Ok(response.map(Body::Left));
        };
        let scope = route.config.scope.as_deref();
        domain.cache.evict(&domain.key(scope, token)).await;
        let (fresh, _) = self.token(route.domain, scope, token).await?;
        if !fresh.bearer {
            return Err(Error::ExchangeFailed("an N_A token cannot be forwarded"));
        }
        domain.metadata.check_route(&fresh, &route.config)?;
        tracing::debug!(route = %route.label.route, "upstream refused the token; exchanged a fresh one");
        headers.insert(AUTHORIZATION, fresh.authorization.clone());
        let mut retry = Request::new(outbound::empty());
        *retry.method_mut() = method;
        *retry.uri_mut() = uri;
        *retry.version_mut() = version;
        *retry.headers_mut() = headers;
        let response = outbound::send(&route.client, retry, self.upstream_timeout).await?;
        Ok(response.map(Body::Left))
    }

    /// Waits until every domain's token endpoint is known (discovery has succeeded once) and every
    /// validating route has its issuer's keys.
    pub async fn ready(&self) {
        for domain in &self.domains {
            domain.exchanger.ready().await;
        }
        for validator in self.routes.iter().filter_map(|r| r.validator.as_ref()) {
            validator.ready().await;
        }
    }

    pub fn is_ready(&self) -> bool {
        self.domains.iter().all(|d| d.exchanger.is_ready())
            && self
                .routes
                .iter()
                .filter_map(|r| r.validator.as_ref())
                .all(InboundValidator::is_ready)
    }

    /// Deletes self-registrations that asked for it (graceful shutdown), concurrently.
    pub async fn deregister(&self) {
        let all = self.domains.iter().map(|d| d.exchanger.deregister());
        futures_util::future::join_all(all).await;
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
