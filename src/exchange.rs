//! Token exchange: the chain grant (draft-hunt-oauth-chain-01) at a domain's token endpoint.
//!
//! One pooled client per domain. The response is parsed strictly (RFC 6749 §5.1, §5.2) and every
//! failure is classified into the gateway's [`Error`] (specs.md §19.12). Token server error
//! details are logged as the `error` code only, never returned to the caller.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use tokio::time::Instant;

use crate::authn::InboundToken;
use crate::config::{ClientAuth, Domain, Grant, OAuthTokenFormat};
use crate::error::Error;
use crate::metrics::{latency_histogram, DomainLabel};
use crate::secret::Secret;

pub const CHAIN_GRANT: &str = "http://oauth.net/grant_type/chain";

/// Token responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A token issued by a domain's token endpoint.
pub struct Issued {
    pub access_token: Secret,
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Exchanges tokens at one domain's token endpoint.
#[derive(Debug)]
pub struct Exchanger {
    domain: Arc<Domain>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    metrics: DomainExchangeMetrics,
    retry_after: Duration,
}

impl Exchanger {
    pub fn new(
        domain: Arc<Domain>,
        pool_idle: Duration,
        retry_after: Duration,
        metrics: &ExchangeMetrics,
    ) -> Result<Self, rustls::Error> {
        let tls = crate::tls::client_config(domain.ca_certs.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(domain.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        let label = DomainLabel {
            domain: domain.name.clone(),
        };
        Ok(Self {
            metrics: DomainExchangeMetrics {
                issued: metrics
                    .exchanges
                    .get_or_create_owned(&label.outcome(Outcome::Issued)),
                rejected: metrics
                    .exchanges
                    .get_or_create_owned(&label.outcome(Outcome::Rejected)),
                error: metrics
                    .exchanges
                    .get_or_create_owned(&label.outcome(Outcome::Error)),
                duration: metrics.duration.get_or_create_owned(&label),
            },
            domain,
            client,
            retry_after,
        })
    }

    pub fn domain(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// Exchanges the caller's token for one of this domain, requesting `scope`.
    pub async fn exchange(
        &self,
        token: InboundToken<'_>,
        scope: Option<&str>,
    ) -> Result<Issued, Error> {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.domain.timeout, self.request(token, scope)).await {
                Ok(result) => result,
                Err(_) => Err(Failure::error(Error::ExchangeTimeout, "timeout")),
            };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(issued) => {
                self.metrics.issued.inc();
                Ok(issued)
            }
            Err(failure) => {
                match failure.outcome {
                    Outcome::Rejected => self.metrics.rejected.inc(),
                    _ => self.metrics.error.inc(),
                };
                tracing::warn!(domain = %self.domain.name, reason = failure.reason, "token exchange failed");
                Err(failure.error)
            }
        }
    }

    async fn request(
        &self,
        token: InboundToken<'_>,
        scope: Option<&str>,
    ) -> Result<Issued, Failure> {
        let request = self.build_request(token, scope).map_err(|_| {
            Failure::error(
                Error::ExchangeFailed("cannot build request"),
                "request build",
            )
        })?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::debug!(error = %e, "token endpoint unreachable");
            Failure::error(
                Error::ExchangeUnavailable {
                    retry_after: self.retry_after,
                },
                "unreachable",
            )
        })?;
        self.read_response(response).await
    }

    /// The form-encoded token request (RFC 6749 §4.5, chain §2.1), with our client credentials.
    fn build_request(
        &self,
        token: InboundToken<'_>,
        scope: Option<&str>,
    ) -> http::Result<Request<Full<Bytes>>> {
        let domain = &*self.domain;
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(256));
        match domain.grant {
            Grant::Chain => {
                form.append_pair("grant_type", CHAIN_GRANT);
                match domain.oauth_token_format {
                    OAuthTokenFormat::Bare => form.append_pair("oauth_token", token.expose()),
                    OAuthTokenFormat::AuthorizationValue => {
                        form.append_pair("oauth_token", &format!("Bearer {}", token.expose()))
                    }
                };
            }
        }
        if let Some(scope) = scope {
            form.append_pair("scope", scope);
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(domain.token_endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match &domain.client_auth {
            ClientAuth::Basic(value) => request = request.header(AUTHORIZATION, value.clone()),
            ClientAuth::Post(secret) => {
                form.append_pair("client_id", &domain.client_id);
                form.append_pair("client_secret", secret.expose());
            }
        }
        request.body(Full::new(Bytes::from(form.finish())))
    }

    async fn read_response(
        &self,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Issued, Failure> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)))
            .unwrap_or(self.retry_after);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::error(
                Error::ExchangeUnavailable { retry_after },
                "unavailable status",
            ));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| {
                Failure::error(Error::ExchangeFailed("unreadable token response"), "body")
            })?
            .to_bytes();
        if status == StatusCode::OK {
            parse_success(&body)
        } else {
            Err(classify_error(status, &body))
        }
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: String,
    token_type: String,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

fn parse_success(body: &[u8]) -> Result<Issued, Failure> {
    let malformed =
        |reason| Failure::error(Error::ExchangeFailed("malformed token response"), reason);
    let parsed: SuccessBody =
        serde_json::from_slice(body).map_err(|_| malformed("not a token response"))?;
    // RFC 6749 §7.1: never use a token whose type we do not understand (N_A, DPoP, ...).
    if !parsed.token_type.eq_ignore_ascii_case("bearer") {
        return Err(malformed("token_type is not Bearer"));
    }
    if parsed.access_token.is_empty() || !parsed.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed("access_token is not a usable bearer token"));
    }
    let expires_in = match parsed.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| malformed("expires_in is not a positive integer"))?,
        ),
        // Some servers send the number as a string; accept digits only.
        Some(serde_json::Value::String(s)) => Some(
            s.parse::<u64>()
                .map_err(|_| malformed("expires_in is not a number"))?,
        ),
        Some(_) => return Err(malformed("expires_in is not a number")),
    };
    Ok(Issued {
        access_token: Secret::new(parsed.access_token),
        expires_in: expires_in.map(Duration::from_secs),
    })
}

fn classify_error(status: StatusCode, body: &[u8]) -> Failure {
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
        return Failure::error(
            Error::ExchangeFailed("malformed error response"),
            "unexpected status",
        );
    };
    let (error, reason) = match error.as_str() {
        "invalid_grant" => (Error::InvalidToken, "invalid_grant"),
        "invalid_scope" => (Error::InsufficientScope, "invalid_scope"),
        "invalid_client" => (
            Error::ExchangeFailed("client credentials rejected"),
            "invalid_client",
        ),
        "unauthorized_client" => (
            Error::ExchangeFailed("client not allowed this grant"),
            "unauthorized_client",
        ),
        "unsupported_grant_type" => (
            Error::ExchangeFailed("grant not supported"),
            "unsupported_grant_type",
        ),
        "invalid_request" => (Error::ExchangeFailed("request refused"), "invalid_request"),
        "invalid_target" => (Error::InsufficientScope, "invalid_target"),
        _ => (
            Error::ExchangeFailed("token server error"),
            "other error code",
        ),
    };
    tracing::debug!(%status, reason, "token endpoint refused the exchange");
    Failure {
        error,
        outcome: Outcome::Rejected,
        reason,
    }
}

#[derive(Debug)]
struct Failure {
    error: Error,
    outcome: Outcome,
    reason: &'static str,
}

impl Failure {
    fn error(error: Error, reason: &'static str) -> Self {
        Self {
            error,
            outcome: Outcome::Error,
            reason,
        }
    }
}

// === metrics ===

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Issued,
    Rejected,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::Issued => "issued",
                Self::Rejected => "rejected",
                Self::Error => "error",
            },
        )
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainOutcome {
    domain: Arc<str>,
    outcome: Outcome,
}

impl DomainLabel {
    fn outcome(&self, outcome: Outcome) -> DomainOutcome {
        DomainOutcome {
            domain: self.domain.clone(),
            outcome,
        }
    }
}

/// `chaingate_token_exchanges_total{domain,outcome}` and `..._duration_seconds{domain}`.
#[derive(Debug, Clone)]
pub struct ExchangeMetrics {
    exchanges: Family<DomainOutcome, Counter>,
    duration: Family<DomainLabel, Histogram>,
}

impl ExchangeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let exchanges = Family::default();
        registry.register(
            "chaingate_token_exchanges",
            "Token exchanges at a domain's token endpoint, by outcome",
            exchanges.clone(),
        );
        let duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "chaingate_token_exchange_duration",
            "Time spent on one token exchange, including connection setup",
            Unit::Seconds,
            duration.clone(),
        );
        Self {
            exchanges,
            duration,
        }
    }
}

#[derive(Debug)]
struct DomainExchangeMetrics {
    issued: Counter,
    rejected: Counter,
    error: Counter,
    duration: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_type_is_case_insensitive_but_must_be_bearer() {
        assert!(
            parse_success(br#"{"access_token":"a","token_type":"bearer","expires_in":60}"#).is_ok()
        );
        for bad in ["N_A", "DPoP", "mac"] {
            let body = format!(r#"{{"access_token":"a","token_type":"{bad}"}}"#);
            assert!(parse_success(body.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings_only() {
        let ok = parse_success(br#"{"access_token":"a","token_type":"Bearer","expires_in":"30"}"#)
            .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(30)));
        assert!(
            parse_success(br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#)
                .is_err()
        );
        assert!(
            parse_success(br#"{"access_token":"a","token_type":"Bearer","expires_in":true}"#)
                .is_err()
        );
        let none =
            parse_success(br#"{"access_token":"a","token_type":"Bearer","refresh_token":"r"}"#)
                .unwrap();
        assert_eq!(none.expires_in, None);
    }

    #[test]
    fn access_tokens_that_cannot_be_a_header_are_refused() {
        assert!(parse_success(br#"{"access_token":"a b","token_type":"Bearer"}"#).is_err());
        assert!(parse_success(br#"{"access_token":"","token_type":"Bearer"}"#).is_err());
        assert!(parse_success(b"not json").is_err());
    }

    #[test]
    fn oauth_errors_map_to_caller_facing_errors() {
        let e = |code: &str| {
            classify_error(
                StatusCode::BAD_REQUEST,
                format!(r#"{{"error":"{code}"}}"#).as_bytes(),
            )
            .error
        };
        assert_eq!(e("invalid_grant"), Error::InvalidToken);
        assert_eq!(e("invalid_scope"), Error::InsufficientScope);
        assert!(matches!(e("invalid_client"), Error::ExchangeFailed(_)));
        assert!(matches!(
            e("unsupported_grant_type"),
            Error::ExchangeFailed(_)
        ));
        assert!(matches!(
            classify_error(StatusCode::BAD_REQUEST, b"<html>").error,
            Error::ExchangeFailed(_)
        ));
    }
}
