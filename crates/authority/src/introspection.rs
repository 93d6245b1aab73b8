//! Validating presented tokens at a trusted issuer's RFC 7662 introspection endpoint, with a cache.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use super::config::IntrospectionSource;
use chaingate_oauth::remote::{send, FetchLimits, SharedClient};
use chaingate_oauth::util::now_secs;

/// Most cached introspection answers kept per issuer.
const CACHE_CAPACITY: usize = 10_000;

type Digest = [u8; 32];

/// Introspects tokens at one issuer; caches active answers (never beyond the token's `exp`).
#[derive(Debug, Default)]
pub(crate) struct Introspector {
    cache: Mutex<HashMap<Digest, (Value, u64)>>,
}

fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Introspector {
    /// The introspection answer for an active token (`active: true`), else an error description.
    pub(crate) async fn introspect(
        &self,
        source: &IntrospectionSource,
        client: &SharedClient,
        limits: &FetchLimits,
        token: &str,
    ) -> Result<Value, String> {
        let key = digest(token);
        let now = now_secs();
        if let Some((answer, until)) = self.lock().get(&key) {
            if *until > now {
                return Ok(answer.clone());
            }
        }
        let basic = STANDARD.encode(format!(
            "{}:{}",
            form_encode(&source.client_id),
            form_encode(source.client_secret.expose())
        ));
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = http::Request::post(source.endpoint.clone())
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let bytes = send(client, request, limits).await.map_err(|e| {
            tracing::warn!(endpoint = %source.endpoint, error = %e, "introspection failed");
            format!("the issuer's introspection endpoint is unavailable ({e})")
        })?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| "introspection response is not JSON".to_string())?;
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err("token is not active".into());
        }
        // RFC 7662 §4: never cache beyond the token's `exp`.
        if let Some(exp) = answer.get("exp").and_then(Value::as_u64) {
            let until = exp.min(now + source.cache_ttl.as_secs());
            if until > now {
                let mut cache = self.lock();
                if cache.len() >= CACHE_CAPACITY {
                    cache.retain(|_, (_, u)| *u > now);
                }
                if cache.len() < CACHE_CAPACITY {
                    cache.insert(key, (answer.clone(), until));
                }
            }
        }
        Ok(answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, (Value, u64)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
