//! Token responses: RFC 6749 §5.1 / RFC 8693 §2.2.1 success, §5.2 errors, and what they mean to
//! the caller (RFC 6749 §5.2, RFC 6750 §3.1).

use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use serde::Deserialize;

use super::{Failure, Issued, Links, Outcome};
use crate::config::Grant;
use crate::error::{Error, StepUp};
use chaingate_oauth::secret::Secret;

#[derive(Deserialize)]
struct SuccessBody {
    access_token: String,
    token_type: String,
    expires_in: Option<serde_json::Value>,
    issued_token_type: Option<String>,
    /// draft-ietf-oauth-reciprocal §2.1: the scope the token server wants back from party A.
    reciprocal: Option<serde_json::Value>,
    scope: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    /// RFC 9470 §3 step-up parameters, when a token server relays a resource's challenge.
    acr_values: Option<serde_json::Value>,
    max_age: Option<serde_json::Value>,
    /// The claims the server wants (`insufficient_claims`): a string as sent, or a JSON object.
    claims: Option<serde_json::Value>,
}

impl ErrorBody {
    /// The step-up challenge to relay, its parameters taken as far as they are well formed.
    fn step_up(&self, code: &'static str) -> StepUp {
        let max_age = match &self.max_age {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        // An object is sent compact and base64url-encoded: JSON's quotes cannot sit in a quoted
        // challenge parameter (the shape Entra ID's claims challenges use).
        let claims = match &self.claims {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(object @ serde_json::Value::Object(_)) => {
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(object.to_string()))
            }
            _ => None,
        };
        StepUp::new(
            code,
            self.acr_values.as_ref().and_then(serde_json::Value::as_str),
            max_age,
            claims.as_deref(),
        )
    }
}

/// `dpop`: the request carried a proof, so a `token_type` of `DPoP` (a token bound to that
/// key, RFC 9449 §5) is understood; the caller attaches the key.
pub(super) fn parse_success(body: &[u8], grant: &Grant, dpop: bool) -> Result<Issued, Failure> {
    let malformed =
        |reason| Failure::error(Error::ExchangeFailed("malformed token response"), reason);
    let parsed: SuccessBody =
        serde_json::from_slice(body).map_err(|_| malformed("not a token response"))?;
    // RFC 6749 §7.1: never use a token whose type we do not understand (MAC, DPoP without a
    // proof of ours, ...). RFC 8693's N_A is understood: a token that may be a subject but
    // never a credential. A server may answer a DPoP request with a Bearer token (RFC 9449 §5).
    let mut bound = false;
    let bearer = if parsed.token_type.eq_ignore_ascii_case("bearer") {
        true
    } else if dpop && parsed.token_type.eq_ignore_ascii_case("dpop") {
        bound = true;
        true
    } else if parsed.token_type == "N_A" && matches!(grant, Grant::TokenExchange(_)) {
        false
    } else {
        return Err(malformed("token_type is not Bearer"));
    };
    if parsed.access_token.is_empty() || !parsed.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed("access_token is not a usable bearer token"));
    }
    if let Grant::TokenExchange(settings) = grant {
        // RFC 8693 §2.2.1: REQUIRED; and it must be what we asked for.
        let Some(issued) = parsed.issued_token_type.as_deref() else {
            return Err(malformed("issued_token_type missing"));
        };
        if settings
            .requested_token_type
            .as_deref()
            .is_some_and(|wanted| wanted != issued)
        {
            return Err(malformed("issued_token_type is not the requested one"));
        }
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
    // An unusable `reciprocal` is ignored rather than failing the exchange: the token is good,
    // and the request is only a wish of the token server's.
    let reciprocal = match parsed.reciprocal {
        Some(serde_json::Value::String(scope))
            if crate::config::validate_scope("reciprocal", &scope).is_ok() =>
        {
            Some(scope)
        }
        _ => None,
    };
    Ok(Issued {
        access_token: Secret::new(parsed.access_token),
        expires_in: expires_in.map(Duration::from_secs),
        bearer,
        reciprocal,
        // Only a string is a scope (RFC 6749 §5.1); anything else is as if absent.
        scope: parsed
            .scope
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        links: Links::default(),
        dpop: None,
        bound,
    })
}

pub(super) fn classify_error(status: StatusCode, body: &[u8], grant: &Grant) -> Failure {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return Failure::error(
            Error::ExchangeFailed("malformed error response"),
            "unexpected status",
        );
    };
    let (error, reason) = match parsed.error.as_str() {
        "invalid_grant" => (Error::InvalidToken, "invalid_grant"),
        // RFC 8693 §2.2.2 reports an invalid subject token as invalid_request.
        "invalid_request" if matches!(grant, Grant::TokenExchange(_)) => {
            (Error::InvalidToken, "invalid_request")
        }
        "invalid_request" => (Error::ExchangeFailed("request refused"), "invalid_request"),
        "invalid_scope" => (Error::InsufficientScope, "invalid_scope"),
        "interaction_required" => (
            Error::ChallengeRelayed(parsed.step_up("interaction_required")),
            "interaction_required",
        ),
        "insufficient_claims" => (
            Error::ChallengeRelayed(parsed.step_up("insufficient_claims")),
            "insufficient_claims",
        ),
        "insufficient_user_authentication" => (
            Error::ChallengeRelayed(parsed.step_up("insufficient_user_authentication")),
            "insufficient_user_authentication",
        ),
        "invalid_target" => (Error::InsufficientScope, "invalid_target"),
        // RFC 9396 §5: the route's authorization details were refused, as a scope can be.
        "invalid_authorization_details" => {
            (Error::InsufficientScope, "invalid_authorization_details")
        }
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
        // RFC 9449 §8: answered by retrying once with the nonce (see `Exchanger::request`); seen
        // here only when the server asks again.
        "use_dpop_nonce" => (
            Error::ExchangeFailed("token server wants another DPoP nonce"),
            "use_dpop_nonce",
        ),
        "invalid_dpop_proof" => (
            Error::ExchangeFailed("token server refused the DPoP proof"),
            "invalid_dpop_proof",
        ),
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
        retry_hint: None,
        assertion: None,
        step_one: false,
    }
}

/// Feeds a token response to the parsers of every grant profile (fuzzing entry point).
pub(crate) fn fuzz(body: &[u8]) {
    use crate::config::{OAuthTokenFormat, TokenExchange};
    let grants = [
        Grant::Chain {
            oauth_token_format: OAuthTokenFormat::Bare,
        },
        Grant::JwtBearer,
        Grant::TokenExchange(TokenExchange {
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            audience: Vec::new(),
            resource: Vec::new(),
            requested_token_type: Some("urn:ietf:params:oauth:token-type:access_token".into()),
            actor_token_file: None,
            actor_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
        }),
    ];
    for grant in &grants {
        let _ = parse_success(body, grant, true);
        let _ = classify_error(StatusCode::BAD_REQUEST, body, grant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OAuthTokenFormat, TokenExchange};

    const CHAIN: Grant = Grant::Chain {
        oauth_token_format: OAuthTokenFormat::Bare,
    };

    fn exchange(requested: Option<&str>) -> Grant {
        Grant::TokenExchange(TokenExchange {
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            audience: vec![],
            resource: vec![],
            requested_token_type: requested.map(str::to_string),
            actor_token_file: None,
            actor_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
        })
    }

    #[test]
    fn a_dpop_token_is_understood_only_after_a_proof_of_ours() {
        let body = br#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#;
        assert!(parse_success(body, &CHAIN, false).is_err());
        let issued = parse_success(body, &CHAIN, true).unwrap();
        assert!(issued.bound && issued.bearer);
        let bearer = br#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#;
        assert!(!parse_success(bearer, &CHAIN, true).unwrap().bound);
    }

    #[test]
    fn token_type_is_case_insensitive_but_must_be_bearer() {
        assert!(parse_success(
            br#"{"access_token":"a","token_type":"bearer","expires_in":60}"#,
            &CHAIN,
            false
        )
        .is_ok());
        for bad in ["N_A", "DPoP", "mac"] {
            let body = format!(r#"{{"access_token":"a","token_type":"{bad}"}}"#);
            assert!(
                parse_success(body.as_bytes(), &CHAIN, false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn token_exchange_needs_issued_token_type_and_may_issue_n_a() {
        let grant = exchange(None);
        assert!(parse_success(
            br#"{"access_token":"a","token_type":"Bearer"}"#,
            &grant,
            false
        )
        .is_err());
        let n_a = br#"{"access_token":"a","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:jwt"}"#;
        assert!(!parse_success(n_a, &grant, false).unwrap().bearer);
        let wanted = exchange(Some("urn:ietf:params:oauth:token-type:access_token"));
        assert!(
            parse_success(n_a, &wanted, false).is_err(),
            "issued type must match the requested one"
        );
    }

    #[test]
    fn expires_in_accepts_numbers_and_numeric_strings_only() {
        let ok = parse_success(
            br#"{"access_token":"a","token_type":"Bearer","expires_in":"30"}"#,
            &CHAIN,
            false,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(30)));
        assert!(parse_success(
            br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
            &CHAIN,
            false
        )
        .is_err());
        assert!(parse_success(
            br#"{"access_token":"a","token_type":"Bearer","expires_in":true}"#,
            &CHAIN,
            false
        )
        .is_err());
        let none = parse_success(
            br#"{"access_token":"a","token_type":"Bearer","refresh_token":"r"}"#,
            &CHAIN,
            false,
        )
        .unwrap();
        assert_eq!(none.expires_in, None);
    }

    #[test]
    fn access_tokens_that_cannot_be_a_header_are_refused() {
        assert!(parse_success(
            br#"{"access_token":"a b","token_type":"Bearer"}"#,
            &CHAIN,
            false
        )
        .is_err());
        assert!(parse_success(
            br#"{"access_token":"","token_type":"Bearer"}"#,
            &CHAIN,
            false
        )
        .is_err());
        assert!(parse_success(b"not json", &CHAIN, false).is_err());
    }

    #[test]
    fn oauth_errors_map_to_caller_facing_errors() {
        let e = |code: &str, grant: &Grant| {
            classify_error(
                StatusCode::BAD_REQUEST,
                format!(r#"{{"error":"{code}"}}"#).as_bytes(),
                grant,
            )
            .error
        };
        assert_eq!(e("invalid_grant", &CHAIN), Error::InvalidToken);
        assert_eq!(e("invalid_scope", &CHAIN), Error::InsufficientScope);
        assert_eq!(
            e("interaction_required", &CHAIN),
            Error::ChallengeRelayed(StepUp::bare("interaction_required"))
        );
        assert_eq!(
            e("insufficient_claims", &CHAIN),
            Error::ChallengeRelayed(StepUp::bare("insufficient_claims"))
        );
        assert!(matches!(
            e("invalid_client", &CHAIN),
            Error::ExchangeFailed(_)
        ));
        assert!(matches!(
            e("unsupported_grant_type", &CHAIN),
            Error::ExchangeFailed(_)
        ));
        assert!(matches!(
            e("invalid_request", &CHAIN),
            Error::ExchangeFailed(_)
        ));
        assert_eq!(e("invalid_request", &exchange(None)), Error::InvalidToken);
        assert!(matches!(
            classify_error(StatusCode::BAD_REQUEST, b"<html>", &CHAIN).error,
            Error::ExchangeFailed(_)
        ));
    }
}
