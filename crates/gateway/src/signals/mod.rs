//! signals: Security Event Tokens (RFC 8417) pushed by an OpenID Shared Signals transmitter
//! (RFC 8935 push delivery). CAEP `session-revoked` and `credential-change` evict every cached
//! token that was exchanged for that subject's tokens, in every domain and in the fleet tier,
//! so a revoked session is not served from the cache until its tokens expire: the next request
//! exchanges again and the token server decides.
//!
//! A SET is accepted only signed by the configured transmitter's keys, with its `iss`, an
//! `aud` naming this receiver, a `jti` and an `iat`; answers are RFC 8935 §2.2–2.4 (202, or
//! 400 with an `err` code). A `jti` seen before is acknowledged and not applied again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::config::SharedSignals;
use crate::error::{Error, SetRefusal};
use crate::metrics::DomainLabel;
use crate::tokens::DomainTokens;
use crate::validate::{short_kid, IssuerKeys};
use crate::Body;
use chaingate_oauth::digest::Sha256;
use chaingate_oauth::jwt;
use chaingate_oauth::remote::SharedClient;

mod subject;

/// The media type of a pushed SET (RFC 8417 §2.3, RFC 8935 §2).
const SECEVENT_JWT: &str = "application/secevent+jwt";
/// Larger pushes are refused: a SET is an event, not a document.
const MAX_SET_BYTES: usize = 64 * 1024;
/// `iat` may be this far in the future (clock skew); a late SET is fine (RFC 8935 retries).
const SKEW_SECS: u64 = 60;
/// `jti`s remembered, for this long, so a retried push is not applied twice.
const SEEN_JTIS: u64 = 10_000;
const SEEN_FOR: Duration = Duration::from_secs(3600);

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// `{event, result}` of `chaingate_security_events_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    /// `session_revoked`, `credential_change`, `verification`, `other`, or `none` for a SET
    /// refused before its events were read.
    event: &'static str,
    /// `applied`, `duplicate`, `unknown_subject`, `ignored`, or the refusal's `err` code.
    result: &'static str,
}

/// `chaingate_security_events_total` and `chaingate_revocation_evictions_total`.
#[derive(Debug, Clone)]
pub(crate) struct SignalsMetrics {
    events: Family<EventLabels, Counter>,
    evictions: Family<DomainLabel, Counter>,
}

impl SignalsMetrics {
    /// Registers the families on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let events = Family::default();
        registry.register(
            "chaingate_security_events",
            "Security events pushed by the shared-signals transmitter, by event type and result",
            events.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "chaingate_revocation_evictions",
            "Cached tokens evicted because a security event revoked their subject",
            evictions.clone(),
        );
        Self { events, evictions }
    }

    fn event(&self, event: &'static str, result: &'static str) {
        self.events
            .get_or_create(&EventLabels { event, result })
            .inc();
    }
}

/// The `[shared_signals]` receiver of one config generation.
#[derive(Debug)]
pub(crate) struct Receiver {
    issuer: String,
    audience: String,
    path: String,
    keys: IssuerKeys,
    /// Digests of the `jti`s applied lately.
    seen: moka::future::Cache<[u8; 32], ()>,
    metrics: SignalsMetrics,
}

impl Receiver {
    /// A receiver for `settings`; a `jwks_uri` is fetched through `client` when first needed.
    pub(crate) fn new(
        settings: &SharedSignals,
        client: SharedClient,
        metrics: &SignalsMetrics,
    ) -> Self {
        Self {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            path: settings.path.clone(),
            keys: IssuerKeys::new(
                &settings.keys,
                settings.algorithms.clone(),
                Duration::from_secs(30),
                client,
            ),
            seen: moka::future::Cache::builder()
                .max_capacity(SEEN_JTIS)
                .time_to_live(SEEN_FOR)
                .build(),
            metrics: metrics.clone(),
        }
    }

    /// Whether `request` is a push to this receiver (its path, exactly).
    pub(crate) fn is_for<B>(&self, request: &Request<B>) -> bool {
        request.uri().path() == self.path
    }

    /// Takes one pushed SET and applies it to `domains`: 202 once it is verified (RFC 8935
    /// §2.2), whatever its events.
    pub(crate) async fn receive(
        &self,
        request: Request<Incoming>,
        domains: &[Arc<DomainTokens>],
    ) -> Result<Response<Body>, Error> {
        let claims = match self.verified(request).await {
            Ok(claims) => claims,
            Err(Error::SecurityEvent(refusal)) => {
                self.metrics.event("none", refusal.code());
                tracing::warn!(
                    err = refusal.code(),
                    reason = refusal.description(),
                    "security event refused"
                );
                return Err(Error::SecurityEvent(refusal));
            }
            Err(other) => return Err(other),
        };
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let jti_key = {
            let mut digest = Sha256::new();
            digest.part(self.issuer.as_bytes());
            digest.part(jti.as_bytes());
            digest.finish()
        };
        if self.seen.contains_key(&jti_key) {
            for uri in events.keys() {
                self.metrics.event(event_name(uri), "duplicate");
            }
            return Ok(accepted());
        }
        self.seen.insert(jti_key, ()).await;
        for (uri, event) in &events {
            let name = event_name(uri);
            if !matches!(uri.as_str(), SESSION_REVOKED | CREDENTIAL_CHANGE) {
                self.metrics.event(name, "ignored");
                continue;
            }
            // SSF 1.0 names the subject once for the SET (`sub_id`); CAEP's earlier drafts in
            // each event (`subject`).
            let subject = claims.get("sub_id").or_else(|| event.get("subject"));
            let ids = subject.map(subject::identifiers).unwrap_or_default();
            if ids.is_empty() {
                self.metrics.event(name, "unknown_subject");
                tracing::info!(
                    jti,
                    event = name,
                    "security event names no subject the cache knows"
                );
                continue;
            }
            let mut evicted = 0;
            for domain in domains {
                let n = domain.revoke(&ids).await;
                if n > 0 {
                    self.metrics
                        .evictions
                        .get_or_create(&DomainLabel {
                            domain: domain.name().clone(),
                        })
                        .inc_by(n);
                }
                evicted += n;
            }
            self.metrics.event(name, "applied");
            // The jti identifies the event for the transmitter's operators; the subject stays
            // out of the log.
            tracing::info!(jti, event = name, evicted, "security event applied");
        }
        Ok(accepted())
    }

    /// The SET's claims, once its media type, signature, issuer, audience and claims pass.
    async fn verified(&self, request: Request<Incoming>) -> Result<Value, Error> {
        let refuse = |r| Err(Error::SecurityEvent(r));
        if request.method() != Method::POST {
            return refuse(SetRefusal::Request("a SET is pushed with POST"));
        }
        let media = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case(SECEVENT_JWT)) {
            return refuse(SetRefusal::Request(
                "the content type must be application/secevent+jwt",
            ));
        }
        let body = match Limited::new(request.into_body(), MAX_SET_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return refuse(SetRefusal::Request("the SET is too large or cut")),
        };
        let Ok(set) = std::str::from_utf8(&body).map(str::trim) else {
            return refuse(SetRefusal::Request("the SET is not a JWT"));
        };
        let Ok((header, unverified)) = jwt::peek(set) else {
            return refuse(SetRefusal::Request("the SET is not a JWT"));
        };
        // RFC 8417 §2.3: `typ` tells a SET from any other JWT the transmitter's keys sign.
        if !jwt::typ_is(&header, "secevent+jwt") {
            return refuse(SetRefusal::Request("the SET's typ is not secevent+jwt"));
        }
        // Only the configured transmitter's SETs may cause a key lookup.
        if unverified.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return refuse(SetRefusal::Issuer);
        }
        let Ok(kid) = short_kid(&header) else {
            return refuse(SetRefusal::Key);
        };
        let keys = self.keys.get(kid).await.map_err(|e| {
            tracing::warn!(issuer = %self.issuer, error = %e, "transmitter keys unavailable");
            // The transmitter retries (RFC 8935 §2.4 leaves other failures to HTTP status).
            Error::ExchangeUnavailable {
                retry_after: Duration::from_secs(5),
            }
        })?;
        let Ok(verified) = jwt::verify(set, &header, &keys) else {
            return refuse(SetRefusal::Key);
        };
        check_claims(&verified.claims, &self.audience).map_err(Error::SecurityEvent)?;
        Ok(verified.claims)
    }
}

fn check_claims(claims: &Value, audience: &str) -> Result<(), SetRefusal> {
    let audiences = jwt::audiences(claims).map_err(|_| SetRefusal::Audience)?;
    if !audiences.iter().any(|a| a == audience) {
        return Err(SetRefusal::Audience);
    }
    if jwt::string_claim(claims, "jti").is_err() {
        return Err(SetRefusal::Request("the SET has no jti"));
    }
    let now = chaingate_oauth::util::now_secs();
    match jwt::numeric(claims, "iat") {
        Ok(Some(iat)) if iat <= now + SKEW_SECS => {}
        Ok(Some(_)) => return Err(SetRefusal::Request("the SET was issued in the future")),
        _ => return Err(SetRefusal::Request("the SET has no valid iat")),
    }
    // RFC 8417 §2.2 does not require `exp`; when one is there it holds.
    if jwt::numeric(claims, "exp")
        .map_err(|_| SetRefusal::Request("the SET's exp is not a NumericDate"))?
        .is_some_and(|exp| exp <= now)
    {
        return Err(SetRefusal::Request("the SET has expired"));
    }
    match claims.get("events").and_then(Value::as_object) {
        Some(events) if !events.is_empty() && events.values().all(Value::is_object) => Ok(()),
        _ => Err(SetRefusal::Request("the SET has no events object")),
    }
}

fn event_name(uri: &str) -> &'static str {
    match uri {
        SESSION_REVOKED => "session_revoked",
        CREDENTIAL_CHANGE => "credential_change",
        VERIFICATION => "verification",
        _ => "other",
    }
}

/// RFC 8935 §2.2: the SET was received and verified.
fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::Right(http_body_util::Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}
