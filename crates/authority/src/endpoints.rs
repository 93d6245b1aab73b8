//! Routing and the non-grant endpoints: introspection, revocation, JWKS and RFC 8414 metadata.

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::authorize;
use super::client_auth::authenticate;
use super::dpop;
use super::forms;
use super::grants::{self, CHAIN, JWT_BEARER, TOKEN_EXCHANGE};
use super::reciprocal::{self, RECIPROCAL};
use super::registration;
use super::state::Authority;
use super::store::InsertError;
use super::web::{self, read_form, OAuthError, Response};
use chaingate_oauth::jwt;
use chaingate_oauth::util::now_secs;

/// Dispatches a request by path (relative to the issuer's path) and method.
pub(crate) async fn route<B>(state: &Authority, req: Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let prefix = state.path_prefix.as_str();
    let well_known = |name: &str| path == format!("/.well-known/{name}{prefix}");
    if well_known("oauth-authorization-server") || well_known("openid-configuration") {
        return match *req.method() {
            Method::GET | Method::HEAD => metadata(state),
            _ => web::status(StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")),
        };
    }
    let Some(local) = path.strip_prefix(prefix) else {
        return web::status(StatusCode::NOT_FOUND, None);
    };
    if local == "/authorize" || local.starts_with("/authorize/") {
        return authorize_routes(state, local, req).await;
    }
    if local == "/reciprocal/consent" {
        return match *req.method() {
            Method::GET | Method::HEAD => {
                reciprocal::consent::start(state, req.headers(), req.uri().query().unwrap_or(""))
            }
            _ => web::status(StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")),
        };
    }
    if local == "/register" || local.starts_with("/register/") {
        let local = local.to_string();
        return registration::route(state, &local, req).await;
    }
    let post = match local {
        "/jwks.json" => {
            return match *req.method() {
                Method::GET | Method::HEAD => jwks(state),
                _ => web::status(StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")),
            }
        }
        "/token" | "/introspect" | "/revoke" | "/reciprocal/code" => local.to_string(),
        _ => return web::status(StatusCode::NOT_FOUND, None),
    };
    if req.method() != Method::POST {
        return web::status(StatusCode::METHOD_NOT_ALLOWED, Some("POST"));
    }
    let (parts, body) = req.into_parts();
    let result = async {
        let form = read_form(&parts.headers, body, state.config.max_body_bytes).await?;
        match post.as_str() {
            "/token" => grants::token(state, &parts.headers, &form).await,
            "/introspect" => introspect(state, &parts.headers, &form)
                .await
                .map(|v| (v, None)),
            "/reciprocal/code" => reciprocal::code::issue(state, &parts.headers, &form)
                .await
                .map(|v| (v, None)),
            _ => revoke(state, &parts.headers, &form)
                .await
                .map(|v| (v, None)),
        }
    }
    .await;
    let mut response = match result {
        Ok((Value::Null, _)) => {
            let mut r = web::json(StatusCode::OK, &json!({}));
            *r.body_mut() = http_body_util::Full::new(bytes::Bytes::new());
            r.headers_mut().remove(http::header::CONTENT_TYPE);
            r
        }
        Ok((body, link)) => {
            let mut r = web::json(StatusCode::OK, &body);
            if let Some(v) = link.and_then(|l| http::HeaderValue::from_str(&l).ok()) {
                r.headers_mut().insert(http::header::LINK, v);
            }
            r
        }
        Err(e) => {
            tracing::info!(endpoint = %post, error = e.code, description = %e.description, "request refused");
            e.into_response()
        }
    };
    if post == "/token" {
        dpop::add_nonce(state, response.headers_mut());
    }
    response
}

/// Claims of a token this authority issued and still considers active, else `None`.
pub(crate) fn active_claims(state: &Authority, token: &str) -> Option<Value> {
    let (header, _) = jwt::peek(token).ok()?;
    if !jwt::typ_is(&header, "at+jwt") {
        return None;
    }
    let claims = jwt::verify(token, &header, &state.own_keys).ok()?.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(state.issuer.as_str()) {
        return None;
    }
    let exp = jwt::numeric(&claims, "exp").ok()??;
    let jti = claims.get("jti").and_then(Value::as_str)?;
    if exp <= now_secs() || state.revoked.contains(jti) {
        return None;
    }
    Some(claims)
}

/// RFC 7662: any authenticated client may introspect; inactive is just `{"active":false}`.
async fn introspect(
    state: &Authority,
    headers: &http::HeaderMap,
    form: &web::Form,
) -> Result<Value, OAuthError> {
    let client = authenticate(state, headers, form, &state.endpoint("/introspect")).await?;
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "public clients may not introspect tokens",
        ));
    }
    let token = form.require("token")?;
    let Some(claims) = active_claims(state, token) else {
        return Ok(json!({ "active": false }));
    };
    let mut out = json!({ "active": true, "token_type": "Bearer" });
    // RFC 9449 §6.2: a bound token's key and scheme.
    if let Some(jkt) = chaingate_oauth::dpop::bound_jkt(&claims) {
        out["token_type"] = json!(chaingate_oauth::dpop::TOKEN_TYPE);
        out["cnf"] = json!({ "jkt": jkt });
    }
    for name in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
        "act",
    ] {
        if let Some(v) = claims.get(name) {
            out[name] = v.clone();
        }
    }
    Ok(out)
}

/// RFC 7009: 200 for every well-formed, authenticated request; only the token's own client
/// can revoke it (others' requests are silently ignored, revealing nothing).
async fn revoke(
    state: &Authority,
    headers: &http::HeaderMap,
    form: &web::Form,
) -> Result<Value, OAuthError> {
    let client = authenticate(state, headers, form, &state.endpoint("/revoke")).await?;
    let token = form.require("token")?;
    if state.refresh.revoke(token, &client.id) {
        tracing::info!(client_id = %client.id, "refresh token revoked (whole grant)");
        return Ok(Value::Null);
    }
    if let Some(claims) = active_claims(state, token) {
        let owner = claims.get("client_id").and_then(Value::as_str);
        let jti = claims.get("jti").and_then(Value::as_str);
        let exp = jwt::numeric(&claims, "exp").ok().flatten();
        if let (Some(jti), Some(exp), true) = (jti, exp, owner == Some(client.id.as_str())) {
            match state.revoked.insert(jti.to_string(), exp) {
                Ok(()) | Err(InsertError::Present) => {
                    tracing::info!(client_id = %client.id, jti, "token revoked");
                }
                Err(InsertError::Full) => {
                    return Err(OAuthError::unavailable("revocation list is full"))
                }
            }
        }
    }
    Ok(Value::Null)
}

fn jwks(state: &Authority) -> Response {
    web::public_json(
        &json!({ "keys": [state.signing.public_jwk()] }),
        "application/jwk-set+json",
    )
}

/// RFC 8414 §2 metadata. Empty arrays are omitted (§3.2).
fn metadata(state: &Authority) -> Response {
    let mut auth_methods: Vec<&str> = state.config.clients.iter().map(|c| c.auth.name()).collect();
    auth_methods.push("client_secret_basic");
    let interactive = &state.config.interactive;
    if interactive.registration.is_some() {
        auth_methods.extend(["client_secret_post", "none"]);
    }
    // Public clients authenticate nowhere but at the token endpoint (and revocation).
    let mut confidential_methods = auth_methods.clone();
    confidential_methods.retain(|m| *m != "none");
    auth_methods.sort_unstable();
    auth_methods.dedup();
    let mut scopes = std::collections::BTreeSet::new();
    for client in &state.config.clients {
        scopes.extend(client.scope.iter().cloned());
    }
    let mut doc = json!({
        "issuer": state.issuer,
        "token_endpoint": state.endpoint("/token"),
        "jwks_uri": state.endpoint("/jwks.json"),
        "introspection_endpoint": state.endpoint("/introspect"),
        "revocation_endpoint": state.endpoint("/revoke"),
        "grant_types_supported": ["client_credentials", CHAIN, TOKEN_EXCHANGE, JWT_BEARER],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": confidential_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "access_token_signing_alg_values_supported": [state.signing.alg()],
        // RFC 9449 §5.1: the proof algorithms chaingate_oauth::dpop::verify accepts.
        "dpop_signing_alg_values_supported": chaingate_oauth::keys::DEFAULT_ALGORITHMS,
    });
    // draft-ietf-oauth-identity-chaining-11 §3: the requested token types it issues grants as.
    let chaining = &state.config.chaining;
    if !chaining.peers.is_empty() {
        doc["identity_chaining_requested_token_types_supported"] = json!(chaining.token_types);
    }
    if let Some(reg) = &interactive.registration {
        scopes.extend(reg.scope.iter().cloned());
        doc["registration_endpoint"] = json!(state.endpoint("/register"));
    }
    if !scopes.is_empty() {
        doc["scopes_supported"] = json!(scopes.iter().collect::<Vec<_>>());
    }
    if !interactive.users.is_empty() {
        doc["authorization_endpoint"] = json!(state.endpoint("/authorize"));
        doc["response_types_supported"] = json!(["code"]);
        doc["response_modes_supported"] = json!(["query"]);
        doc["code_challenge_methods_supported"] = json!(["S256"]);
        doc["authorization_response_iss_parameter_supported"] = json!(true);
        // Incremental authorization -04 §9: confidential (include_granted_scopes) and public
        // (existing_grant) clients.
        doc["incremental_authz_types_supported"] = json!(["confidential", "public"]);
        if let Some(grants) = doc["grant_types_supported"].as_array_mut() {
            grants.insert(0, json!("refresh_token"));
            grants.insert(0, json!("authorization_code"));
        }
    }
    if state.config.reciprocal.is_some() {
        if let Some(grants) = doc["grant_types_supported"].as_array_mut() {
            grants.push(json!(RECIPROCAL));
        }
    }
    // chaingate extension (docs/authority.md): where an agent asks for reciprocal codes.
    if !state.config.reciprocal_policies.is_empty() || !interactive.users.is_empty() {
        doc["reciprocal_code_endpoint"] = json!(state.endpoint("/reciprocal/code"));
    }
    if let Value::Object(map) = &mut doc {
        map.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
    }
    web::public_json(&doc, "application/json")
}

/// `/authorize` and its forms and stylesheet.
async fn authorize_routes<B>(state: &Authority, local: &str, req: Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = req.method().clone();
    match (local, method) {
        ("/authorize", Method::GET | Method::HEAD) => {
            authorize::start(state, req.headers(), req.uri().query().unwrap_or(""))
        }
        ("/authorize/style.css", Method::GET | Method::HEAD) => authorize::style(),
        ("/authorize/login" | "/authorize/decision", Method::POST) => {
            let (parts, body) = req.into_parts();
            let form = match read_form(&parts.headers, body, state.config.max_body_bytes).await {
                Ok(form) => form,
                Err(e) => {
                    return authorize::error_page(
                        state,
                        StatusCode::BAD_REQUEST,
                        "Invalid request",
                        &e.description,
                    )
                }
            };
            if local == "/authorize/login" {
                forms::sign_in(state, &parts.headers, &form)
            } else {
                forms::decide(state, &parts.headers, &form)
            }
        }
        ("/authorize" | "/authorize/style.css", _) => {
            web::status(StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD"))
        }
        ("/authorize/login" | "/authorize/decision", _) => {
            web::status(StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
        }
        _ => web::status(StatusCode::NOT_FOUND, None),
    }
}
