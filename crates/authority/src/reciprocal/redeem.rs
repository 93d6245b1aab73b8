//! Party B: the reciprocal grant at `POST /token` (draft §2.2.2), then redeeming the delivered
//! code at party A's token endpoint as an ordinary RFC 6749 §4.1.3 client.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::super::config::Client;
use super::super::endpoints::active_claims;
use super::super::state::Authority;
use super::super::web::{Form, OAuthError};
use super::config::Redeemer;
use super::{ReciprocalGrant, Runtime};
use chaingate_oauth::remote::HttpClient;
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::{join_scope, now_secs, parse_scope};

pub(crate) const RECIPROCAL: &str = "urn:ietf:params:oauth:grant-type:reciprocal";

/// Largest token response read from party A.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The client that talks to party A: the configured roots, else the system roots.
pub(super) fn http_client(redeemer: &Redeemer) -> Result<HttpClient, String> {
    let tls = chaingate_core::tls::client_config(redeemer.ca.as_deref())
        .map_err(|e| format!("reciprocal.ca_file: {e}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

/// `grant_type=urn:ietf:params:oauth:grant-type:reciprocal` from an authenticated client that
/// may use it. Answers `{}` once the request is valid; the code is redeemed afterwards.
pub(crate) fn grant(state: &Authority, client: &Client, form: &Form) -> Result<Value, OAuthError> {
    let runtime = &state.reciprocal;
    // Repeats of these names are refused when the form is parsed (`invalid_request`).
    let code = form.require("code")?;
    let client_id = form.require("client_id")?;
    let token = form.require("access_token")?;
    // §19.10: the body's client_id names the authenticated client; it is not a credential.
    if client_id != client.id {
        return Err(OAuthError::invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    // §2.2.2: the access token identifies the user and must have been granted to this client.
    let claims = active_claims(state, token).ok_or_else(|| {
        OAuthError::invalid_grant("access_token is not an active token of this authority")
    })?;
    if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(OAuthError::invalid_grant(
            "access_token was not issued to this client",
        ));
    }
    let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
        return Err(OAuthError::invalid_grant("access_token has no subject"));
    };
    let Some(redeemer) = runtime.redeemer.clone() else {
        return Err(OAuthError::unsupported_grant_type(
            "the reciprocal grant is not configured",
        ));
    };
    let Ok(permit) = runtime.in_flight.clone().try_acquire_owned() else {
        return Err(OAuthError::unavailable(
            "too many reciprocal codes are being redeemed; try again shortly",
        ));
    };
    let job = Redemption {
        runtime: runtime.clone(),
        redeemer,
        code: Secret::new(code),
        sub: sub.to_string(),
        party_a_client: client.id.clone(),
        asked_scope: client.reciprocal.clone().unwrap_or_default(),
        sequence: runtime.next_sequence(),
    };
    tracing::info!(client_id = %client.id, sub, "reciprocal code accepted; redeeming it");
    tokio::spawn(async move {
        job.run().await;
        drop(permit);
    });
    Ok(json!({}))
}

/// One code to redeem at party A, and where to keep the result.
struct Redemption {
    runtime: Arc<Runtime>,
    redeemer: Arc<Redeemer>,
    code: Secret,
    sub: String,
    party_a_client: String,
    asked_scope: String,
    sequence: u64,
}

impl Redemption {
    async fn run(self) {
        let outcome = match self.redeem().await {
            Ok(grant) => {
                let key = (self.sub.clone(), self.party_a_client.clone());
                if self.runtime.store(key, grant, self.sequence) {
                    Ok(())
                } else {
                    Err("the reciprocal grant store is full".to_string())
                }
            }
            Err(e) => Err(e),
        };
        let endpoint = &self.redeemer.token_endpoint;
        match &outcome {
            Ok(()) => tracing::info!(
                client_id = %self.party_a_client, sub = %self.sub, %endpoint,
                outcome = "ok", "reciprocal code redeemed"
            ),
            Err(e) => tracing::warn!(
                client_id = %self.party_a_client, sub = %self.sub, %endpoint,
                outcome = "failed", error = %e, "reciprocal code redemption failed"
            ),
        }
        self.runtime.record(outcome.is_ok());
    }

    /// RFC 6749 §4.1.3 without `redirect_uri`: no authorization request was made (§2.2.2).
    async fn redeem(&self) -> Result<ReciprocalGrant, String> {
        let r = &*self.redeemer;
        let request = self.request(r)?;
        let http = self
            .runtime
            .http
            .as_ref()
            .ok_or("no HTTP client for party A")?;
        let exchange = async {
            let response = http
                .request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("response unreadable or too large: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(r.timeout, exchange)
            .await
            .map_err(|_| format!("timed out after {:?}", r.timeout))??;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != http::StatusCode::OK {
            return Err(format!("HTTP status {status}, error {}", error_code(&body)));
        }
        self.parse(&body)
    }

    fn request(&self, r: &Redeemer) -> Result<http::Request<Full<Bytes>>, String> {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("grant_type", "authorization_code")
            .append_pair("code", self.code.expose());
        let mut request = http::Request::post(r.token_endpoint.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if r.secret_in_body {
            body.append_pair("client_id", &r.client_id)
                .append_pair("client_secret", r.client_secret.expose());
        } else {
            request = request.header(
                http::header::AUTHORIZATION,
                chaingate_oauth::client_auth::basic_authorization(&r.client_id, &r.client_secret),
            );
        }
        request
            .body(Full::new(Bytes::from(body.finish())))
            .map_err(|e| e.to_string())
    }

    fn parse(&self, body: &Value) -> Result<ReciprocalGrant, String> {
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("the token response has no access_token")?;
        let bearer = body
            .get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        if !bearer {
            return Err("the token response's token_type is not Bearer".into());
        }
        // RFC 6749 §5.1: an omitted scope is the scope that was asked for.
        let scope = match body.get("scope").and_then(Value::as_str) {
            Some(s) => join_scope(&parse_scope(s).map_err(|_| "the granted scope is malformed")?),
            None => self.asked_scope.clone(),
        };
        Ok(ReciprocalGrant {
            access_token: Secret::new(access_token),
            refresh_token: body
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(Secret::new),
            scope,
            expires_at: body
                .get("expires_in")
                .and_then(Value::as_u64)
                .map(|s| now_secs().saturating_add(s)),
        })
    }
}

/// The `error` of an RFC 6749 §5.2 answer, if it looks like one (a short ASCII code).
fn error_code(body: &Value) -> &str {
    body.get("error")
        .and_then(Value::as_str)
        .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("(none)")
}
