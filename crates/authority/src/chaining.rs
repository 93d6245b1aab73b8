//! Identity chaining across domains, both sides.
//!
//! Issuing (RFC 8693 at this authority, domain A): `requested_token_type=...:jwt` with an
//! `audience`/`resource` naming a `[[peer_authorities]]` issuer returns a JWT authorization
//! grant (draft-ietf-oauth-identity-chaining-11 §2.3); `requested_token_type=...:id-jag` returns
//! an Identity Assertion JWT Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant-02
//! §3, §4.3). Both answer `token_type` `N_A`: a grant, not an access token.
//!
//! Redeeming (RFC 7523 §2.1 at this authority, domain B): a grant signed by a peer with keys,
//! `aud` naming this authority; an ID-JAG also needs `typ` `oauth-id-jag+jwt`, `client_id` equal
//! to the authenticated client, and a `jti` never seen before (ID-JAG §4.4.1, RFC 7523 §3 item 7).
//! Every refusal is `invalid_grant` (RFC 7523 §3.1) and names no piece of the assertion.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};

use super::config::Client;
use super::config_chaining::{Peer, ID_JAG_TYPE, JWT_GRANT_TYPE};
use super::grants::{decide_scope, issue_token_jti, mapped, requested_scope, targets, Issue};
use super::state::Authority;
use super::store::InsertError;
use super::subject;
use super::web::{Form, OAuthError};
use chaingate_oauth::jwt;
use chaingate_oauth::util::{join_scope, now_secs, random_id};

/// ID-JAG §3.1: the `typ` an ID-JAG carries (RFC 8725 §3.11 explicit typing).
pub(crate) const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// Identity chaining -11 defines no media type (§4.2), so its grants are plain JWTs.
const JWT_GRANT_TYP: &str = "JWT";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Claims of an issued grant: a JWT authorization grant, or with `client_id` of the peer an
/// ID-JAG.
#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Value>,
}

/// The RFC 8693 exchange, if it asks for a chaining grant: `None` leaves the request to the
/// ordinary exchange (a `jwt` asked for an audience that is no peer keeps its old meaning).
pub(crate) async fn exchange(
    state: &Authority,
    client: &Client,
    form: &Form,
) -> Result<Option<Value>, OAuthError> {
    let chaining = &state.config.chaining;
    let id_jag = match form.get("requested_token_type") {
        Some(ID_JAG_TYPE) if chaining.issues(ID_JAG_TYPE) => true,
        Some(JWT_GRANT_TYPE)
            if chaining.issues(JWT_GRANT_TYPE)
                && form
                    .all("audience")
                    .iter()
                    .chain(form.all("resource"))
                    .any(|t| chaining.peer(t).is_some()) =>
        {
            false
        }
        _ => return Ok(None),
    };
    let subject_type = form.require("subject_token_type")?;
    if subject_type != ACCESS_TOKEN_TYPE && subject_type != JWT_GRANT_TYPE {
        return Err(OAuthError::invalid_request(
            "unsupported subject_token_type",
        ));
    }
    // ID-JAG §4.3: actor_token and actor_token_type are not used.
    if form.get("actor_token").is_some() || form.get("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not used with identity chaining",
        ));
    }
    let (peer, resource) = target(state, form, id_jag)?;
    let presented = subject::validate(state, client, form.require("subject_token")?)
        .await
        .map_err(|e| OAuthError::invalid_request(format!("subject_token: {e}")))?;
    let (scope, sub) = mapped(state, client, form, &presented)?;
    let now = now_secs();
    let exp = (now + chaining.grant_ttl.as_secs()).min(presented.exp);
    if exp <= now {
        return Err(OAuthError::invalid_request(
            "subject_token: the token expires too soon",
        ));
    }
    // ID-JAG §3.1: `client_id` is the client at the peer, which may differ from ours.
    let client_id = match id_jag {
        true => peer.client_ids.get(&client.id).unwrap_or(&client.id),
        false => &client.id,
    };
    let scope = (!scope.is_empty()).then(|| join_scope(&scope));
    let claims = GrantClaims {
        iss: &state.issuer,
        sub: &sub,
        aud: &peer.issuer,
        client_id,
        jti: random_id(),
        iat: now,
        exp,
        scope: scope.clone(),
        resource,
    };
    let (typ, issued_type) = match id_jag {
        true => (ID_JAG_TYP, ID_JAG_TYPE),
        false => (JWT_GRANT_TYP, JWT_GRANT_TYPE),
    };
    let grant = state.signing.sign(typ, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing a chaining grant failed");
        OAuthError::unavailable("cannot sign the grant")
    })?;
    tracing::info!(client_id = %client.id, sub = %sub, aud = %peer.issuer, token_type = issued_type, exp, "issued identity chaining grant");
    let mut response = json!({
        "access_token": grant,
        "issued_token_type": issued_type,
        "token_type": "N_A",
        "expires_in": exp - now,
    });
    if let Some(scope) = scope {
        response["scope"] = Value::String(scope);
    }
    Ok(Some(response))
}

/// The peer the grant is for, and for an ID-JAG its `resource` claim.
///
/// Identity chaining §2.3.1: `audience` or `resource` names B's authorization server; ID-JAG
/// §4.3: `audience` is REQUIRED and names it, `resource` is the resource server at B.
fn target<'s>(
    state: &'s Authority,
    form: &Form,
    id_jag: bool,
) -> Result<(&'s Peer, Option<Value>), OAuthError> {
    let unknown = || OAuthError::invalid_target("the audience is not a peer authority");
    let chaining = &state.config.chaining;
    if id_jag {
        let [audience] = form.all("audience") else {
            return Err(OAuthError::invalid_request(
                "an ID-JAG needs exactly one audience",
            ));
        };
        let (_, peer) = chaining.peer(audience).ok_or_else(unknown)?;
        let resources = form.all("resource");
        if resources
            .iter()
            .any(|r| !r.contains(':') || r.contains('#') || r.chars().any(char::is_whitespace))
        {
            return Err(OAuthError::invalid_target(
                "resource must be an absolute URI without fragment",
            ));
        }
        let resource = match resources {
            [] => None,
            [one] => Some(Value::String(one.clone())),
            many => Some(json!(many)),
        };
        return Ok((peer, resource));
    }
    // One peer, named by every target: a grant restricted to a single authorization server
    // (identity chaining §2.3.3, RECOMMENDED).
    let mut found: Option<&Peer> = None;
    for t in form.all("audience").iter().chain(form.all("resource")) {
        let (_, peer) = chaining.peer(t).ok_or_else(unknown)?;
        if found.is_some_and(|f| f.issuer != peer.issuer) {
            return Err(OAuthError::invalid_target(
                "a grant is for one peer authority",
            ));
        }
        found = Some(peer);
    }
    Ok((found.ok_or_else(unknown)?, None))
}

/// The jwt-bearer grant, if the assertion is a peer's chaining grant or an ID-JAG: `None`
/// leaves it to the ordinary RFC 7523 path (access tokens of `[[trusted_issuers]]`).
pub(crate) async fn redeem(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Option<Value>, OAuthError> {
    let assertion = form.require("assertion")?;
    let Ok((header, unverified)) = jwt::peek(assertion) else {
        return Ok(None);
    };
    let id_jag = jwt::typ_is(&header, ID_JAG_TYP);
    let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
    let peer = state
        .config
        .chaining
        .peer(iss)
        .filter(|(_, p)| p.keys.is_some());
    let (index, peer) = match peer {
        Some(found) if id_jag || !jwt::typ_is(&header, "at+jwt") => found,
        None if id_jag => return Err(refuse(client, "issuer is not a trusted peer")),
        _ => return Ok(None),
    };
    let claims = verified(state, index, peer, assertion, &header)
        .await
        .map_err(|why| refuse(client, &why))?;
    // Identity chaining §2.4.2: aud is this issuer or its token endpoint; ID-JAG §4.4.1: the
    // issuer, alone (a string or a one-element array).
    let auds = jwt::audiences(&claims).map_err(|why| refuse(client, &why))?;
    let ours = |a: &String| *a == state.issuer || (!id_jag && *a == state.endpoint("/token"));
    let aud_ok = match id_jag {
        true => matches!(auds.as_slice(), [one] if ours(one)),
        false => auds.iter().any(ours),
    };
    if !aud_ok {
        return Err(refuse(client, "audience validation failed"));
    }
    let exp = jwt::check_times(&claims, state.config.clock_skew.as_secs())
        .map_err(|why| refuse(client, &why))?;
    let sub = jwt::string_claim(&claims, "sub").map_err(|why| refuse(client, &why))?;
    if id_jag {
        let bound = jwt::string_claim(&claims, "client_id").map_err(|why| refuse(client, &why))?;
        if bound != client.id {
            return Err(refuse(client, "client_id is not the authenticated client"));
        }
        let jti = jwt::string_claim(&claims, "jti").map_err(|why| refuse(client, &why))?;
        // A digest of (issuer, jti): the replay set holds no piece of the grant.
        let key = chaingate_oauth::digest::hex(&chaingate_oauth::digest::sha256(
            format!("id-jag\u{0}{}\u{0}{jti}", peer.issuer).as_bytes(),
        ));
        match state.replay.insert(key, exp) {
            Ok(()) => {}
            Err(InsertError::Present) => return Err(refuse(client, "the ID-JAG was already used")),
            Err(InsertError::Full) => return Err(OAuthError::unavailable("replay cache is full")),
        }
    }
    // The grant's scope (if any) bounds what it can buy here, then the client's and the request's.
    let granted = jwt::scope_claim(&claims).map_err(|why| refuse(client, &why))?;
    let available: BTreeSet<String> = match claims.get("scope") {
        None => client.scope.clone(),
        Some(_) => granted.intersection(&client.scope).cloned().collect(),
    };
    let scope = decide_scope(requested_scope(form)?, &available, false)?;
    let sub = format!("{}{sub}", peer.subject_prefix);
    let audiences = targets(state, client, form)?;
    tracing::info!(client_id = %client.id, peer = %peer.issuer, id_jag, "accepted identity chaining grant");
    let issue = Issue {
        sub: &sub,
        audiences,
        scope,
        max_exp: None,
        act: None,
    };
    issue_token_jti(state, client, issue, jkt)
        .map(|(response, _)| response)
        .map(Some)
}

/// The assertion's claims once its signature checks out with the peer's keys and the verified
/// `iss` is the peer's.
async fn verified(
    state: &Authority,
    index: usize,
    peer: &Peer,
    assertion: &str,
    header: &Value,
) -> Result<Value, String> {
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = state.peer_keys(index, kid).await?;
    let claims = jwt::verify(assertion, header, &keys)?.claims;
    if jwt::string_claim(&claims, "iss")? != peer.issuer {
        return Err("issuer mismatch".into());
    }
    Ok(claims)
}

/// `invalid_grant` (RFC 7523 §3.1), logged with the client and the check, never the assertion.
fn refuse(client: &Client, why: &str) -> OAuthError {
    tracing::info!(client_id = %client.id, reason = why, "refused identity chaining grant");
    OAuthError::invalid_grant(why.to_string())
}
