//! A Txn-Token Request at a Transaction Token Service (draft-ietf-oauth-transaction-tokens-10
//! §7.1): RFC 8693 with `requested_token_type` txn_token, the trust domain as `audience`, and
//! `request_context` / `request_details`; the §7.4 response read strictly.
//!
//! One request per transaction and no retries: a Txn-Token describes this request only (its
//! `txn`, `rctx` and `tctx`), so nothing is cached and a failed request is the caller's to repeat.

use http::header::RETRY_AFTER;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use super::{request, response, Exchanger, Failure, MAX_RESPONSE_BYTES};
use crate::config::Grant;
use crate::error::Error;
use chaingate_oauth::grant::TOKEN_EXCHANGE_GRANT;
use chaingate_oauth::secret::Secret;

/// The token type of a Txn-Token (draft §11.1).
pub(crate) const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// What one Txn-Token Request carries.
pub(crate) struct TxnRequest<'a> {
    /// The caller's token (AT1), the transaction's subject.
    pub(crate) subject: &'a str,
    /// The trust domain.
    pub(crate) audience: &'a str,
    pub(crate) scope: &'a str,
    /// `request_context`, a JSON object.
    pub(crate) context: &'a str,
    /// `request_details`, a JSON object.
    pub(crate) details: &'a str,
}

#[derive(Deserialize)]
struct TxnResponse {
    access_token: String,
    token_type: String,
    issued_token_type: Option<String>,
    refresh_token: Option<serde::de::IgnoredAny>,
}

impl Exchanger {
    /// A Txn-Token for `req` from this domain's token endpoint (the TTS), behind the domain's
    /// breaker and in-flight cap, within its timeout.
    pub(crate) async fn txn_token(&self, req: &TxnRequest<'_>) -> Result<Secret, Error> {
        let result = match self.guard.admit(self.retry_after) {
            Err((error, reason)) => Err(Failure::error(error, reason)),
            Ok(_admission) => {
                let result = tokio::time::timeout(self.domain.timeout, self.txn_request(req))
                    .await
                    .unwrap_or_else(|_| Err(Failure::error(Error::ExchangeTimeout, "timeout")));
                let alive = result.as_ref().err().is_none_or(|f| {
                    !matches!(
                        f.error,
                        Error::ExchangeTimeout | Error::ExchangeUnavailable { .. }
                    )
                });
                self.guard.record(alive);
                result
            }
        };
        result.map_err(|failure| {
            tracing::warn!(domain = %self.domain.name, reason = failure.reason, "Txn-Token request failed");
            failure.error
        })
    }

    async fn txn_request(&self, req: &TxnRequest<'_>) -> Result<Secret, Failure> {
        let unavailable = |reason| {
            Failure::error(
                Error::ExchangeUnavailable {
                    retry_after: self.retry_after,
                },
                reason,
            )
        };
        let endpoints = self
            .endpoints
            .load_full()
            .ok_or_else(|| unavailable("not discovered yet"))?;
        let credentials = self
            .credentials
            .load_full()
            .ok_or_else(|| unavailable("not registered yet"))?;
        let subject_token_type = match &self.domain.grant {
            Grant::TokenExchange(settings) => settings.subject_token_type.as_str(),
            // Refused at config load; kept total rather than panicking.
            _ => {
                return Err(Failure::error(
                    Error::TxnTokenService("not a token exchange domain"),
                    "grant",
                ))
            }
        };
        let request = build(req, subject_token_type, &credentials, &endpoints)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| unavailable("unreachable"))?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map_or(self.retry_after, |s| {
                    std::time::Duration::from_secs(s.min(3600))
                });
            return Err(Failure::error(
                Error::ExchangeUnavailable { retry_after },
                "unavailable status",
            ));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| Failure::error(Error::TxnTokenService("unreadable response"), "body"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(refusal(status, &body, &self.domain.grant));
        }
        parse(&body)
    }
}

/// The §7.1 form, with chaingate's client authentication (built apart: the serializer is not
/// `Send`, so it must not live across an await).
fn build(
    req: &TxnRequest<'_>,
    subject_token_type: &str,
    credentials: &super::Credentials,
    endpoints: &super::Endpoints,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, Failure> {
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(1024));
    form.append_pair("grant_type", TOKEN_EXCHANGE_GRANT);
    form.append_pair("requested_token_type", TXN_TOKEN_TYPE);
    form.append_pair("audience", req.audience);
    form.append_pair("scope", req.scope);
    form.append_pair("subject_token", req.subject);
    form.append_pair("subject_token_type", subject_token_type);
    form.append_pair("request_context", req.context);
    form.append_pair("request_details", req.details);
    request::authenticated(credentials, endpoints, form)
}

/// An RFC 6749 §5.2 error: the caller's token or scope refused is the caller's (401/403, as for
/// any exchange); a trust domain the TTS does not serve or a client it will not issue to is our
/// configuration, a 502.
fn refusal(status: StatusCode, body: &[u8], grant: &Grant) -> Failure {
    let mut failure = response::classify_error(status, body, grant);
    if matches!(
        failure.reason,
        "invalid_target" | "unauthorized_client" | "invalid_client"
    ) {
        failure.error = Error::TxnTokenService("the Transaction Token Service refused us");
    }
    failure
}

/// Draft §7.4: `token_type` `N_A`, `issued_token_type` txn_token, no refresh token.
fn parse(body: &[u8]) -> Result<Secret, Failure> {
    let malformed = |reason| Failure::error(Error::TxnTokenService("malformed response"), reason);
    let parsed: TxnResponse =
        serde_json::from_slice(body).map_err(|_| malformed("not a token response"))?;
    if parsed.token_type != "N_A" {
        return Err(malformed("token_type is not N_A"));
    }
    if parsed.issued_token_type.as_deref() != Some(TXN_TOKEN_TYPE) {
        return Err(malformed("issued_token_type is not txn_token"));
    }
    if parsed.refresh_token.is_some() {
        return Err(malformed("a refresh token came with the Txn-Token"));
    }
    // Sent as one header value (§8.1): visible ASCII only.
    if parsed.access_token.is_empty() || !parsed.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed("access_token is not a usable Txn-Token"));
    }
    Ok(Secret::new(parsed.access_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_drafts_txn_token_response_is_accepted() {
        let ok = br#"{"access_token":"a.b.c","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:txn_token"}"#;
        assert_eq!(parse(ok).unwrap().expose(), "a.b.c");
        for bad in [
            r#"{"access_token":"a.b.c","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:txn_token"}"#,
            r#"{"access_token":"a.b.c","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#,
            r#"{"access_token":"a.b.c","token_type":"N_A"}"#,
            r#"{"access_token":"a.b.c","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:txn_token","refresh_token":"r"}"#,
            r#"{"access_token":"a b","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:txn_token"}"#,
        ] {
            let failure = parse(bad.as_bytes()).unwrap_err();
            assert!(matches!(failure.error, Error::TxnTokenService(_)), "{bad}");
        }
    }
}
