//! The registration requests: JSON bodies, a bearer token, bounded in time and size.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};
use tracing::Instrument;

use super::super::{Exchanger, MAX_RESPONSE_BYTES};
use crate::trace;

pub(super) fn parse_uri(text: &str) -> Result<Uri, String> {
    text.parse()
        .map_err(|_| "registration_client_uri is not a URL".to_string())
}

pub(super) fn object(body: &Bytes) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("the response is not a JSON object".into()),
    }
}

/// The server's `error` code only: descriptions may quote what was sent.
pub(super) fn refusal(what: &str, status: StatusCode, body: &Bytes) -> String {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()));
    match code {
        Some(code) => format!("{what} refused: {status} {code}"),
        None => format!("{what} refused: {status}"),
    }
}

/// One registration request with a bearer token, bounded by the domain's timeout.
pub(super) async fn call(
    ex: &Exchanger,
    method: Method,
    uri: &Uri,
    bearer: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Bytes), String> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(ACCEPT, "application/json");
    let mut authorization = http::HeaderValue::try_from(format!("Bearer {bearer}"))
        .map_err(|_| "the token is not a valid header value".to_string())?;
    authorization.set_sensitive(true);
    request = request.header(AUTHORIZATION, authorization);
    let payload = match body {
        Some(v) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(v).map_err(|e| e.to_string())?)
        }
        None => Bytes::new(),
    };
    let mut request = request
        .body(Full::new(payload))
        .map_err(|_| "cannot build the request".to_string())?;
    let span = trace::client_span!(
        "registration",
        http.request.method = %request.method(),
        chaingate.domain = &*ex.domain.name,
    );
    span.in_scope(|| trace::inject_current(request.headers_mut()));
    let exchange = async {
        let response = ex
            .client
            .request(request)
            .await
            .map_err(|e| format!("{uri}: unreachable: {e}"))?;
        let status = response.status();
        trace::record_client_status(&tracing::Span::current(), status);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| format!("{uri}: the response is unreadable or too large"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(ex.domain.timeout, exchange.instrument(span))
        .await
        .map_err(|_| format!("{uri}: timed out"))?
}
