//! The request path: signals → metadata → route → framing → shed → authn → tokens → outbound →
//! feedback, in one function
//! ([`Gateway::handle`]). Each phase is a module of its own; this one only puts them in order
//! and records what happened.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::access_log::{AccessLog, Entry};
use crate::authn::{Authn, InboundProofs, ProofsTotal};
use crate::config::{AssertionFileError, Config, ExchangeMode, Route};
use crate::error::{ChallengeParams, Error};
use crate::metrics::RouteLabel;
use crate::outbound::{self, Peer, UpstreamClient};
use crate::resource_metadata::{self, Documents};
use crate::shed::{self, Shed};
use crate::signals::{Receiver, SignalsMetrics};
use crate::tokens::{Caller, DomainTokens, Lookup, TokensMetrics};
use crate::validate::InboundValidator;
use crate::{feedback, inbound, trace, Body};
use chaingate_oauth::remote::SharedClient;

mod credential;
mod metrics;
use metrics::{RequestMetrics, RouteDuration, StatusCounters};

/// The metric families every generation of the gateway records into; registered once.
#[derive(Debug, Clone)]
pub(crate) struct GatewayMetrics {
    requests: RequestMetrics,
    tokens: TokensMetrics,
    signals: SignalsMetrics,
    dpop_proofs: ProofsTotal,
    txn_tokens: crate::txn::TxnTokensTotal,
}

impl GatewayMetrics {
    /// Registers every family on `registry`; `exemplars`: the request-duration histogram carries
    /// trace ids (tracing on).
    pub(crate) fn register(registry: &mut Registry, exemplars: bool) -> Self {
        Self {
            requests: RequestMetrics::register(registry, exemplars),
            tokens: TokensMetrics::register(registry),
            signals: SignalsMetrics::register(registry),
            dpop_proofs: crate::authn::register_dpop_metrics(registry),
            txn_tokens: crate::txn::register(registry),
        }
    }
}

/// Everything a request needs, built once per config generation.
#[derive(Debug)]
pub(crate) struct Gateway {
    routes: Vec<RouteRuntime>,
    domains: Vec<Arc<DomainTokens>>,
    shed: Shed,
    metrics: RequestMetrics,
    unmatched: RouteLabel,
    unmatched_requests: StatusCounters,
    max_uri_bytes: usize,
    upstream_timeout: Duration,
    body_idle: Duration,
    access_log: Option<AccessLog>,
    /// `log.audit`, and `RUST_LOG` lets `chaingate::audit` through.
    audit: bool,
    /// `[cache.shared]`: made once, kept across reloads (restart-only).
    shared: Option<Arc<crate::tokens::SharedTier>>,
    /// `[shared_signals]`: the receiver of pushed revocation events.
    signals: Option<Receiver>,
    /// `[protected_resource]`: the RFC 9728 documents, if any route has one.
    metadata: Option<Documents>,
}

/// One route, with the runtime of each phase it goes through.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    pub(crate) config: Route,
    pub(crate) authn: Authn,
    /// The route's domain, linked directly (and through it, its subject domains).
    pub(crate) tokens: Arc<DomainTokens>,
    pub(crate) client: UpstreamClient,
    /// The upstream's last DPoP nonce (RFC 9449 §9), for routes whose tokens are bound.
    upstream_nonce: outbound::UpstreamNonce,
    pub(crate) label: RouteLabel,
    /// `[routes.txn_token]` or `[routes.txn_token_verify]`, if set.
    txn: crate::txn::RouteTxn,
    /// `resource_metadata` and `scope` for this route's challenges, rendered once.
    challenge: ChallengeParams,
    duration: RouteDuration,
    requests: StatusCounters,
    /// `chaingate_exchange_skipped_total{route}`; only routes that may skip have a child.
    skipped: Option<prometheus_client::metrics::counter::Counter>,
}

impl Gateway {
    /// Builds clients, caches and metric handles from a validated config. Domains whose settings
    /// are unchanged from `previous` keep their exchanger and cached tokens (config reload).
    pub(crate) fn new(
        config: &Config,
        metrics: &GatewayMetrics,
        previous: Option<&Gateway>,
        access_log: &AccessLog,
    ) -> Result<Self, rustls::Error> {
        let kept = previous.map_or(&[][..], |p| &p.domains[..]);
        let shared = match previous {
            Some(previous) => previous.shared.clone(),
            None => crate::tokens::shared_tier(config, &metrics.tokens)?,
        };
        let domains = DomainTokens::build_all(config, &metrics.tokens, kept, shared.as_ref())?;
        let jwks_client: SharedClient = Arc::default();
        let unmatched = RouteLabel {
            route: Arc::from("(unmatched)"),
        };
        let routes = config
            .routes
            .iter()
            .cloned()
            .map(|route| {
                let label = RouteLabel {
                    route: route.name.clone(),
                };
                let validator = route
                    .validate
                    .clone()
                    .map(|settings| InboundValidator::new(settings, jwks_client.clone()));
                Ok(RouteRuntime {
                    authn: Authn::new(
                        config.limits.max_token_bytes,
                        validator,
                        InboundProofs::new(
                            route.dpop,
                            route.dpop_max_age,
                            route.name.clone(),
                            &metrics.dpop_proofs,
                        ),
                    ),
                    tokens: domains
                        .iter()
                        .find(|d| *d.name() == route.domain.name)
                        .expect("routes name validated domains")
                        .clone(),
                    client: outbound::client(
                        &route.upstream,
                        config.timeouts.upstream_connect,
                        config.timeouts.pool_idle,
                    )?,
                    upstream_nonce: outbound::UpstreamNonce::default(),
                    txn: crate::txn::RouteTxn::new(
                        &route,
                        &domains,
                        &jwks_client,
                        &metrics.txn_tokens,
                    ),
                    challenge: resource_metadata::challenge_params(&route),
                    duration: metrics.requests.duration.child(&label),
                    requests: StatusCounters::new(&metrics.requests.requests, &label.route),
                    skipped: (route.exchange != ExchangeMode::Always)
                        .then(|| metrics.requests.skipped.get_or_create_owned(&label)),
                    label,
                    config: route,
                })
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let signals = config
            .shared_signals
            .as_ref()
            .map(|settings| Receiver::new(settings, jwks_client.clone(), &metrics.signals));
        Ok(Self {
            signals,
            metadata: Documents::new(&config.routes),
            routes,
            domains,
            shed: Shed::new(
                config.limits.max_concurrent_requests,
                config.limits.retry_after,
            ),
            metrics: metrics.requests.clone(),
            unmatched_requests: StatusCounters::new(&metrics.requests.requests, &unmatched.route),
            unmatched,
            max_uri_bytes: config.limits.max_uri_bytes,
            upstream_timeout: config.timeouts.upstream_response,
            body_idle: config.timeouts.body_idle,
            // `RUST_LOG` still decides, as when the lines were tracing events: read once here
            // rather than per request.
            access_log: (config.log.access_log
                && tracing::enabled!(target: "chaingate::access", tracing::Level::INFO))
            .then(|| access_log.clone()),
            audit: config.log.audit
                && tracing::enabled!(target: crate::audit::TARGET, tracing::Level::INFO),
            shared,
        })
    }

    /// Serves one request. Never fails: every error becomes its RFC 6750 / RFC 9110 response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        peer: Peer,
    ) -> Response<Body> {
        let mut outcome = Outcome::start(self.access_log.is_some(), &request);
        // trace: a server span continuing the caller's `traceparent` (W3C Trace Context); with
        // `[tracing]` off it is disabled at its callsite and costs nothing further.
        let span = trace::server_span(&request);
        let response = async {
            // signals: a Security Event Token pushed to the receiver's own path (RFC 8935) is
            // the transmitter talking to chaingate, not a caller: answered before any route.
            if let Some(signals) = self.signals.as_ref().filter(|s| s.is_for(&request)) {
                return signals.receive(request, &self.domains).await;
            }
            // metadata: RFC 9728 documents are public and name where a token comes from, so
            // a client that has none yet can read them; answered before any route (§3).
            if let Some(metadata) = self.metadata.as_ref().filter(|m| m.is_for(&request)) {
                return Ok(metadata.serve(&request));
            }
            // route: the first route whose path, host, method and headers match wins; an
            // oversized target is refused before anything reads it.
            let route = self.route(&request)?;
            outcome.route = Some(route);
            trace::record_route(&span, request.method(), &route.config);
            // framing: a body two parsers could delimit differently is refused here, before
            // any phase spends work on it or a byte goes upstream (RFC 9112 §6.1).
            inbound::framing(&request)?;
            // shed: refuse at once rather than queue when too many requests are in flight.
            // The place is held until both bodies have ended (`shed::InFlight`).
            let mut permit = Some(self.shed.admit()?);
            // txn: at the edge a caller's own `Txn-Token` is dropped; inside the trust domain the
            // incoming one is checked (draft-ietf-oauth-transaction-tokens-10 §8.2).
            route.txn.inbound(request.headers_mut()).await?;
            // authn: exactly one bearer token (RFC 6750 §2.1), optionally validated locally; on
            // a `dpop` route a DPoP token's proof is checked here (RFC 9449 §4.3, §7.1). None
            // is read where a Txn-Token alone is the credential.
            let at1 = route.authenticate(&request, peer.tls).await?;
            // txn: at the edge, AT1 → a Txn-Token for this request from the TTS, never cached.
            let txn_token = route.txn.issue(&request, at1, &peer).await?;
            // tokens: AT1 → AT2 for the route's domain, scope and targets, from the cache or
            // exchanged once for all concurrent callers; refreshed ahead, hop by hop, metadata
            // checked. `exchange = "never"`/`"if_needed"` may send the caller's own instead.
            let caller = Caller::new(&route.label.route, self.audit, || {
                trace::traceparent(request.headers())
            });
            let outgoing = route
                .credential(&request, at1, &caller, &mut outcome.lookup)
                .await?;
            // The TTS's Txn-Token rides beside the credential, or alone (draft §7.2).
            if let Some(txn_token) = txn_token {
                request
                    .headers_mut()
                    .insert(crate::txn::TXN_TOKEN, txn_token);
            }
            // The next hop's parent is chaingate's span, not the caller's.
            trace::inject_current(request.headers_mut());
            // outbound: swap the credential, strip hop-by-hop fields, stream both bodies.
            // A DPoP-bound AT2 goes as `DPoP` with a fresh proof for this request (RFC 9449 §7.1).
            let limits = (self.body_idle, self.upstream_timeout);
            let target = route.target();
            let exchanged = outgoing.exchanged();
            let credential = outgoing.into_credential();
            let (response, replay) =
                outbound::forward(target, request, credential, &peer, &mut permit, limits).await?;
            // A refusal of the caller's own token is the caller's to hear: nothing to re-exchange.
            // Nor on a route that sends no token (Txn-Token alone): a retry would add one.
            let replay = replay.filter(|_| exchanged);
            // feedback: an upstream 401 invalid_token (RFC 6750 §3.1) evicts, re-exchanges and
            // retries a bodyless request once; 401 use_dpop_nonce (RFC 9449 §9) resends once.
            let (timeout, challenge) = (self.upstream_timeout, &route.challenge);
            let route = (&route.config, &route.tokens, target);
            let response =
                feedback::after(route, replay, response, timeout, &caller, challenge).await?;
            Ok(shed::until_body_ends(response, permit))
        }
        .instrument(span.clone())
        .await
        .unwrap_or_else(|e| {
            let none = ChallengeParams::default();
            e.into_response(outcome.route.map_or(&none, |r| &r.challenge))
        });
        self.record(outcome, &response, &span);
        response
    }

    /// The route for `request`: the first whose path (prefix or exact), host, method and
    /// headers match.
    pub(crate) fn route<B>(&self, request: &Request<B>) -> Result<&RouteRuntime, Error> {
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if target > self.max_uri_bytes {
            return Err(Error::UriTooLong);
        }
        let path = request.uri().path();
        self.routes
            .iter()
            .find(|r| r.config.matches(path, request))
            .ok_or(Error::NoRoute)
    }

    /// Waits until every domain's token endpoint is known (discovery has succeeded once) and every
    /// validating route has its issuer's keys.
    pub(crate) async fn ready(&self) {
        for domain in &self.domains {
            domain.exchanger().ready().await;
            if let Some(step) = domain.chaining() {
                step.ready().await;
            }
        }
        for validator in self.routes.iter().filter_map(|r| r.authn.validator()) {
            validator.ready().await;
        }
        for verifier in self.routes.iter().filter_map(|r| r.txn.verifier()) {
            verifier.ready().await;
        }
    }

    /// Whether [`Self::ready`] would return at once.
    pub(crate) fn is_ready(&self) -> bool {
        self.domains.iter().all(|d| d.exchanger().is_ready())
            && self
                .domains
                .iter()
                .filter_map(|d| d.chaining())
                .all(|step| step.is_ready())
            && self
                .routes
                .iter()
                .filter_map(|r| r.authn.validator())
                .all(InboundValidator::is_ready)
            && self
                .routes
                .iter()
                .filter_map(|r| r.txn.verifier())
                .all(crate::txn::Verifier::is_ready)
    }

    /// Domains whose `client_assertion_file` is unusable now, with why: `/ready` names them.
    /// Not part of [`Self::is_ready`], which startup waits on: a missing token file must not
    /// keep the listeners from serving the other domains.
    pub(crate) fn unusable_assertions(&self) -> Vec<(Arc<str>, AssertionFileError)> {
        self.domains
            .iter()
            .filter_map(|d| {
                let exchanger = d.exchanger();
                exchanger
                    .assertion_unusable()
                    .map(|e| (exchanger.domain().name.clone(), e))
            })
            .collect()
    }

    /// Chained domains whose chaining domain's metadata refuses the requested token type, with
    /// why: `/ready` names them (not part of [`Self::is_ready`], like assertion files).
    pub(crate) fn refused_chaining(&self) -> Vec<(Arc<str>, Arc<String>)> {
        self.domains
            .iter()
            .filter_map(|d| {
                let why = d.chaining()?.chaining_unsupported()?;
                Some((d.name().clone(), why))
            })
            .collect()
    }

    /// Deletes self-registrations that asked for it (graceful shutdown), concurrently.
    pub(crate) async fn deregister(&self) {
        let all = self.domains.iter().map(|d| d.exchanger().deregister());
        futures_util::future::join_all(all).await;
    }

    /// Refreshes scrape-time gauges (cache sizes).
    pub(crate) async fn update_gauges(&self) {
        for domain in &self.domains {
            domain.update_gauges().await;
        }
    }

    /// Request metrics, and the access log line when it is on.
    fn record(&self, outcome: Outcome<'_>, response: &Response<Body>, span: &Span) {
        let elapsed = outcome.started.elapsed();
        trace::record_response(span, response.status(), outcome.lookup.map(Lookup::as_str));
        let label = match outcome.route {
            Some(route) => {
                route.requests.inc(response.status());
                route.duration.observe(elapsed.as_secs_f64(), span);
                &route.label
            }
            None => {
                self.unmatched_requests.inc(response.status());
                self.metrics
                    .duration
                    .child(&self.unmatched)
                    .observe(elapsed.as_secs_f64(), span);
                &self.unmatched
            }
        };
        if let (Some(log), Some((method, uri))) = (&self.access_log, outcome.logged) {
            log.record(&Entry {
                route: &label.route,
                method: method.as_str(),
                // The path only: a query string may carry credentials a caller should not have sent.
                path: uri.path(),
                status: response.status().as_u16(),
                duration: elapsed,
                cache: outcome.lookup.map_or("none", Lookup::as_str),
            });
        }
    }
}

impl RouteRuntime {
    /// Where this route's requests go.
    fn target(&self) -> outbound::Target<'_> {
        outbound::Target {
            client: &self.client,
            upstream: &self.config.upstream,
            nonce: &self.upstream_nonce,
        }
    }
}

/// What the access log and the request metrics need to know once the response is made.
struct Outcome<'g> {
    started: Instant,
    /// Cloned only with the access log on: they share the bytes hyper parsed.
    logged: Option<(Method, Uri)>,
    route: Option<&'g RouteRuntime>,
    lookup: Option<Lookup>,
}

impl Outcome<'_> {
    fn start(access_log: bool, request: &Request<Incoming>) -> Self {
        Self {
            started: Instant::now(),
            logged: access_log.then(|| (request.method().clone(), request.uri().clone())),
            route: None,
            lookup: None,
        }
    }
}
