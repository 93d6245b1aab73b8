//! RFC 7591 registration (`POST /register`) and RFC 7592 management (`/register/{client_id}`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::{json, Map, Value};

use super::config::Client;
use super::reg_metadata::{auth_method, secret_of, validate, Metadata};
use super::sessions::{digest, random_token};
use super::state::Authority;
use super::web::{self, OAuthError, Response};
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::{now_secs, random_id};

/// What a registered client keeps besides its settings: only a digest of its token.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    token_digest: [u8; 32],
    issued_at: u64,
    echo: Map<String, Value>,
}

/// Clients created at `POST /register`, in memory.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    clients: RwLock<HashMap<String, Arc<Client>>>,
}

impl Registry {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Client>>> {
        self.clients.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// 401 per RFC 6750 §3.1 (`error` only when a token was presented).
fn unauthorized(presented: bool) -> Response {
    let mut r = web::json(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "invalid_token", "error_description": "a valid bearer token is required" }),
    );
    let challenge = if presented {
        "Bearer realm=\"chaingate-authority\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"chaingate-authority\""
    };
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

pub(crate) async fn route<B>(state: &Authority, local: &str, req: Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(config) = &state.config.interactive.registration else {
        return web::status(StatusCode::NOT_FOUND, None);
    };
    let token = bearer(req.headers());
    let method = req.method().clone();
    if local == "/register" {
        if method != Method::POST {
            return web::status(StatusCode::METHOD_NOT_ALLOWED, Some("POST"));
        }
        let ok = token.as_deref().is_some_and(|t| {
            // Compare against every token so timing does not tell which matched.
            config
                .initial_access_tokens
                .iter()
                .fold(false, |found, s| s.ct_eq(t) | found)
        });
        if !ok {
            return unauthorized(token.is_some());
        }
        return match body(state, req).await {
            Ok(m) => register(state, &m).unwrap_or_else(OAuthError::into_response),
            Err(e) => e.into_response(),
        };
    }
    let id = local.trim_start_matches("/register/");
    if !matches!(method, Method::GET | Method::PUT | Method::DELETE) {
        return web::status(StatusCode::METHOD_NOT_ALLOWED, Some("GET, PUT, DELETE"));
    }
    // RFC 7592 §2: unknown client or wrong token → 401.
    let client = state.registry.get(id);
    let authorized = match (&client, &token) {
        (Some(c), Some(t)) => c.registration.as_ref().is_some_and(|r| {
            aws_lc_rs::constant_time::verify_slices_are_equal(&r.token_digest, &digest(t)).is_ok()
        }),
        _ => false,
    };
    let (Some(client), true) = (client, authorized) else {
        return unauthorized(token.is_some());
    };
    match method {
        Method::GET => web::json(StatusCode::OK, &describe(state, &client, None)),
        Method::DELETE => {
            state.registry.write().remove(&client.id);
            state.refresh.revoke_client(&client.id);
            state.flows.forget_client(&client.id);
            tracing::info!(client_id = %client.id, "registered client deleted");
            let mut r = http::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        _ => match body(state, req).await {
            Ok(m) => update(state, &client, &m).unwrap_or_else(OAuthError::into_response),
            Err(e) => e.into_response(),
        },
    }
}

async fn body<B>(state: &Authority, req: Request<B>) -> Result<Map<String, Value>, OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(OAuthError::invalid_request("body must be application/json"));
    }
    let limit = state.config.max_body_bytes;
    let bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!("body is unreadable or over {limit} bytes"))
        })?
        .to_bytes();
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OAuthError::new(
            "invalid_client_metadata",
            "body must be a JSON object",
        )),
    }
}

fn build(id: String, meta: Metadata, secret: Option<Secret>, reg: Registered) -> Client {
    let secret = secret.unwrap_or_else(|| Secret::new(""));
    Client {
        id,
        auth: auth_method(meta.method, secret),
        grants: meta.grants,
        scope: meta.scope,
        audience: None,
        allowed_audiences: None,
        subject_token_audiences: None,
        redirect_uris: meta.redirect_uris,
        response_metadata: false,
        resource_uri: None,
        parties: meta.parties,
        registration: Some(Registered {
            echo: meta.echo,
            ..reg
        }),
        reciprocal: None,
    }
}

fn allowed_scope(state: &Authority) -> std::collections::BTreeSet<String> {
    state
        .config
        .interactive
        .registration
        .as_ref()
        .map(|r| r.scope.clone())
        .unwrap_or_default()
}

/// RFC 7591 §3.2.1 response body (plus RFC 7592 §3 management members).
fn describe(state: &Authority, client: &Client, new_token: Option<&str>) -> Value {
    let Some(reg) = &client.registration else {
        return json!({});
    };
    let mut out = reg.echo.clone();
    out.insert("client_id".into(), json!(client.id));
    out.insert("client_id_issued_at".into(), json!(reg.issued_at));
    if let Some(secret) = secret_of(client) {
        out.insert("client_secret".into(), json!(secret.expose()));
        out.insert("client_secret_expires_at".into(), json!(0));
    }
    let uri = state.endpoint(&format!("/register/{}", client.id));
    out.insert("registration_client_uri".into(), json!(uri));
    if let Some(token) = new_token {
        out.insert("registration_access_token".into(), json!(token));
    }
    Value::Object(out)
}

fn register(state: &Authority, m: &Map<String, Value>) -> Result<Response, OAuthError> {
    let dev_mode = state.config.interactive.dev_mode;
    let meta = validate(m, &allowed_scope(state), dev_mode)?;
    let max = state
        .config
        .interactive
        .registration
        .as_ref()
        .map_or(0, |r| r.max_clients);
    let id = random_id();
    let token = random_token();
    let secret = (meta.method != "none").then(|| Secret::new(random_token()));
    let reg = Registered {
        token_digest: digest(&token),
        issued_at: now_secs(),
        echo: Map::new(),
    };
    let client = Arc::new(build(id.clone(), meta, secret, reg));
    {
        let mut clients = state.registry.write();
        if clients.len() >= max {
            return Err(OAuthError::unavailable("too many registered clients"));
        }
        clients.insert(id.clone(), client.clone());
    }
    tracing::info!(client_id = %id, "client registered");
    Ok(web::json(
        StatusCode::CREATED,
        &describe(state, &client, Some(&token)),
    ))
}

/// RFC 7592 §2.2: full replacement; omitted fields fall back to defaults.
fn update(
    state: &Authority,
    client: &Client,
    m: &Map<String, Value>,
) -> Result<Response, OAuthError> {
    let bad = |d: &str| OAuthError::new("invalid_client_metadata", d.to_string());
    if m.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(bad(
            "client_id must be present and match the client being updated",
        ));
    }
    for key in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
    ] {
        if m.contains_key(key) {
            return Err(bad(&format!("{key} must not be sent in an update")));
        }
    }
    let current = secret_of(client);
    if let Some(sent) = m.get("client_secret") {
        let same = match (sent.as_str(), &current) {
            (Some(s), Some(c)) => c.ct_eq(s),
            _ => false,
        };
        if !same {
            return Err(bad("client_secret does not match the issued secret"));
        }
    }
    let meta = validate(m, &allowed_scope(state), state.config.interactive.dev_mode)?;
    let secret = match (meta.method, current) {
        ("none", _) => None,
        (_, Some(s)) => Some(s),
        (_, None) => Some(Secret::new(random_token())),
    };
    let Some(reg) = client.registration.clone() else {
        return Err(bad("not a registered client"));
    };
    let updated = Arc::new(build(client.id.clone(), meta, secret, reg));
    state
        .registry
        .write()
        .insert(client.id.clone(), updated.clone());
    tracing::info!(client_id = %client.id, "registered client updated");
    Ok(web::json(StatusCode::OK, &describe(state, &updated, None)))
}
