//! `GET /authorize` (RFC 6749 §4.1, PKCE, RFC 9207 `iss`), sign-in and consent forms.

use std::collections::BTreeSet;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;

use super::config::{Client, Grant};
use super::forms;
use super::pages::{self, ConsentView};
use super::parties::origin_of;
use super::sessions::{random_token, Pending, Session};
use super::state::Authority;
use super::web::{Form, Response};
use chaingate_oauth::util::{now_secs, parse_scope, random_id};

pub(super) fn ui(
    state: &Authority,
    status: StatusCode,
    title: &str,
    body: &str,
    origins: &[String],
) -> Response {
    pages::page(
        status,
        title,
        &state.endpoint("/authorize/style.css"),
        body,
        origins,
        state.config.interactive.dev_mode,
    )
}

/// An error shown to the user instead of redirecting (never redirect to an unverified URI).
pub(crate) fn error_page(
    state: &Authority,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    ui(
        state,
        status,
        title,
        &pages::error_body(title, message),
        &[],
    )
}

/// `GET /authorize/style.css`.
pub(crate) fn style() -> Response {
    let mut r = http::Response::new(Full::new(Bytes::from_static(pages::STYLE.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A 303 to the client's redirect URI with `params`, `state` and `iss` (RFC 9207) in the query.
pub(super) fn redirect(state: &Authority, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    query.append_pair("iss", &state.issuer);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{}", query.finish());
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An RFC 6749 §4.1.2.1 error redirect.
pub(super) fn redirect_error(
    state: &Authority,
    uri: &str,
    st: Option<&str>,
    code: &str,
    desc: &str,
) -> Response {
    tracing::info!(
        error = code,
        description = desc,
        "authorization request refused"
    );
    let mut params = vec![("error", code), ("error_description", desc)];
    if let Some(s) = st {
        params.push(("state", s));
    }
    redirect(state, uri, &params)
}

/// What a valid authorization request asks for.
struct Validated {
    scope: BTreeSet<String>,
    include_granted: bool,
    code_challenge: Option<String>,
}

/// Checks after the redirect URI is known; failures are redirected (`error`, description).
fn validate(
    state: &Authority,
    client: &Client,
    form: &Form,
) -> Result<Validated, (&'static str, String)> {
    if !client.grants.contains(&Grant::AuthorizationCode) {
        return Err((
            "unauthorized_client",
            "client may not use the authorization code flow".into(),
        ));
    }
    match form.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err((
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ))
        }
        None => return Err(("invalid_request", "missing parameter response_type".into())),
    }
    let include_granted = match form.get("include_granted_scopes") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err((
                "invalid_request",
                "include_granted_scopes must be true or false".into(),
            ))
        }
    };
    let code_challenge = match (
        form.get("code_challenge"),
        form.get("code_challenge_method"),
    ) {
        (Some(c), Some("S256")) => {
            let ok = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err((
                    "invalid_request",
                    "code_challenge must be a base64url SHA-256 (43 characters)".into(),
                ));
            }
            Some(c.to_string())
        }
        (Some(_), _) => {
            return Err((
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "invalid_request",
                "code_challenge_method without code_challenge".into(),
            ))
        }
        (None, None) if client.is_public() => {
            return Err((
                "invalid_request",
                "PKCE with S256 is required for public clients".into(),
            ))
        }
        (None, None) => None,
    };
    let requested = match form.get("scope") {
        Some(s) => parse_scope(s).map_err(|m| ("invalid_scope", m))?,
        None => client.scope.clone(),
    };
    let scope: BTreeSet<String> = requested.intersection(&client.scope).cloned().collect();
    if scope.is_empty() && !requested.is_empty() {
        return Err((
            "invalid_scope",
            "none of the requested scope can be granted to this client".into(),
        ));
    }
    if let Some(max) = state.config.interactive.max_scopes_per_request {
        if scope.len() > max {
            return Err((
                "overbroad_scope",
                format!("ask for at most {max} scopes per request, then more as they are needed"),
            ));
        }
    }
    Ok(Validated {
        scope,
        include_granted,
        code_challenge,
    })
}

/// `GET /authorize`: validates the request, then shows the sign-in or consent page.
pub(crate) fn start(state: &Authority, headers: &HeaderMap, query: &str) -> Response {
    if state.config.interactive.users.is_empty() {
        return error_page(
            state,
            StatusCode::NOT_FOUND,
            "Sign-in is not available",
            "This authority has no users configured.",
        );
    }
    let form = match Form::parse(query.as_bytes()) {
        Ok(form) => form,
        Err(e) => {
            return error_page(
                state,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            )
        }
    };
    let Some(client) = form.get("client_id").and_then(|id| state.client(id)) else {
        return error_page(state, StatusCode::BAD_REQUEST, "Unknown application", "The application that sent you here is not registered with this authority (missing or unknown client_id).");
    };
    let redirect_uri = match form.get("redirect_uri") {
        Some(r) if client.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        Some(_) => return error_page(state, StatusCode::BAD_REQUEST, "Invalid redirect URI", "The redirect_uri does not exactly match one registered for this application, so you are not sent back to it."),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return error_page(state, StatusCode::BAD_REQUEST, "Missing redirect URI", "This application has several redirect URIs; the request must name one."),
    };
    let st = form.get("state");
    let valid = match validate(state, &client, &form) {
        Ok(v) => v,
        Err((code, desc)) => return redirect_error(state, &redirect_uri, st, code, &desc),
    };
    let pending = Pending {
        session: String::new(),
        csrf: random_token(),
        client_id: client.id.clone(),
        redirect_uri,
        redirect_given: form.get("redirect_uri").is_some(),
        state: st.map(str::to_string),
        scope: valid.scope,
        include_granted: valid.include_granted,
        code_challenge: valid.code_challenge,
        reciprocal: false,
    };
    begin(state, headers, &client, pending)
}

/// Binds `pending` to the browser session (a new one if needed) and shows the sign-in page, or
/// the consent page if the session is signed in already.
pub(super) fn begin(
    state: &Authority,
    headers: &HeaderMap,
    client: &Client,
    mut pending: Pending,
) -> Response {
    let ttl = state.config.interactive.session_ttl.as_secs();
    let (session_id, session, new_cookie) = match forms::current_session(state, headers) {
        Some((id, s)) => (id, s, false),
        None => {
            let id = random_token();
            if !state
                .flows
                .sessions
                .insert(id.clone(), Session::default(), now_secs() + ttl)
            {
                return busy(state);
            }
            (id, Session::default(), true)
        }
    };
    pending.session.clone_from(&session_id);
    let tx = random_id();
    if !state
        .flows
        .pending
        .insert(tx.clone(), pending.clone(), now_secs() + ttl)
    {
        return busy(state);
    }
    let mut response = match &session.user {
        Some(user) => consent(state, client, &tx, &pending, user),
        None => login(state, client, &tx, &pending, None),
    };
    if new_cookie {
        forms::set_cookie(state, &mut response, &session_id);
    }
    response
}

pub(super) fn busy(state: &Authority) -> Response {
    error_page(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy",
        "Too many sign-ins in progress; try again shortly.",
    )
}

pub(super) fn login(
    state: &Authority,
    client: &Client,
    tx: &str,
    p: &Pending,
    error: Option<&str>,
) -> Response {
    let body = pages::login_body(
        &state.endpoint("/authorize/login"),
        tx,
        &p.csrf,
        client,
        error,
    );
    ui(state, StatusCode::OK, "Sign in", &body, &[])
}

/// Scopes to show as new and as already granted (confidential clients only, -04 §4/§5).
pub(super) fn split_scopes(
    state: &Authority,
    client: &Client,
    p: &Pending,
    user: &str,
) -> (Vec<String>, Vec<String>) {
    if client.is_public() {
        return (p.scope.iter().cloned().collect(), Vec::new());
    }
    let prior = state.flows.granted(user, &client.id);
    let new = p.scope.difference(&prior).cloned().collect();
    let already = if p.include_granted {
        prior.iter().cloned().collect()
    } else {
        p.scope.intersection(&prior).cloned().collect()
    };
    (new, already)
}

pub(super) fn consent(
    state: &Authority,
    client: &Client,
    tx: &str,
    p: &Pending,
    user: &str,
) -> Response {
    let (new, already) = split_scopes(state, client, p, user);
    let action = state.endpoint("/authorize/decision");
    let view = ConsentView {
        action: &action,
        tx,
        csrf: &p.csrf,
        user,
        new,
        already,
    };
    let body = pages::consent_body(client, &view);
    let title = format!("Allow {}?", pages::display_name(client));
    // A reciprocal consent answers with a page of its own, not a redirect.
    let origins = if p.reciprocal {
        Vec::new()
    } else {
        vec![origin_of(&p.redirect_uri)]
    };
    ui(state, StatusCode::OK, &title, &body, &origins)
}
