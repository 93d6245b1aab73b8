//! Validation of presented access tokens (chain `oauth_token`, exchange `subject_token`/`actor_token`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::config::{Client, KeySource, TrustedIssuer};
use super::state::Authority;
use chaingate_oauth::jwt;

/// A validated access token from a trusted issuer.
#[derive(Debug)]
pub(crate) struct PresentedToken {
    pub(crate) issuer_index: usize,
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) exp: u64,
    pub(crate) scope: BTreeSet<String>,
    pub(crate) act: Option<Value>,
}

/// Validates a presented access token: as a JWT when its `iss` names an issuer with keys, else at
/// the issuers configured with `introspection_endpoint` (chain draft §2.2, opaque tokens).
/// Errors are descriptions safe to return to the client (they never contain the token).
pub(crate) async fn validate(
    state: &Authority,
    client: &Client,
    token: &str,
) -> Result<PresentedToken, String> {
    let by_jwks = jwt::peek(token).ok().is_some_and(|(_, claims)| {
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        state
            .trusted_issuer(iss)
            .is_some_and(|(_, t)| !matches!(t.keys, KeySource::Introspection(_)))
    });
    let introspected = state.introspectors.iter().any(Option::is_some);
    if !by_jwks && introspected {
        return via_introspection(state, client, token).await;
    }
    validate_jwt(state, client, token).await
}

/// Asks each issuer configured with `introspection_endpoint`, in order; the first active wins.
async fn via_introspection(
    state: &Authority,
    client: &Client,
    token: &str,
) -> Result<PresentedToken, String> {
    let mut last = "token is not active at any trusted issuer".to_string();
    for (index, trusted) in state.config.trusted_issuers.iter().enumerate() {
        let (KeySource::Introspection(source), Some(introspector)) =
            (&trusted.keys, &state.introspectors[index])
        else {
            continue;
        };
        let answer = match introspector
            .introspect(source, &state.http, &state.limits, token)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                last = e;
                continue;
            }
        };
        if answer
            .get("iss")
            .is_some_and(|iss| iss.as_str() != Some(trusted.issuer.as_str()))
        {
            return Err("introspected token issuer mismatch".into());
        }
        return presented(state, client, index, trusted, &answer);
    }
    Err(last)
}

/// Claim checks shared by JWTs and introspection answers.
fn presented(
    state: &Authority,
    client: &Client,
    index: usize,
    trusted: &TrustedIssuer,
    claims: &Value,
) -> Result<PresentedToken, String> {
    let exp = jwt::check_times(claims, state.config.clock_skew.as_secs())?;
    check_audience(trusted, client, &jwt::audiences(claims)?)?;
    let sub = jwt::string_claim(claims, "sub")?.to_string();
    let scope = jwt::scope_claim(claims)?;
    let act = match claims.get("act") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err("act claim is not an object".into()),
    };
    Ok(PresentedToken {
        issuer_index: index,
        iss: trusted.issuer.clone(),
        sub,
        exp,
        scope,
        act,
    })
}

/// Validates a JWT access token per RFC 9068 §4 / RFC 8725 with the issuer's keys.
async fn validate_jwt(
    state: &Authority,
    client: &Client,
    token: &str,
) -> Result<PresentedToken, String> {
    let (header, unverified) = jwt::peek(token)?;
    if !jwt::typ_is(&header, "at+jwt") {
        return Err("token typ is not at+jwt".into());
    }
    let iss = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("token has no iss claim")?;
    let (index, trusted) = state
        .trusted_issuer(iss)
        .ok_or("token issuer is not trusted")?;
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = state.issuer_keys(index, kid).await?;
    let verified = jwt::verify(token, &header, &keys)?;
    // The verified iss must be exactly the trusted one (the unverified peek chose the keys).
    if jwt::string_claim(&verified.claims, "iss")? != trusted.issuer {
        return Err("token issuer mismatch".into());
    }
    presented(state, client, index, trusted, &verified.claims)
}

/// `aud` must include one of the issuer's configured audiences and, if the client restricts it,
/// one of the client's `subject_token_audiences` (RFC 8693 §2.1: the audience a subject token was issued for).
fn check_audience(trusted: &TrustedIssuer, client: &Client, auds: &[String]) -> Result<(), String> {
    if !auds.iter().any(|a| trusted.audiences.contains(a)) {
        return Err("audience validation failed".into());
    }
    if let Some(allowed) = &client.subject_token_audiences {
        if !auds.iter().any(|a| allowed.contains(a)) {
            return Err("audience validation failed for this client".into());
        }
    }
    Ok(())
}

/// Maps a presented token's scopes into this domain: `scope_map` if configured, else unchanged.
pub(crate) fn map_scopes(trusted: &TrustedIssuer, scopes: &BTreeSet<String>) -> BTreeSet<String> {
    match &trusted.scope_map {
        None => scopes.clone(),
        Some(map) => scopes
            .iter()
            .filter_map(|s| map.get(s))
            .flat_map(|targets| targets.iter().cloned())
            .collect(),
    }
}
