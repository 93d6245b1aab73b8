//! HTTP plumbing: OAuth error responses (RFC 6749 §5.2), JSON responses, strict form parsing.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::Value;

pub(crate) type Response = http::Response<Full<Bytes>>;

/// An RFC 6749 §5.2 error. `error_description` never contains a token or secret.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub(crate) code: &'static str,
    pub(crate) description: String,
    pub(crate) status: StatusCode,
    /// Add `WWW-Authenticate: Basic` (set for `invalid_client`).
    pub(crate) challenge: bool,
}

impl OAuthError {
    pub(crate) fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            challenge: false,
        }
    }
    pub(crate) fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    /// Always 401 with a `Basic` challenge (RFC 6749 §5.2; RFC 9110 §15.5.2 needs the header).
    pub(crate) fn invalid_client(d: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            challenge: true,
            ..Self::new("invalid_client", d)
        }
    }
    pub(crate) fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub(crate) fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", d)
    }
    pub(crate) fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", d)
    }
    pub(crate) fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", d)
    }
    pub(crate) fn invalid_target(d: impl Into<String>) -> Self {
        Self::new("invalid_target", d)
    }
    pub(crate) fn unavailable(d: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..Self::new("temporarily_unavailable", d)
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code,
            "error_description": sanitize(&self.description),
        });
        let mut response = json(self.status, &body);
        if self.challenge {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"chaingate-authority\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Keeps only the characters RFC 6749 §5.2 allows in `error_description`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '\'',
        })
        .collect()
}

/// A JSON response with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A public JSON document (metadata, JWKS) that clients may cache briefly.
pub(crate) fn public_json(body: &Value, content_type: &'static str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// Plain error for non-OAuth paths (404, 405).
pub(crate) fn status(status: StatusCode, allow: Option<&'static str>) -> Response {
    let mut response = json(
        status,
        &serde_json::json!({ "error": status.canonical_reason() }),
    );
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// Parameters that may appear at most once (RFC 6749 §3.2); `resource`/`audience` may repeat.
const SINGLE: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "oauth_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "token",
    "token_type_hint",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "existing_grant",
    "access_token",
    "recipient",
    "response_type",
    "state",
    "code_challenge",
    "code_challenge_method",
    "include_granted_scopes",
    "tx",
    "csrf",
    "username",
    "password",
    "decision",
];

/// A decoded `application/x-www-form-urlencoded` body. Empty values count as omitted.
#[derive(Debug, Default)]
pub(crate) struct Form {
    params: HashMap<String, Vec<String>>,
}

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            params
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        for name in SINGLE {
            if params.get(*name).is_some_and(|v| v.len() > 1) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} is repeated"
                )));
            }
        }
        Ok(Self { params })
    }

    /// A single-valued parameter (repeats are refused in `parse`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// A required single-valued parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Every value of a repeatable parameter.
    pub(crate) fn all(&self, name: &str) -> &[String] {
        self.params.get(name).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.params.get(name).map_or(0, Vec::len)
    }
}

/// Reads a form body: checks the media type and enforces a size limit.
pub(crate) async fn read_form<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Form, OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::invalid_request(
            "body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!("body is unreadable or over {limit} bytes"))
        })?
        .to_bytes();
    Form::parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_omitted_and_repeats_refused() {
        let form = Form::parse(b"grant_type=x&scope=&scope=a&foo=1&foo=2").unwrap();
        assert_eq!(form.get("scope"), Some("a"));
        assert!(Form::parse(b"grant_type=x&grant_type=y").is_err());
        let form = Form::parse(b"resource=a&resource=b").unwrap();
        assert_eq!(form.all("resource").len(), 2);
    }

    #[test]
    fn plus_decodes_as_space() {
        let form = Form::parse(b"oauth_token=MAC+token%3D%22h%22").unwrap();
        assert_eq!(form.get("oauth_token"), Some("MAC token=\"h\""));
    }

    #[test]
    fn descriptions_drop_quotes_and_controls() {
        assert_eq!(sanitize("a\"b\\c\nd"), "a'b'c'd");
    }
}
