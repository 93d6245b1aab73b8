//! Reciprocal OAuth (draft-ietf-oauth-reciprocal-04) with chaingate as party A's agent.
//!
//! When a domain's token response carries `reciprocal` (the scope that domain's server, party B,
//! wants from the caller's domain, party A), chaingate asks party A's authority for an
//! authorization code for that scope on the caller's behalf (`/reciprocal/code`, which issues
//! only under a pre-consent policy or the user's recorded consent), then posts it to B's token
//! endpoint with `grant_type=urn:ietf:params:oauth:grant-type:reciprocal` and the token B just
//! issued (which tells B which user the grant is for). B redeems the code at A by itself.
//!
//! All of it runs in a spawned task: the caller's request never waits for it and never fails
//! because of it. Each (caller, scope) is delivered at most once per `remember` window.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use moka::future::Cache;
use moka::Expiry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::trace;

mod metrics;

use metrics::DeliveryLabel;
pub(crate) use metrics::{Delivery, ReciprocalMetrics};

use super::{Credentials, Endpoints, HttpsClient};
use crate::config::{ClientAuth, Domain, Reciprocal};
use chaingate_oauth::secret::Secret;

/// Party A's and B's answers here are small JSON objects.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// How long a (caller, scope) stays remembered depends on how its delivery ended.
#[derive(Debug, Clone, Copy)]
struct Remembered(Duration);

struct RememberFor;

// moka's trait names std's Instant; the value is ignored.
#[allow(clippy::disallowed_types)]
impl Expiry<[u8; 32], Remembered> for RememberFor {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Remembered,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.0)
    }

    fn expire_after_update(
        &self,
        _: &[u8; 32],
        value: &Remembered,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.0)
    }
}

/// Where the code goes: the domain's own token endpoint, with the domain's client credentials.
pub(super) struct PartyB {
    pub(super) domain: Arc<Domain>,
    pub(super) credentials: Arc<Credentials>,
    pub(super) endpoints: Arc<Endpoints>,
    pub(super) client: HttpsClient,
}

/// Obtains and delivers codes for one domain's `reciprocal` requests.
pub(super) struct Agent {
    domain: Arc<str>,
    client: HttpsClient,
    remembered: Cache<[u8; 32], Remembered>,
    in_flight: Arc<Semaphore>,
    metrics: Family<DeliveryLabel, Counter>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub(super) fn new(
        domain: &Domain,
        settings: &Reciprocal,
        pool_idle: Duration,
        metrics: &ReciprocalMetrics,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            domain: domain.name.clone(),
            client: chaingate_core::tls::pooled_client(
                settings.ca_certs.as_deref(),
                None,
                settings.timeout,
                pool_idle,
            )?,
            remembered: Cache::builder()
                .max_capacity(settings.max_subjects)
                .expire_after(RememberFor)
                .build(),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            metrics: metrics.deliveries.clone(),
        })
    }

    fn count(&self, outcome: Delivery) {
        self.metrics
            .get_or_create(&DeliveryLabel {
                domain: self.domain.clone(),
                outcome,
            })
            .inc();
    }

    /// Called after an exchange whose response carried `reciprocal`: starts the delivery in the
    /// background unless it has been done (or declined) already. Never blocks on the network.
    pub(super) async fn offer(
        self: &Arc<Self>,
        subject: &str,
        wanted: &str,
        issued: &Secret,
        to: PartyB,
    ) {
        let Some(settings) = to.domain.reciprocal.as_ref() else {
            return;
        };
        // Pass on only what the operator agreed to; the rest of B's wish is declined.
        let scope: BTreeSet<&str> = wanted
            .split(' ')
            .filter(|s| settings.scopes.contains(*s))
            .collect();
        if scope.is_empty() {
            tracing::info!(domain = %self.domain, wanted, "reciprocal scope not in reciprocal.scopes; declined");
            self.count(Delivery::Declined);
            return;
        }
        let scope = scope.into_iter().collect::<Vec<_>>().join(" ");
        let key = remember_key(&self.domain, subject, &scope);
        let entry = self
            .remembered
            .entry(key)
            // Held while the delivery runs, which both calls' timeouts bound.
            .or_insert(Remembered(settings.timeout + to.domain.timeout))
            .await;
        if !entry.is_fresh() {
            self.count(Delivery::Duplicate);
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.remembered.invalidate(&key).await;
            self.count(Delivery::Dropped);
            return;
        };
        let (this, subject, issued) = (self.clone(), Secret::new(subject), issued.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(settings) = to.domain.reciprocal.as_ref() else {
                return;
            };
            let outcome = this.deliver(settings, &subject, &scope, &issued, &to).await;
            let remember = match outcome {
                Delivery::Delivered => settings.remember,
                Delivery::ConsentRequired => settings.remember.min(settings.consent_retry),
                _ => settings.remember.min(settings.failure_retry),
            };
            this.remembered.insert(key, Remembered(remember)).await;
            this.count(outcome);
        });
    }

    async fn deliver(
        &self,
        settings: &Reciprocal,
        subject: &Secret,
        scope: &str,
        issued: &Secret,
        to: &PartyB,
    ) -> Delivery {
        let domain = &self.domain;
        // Party A: a code for B's client there, for the user the caller's token names.
        let request = code_request(settings, subject, scope);
        let code = match post(&self.client, request, settings.timeout).await {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<CodeAnswer>(&body) {
                Ok(answer) if !answer.code.is_empty() => Secret::new(answer.code),
                _ => {
                    tracing::warn!(%domain, "reciprocal: party A's answer has no code");
                    return Delivery::CodeFailed;
                }
            },
            Ok((status, body)) => {
                let error = oauth_error(&body);
                if error.as_deref() == Some("consent_required") {
                    tracing::info!(%domain, scope, "reciprocal: party A needs the user's consent first");
                    return Delivery::ConsentRequired;
                }
                tracing::warn!(%domain, status = status.as_u16(), error = error.as_deref().unwrap_or("-"), "reciprocal: party A issued no code");
                return Delivery::CodeFailed;
            }
            Err(reason) => {
                tracing::warn!(%domain, reason, "reciprocal: party A unreachable");
                return Delivery::CodeFailed;
            }
        };
        // Party B: the code and the token B issued us, which names the user to B.
        let Ok(request) = super::request::reciprocal(
            &to.credentials,
            &to.endpoints,
            code.expose(),
            issued.expose(),
        ) else {
            return Delivery::DeliveryFailed;
        };
        match post(&to.client, request, to.domain.timeout).await {
            Ok((StatusCode::OK, _)) => {
                tracing::info!(%domain, scope, "reciprocal: code delivered to the domain's token server");
                Delivery::Delivered
            }
            Ok((status, body)) => {
                tracing::warn!(%domain, status = status.as_u16(), error = oauth_error(&body).as_deref().unwrap_or("-"), "reciprocal: the domain's token server refused the code");
                Delivery::DeliveryFailed
            }
            Err(reason) => {
                tracing::warn!(%domain, reason, "reciprocal: code not delivered");
                Delivery::DeliveryFailed
            }
        }
    }
}

/// One form post and its (bounded) answer, all within `timeout`.
async fn post(
    client: &HttpsClient,
    mut request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), &'static str> {
    let span = trace::client_span!("reciprocal", url.full = %request.uri());
    span.in_scope(|| trace::inject_current(request.headers_mut()));
    let exchange = async {
        let response = client.request(request).await.map_err(|_| "unreachable")?;
        let status = response.status();
        trace::record_client_status(&tracing::Span::current(), status);
        let body = read(response.into_body())
            .await
            .ok_or("unreadable answer")?;
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange.instrument(span))
        .await
        .map_err(|_| "timeout")?
}

#[derive(Deserialize)]
struct CodeAnswer {
    code: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// The RFC 6749 §5.2 `error` code, if the body has a plausible one (it goes into logs).
fn oauth_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .map(|e| e.error)
        .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
}

async fn read(body: hyper::body::Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

fn code_request(settings: &Reciprocal, subject: &Secret, scope: &str) -> Request<Full<Bytes>> {
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(512));
    form.append_pair("subject_token", subject.expose());
    form.append_pair("recipient", &settings.recipient);
    form.append_pair("scope", scope);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(settings.code_endpoint.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    match &settings.client_auth {
        ClientAuth::Basic(value) => request = request.header(AUTHORIZATION, value.clone()),
        ClientAuth::Post(secret) => {
            form.append_pair("client_id", &settings.client_id);
            form.append_pair("client_secret", secret.expose());
        }
        // Config validation admits only the two secret methods here.
        ClientAuth::PrivateKeyJwt(_)
        | ClientAuth::TlsClientAuth(_)
        | ClientAuth::AssertionFile(_) => {}
    }
    request
        .body(Full::new(Bytes::from(form.finish())))
        .expect("a form post with a validated URI builds")
}

/// Who the caller is, for "at most once per subject and scope": the `sub` of a JWT subject
/// token (unverified here, but the domain's token server has just accepted the token), else a
/// digest of the token itself. Never the raw token.
fn remember_key(domain: &str, subject: &str, scope: &str) -> [u8; 32] {
    let sub = chaingate_oauth::jwt::peek(subject)
        .ok()
        .and_then(|(_, claims)| claims.get("sub")?.as_str().map(str::to_owned));
    let (kind, who) = match &sub {
        Some(sub) => ("sub", sub.as_str()),
        None => ("token", subject),
    };
    let mut digest = chaingate_oauth::digest::Sha256::new();
    for part in [domain, kind, who, scope] {
        digest.part(part.as_bytes());
    }
    digest.finish()
}

#[cfg(test)]
mod tests;
