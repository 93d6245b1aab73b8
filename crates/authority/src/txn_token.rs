//! The authority as a Transaction Token Service (draft-ietf-oauth-transaction-tokens-10): an
//! RFC 8693 token exchange with `requested_token_type=urn:ietf:params:oauth:token-type:txn_token`
//! from a client listed in `[txn_token_service]` answers with a short-lived `txntoken+jwt`.
//!
//! §7.3 (request processing): the subject token is validated like any exchange's; `aud` is the
//! one trust domain asked for (one this service serves, else `invalid_target`); `scope` is the
//! requested scope narrowed to what the subject token allows (§12.6: never more); `txn` is fresh;
//! `rctx` and `tctx` carry `request_context` and `request_details` as given. §7.4: `token_type`
//! `N_A`, `issued_token_type` txn_token, never a refresh token.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::config::{duration, Client, Grant};
use super::grants::mapped;
use super::state::Authority;
use super::subject;
use super::web::{Form, OAuthError};
use chaingate_core::config::ConfigError;
use chaingate_oauth::util::{join_scope, now_secs, random_id};

/// The token type of a Txn-Token (draft §11.1).
pub(crate) const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// The JWT `typ` of a Txn-Token (draft §6.1).
const TXN_TOKEN_TYP: &str = "txntoken+jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Default `lifetime`: the draft's "on the order of minutes or less" (§5).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Upper bound of `lifetime`: longer is not a Txn-Token any more (§12.1, replay).
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// `[txn_token_service]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTxnTokenService {
    /// The trust domains served: a request's `audience` must be one of them.
    audiences: Vec<String>,
    /// The clients (workloads) allowed to request Txn-Tokens.
    clients: Vec<String>,
    lifetime: Option<String>,
}

/// `[txn_token_service]`, validated.
#[derive(Debug)]
pub(crate) struct TxnTokenService {
    pub(crate) audiences: Vec<String>,
    pub(crate) clients: Vec<String>,
    pub(crate) lifetime: Duration,
}

/// Validates the table against the configured clients.
pub(crate) fn validate(
    raw: RawTxnTokenService,
    clients: &[std::sync::Arc<Client>],
) -> Result<TxnTokenService, ConfigError> {
    let key = |k: &str| format!("txn_token_service.{k}");
    if raw.audiences.is_empty() {
        return Err(ConfigError::key(
            key("audiences"),
            "list the trust domain(s) this service issues Txn-Tokens for",
        ));
    }
    for (i, aud) in raw.audiences.iter().enumerate() {
        super::config::check_uri_like(&key(&format!("audiences[{i}]")), aud)?;
    }
    for (i, id) in raw.clients.iter().enumerate() {
        let Some(client) = clients.iter().find(|c| c.id == *id) else {
            return Err(ConfigError::key(
                key(&format!("clients[{i}]")),
                format!("no [[clients]] entry has client_id \"{id}\""),
            ));
        };
        if !client.grants.contains(&Grant::TokenExchange) {
            return Err(ConfigError::key(
                key(&format!("clients[{i}]")),
                "the client needs the token-exchange grant to request Txn-Tokens",
            ));
        }
    }
    let lifetime = duration(&key("lifetime"), raw.lifetime.as_deref(), DEFAULT_LIFETIME)?;
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(ConfigError::key(
            key("lifetime"),
            "must be between 1s and 10m (Txn-Tokens are short-lived)",
        ));
    }
    Ok(TxnTokenService {
        audiences: raw.audiences,
        clients: raw.clients,
        lifetime,
    })
}

/// Whether a token-exchange request asks for a Txn-Token.
pub(crate) fn requested(form: &Form) -> bool {
    form.get("requested_token_type") == Some(TXN_TOKEN_TYPE)
}

/// Draft §6.2 claims.
#[derive(Serialize)]
struct TxnClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    txn: String,
    sub: &'a str,
    scope: String,
    req_wl: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rctx: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tctx: Option<Value>,
}

/// A Txn-Token Request (§7.1), answered as §7.4 says.
pub(crate) async fn issue(
    state: &Authority,
    client: &Client,
    form: &Form,
) -> Result<Value, OAuthError> {
    let Some(service) = &state.config.txn_token_service else {
        return Err(OAuthError::invalid_request(
            "unsupported requested_token_type",
        ));
    };
    // §12.8 (issuance policies): only the listed workloads get Txn-Tokens.
    if !service.clients.contains(&client.id) {
        return Err(OAuthError::unauthorized_client(
            "client may not request Txn-Tokens",
        ));
    }
    let subject_type = form.require("subject_token_type")?;
    // §7.2: any RFC 8693 type but a refresh token; this service knows access tokens and JWTs.
    if subject_type != ACCESS_TOKEN_TYPE && subject_type != JWT_TYPE {
        return Err(OAuthError::invalid_request(
            "unsupported subject_token_type",
        ));
    }
    if form.get("actor_token").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not used for a Txn-Token",
        ));
    }
    // §7.1: `audience` REQUIRED, the trust domain's name; one Txn-Token is valid in one.
    let audience = match form.all("audience") {
        [one] if service.audiences.contains(one) => one,
        [_] => {
            return Err(OAuthError::invalid_target(
                "the audience is not a trust domain this service serves",
            ))
        }
        _ => {
            return Err(OAuthError::invalid_request(
                "exactly one audience (the trust domain) is required",
            ))
        }
    };
    // §7.1: `scope` REQUIRED; §12.9: an unknown subject scope is never unconstrained, which
    // `mapped` guarantees by intersecting with the token's (mapped) scope.
    if form.get("scope").is_none() {
        return Err(OAuthError::invalid_request("scope is required"));
    }
    let rctx = json_object(form, "request_context")?;
    let tctx = json_object(form, "request_details")?;
    let presented = subject::validate(state, client, form.require("subject_token")?)
        .await
        .map_err(|e| OAuthError::invalid_request(format!("subject_token: {e}")))?;
    let (scope, sub) = mapped(state, client, form, &presented)?;
    let now = now_secs();
    // §5: the lifetime MAY exceed the subject token's; this service does not let it.
    let exp = (now + service.lifetime.as_secs()).min(presented.exp);
    if exp <= now {
        return Err(OAuthError::invalid_grant(
            "the presented token expires too soon",
        ));
    }
    let claims = TxnClaims {
        iss: &state.issuer,
        aud: audience,
        iat: now,
        exp,
        txn: random_id(),
        sub: &sub,
        scope: join_scope(&scope),
        req_wl: &client.id,
        rctx,
        tctx,
    };
    let token = state.signing.sign(TXN_TOKEN_TYP, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing a Txn-Token failed");
        OAuthError::unavailable("cannot sign the token")
    })?;
    // §12.2: the `txn` is what TTS and workloads log to audit a transaction.
    tracing::info!(client_id = %client.id, sub = %sub, txn = %claims.txn, aud = %audience, exp, "issued Txn-Token");
    Ok(json!({
        "access_token": token,
        "token_type": "N_A",
        "issued_token_type": TXN_TOKEN_TYPE,
        "expires_in": exp - now,
        "scope": claims.scope,
    }))
}

/// `request_context` / `request_details`: absent, or one JSON object (§7.1).
fn json_object(form: &Form, name: &str) -> Result<Option<Value>, OAuthError> {
    let Some(text) = form.get(name) else {
        return Ok(None);
    };
    match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(map) => Ok(Some(Value::Object(map))),
        Err(_) => Err(OAuthError::invalid_request(format!(
            "{name} must be a JSON object"
        ))),
    }
}
