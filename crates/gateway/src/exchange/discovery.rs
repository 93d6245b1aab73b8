//! RFC 8414 discovery of a domain's token endpoint, with the issuer check of §3.3.
//!
//! `/.well-known/oauth-authorization-server` is inserted between host and path (§3.1); servers
//! that only publish OpenID Connect discovery are read at `<issuer>/.well-known/openid-configuration`.
//! Fetches are bounded in time and size, and redirects are not followed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use crate::trace;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;

use super::{Endpoints, Exchanger, HttpsClient};
use crate::config::ClientAuth;

const MAX_METADATA_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    mtls_endpoint_aliases: Option<MtlsAliases>,
    /// Kept as JSON: a malformed member must not break discovery for non-chaining domains.
    identity_chaining_requested_token_types_supported: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MtlsAliases {
    token_endpoint: Option<String>,
}

/// The metadata URLs to try, in order.
pub(super) fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed
        .find("://")
        .and_then(|at| trimmed[at + 3..].find('/').map(|p| at + 3 + p))
    {
        Some(split) => trimmed.split_at(split),
        None => (trimmed, ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ]
}

/// Reads the issuer's metadata and returns its token endpoint (the mTLS alias if `mtls`).
pub(super) async fn discover(
    client: &HttpsClient,
    issuer: &str,
    timeout: Duration,
    allow_insecure_http: bool,
    mtls: bool,
) -> Result<Endpoints, String> {
    let mut last_error = String::new();
    for url in metadata_urls(issuer) {
        match tokio::time::timeout(timeout, fetch(client, &url)).await {
            Ok(Ok(Some(body))) => {
                let mut found = endpoints(&body, issuer, allow_insecure_http, mtls)?;
                // Either of the issuer's metadata URLs is as trustworthy as the one read: both
                // are derived from the configured issuer, so `duri` may name either.
                found.discovery = metadata_urls(issuer).into();
                return Ok(found);
            }
            Ok(Ok(None)) => last_error = format!("{url}: not found"),
            Ok(Err(e)) => last_error = format!("{url}: {e}"),
            Err(_) => last_error = format!("{url}: timed out"),
        }
    }
    Err(last_error)
}

/// `Ok(None)` for a 404, so the next location is tried.
async fn fetch(client: &HttpsClient, url: &str) -> Result<Option<Bytes>, String> {
    let span = trace::client_span!("discovery", url.full = url);
    let mut request = Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    span.in_scope(|| trace::inject_current(request.headers_mut()));
    let response = client
        .request(request)
        .instrument(span.clone())
        .await
        .map_err(|e| e.to_string())?;
    trace::record_client_status(&span, response.status());
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(None),
        other => return Err(format!("status {other}")),
    }
    let body = Limited::new(response.into_body(), MAX_METADATA_BYTES)
        .collect()
        .await
        .map_err(|_| "metadata too large or unreadable".to_string())?;
    Ok(Some(body.to_bytes()))
}

fn endpoints(
    body: &[u8],
    issuer: &str,
    allow_insecure_http: bool,
    mtls: bool,
) -> Result<Endpoints, String> {
    let metadata: Metadata =
        serde_json::from_slice(body).map_err(|e| format!("metadata is not valid JSON: {e}"))?;
    // RFC 8414 §3.3: a different issuer means the data must not be used (mix-up defence).
    if metadata.issuer != issuer {
        return Err(format!(
            "metadata issuer {:?} is not the configured issuer",
            metadata.issuer
        ));
    }
    let alias = metadata
        .mtls_endpoint_aliases
        .and_then(|a| a.token_endpoint)
        .filter(|_| mtls);
    let token = alias
        .or(metadata.token_endpoint)
        .ok_or_else(|| "metadata has no token_endpoint".to_string())?;
    let uri: Uri = token
        .parse()
        .map_err(|_| "token_endpoint is not a URL".to_string())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_insecure_http => {}
        _ => return Err("token_endpoint is not https".to_string()),
    }
    // A registration endpoint that is not https is ignored: registration sends secrets.
    let registration = metadata
        .registration_endpoint
        .and_then(|r| r.parse::<Uri>().ok())
        .filter(|r| match r.scheme_str() {
            Some("https") => true,
            Some("http") => allow_insecure_http,
            _ => false,
        });
    Ok(Endpoints {
        token: uri,
        issuer: Some(issuer.to_string()),
        registration,
        discovery: Arc::from([]),
        chaining_token_types: metadata
            .identity_chaining_requested_token_types_supported
            .map(|types| {
                types
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            }),
    })
}

/// Discovers the token endpoint, retrying with backoff until it works, then refreshes it.
/// A failed refresh keeps the last good endpoint.
pub(super) async fn keep_discovering(
    exchanger: Weak<Exchanger>,
    issuer: String,
    refresh: Duration,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(this) = exchanger.upgrade() else {
            return;
        };
        let mtls = matches!(this.domain.client_auth, ClientAuth::TlsClientAuth(_));
        let found = discover(
            &this.client,
            &issuer,
            this.domain.timeout,
            this.domain.allow_insecure_http,
            mtls,
        )
        .await;
        let wait = match found {
            Ok(endpoints) => {
                tracing::info!(domain = %this.domain.name, token_endpoint = %endpoints.token, "discovered token endpoint");
                if this.domain.chaining_step {
                    this.check_chaining(&endpoints);
                }
                this.endpoints.store(Some(Arc::new(endpoints)));
                this.discovered.notify_waiters();
                backoff = Duration::from_millis(250);
                refresh
            }
            Err(e) => {
                tracing::warn!(domain = %this.domain.name, error = %e, "discovery failed");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if this.is_ready() {
                    refresh.min(backoff)
                } else {
                    backoff
                }
            }
        };
        drop(this);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_is_inserted_between_host_and_path() {
        assert_eq!(
            metadata_urls("https://as.example/tenant/a"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant/a",
                "https://as.example/tenant/a/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example")[0],
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn a_different_issuer_is_refused() {
        let body =
            br#"{"issuer":"https://evil.example","token_endpoint":"https://evil.example/token"}"#;
        assert!(endpoints(body, "https://as.example", false, false).is_err());
    }

    #[test]
    fn mtls_alias_wins_only_for_mtls_clients() {
        let body = br#"{"issuer":"https://as.example","token_endpoint":"https://as.example/token",
            "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.as.example/token"}}"#;
        assert_eq!(
            endpoints(body, "https://as.example", false, true)
                .unwrap()
                .token,
            "https://mtls.as.example/token"
        );
        assert_eq!(
            endpoints(body, "https://as.example", false, false)
                .unwrap()
                .token,
            "https://as.example/token"
        );
        let http = br#"{"issuer":"https://as.example","token_endpoint":"http://as.example/token"}"#;
        assert!(endpoints(http, "https://as.example", false, false).is_err());
    }
}
