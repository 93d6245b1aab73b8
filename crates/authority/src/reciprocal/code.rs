//! Party A: `POST /reciprocal/code` mints an authorization code for party B (the recipient) on
//! a user's behalf, for the agent that will deliver it (draft §2.2.1–§2.2.2, steps D–E).

use std::collections::BTreeSet;

use http::HeaderMap;
use serde_json::{json, Value};

use super::super::client_auth::authenticate;
use super::super::endpoints::active_claims;
use super::super::sessions::{digest, random_token, CodeRecord};
use super::super::state::Authority;
use super::super::web::{Form, OAuthError};
use super::config::can_receive_codes;
use chaingate_oauth::util::{now_secs, parse_scope};

/// Whether `scope` is pre-consented for (agent, recipient) or the user approved it before.
pub(crate) fn consented(
    state: &Authority,
    agent: &str,
    recipient: &str,
    user: &str,
    scope: &BTreeSet<String>,
) -> bool {
    let policy = state
        .config
        .reciprocal_policies
        .iter()
        .any(|p| p.agent == agent && p.recipient == recipient && scope.is_subset(&p.scope));
    policy || scope.is_subset(&state.flows.granted(user, recipient))
}

pub(crate) async fn issue(
    state: &Authority,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Value, OAuthError> {
    let agent = authenticate(state, headers, form, &state.endpoint("/reciprocal/code")).await?;
    if agent.is_public() {
        return Err(OAuthError::invalid_client(
            "public clients may not ask for reciprocal codes",
        ));
    }
    let subject_token = form.require("subject_token")?;
    let recipient_id = form.require("recipient")?;
    let scope = parse_scope(form.require("scope")?).map_err(OAuthError::invalid_scope)?;
    if scope.is_empty() {
        return Err(OAuthError::invalid_request("missing parameter scope"));
    }
    let claims = active_claims(state, subject_token).ok_or_else(|| {
        OAuthError::invalid_grant("subject_token is not an active token of this authority")
    })?;
    let Some(user) = claims.get("sub").and_then(Value::as_str) else {
        return Err(OAuthError::invalid_grant("subject_token has no subject"));
    };
    let recipient = state
        .client(recipient_id)
        .filter(|c| can_receive_codes(c))
        .ok_or_else(|| {
            OAuthError::invalid_request(
                "recipient is not a confidential client with the authorization_code grant",
            )
        })?;
    if !scope.is_subset(&recipient.scope) {
        return Err(OAuthError::invalid_scope(
            "scope exceeds the recipient's registered scope",
        ));
    }
    if !consented(state, &agent.id, &recipient.id, user, &scope) {
        tracing::info!(agent = %agent.id, recipient = %recipient.id, user, "reciprocal code refused: no consent");
        return Err(OAuthError::new(
            "consent_required",
            "the user has not consented to this scope for the recipient",
        ));
    }
    // An ordinary code bound to the recipient with no redirect_uri: the recipient redeems it
    // with grant_type=authorization_code and no redirect_uri (§2.2.2, RFC 6749 §4.1.3).
    let code = random_token();
    let record = CodeRecord {
        client_id: recipient.id.clone(),
        redirect_uri: String::new(),
        redirect_given: false,
        code_challenge: None,
        user: user.to_string(),
        scope,
        used: None,
    };
    let ttl = state.config.interactive.code_ttl.as_secs();
    if !state
        .flows
        .codes
        .insert(digest(&code), record, now_secs() + ttl)
    {
        return Err(OAuthError::unavailable("too many codes outstanding"));
    }
    tracing::info!(agent = %agent.id, recipient = %recipient.id, user, "reciprocal code issued");
    Ok(json!({ "code": code, "expires_in": ttl }))
}
