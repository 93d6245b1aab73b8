//! Token exchange at a domain's token endpoint: the chain grant (draft-hunt-oauth-chain-01),
//! RFC 8693 token exchange, or the RFC 7523 JWT bearer grant.
//!
//! One pooled client per domain. Requests are built in `request.rs`, responses read strictly in
//! `response.rs` (every failure becomes the gateway's [`Error`], RFC 6749 §5.2 and RFC 6750 §3) and the token
//! endpoint may come from RFC 8414 discovery (`discovery.rs`). Token server error details are
//! logged as the `error` code only, never returned to the caller.

mod chaining;
mod discovery;
mod guard;
mod metrics;
mod reciprocal;
mod registration;
mod request;
mod response;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::audit::{Caller, Decision};
use crate::authn::InboundToken;
use crate::config::{AssertionFileError, ClientAuth, Domain, Grant, Targets, TokenEndpoint};
use crate::error::Error;
use crate::metrics::DomainLabel;
use crate::trace;
use chaingate_oauth::dpop::{ProofKey, DPOP, DPOP_NONCE};
use chaingate_oauth::secret::Secret;
use tracing::Instrument;

use metrics::DomainExchangeMetrics;
pub(crate) use metrics::{ExchangeMetrics, Outcome};
pub(crate) use reciprocal::ReciprocalMetrics;
pub(crate) use registration::RegistrationMetrics;
pub(crate) use txn::TxnRequest;

/// Token responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type HttpsClient = Client<chaingate_core::tls::Connector, Full<Bytes>>;

/// A token issued by a domain's token endpoint.
pub(crate) struct Issued {
    /// The issued token (AT2); never logged.
    pub access_token: Secret,
    /// Its lifetime from `expires_in` (RFC 6749 §5.1), if the server gave one.
    pub expires_in: Option<Duration>,
    /// `token_type` Bearer; an RFC 8693 `N_A` token may only be another hop's subject.
    pub bearer: bool,
    /// The scope the token server asks party A to grant it back (Reciprocal OAuth), if any.
    pub reciprocal: Option<String>,
    /// The granted `scope`, if the response had one (RFC 6749 §5.1: else, as requested).
    pub scope: Option<String>,
    /// The response's draft-sakimura-oauth-meta links and what `duri` must be.
    pub links: Links,
    /// `token_type` DPoP: the token is bound to this key and is sent with a proof by it
    /// (RFC 9449 §5, §7.1). `None` for a bearer token.
    pub dpop: Option<Arc<ProofKey>>,
    /// The response said `token_type` DPoP (set by the parser; `dpop` holds the key).
    bound: bool,
}

/// `Link` relations `ruri`/`duri` of a token response, and the discovery URL the exchange relied
/// on. URLs, never secrets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Links {
    /// The resource the token is for (`ruri`).
    pub ruri: Option<String>,
    /// The discovery document the token server says it answers for (`duri`).
    pub duri: Option<String>,
    /// The issuer's metadata URLs (RFC 8414 §3.1 and OpenID Connect Discovery §4) when the token
    /// endpoint was discovered; empty if it is configured.
    pub discovery: Arc<[String]>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .field("bearer", &self.bearer)
            .field("reciprocal", &self.reciprocal)
            .field("scope", &self.scope)
            .field("links", &self.links)
            .field("dpop", &self.dpop.as_ref().map(|k| k.jkt()))
            .finish_non_exhaustive()
    }
}

/// Whom an exchange is for, for its audit event: the request's caller and token (AT1), also
/// when the exchange's subject is another hop's token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnBehalf<'a> {
    pub(crate) caller: &'a Caller<'a>,
    pub(crate) at1: InboundToken<'a>,
}

/// Where requests go: the token endpoint, and the issuer it was discovered from.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// The token endpoint requests are sent to.
    pub token: Uri,
    /// The RFC 8414 `issuer` it was discovered from, if discovered.
    pub issuer: Option<String>,
    /// RFC 7591 `registration_endpoint` from discovery, if the server has one.
    pub registration: Option<Uri>,
    /// The issuer's RFC 8414 and OpenID Discovery metadata URLs (`duri` must name one).
    pub discovery: Arc<[String]>,
    /// `identity_chaining_requested_token_types_supported` from discovery, if advertised.
    pub chaining_token_types: Option<Vec<String>>,
}

/// Who chaingate is at the token endpoint: configured, or issued by registration.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) client_id: String,
    pub(crate) auth: ClientAuth,
}

/// Exchanges tokens at one domain's token endpoint.
#[derive(Debug)]
pub(crate) struct Exchanger {
    domain: Arc<Domain>,
    client: HttpsClient,
    endpoints: ArcSwapOption<Endpoints>,
    discovered: Notify,
    guard: guard::Guard,
    metrics: DomainExchangeMetrics,
    retry_after: Duration,
    /// Reciprocal OAuth: set when the domain has a `[reciprocal]` policy.
    reciprocal: Option<Arc<reciprocal::Agent>>,
    /// Read once per token request; `None` until self-registration has succeeded.
    credentials: ArcSwapOption<Credentials>,
    registration: Option<registration::Registrar>,
    /// The token server's last `DPoP-Nonce` (RFC 9449 §8), sent in every proof until it
    /// gives another.
    dpop_nonce: ArcSwapOption<String>,
    /// A chaining step whose domain's metadata lacks the requested token type: why (`/ready`).
    chaining_refused: ArcSwapOption<String>,
}

impl Exchanger {
    /// Builds the exchanger; with `issuer` configured, also starts discovery (and its refresh),
    /// which ends by itself once the exchanger is dropped.
    pub(crate) fn new(
        domain: Arc<Domain>,
        pool_idle: Duration,
        retry_after: Duration,
        metrics: &ExchangeMetrics,
    ) -> Result<Arc<Self>, rustls::Error> {
        let identity = match &domain.client_auth {
            ClientAuth::TlsClientAuth(identity) => Some(identity.as_ref()),
            _ => None,
        };
        let client = chaingate_core::tls::pooled_client(
            domain.ca_certs.as_deref(),
            identity,
            domain.timeout,
            pool_idle,
        )?;
        let reciprocal = domain
            .reciprocal
            .as_ref()
            .map(|settings| {
                reciprocal::Agent::new(&domain, settings, pool_idle, &metrics.reciprocal)
                    .map(Arc::new)
            })
            .transpose()?;
        let label = DomainLabel {
            domain: domain.name.clone(),
        };
        let fixed = match &domain.endpoint {
            TokenEndpoint::Fixed(uri) => Some(Arc::new(Endpoints {
                token: uri.clone(),
                issuer: None,
                registration: None,
                discovery: Arc::from([]),
                chaining_token_types: None,
            })),
            TokenEndpoint::Discover { .. } => None,
        };
        let exchanger = Arc::new(Self {
            metrics: metrics.for_domain(&label),
            endpoints: ArcSwapOption::new(fixed),
            credentials: ArcSwapOption::new(match domain.registration {
                Some(_) => None,
                None => Some(Arc::new(Credentials {
                    client_id: domain.client_id.clone(),
                    auth: domain.client_auth.clone(),
                })),
            }),
            registration: domain
                .registration
                .clone()
                .map(|settings| registration::Registrar::new(settings, &domain.name, metrics)),
            discovered: Notify::new(),
            dpop_nonce: ArcSwapOption::empty(),
            chaining_refused: ArcSwapOption::empty(),
            guard: guard::Guard::new(domain.protection.clone()),
            domain,
            client,
            retry_after,
            reciprocal,
        });
        if let TokenEndpoint::Discover { issuer, refresh } = &exchanger.domain.endpoint {
            tokio::spawn(discovery::keep_discovering(
                Arc::downgrade(&exchanger),
                issuer.clone(),
                *refresh,
            ));
        }
        if exchanger.registration.is_some() {
            tokio::spawn(registration::keep_registered(Arc::downgrade(&exchanger)));
        }
        Ok(exchanger)
    }

    /// The domain this exchanger serves, as configured.
    pub(crate) fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// Whether the token endpoint is known (always, unless discovery has not succeeded yet) and
    /// the client credentials too (always, unless self-registration has not succeeded yet).
    pub(crate) fn is_ready(&self) -> bool {
        self.endpoints.load().is_some() && self.credentials.load().is_some()
    }

    /// Waits until the token endpoint is known.
    pub(crate) async fn ready(&self) {
        loop {
            let notified = self.discovered.notified();
            if self.is_ready() {
                return;
            }
            notified.await;
        }
    }

    /// Exchanges `subject` (the caller's token, or a previous hop's) for a token of this domain;
    /// `targets`: the route's audience, resource and authorization details, if it has any.
    pub(crate) async fn exchange(
        &self,
        subject: &str,
        scope: Option<&str>,
        targets: Option<&Targets>,
        on_behalf: OnBehalf<'_>,
    ) -> Result<Issued, Error> {
        self.exchange_for(subject, (scope, targets), false, on_behalf, None)
            .await
    }

    /// As [`Self::exchange`], for a background renewal of a token in use: it may go through an
    /// open breaker as its probe (one at a time), so callers' failures cannot starve renewals.
    pub(crate) async fn renew(
        &self,
        subject: &str,
        scope: Option<&str>,
        targets: Option<&Targets>,
        on_behalf: OnBehalf<'_>,
    ) -> Result<Issued, Error> {
        self.exchange_for(subject, (scope, targets), true, on_behalf, None)
            .await
    }

    /// One exchange in its client span, with its metrics and its audit event.
    async fn exchange_for(
        &self,
        subject: &str,
        (scope, targets): (Option<&str>, Option<&Targets>),
        renewal: bool,
        on_behalf: OnBehalf<'_>,
        step: Option<&Exchanger>,
    ) -> Result<Issued, Error> {
        let span = trace::client_span!(
            "token exchange",
            chaingate.domain = &*self.domain.name,
            chaingate.grant = self.domain.grant.name(),
            chaingate.renewal = renewal,
            chaingate.outcome = tracing::field::Empty,
            chaingate.retries = tracing::field::Empty,
            oauth.error = tracing::field::Empty,
        );
        let result = self
            .admitted_exchange(
                subject,
                (scope, targets),
                renewal,
                step.map(|at| (at, on_behalf)),
            )
            .instrument(span.clone())
            .await;
        let (outcome, reason) = match &result {
            Ok(_) => ("issued", ""),
            Err(failure) => (failure.outcome.as_str(), failure.reason),
        };
        if !span.is_disabled() {
            span.record("chaingate.outcome", outcome);
            if let Err(failure) = &result {
                span.record("oauth.error", failure.reason);
                span.record("otel.status_code", "ERROR");
            }
        }
        Decision {
            decision: match (outcome, renewal) {
                ("issued", true) => "refreshed",
                ("issued", false) => "issued",
                ("rejected", _) => "refused",
                _ => "error",
            },
            domain: &self.domain.name,
            grant: self.domain.grant.name(),
            scope_requested: scope,
            scope_granted: result.as_ref().ok().and_then(|i| i.scope.as_deref()),
            error: reason,
            renewal,
            origin: "",
        }
        .emit(on_behalf.caller, Some(on_behalf.at1));
        match result {
            Ok(issued) => Ok(issued),
            Err(failure) => {
                tracing::warn!(domain = %self.domain.name, reason = failure.reason, "token exchange failed");
                Err(failure.error)
            }
        }
    }

    async fn admitted_exchange(
        &self,
        subject: &str,
        ask: (Option<&str>, Option<&Targets>),
        renewal: bool,
        step: Option<(&Exchanger, OnBehalf<'_>)>,
    ) -> Result<Issued, Failure> {
        let started = Instant::now();
        let admitted = if renewal {
            self.guard.admit_renewal(self.retry_after)
        } else {
            self.guard.admit(self.retry_after)
        };
        // An unusable token file is this side's fault: checked before admission, so it neither
        // counts against the token server's breaker nor takes an in-flight slot.
        let result = match self
            .assertion_usable()
            .and(admitted.map_err(|(e, r)| Failure::error(e, r)))
        {
            Err(failure) => Err(failure),
            Ok(_admission) => {
                let attempts = self.attempts(subject, ask, started + self.domain.timeout, step);
                let result = match tokio::time::timeout(self.domain.timeout, attempts).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::error(Error::ExchangeTimeout, "timeout")),
                };
                // Any answer, even a refusal, shows the server is alive; silence and 5xx do not.
                let alive = result.as_ref().err().is_none_or(|failure| {
                    !matches!(
                        failure.error,
                        Error::ExchangeTimeout | Error::ExchangeUnavailable { .. }
                    )
                });
                // A failed first step never reached this server: its breaker learns nothing.
                if !result.as_ref().is_err_and(|failure| failure.step_one) {
                    self.guard.record(alive);
                }
                self.metrics
                    .circuit_open
                    .set(i64::from(self.guard.is_open()));
                result
            }
        };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(issued) => {
                self.metrics.issued.inc();
                if let (Some(agent), Some(wanted), Some(endpoints), Some(credentials)) = (
                    &self.reciprocal,
                    issued.reciprocal.as_deref(),
                    self.endpoints.load_full(),
                    self.credentials.load_full(),
                ) {
                    let to = reciprocal::PartyB {
                        domain: self.domain.clone(),
                        credentials,
                        endpoints,
                        client: self.client.clone(),
                    };
                    agent.offer(subject, wanted, &issued.access_token, to).await;
                }
                Ok(issued)
            }
            Err(failure) => {
                match failure.outcome {
                    Outcome::Rejected => self.metrics.rejected.inc(),
                    _ => self.metrics.error.inc(),
                };
                Err(failure)
            }
        }
    }

    /// The first attempt and the retries the budget allows (connect errors, 5xx, 429 only).
    async fn attempts(
        &self,
        subject: &str,
        ask: (Option<&str>, Option<&Targets>),
        deadline: Instant,
        step: Option<(&Exchanger, OnBehalf<'_>)>,
    ) -> Result<Issued, Failure> {
        let mut attempt = 0;
        loop {
            // Chained: a fresh grant for every attempt, so a retry never replays a grant
            // the server may already have consumed.
            let grant = match step {
                Some((at, on_behalf)) => {
                    Some(chaining::fresh_grant(at, subject, ask.0, on_behalf).await?)
                }
                None => None,
            };
            let sent = grant.as_ref().map_or(subject, Secret::expose);
            let result = self.request(sent, ask).await;
            let Err(failure) = &result else { return result };
            let Some(hint) = failure.retry_hint else {
                return result;
            };
            attempt += 1;
            let Some(delay) = self.guard.retry_delay(attempt, hint) else {
                return result;
            };
            // A wait that outlasts the deadline would only turn a clear 503 into a 504.
            if Instant::now() + delay >= deadline {
                return result;
            }
            self.metrics.retries.inc();
            tracing::Span::current().record("chaingate.retries", i64::from(attempt));
            tracing::debug!(domain = %self.domain.name, attempt, ?delay, "retrying token exchange");
            tokio::time::sleep(delay).await;
        }
    }

    async fn request(
        &self,
        subject: &str,
        (scope, targets): (Option<&str>, Option<&Targets>),
    ) -> Result<Issued, Failure> {
        let Some(endpoints) = self.endpoints.load_full() else {
            return Err(Failure::error(
                Error::ExchangeUnavailable {
                    retry_after: self.retry_after,
                },
                "not discovered yet",
            ));
        };
        let Some(credentials) = self.credentials.load_full() else {
            return Err(Failure::error(
                Error::ExchangeUnavailable {
                    retry_after: self.retry_after,
                },
                "not registered yet",
            ));
        };
        let actor = match &self.domain.grant {
            Grant::TokenExchange(settings) => match &settings.actor_token_file {
                // Read per exchange: a projected service-account token is rotated in place.
                Some(path) => Some(
                    tokio::fs::read_to_string(path)
                        .await
                        .map(|t| t.trim().to_string())
                        .map_err(|_| {
                            Failure::error(
                                Error::ExchangeFailed("actor token unreadable"),
                                "actor token file",
                            )
                        })?,
                ),
                None => None,
            },
            _ => None,
        };
        // RFC 9449 §8: a server that wants a nonce says so once, with the nonce; the request
        // is sent again at once with it (not a retry of an unavailable server).
        let mut nonce_retry = self.domain.dpop.is_some();
        loop {
            let mut request = request::build(
                &self.domain,
                &credentials,
                &endpoints,
                &request::TokenRequest {
                    subject,
                    scope,
                    actor: actor.as_deref(),
                    targets,
                },
            )
            .inspect_err(|failure| self.assertion_failed(failure))?;
            if let Some(dpop) = &self.domain.dpop {
                self.prove(&mut request, &dpop.key, &endpoints.token)?;
            }
            trace::inject_current(request.headers_mut());
            let response = self.client.request(request).await.map_err(|e| {
                tracing::debug!(error = %e, "token endpoint unreachable");
                let failure = Failure::error(
                    Error::ExchangeUnavailable {
                        retry_after: self.retry_after,
                    },
                    "unreachable",
                );
                // Only a request that never reached the server is safe to send again.
                if e.is_connect() {
                    failure.retryable(None)
                } else {
                    failure
                }
            })?;
            match self.read_response(response).await {
                Err(failure) if failure.reason == "use_dpop_nonce" && nonce_retry => {
                    nonce_retry = false;
                    tracing::debug!(domain = %self.domain.name, "token server asked for a DPoP nonce");
                }
                result => {
                    let mut issued = result?;
                    if issued.bound {
                        issued.dpop = self.domain.dpop.as_ref().map(|d| d.key.clone());
                    }
                    issued.links.discovery = endpoints.discovery.clone();
                    return Ok(issued);
                }
            }
        }
    }

    /// An unusable `client_assertion_file`: a warn naming the domain and the path (never the
    /// contents) and `chaingate_client_assertion_errors_total{domain,reason}`.
    fn assertion_failed(&self, failure: &Failure) {
        let (Some(error), ClientAuth::AssertionFile(file)) =
            (failure.assertion, &self.domain.client_auth)
        else {
            return;
        };
        self.metrics.assertion_error(error);
        tracing::warn!(
            domain = %self.domain.name,
            path = %file.path.display(),
            reason = error.reason(),
            "client_assertion_file unusable"
        );
    }

    /// `Err` (logged and counted) if the domain's `client_assertion_file` cannot be sent now.
    fn assertion_usable(&self) -> Result<(), Failure> {
        let ClientAuth::AssertionFile(file) = &self.domain.client_auth else {
            return Ok(());
        };
        file.current().map(drop).map_err(|e| {
            let failure = request::assertion_failure(e);
            self.assertion_failed(&failure);
            failure
        })
    }

    /// Why the domain's `client_assertion_file` cannot be sent now, if it has one (`/ready`).
    pub(crate) fn assertion_unusable(&self) -> Option<AssertionFileError> {
        match &self.domain.client_auth {
            ClientAuth::AssertionFile(file) => file.current().err(),
            _ => None,
        }
    }

    /// Adds a DPoP proof for a token request (RFC 9449 §4: `htm` POST, `htu` the endpoint).
    fn prove(
        &self,
        request: &mut http::Request<Full<Bytes>>,
        key: &ProofKey,
        endpoint: &Uri,
    ) -> Result<(), Failure> {
        let nonce = self.dpop_nonce.load();
        let htu = chaingate_oauth::dpop::normalize_htu(&endpoint.to_string())
            .unwrap_or_else(|| endpoint.to_string());
        let proof = key
            .proof("POST", &htu, None, nonce.as_deref().map(String::as_str))
            .ok()
            .and_then(|p| http::HeaderValue::try_from(p).ok())
            .ok_or_else(|| {
                Failure::error(
                    Error::ExchangeFailed("cannot sign DPoP proof"),
                    "dpop proof",
                )
            })?;
        request.headers_mut().insert(DPOP, proof);
        Ok(())
    }

    /// Keeps the server's `DPoP-Nonce`, if it sent a well-formed one (§8.1: NQCHAR only).
    fn remember_nonce(&self, headers: &http::HeaderMap) {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else {
            return;
        };
        let nqchar = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        if !nonce.is_empty() && nonce.len() <= 512 && nonce.bytes().all(nqchar) {
            self.dpop_nonce.store(Some(Arc::new(nonce.to_owned())));
        }
    }

    async fn read_response(
        &self,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Issued, Failure> {
        let status = response.status();
        trace::record_client_status(&tracing::Span::current(), status);
        if self.domain.dpop.is_some() {
            self.remember_nonce(response.headers());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)))
            .unwrap_or(self.retry_after);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let hint = (status == StatusCode::TOO_MANY_REQUESTS).then_some(retry_after);
            return Err(Failure::error(
                Error::ExchangeUnavailable { retry_after },
                "unavailable status",
            )
            .retryable(hint));
        }
        // Every Link field, as RFC 8288 allows the relations to be split across several.
        let links = response
            .headers()
            .get_all(http::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(chaingate_oauth::link::parse)
            .collect::<Vec<_>>();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| {
                Failure::error(Error::ExchangeFailed("unreadable token response"), "body")
            })?
            .to_bytes();
        if status == StatusCode::OK {
            let mut issued =
                response::parse_success(&body, &self.domain.grant, self.domain.dpop.is_some())?;
            issued.links.ruri = chaingate_oauth::link::find(&links, "ruri").map(str::to_owned);
            issued.links.duri = chaingate_oauth::link::find(&links, "duri").map(str::to_owned);
            Ok(issued)
        } else {
            Err(response::classify_error(status, &body, &self.domain.grant))
        }
    }
}

/// Feeds a token response to the parsers of every grant profile (fuzzing entry point).
pub(crate) fn fuzz_response(body: &[u8]) {
    response::fuzz(body);
}

#[derive(Debug)]
struct Failure {
    error: Error,
    outcome: Outcome,
    reason: &'static str,
    /// `Some` if another attempt may be made, with the server's wait (Retry-After) if it gave one.
    retry_hint: Option<Option<Duration>>,
    /// Set when the `client_assertion_file` kept the request from being built.
    assertion: Option<AssertionFileError>,
    /// The chaining domain's step failed; this domain's server was not asked.
    step_one: bool,
}

impl Failure {
    fn error(error: Error, reason: &'static str) -> Self {
        Self {
            error,
            outcome: Outcome::Error,
            reason,
            retry_hint: None,
            assertion: None,
            step_one: false,
        }
    }

    fn retryable(mut self, wait: Option<Duration>) -> Self {
        self.retry_hint = Some(wait);
        self
    }
}
