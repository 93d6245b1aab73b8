//! The gateway's one error type, and the one place it becomes an HTTP response.
//!
//! Each variant says whose fault it is. [`Error::into_response`] is the only code that writes
//! error statuses and `WWW-Authenticate` challenges (RFC 6750 §3, RFC 6749 §5.2); its match is
//! exhaustive. Bodies are small static JSON: no token server details and no token material.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::Body;

/// Why a request was not forwarded, by whose fault; [`Error::into_response`] turns it into the
/// caller's status, challenge and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// Caller: no Authorization header, or a scheme other than Bearer.
    #[error("no bearer credentials")]
    MissingToken,
    /// Caller, on a `dpop` route: no credentials; `bearer_too`: Bearer is accepted as well
    /// (`dpop = "allowed"`), so both schemes are challenged (RFC 9449 §7.1).
    #[error("no DPoP or bearer credentials")]
    DpopMissingToken {
        /// Challenge Bearer next to DPoP.
        bearer_too: bool,
    },
    /// Caller, on a `dpop` route: the DPoP token is not accepted, a Bearer token is bound to a
    /// key, or Bearer is not allowed (RFC 9449 §7.1).
    #[error("the DPoP token is not accepted")]
    DpopInvalidToken,
    /// Caller: the DPoP proof failed a check of RFC 9449 §4.3; a fixed description, nothing
    /// of the proof.
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// Caller: malformed or several credentials.
    #[error("malformed request: {0}")]
    InvalidRequest(&'static str),
    /// Caller: the token server rejected the caller's token (`invalid_grant`).
    #[error("the token server rejected the caller's token")]
    InvalidToken,
    /// Caller: the token server refused the scope the route needs (`invalid_scope`).
    #[error("the token server refused the route's scope")]
    InsufficientScope,
    /// Caller: the token server needs the user back (`interaction_required`), more claims
    /// (`insufficient_claims`) or a stronger authentication (`insufficient_user_authentication`,
    /// RFC 9470 §3); relayed whole, with its parameters, so the caller's client can act on it.
    #[error("the token server needs the user: {}", .0.code)]
    ChallengeRelayed(StepUp),
    /// Caller: the request's body framing is ambiguous (RFC 9112 §6.1: `chunked` applied more
    /// than once). Answered 400 with `Connection: close`: the rest of the connection cannot be
    /// parsed safely (RFC 9112 §6.3).
    #[error("bad message framing: {0}")]
    BadFraming(&'static str),
    /// Caller: the request target is longer than `limits.max_uri_bytes`.
    #[error("request target too long")]
    UriTooLong,
    /// Caller: no route matches the request path.
    #[error("no route matches")]
    NoRoute,
    /// Token server: unreachable, 5xx or 429; the caller may retry after the given delay.
    #[error("token server unavailable")]
    ExchangeUnavailable {
        /// How long the caller should wait, sent as `Retry-After` (RFC 9110 §10.2.3).
        retry_after: Duration,
    },
    /// Token server: no answer within the domain's timeout.
    #[error("token server timed out")]
    ExchangeTimeout,
    /// Token server or our config: our credentials were refused, or its answer was unusable.
    #[error("token exchange failed: {0}")]
    ExchangeFailed(&'static str),
    /// Token server: the token response's `ruri`/`duri` links are missing or name another
    /// resource or server (response_metadata = "verify"; a possible mix-up). The token is
    /// never forwarded.
    #[error("token response failed the response metadata check")]
    ResponseMetadataRefused,
    /// Upstream: connection failed or the response was invalid.
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// Upstream: no response headers within the timeout.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// Shared-signals transmitter: a pushed Security Event Token was refused (RFC 8935 §2.4).
    #[error("security event refused: {}", .0.description())]
    SecurityEvent(SetRefusal),
    /// chaingate: too many requests in flight.
    #[error("overloaded")]
    Overloaded {
        /// How long the caller should wait, sent as `Retry-After` (`limits.retry_after`).
        retry_after: Duration,
    },
}

const REALM: &str = "Bearer realm=\"chaingate\"";

impl Error {
    /// The token server refused the caller's token or scope: the same request would be refused
    /// again, so the answer may be remembered briefly (never true of an outage).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::InvalidToken | Self::InsufficientScope | Self::ChallengeRelayed(_)
        )
    }
}

impl Error {
    /// The response for this error. No side effects: logging and metrics happen at the edge.
    ///
    /// `params` are the route's own challenge parameters (RFC 9728 §5.1 `resource_metadata`,
    /// RFC 6750 §3 `scope`), appended to every challenge.
    pub(crate) fn into_response(self, params: &ChallengeParams) -> Response<Body> {
        let (p401, p403) = (&*params.on_401, &*params.on_403);
        match self {
            Self::MissingToken => respond(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "bearer token required",
            )
            .challenge(REALM, p401),
            Self::DpopMissingToken { bearer_too } => {
                let mut r = respond(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "DPoP token required",
                )
                .challenge_owned(dpop_challenge("", p401));
                if bearer_too {
                    r.headers_mut()
                        .append(WWW_AUTHENTICATE, with_params(REALM, p401));
                }
                r
            }
            Self::DpopInvalidToken => respond(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is not accepted",
            )
            .challenge_owned(dpop_challenge("error=\"invalid_token\", ", p401)),
            Self::InvalidDpopProof(why) => {
                respond(StatusCode::UNAUTHORIZED, "invalid_dpop_proof", why).challenge_owned(
                    dpop_challenge(
                        &format!("error=\"invalid_dpop_proof\", error_description=\"{why}\", "),
                        p401,
                    ),
                )
            }
            Self::InvalidRequest(why) => respond(StatusCode::BAD_REQUEST, "invalid_request", why)
                .challenge(
                    "Bearer realm=\"chaingate\", error=\"invalid_request\"",
                    p401,
                ),
            Self::InvalidToken => respond(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is not accepted",
            )
            .challenge("Bearer realm=\"chaingate\", error=\"invalid_token\"", p401),
            Self::ChallengeRelayed(step_up) => {
                let value = format!(
                    "Bearer realm=\"chaingate\", error=\"{}\"{}",
                    step_up.code, step_up.params
                );
                respond(
                    StatusCode::UNAUTHORIZED,
                    step_up.code,
                    "the caller's authorization is not enough",
                )
                .challenge_owned(with_params(&value, p401))
            }
            Self::InsufficientScope => respond(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token does not allow this request",
            )
            .challenge(
                "Bearer realm=\"chaingate\", error=\"insufficient_scope\"",
                p403,
            ),
            Self::BadFraming(why) => {
                respond(StatusCode::BAD_REQUEST, "invalid_request", why).close()
            }
            Self::UriTooLong => respond(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "the request target is too long",
            )
            .done(),
            Self::NoRoute => {
                respond(StatusCode::NOT_FOUND, "not_found", "no route for this path").done()
            }
            Self::ExchangeUnavailable { retry_after } | Self::Overloaded { retry_after } => {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again later",
                )
                .retry_after(retry_after)
            }
            Self::ExchangeTimeout => respond(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "token server did not answer in time",
            )
            .done(),
            Self::ExchangeFailed(_) => respond(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "token exchange failed",
            )
            .done(),
            // The same body as any failed exchange: which link failed is for the log only.
            Self::ResponseMetadataRefused => respond(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "token exchange failed",
            )
            .done(),
            Self::UpstreamUnavailable => respond(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "upstream unavailable",
            )
            .done(),
            Self::UpstreamTimeout => respond(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "upstream did not answer in time",
            )
            .done(),
            // RFC 8935 §2.3 names its members `err` and `description`, not RFC 6749's.
            Self::SecurityEvent(refusal) => {
                let body = format!(
                    "{{\"err\":\"{}\",\"description\":\"{}\"}}",
                    refusal.code(),
                    refusal.description()
                );
                let mut response =
                    Response::new(Body::Right(http_body_util::Full::new(Bytes::from(body))));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
        }
    }
}

/// A `DPoP` challenge: `params` (each ending in `, `), the accepted algorithms (§5, §7.1), then
/// the route's own parameters.
fn dpop_challenge(params: &str, route: &str) -> HeaderValue {
    let algs: Vec<String> = chaingate_oauth::keys::DEFAULT_ALGORITHMS
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok()?.as_str().map(str::to_owned))
        .collect();
    // Descriptions and parameters are fixed ASCII, so this cannot fail.
    with_params(&format!("DPoP {params}algs=\"{}\"", algs.join(" ")), route)
}

/// `challenge` then the route's parameters. Every part is checked ASCII without quotes or
/// controls (config validation, [`StepUp::new`]), so this cannot fail in practice.
fn with_params(challenge: &str, route: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{challenge}{route}"))
        .or_else(|_| HeaderValue::from_str(challenge))
        .unwrap_or_else(|_| HeaderValue::from_static(REALM))
}

/// A route's parameters for its challenges, rendered once per config generation, each one
/// starting with `, `; empty when the route has none.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChallengeParams {
    /// On 401s: `resource_metadata` (RFC 9728 §5.1) and `scope`, so a client that has no token
    /// yet learns where and what to ask for (MCP authorization, "scope selection").
    pub(crate) on_401: Box<str>,
    /// On 403 `insufficient_scope`: the `scope` needed (RFC 6750 §3), and `resource_metadata`.
    pub(crate) on_403: Box<str>,
}

/// A step-up challenge a token server answered with, kept to be relayed whole: the error code
/// and the parameters that tell the caller's client what to get (RFC 9470 §3 `acr_values`,
/// `max_age`; `claims`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepUp {
    /// `interaction_required`, `insufficient_claims` or `insufficient_user_authentication`.
    pub(crate) code: &'static str,
    /// The rendered parameters, each starting with `, `; only values safe in a quoted string.
    params: Box<str>,
}

/// The longest parameter value relayed: a token server's answer cannot grow our headers much.
const MAX_STEP_UP_VALUE: usize = 1024;

impl StepUp {
    /// A challenge with no parameters.
    #[cfg(test)]
    pub(crate) fn bare(code: &'static str) -> Self {
        Self {
            code,
            params: Box::from(""),
        }
    }

    /// Keeps the parameters that are safe to put in a quoted string (RFC 9110 §5.6.4: visible
    /// ASCII without `"` and `\`, and spaces) and not overlong; anything else is left out,
    /// never escaped into our header.
    pub(crate) fn new(
        code: &'static str,
        acr_values: Option<&str>,
        max_age: Option<u64>,
        claims: Option<&str>,
    ) -> Self {
        let safe = |v: &&str| {
            !v.is_empty()
                && v.len() <= MAX_STEP_UP_VALUE
                && v.bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        };
        let mut params = String::new();
        if let Some(acr) = acr_values.filter(safe) {
            params.push_str(&format!(", acr_values=\"{acr}\""));
        }
        if let Some(age) = max_age {
            params.push_str(&format!(", max_age={age}"));
        }
        if let Some(claims) = claims.filter(safe) {
            params.push_str(&format!(", claims=\"{claims}\""));
        }
        Self {
            code,
            params: params.into_boxed_str(),
        }
    }
    /// The rendered parameters, each starting with `, `.
    pub(crate) fn params(&self) -> &str {
        &self.params
    }
}

struct Synthetic(Response<Body>);

fn respond(status: StatusCode, error: &'static str, description: &'static str) -> Synthetic {
    let body = format!("{{\"error\":\"{error}\",\"error_description\":\"{description}\"}}");
    let mut response = Response::new(Body::Right(http_body_util::Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Synthetic(response)
}

impl Synthetic {
    fn challenge(mut self, value: &'static str, route: &str) -> Response<Body> {
        let value = match route {
            "" => HeaderValue::from_static(value),
            route => with_params(value, route),
        };
        self.0.headers_mut().insert(WWW_AUTHENTICATE, value);
        self.0
    }

    fn challenge_owned(mut self, value: HeaderValue) -> Response<Body> {
        self.0.headers_mut().insert(WWW_AUTHENTICATE, value);
        self.0
    }

    fn retry_after(mut self, after: Duration) -> Response<Body> {
        let secs = after.as_secs().max(1);
        self.0
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        self.0
    }

    fn done(self) -> Response<Body> {
        self.0
    }

    /// The connection ends after this response (hyper closes it on `Connection: close`).
    fn close(mut self) -> Response<Body> {
        self.0
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        self.0
    }
}

/// Why a pushed SET was refused: the RFC 8935 §2.4 error codes, answered below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetRefusal {
    /// Not a POST of one `application/secevent+jwt` SET with the required claims.
    Request(&'static str),
    /// Not signed by one of the transmitter's keys.
    Key,
    /// `iss` is not the configured transmitter.
    Issuer,
    /// `aud` does not name this receiver.
    Audience,
}

impl SetRefusal {
    /// The RFC 8935 §2.4 `err` code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Request(_) => "invalid_request",
            Self::Key => "invalid_key",
            Self::Issuer => "invalid_issuer",
            Self::Audience => "invalid_audience",
        }
    }

    /// The `description`: fixed text, nothing of the SET.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Request(why) => why,
            Self::Key => "the SET is not signed by a key of the transmitter",
            Self::Issuer => "the SET's issuer is not the configured transmitter",
            Self::Audience => "the SET's audience does not name this receiver",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(e: Error) -> (StatusCode, Option<String>) {
        let r = e.into_response(&ChallengeParams::default());
        let c = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status(), c)
    }

    #[test]
    fn missing_token_challenge_carries_no_error_code() {
        let (status, c) = challenge(Error::MissingToken);
        assert_eq!(status, 401);
        assert_eq!(c.as_deref(), Some("Bearer realm=\"chaingate\""));
    }

    #[test]
    fn each_oauth_error_has_its_rfc6750_status() {
        assert_eq!(challenge(Error::InvalidRequest("x")).0, 400);
        assert_eq!(
            challenge(Error::InvalidToken),
            (
                StatusCode::UNAUTHORIZED,
                Some("Bearer realm=\"chaingate\", error=\"invalid_token\"".into())
            )
        );
        assert_eq!(challenge(Error::InsufficientScope).0, 403);
        assert_eq!(challenge(Error::ExchangeTimeout).0, 504);
        assert_eq!(challenge(Error::ExchangeFailed("x")).0, 502);
        assert_eq!(challenge(Error::UpstreamUnavailable).0, 502);
        assert_eq!(
            challenge(Error::ResponseMetadataRefused),
            (StatusCode::BAD_GATEWAY, None)
        );
        assert_eq!(challenge(Error::UpstreamTimeout).0, 504);
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let r = Error::ExchangeUnavailable {
            retry_after: Duration::from_secs(7),
        }
        .into_response(&ChallengeParams::default());
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "7");
    }
}
