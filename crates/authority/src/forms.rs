//! Sign-in and consent forms (`POST /authorize/login`, `/authorize/decision`), session cookie.

use std::collections::BTreeSet;

use http::header::{HeaderValue, COOKIE, SET_COOKIE};
use http::{HeaderMap, StatusCode};

use super::authorize::{busy, consent, error_page, login, redirect, redirect_error, split_scopes};
use super::sessions::{digest, random_token, CodeRecord, Pending, Session};
use super::state::Authority;
use super::web::{Form, Response};
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::now_secs;

const COOKIE_NAME: &str = "cg_session";

pub(super) fn current_session(state: &Authority, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session_cookie(headers)?;
    let session = state.flows.sessions.get(&id)?;
    Some((id, session))
}

pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
        .find(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
}

pub(super) fn set_cookie(state: &Authority, response: &mut Response, id: &str) {
    let secure = if state.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // The issuer's whole path: `/reciprocal/consent` needs the session as much as `/authorize`.
    let cookie = format!(
        "{COOKIE_NAME}={id}; Path={}/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        state.path_prefix,
        state.config.interactive.session_ttl.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, v);
    }
}

/// The pending request a form refers to, if it comes with its session cookie and CSRF token.
fn check_form(
    state: &Authority,
    headers: &HeaderMap,
    form: &Form,
) -> Result<(String, Pending), Box<Response>> {
    let expired = || {
        Box::new(error_page(state, StatusCode::BAD_REQUEST, "Request expired", "This sign-in request has expired or was already completed. Start again from the application."))
    };
    let tx = form.get("tx").ok_or_else(expired)?;
    let pending = state
        .flows
        .pending
        .get(&tx.to_string())
        .ok_or_else(expired)?;
    let cookie_ok = session_cookie(headers).is_some_and(|c| Secret::new(c).ct_eq(&pending.session));
    let csrf_ok = form
        .get("csrf")
        .is_some_and(|c| Secret::new(pending.csrf.as_str()).ct_eq(c));
    if !cookie_ok || !csrf_ok {
        tracing::info!("authorization form refused: session or CSRF token mismatch");
        return Err(Box::new(error_page(state, StatusCode::FORBIDDEN, "Form not accepted", "The form could not be verified (its CSRF token or session does not match). Start again from the application.")));
    }
    Ok((tx.to_string(), pending))
}

/// `POST /authorize/login`.
pub(crate) fn sign_in(state: &Authority, headers: &HeaderMap, form: &Form) -> Response {
    let (tx, pending) = match check_form(state, headers, form) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let Some(client) = state.client(&pending.client_id) else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application is no longer registered.",
        );
    };
    let username = form.get("username").unwrap_or("");
    let lock_key = format!("user\u{0}{username}");
    if state.locked_out(&lock_key) {
        return login(
            state,
            &client,
            &tx,
            &pending,
            Some("Too many failed sign-ins. Wait a minute and try again."),
        );
    }
    let password = form.get("password").unwrap_or("");
    let Some(user) = state.config.interactive.check_user(username, password) else {
        state.record_failure(&lock_key);
        tracing::info!("sign-in failed");
        return login(
            state,
            &client,
            &tx,
            &pending,
            Some("Wrong username or password."),
        );
    };
    // A new session id on sign-in (no session fixation); the old one is dropped.
    let _ = state.flows.sessions.take(&pending.session);
    let id = random_token();
    let ttl = state.config.interactive.session_ttl.as_secs();
    let session = Session {
        user: Some(user.username.clone()),
    };
    if !state
        .flows
        .sessions
        .insert(id.clone(), session, now_secs() + ttl)
    {
        return busy(state);
    }
    let moved = state.flows.pending.with(&tx, |p| {
        p.map(|p| {
            p.session.clone_from(&id);
            p.clone()
        })
    });
    let Some(pending) = moved else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Request expired",
            "Start again from the application.",
        );
    };
    tracing::info!(user = %user.username, "user signed in");
    let mut response = consent(state, &client, &tx, &pending, &user.username);
    set_cookie(state, &mut response, &id);
    response
}

/// `POST /authorize/decision`: approve → code; deny → `access_denied`.
pub(crate) fn decide(state: &Authority, headers: &HeaderMap, form: &Form) -> Response {
    let (tx, pending) = match check_form(state, headers, form) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let user = state
        .flows
        .sessions
        .get(&pending.session)
        .and_then(|s| s.user);
    let (Some(user), Some(client)) = (user, state.client(&pending.client_id)) else {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Not signed in",
            "Sign in first. Start again from the application.",
        );
    };
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                state,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Choose Allow or Deny.",
            )
        }
    };
    if state.flows.pending.take(&tx).is_none() {
        return error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Request expired",
            "This request was already completed.",
        );
    }
    if pending.reciprocal {
        if approve && !state.flows.add_granted(&user, &client.id, &pending.scope) {
            return busy(state);
        }
        tracing::info!(recipient = %client.id, user = %user, approve, "reciprocal consent decided");
        return super::reciprocal::consent::decided(state, &client, &pending, approve);
    }
    let st = pending.state.as_deref();
    if !approve {
        return redirect_error(
            state,
            &pending.redirect_uri,
            st,
            "access_denied",
            "the user denied the request",
        );
    }
    let (new, already) = split_scopes(state, &client, &pending, &user);
    let scope: BTreeSet<String> = new.into_iter().chain(already).collect();
    if !state.flows.add_granted(&user, &client.id, &scope) {
        return busy(state);
    }
    let code = random_token();
    let record = CodeRecord {
        client_id: client.id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_given: pending.redirect_given,
        code_challenge: pending.code_challenge.clone(),
        user: user.clone(),
        scope,
        used: None,
    };
    // Redemption marks the record used (kept until it expires) so a replay can be detected.
    let exp = now_secs() + state.config.interactive.code_ttl.as_secs();
    if !state.flows.codes.insert(digest(&code), record, exp) {
        return busy(state);
    }
    tracing::info!(client_id = %client.id, user = %user, "authorization code issued");
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = st {
        params.push(("state", s));
    }
    let (turi, duri) = (state.endpoint("/token"), state.discovery_url());
    if client.response_metadata {
        params.push(("turi", &turi));
        params.push(("duri", &duri));
    }
    // draft-ietf-oauth-reciprocal §2.1 names the authorization response too (§19.16).
    if let Some(scope) = &client.reciprocal {
        params.push(("reciprocal", scope));
    }
    redirect(state, &pending.redirect_uri, &params)
}
