//! Client authentication values a client sends to a token endpoint.

use base64::Engine as _;
use http::header::HeaderValue;

use crate::secret::Secret;

/// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding. The value is marked
/// sensitive, so HTTP/2 never indexes it in HPACK tables.
pub fn basic_authorization(client_id: &str, secret: &Secret) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let mut value = HeaderValue::try_from(value).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}
