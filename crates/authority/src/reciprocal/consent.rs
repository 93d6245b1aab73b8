//! Party A: `GET /reciprocal/consent?recipient=..&scope=..` lets a signed-in user approve a
//! recipient's reciprocal request with the ordinary sign-in and consent pages (draft §2.2.1).
//! Approval records the consent; no code and no redirect follow.

use http::{HeaderMap, StatusCode};

use super::super::authorize::{begin, error_page, ui};
use super::super::pages::{display_name, escape};
use super::super::sessions::{random_token, Pending};
use super::super::state::Authority;
use super::super::web::{Form, Response};
use super::config::can_receive_codes;
use chaingate_oauth::util::{join_scope, parse_scope};

pub(crate) fn start(state: &Authority, headers: &HeaderMap, query: &str) -> Response {
    if state.config.interactive.users.is_empty() {
        return error_page(
            state,
            StatusCode::NOT_FOUND,
            "Sign-in is not available",
            "This authority has no users configured.",
        );
    }
    let bad =
        |title: &str, message: &str| error_page(state, StatusCode::BAD_REQUEST, title, message);
    let form = match Form::parse(query.as_bytes()) {
        Ok(form) => form,
        Err(e) => return bad("Invalid request", &e.description),
    };
    let Some(recipient) = form
        .get("recipient")
        .and_then(|id| state.client(id))
        .filter(|c| can_receive_codes(c))
    else {
        return bad(
            "Unknown application",
            "The application asking for access is not registered with this authority.",
        );
    };
    let scope = match form.get("scope").map(parse_scope) {
        Some(Ok(scope)) if !scope.is_empty() && scope.is_subset(&recipient.scope) => scope,
        _ => {
            return bad(
                "Invalid scope",
                "The requested access is missing or not allowed for this application.",
            )
        }
    };
    let pending = Pending {
        session: String::new(),
        csrf: random_token(),
        client_id: recipient.id.clone(),
        redirect_uri: String::new(),
        redirect_given: false,
        state: None,
        scope,
        include_granted: false,
        code_challenge: None,
        reciprocal: true,
    };
    begin(state, headers, &recipient, pending)
}

/// The page after the user decided on a reciprocal request (consent already recorded if allowed).
pub(crate) fn decided(
    state: &Authority,
    recipient: &super::super::config::Client,
    pending: &Pending,
    approved: bool,
) -> Response {
    let name = escape(display_name(recipient));
    let (title, body) = if approved {
        (
            "Access allowed",
            format!(
                "<h1>Access allowed</h1><p><strong>{name}</strong> may now access <code>{}</code> of your account.</p>",
                escape(&join_scope(&pending.scope))
            ),
        )
    } else {
        (
            "Access not allowed",
            format!("<h1>Access not allowed</h1><p><strong>{name}</strong> gets no access.</p>"),
        )
    };
    let body = format!(
        "{body}<p class=\"muted\">You can close this page and return to the application.</p>"
    );
    ui(state, StatusCode::OK, title, &body, &[])
}
