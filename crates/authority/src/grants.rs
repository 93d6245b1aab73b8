//! `POST /token`: client_credentials, the chain grant, RFC 8693 token exchange and the RFC 7523
//! JWT bearer grant.

use std::collections::BTreeSet;

use http::HeaderMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::client_auth::authenticate;
use super::code_grant;
use super::config::{Client, Grant};
use super::dpop;
use super::reciprocal::{self, RECIPROCAL};
use super::state::Authority;
use super::subject::{self, PresentedToken};
use super::web::{Form, OAuthError};
use chaingate_oauth::dpop::TOKEN_TYPE;
use chaingate_oauth::util::{join_scope, now_secs, parse_scope, random_id};

pub(crate) const CHAIN: &str = "http://oauth.net/grant_type/chain";
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 9068 §2.2 claims of an issued access token.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Value,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<Value>,
    /// RFC 9449 §6.1: the key the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Value>,
}

/// What to put in an issued token, decided by the grant.
pub(crate) struct Issue<'a> {
    pub(crate) sub: &'a str,
    pub(crate) audiences: Vec<String>,
    pub(crate) scope: BTreeSet<String>,
    /// Upper bound for `exp` (the presented token's `exp`).
    pub(crate) max_exp: Option<u64>,
    pub(crate) act: Option<Value>,
}

/// A token response and, for clients with `response_metadata`, its `Link` header value.
pub(crate) async fn token(
    state: &Authority,
    headers: &HeaderMap,
    form: &Form,
) -> Result<(Value, Option<String>), OAuthError> {
    let grant = match form.require("grant_type")? {
        "authorization_code" => Grant::AuthorizationCode,
        "refresh_token" => Grant::RefreshToken,
        "client_credentials" => Grant::ClientCredentials,
        CHAIN => Grant::Chain,
        TOKEN_EXCHANGE => Grant::TokenExchange,
        JWT_BEARER => Grant::JwtBearer,
        RECIPROCAL if state.config.reciprocal.is_some() => Grant::Reciprocal,
        _ => {
            return Err(OAuthError::unsupported_grant_type(
                "grant_type is not supported",
            ))
        }
    };
    let client = authenticate(state, headers, form, &state.endpoint("/token")).await?;
    if !client.grants.contains(&grant) {
        return Err(OAuthError::unauthorized_client(
            "client may not use this grant_type",
        ));
    }
    let client = &*client;
    // Checked after client authentication so unauthenticated requests fill no replay cache.
    let jkt = dpop::check(state, headers)?;
    let jkt = jkt.as_deref();
    let mut body = match grant {
        Grant::ClientCredentials => client_credentials(state, client, form, jkt),
        Grant::Chain => chain(state, client, form, jkt).await,
        // draft-ietf-oauth-transaction-tokens §7: a Txn-Token Request is a token exchange.
        Grant::TokenExchange if super::txn_token::requested(form) => {
            super::txn_token::issue(state, client, form).await
        }
        Grant::TokenExchange => exchange(state, client, form, jkt).await,
        Grant::JwtBearer => jwt_bearer(state, client, form, jkt).await,
        Grant::AuthorizationCode => code_grant::authorization_code(state, client, form, jkt),
        Grant::RefreshToken => code_grant::refresh(state, client, form, jkt),
        // Answered with `{}`: not a token response, so no `reciprocal` member or `Link`.
        Grant::Reciprocal => {
            return reciprocal::redeem::grant(state, client, form).map(|v| (v, None))
        }
    }?;
    // draft-ietf-oauth-reciprocal §2.1 (and §19.16): a plain scope string.
    if let Some(scope) = &client.reciprocal {
        body["reciprocal"] = Value::String(scope.clone());
    }
    Ok((body, code_grant::link_header(state, client)))
}

pub(crate) fn requested_scope(form: &Form) -> Result<Option<BTreeSet<String>>, OAuthError> {
    form.get("scope")
        .map(|s| parse_scope(s).map_err(OAuthError::invalid_scope))
        .transpose()
}

/// `requested ∩ available`, or `available` when nothing was requested; empty is `invalid_scope`
/// unless `allow_empty` (client_credentials of a client without scopes).
pub(crate) fn decide_scope(
    requested: Option<BTreeSet<String>>,
    available: &BTreeSet<String>,
    allow_empty: bool,
) -> Result<BTreeSet<String>, OAuthError> {
    let scope: BTreeSet<String> = match &requested {
        Some(req) => req.intersection(available).cloned().collect(),
        None => available.clone(),
    };
    if scope.is_empty() && !(allow_empty && requested.is_none()) {
        return Err(OAuthError::invalid_scope(
            "none of the requested scope can be granted",
        ));
    }
    Ok(scope)
}

/// Audiences for the issued token from `audience` and `resource` parameters (RFC 8693/8707);
/// none requested → the client's `audience` or the default audience (RFC 9068 §3).
pub(crate) fn targets(
    state: &Authority,
    client: &Client,
    form: &Form,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for resource in form.all("resource") {
        if !is_absolute_uri(resource) || resource.contains('#') {
            return Err(OAuthError::invalid_target(
                "resource must be an absolute URI without fragment",
            ));
        }
    }
    for target in form.all("audience").iter().chain(form.all("resource")) {
        let known = state.known_audiences.contains(target);
        let allowed = client
            .allowed_audiences
            .as_ref()
            .is_none_or(|a| a.contains(target));
        if !known || !allowed {
            return Err(OAuthError::invalid_target(
                "the requested audience or resource is unknown or not allowed",
            ));
        }
        if !out.contains(target) {
            out.push(target.clone());
        }
    }
    if out.is_empty() {
        out.push(
            client
                .audience
                .clone()
                .unwrap_or_else(|| state.default_audience.clone()),
        );
    }
    Ok(out)
}

/// RFC 3986 §4.3 absolute-URI shape: a scheme, `:`, and no whitespace.
fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn client_credentials(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let scope = decide_scope(requested_scope(form)?, &client.scope, true)?;
    let audiences = targets(state, client, form)?;
    let issue = Issue {
        sub: &client.id,
        audiences,
        scope,
        max_exp: None,
        act: None,
    };
    issue_token(state, client, issue, jkt)
}

/// Extracts the token from `oauth_token`: bare, or `<scheme> <token>` with scheme `Bearer`.
fn chain_token(form: &Form) -> Result<&str, OAuthError> {
    if form.count("oauth_token") != 1 {
        return Err(OAuthError::invalid_request(
            "exactly one oauth_token parameter is required",
        ));
    }
    let value = form.require("oauth_token")?.trim();
    match value.split_once(' ') {
        None => Ok(value),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Ok(rest.trim_start()),
        Some(_) => Err(OAuthError::invalid_grant("unsupported token scheme")),
    }
}

async fn chain(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let token = chain_token(form)?;
    let presented = subject::validate(state, client, token)
        .await
        .map_err(OAuthError::invalid_grant)?;
    let (scope, sub) = mapped(state, client, form, &presented)?;
    let audiences = targets(state, client, form)?;
    let issue = Issue {
        sub: &sub,
        audiences,
        scope,
        max_exp: Some(presented.exp),
        act: None,
    };
    issue_token(state, client, issue, jkt)
}

/// RFC 7523 §2.1 (and the second step of draft-ietf-oauth-identity-chaining): the `assertion`
/// is validated like a chain-grant token; every failure is `invalid_grant` (§3.1).
async fn jwt_bearer(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    if form.count("assertion") != 1 {
        return Err(OAuthError::invalid_request(
            "exactly one assertion parameter is required",
        ));
    }
    // A peer's identity chaining grant or ID-JAG (chaining.rs); else a trusted issuer's token.
    if let Some(response) = super::chaining::redeem(state, client, form, jkt).await? {
        return Ok(response);
    }
    let presented = subject::validate(state, client, form.require("assertion")?)
        .await
        .map_err(OAuthError::invalid_grant)?;
    let (scope, sub) = mapped(state, client, form, &presented)?;
    let audiences = targets(state, client, form)?;
    let issue = Issue {
        sub: &sub,
        audiences,
        scope,
        max_exp: Some(presented.exp),
        act: None,
    };
    issue_token(state, client, issue, jkt)
}

/// Scope (requested ∩ mapped token scope ∩ client scope) and mapped subject.
pub(crate) fn mapped(
    state: &Authority,
    client: &Client,
    form: &Form,
    presented: &PresentedToken,
) -> Result<(BTreeSet<String>, String), OAuthError> {
    let trusted = &state.config.trusted_issuers[presented.issuer_index];
    let available: BTreeSet<String> = subject::map_scopes(trusted, &presented.scope)
        .intersection(&client.scope)
        .cloned()
        .collect();
    let scope = decide_scope(requested_scope(form)?, &available, false)?;
    Ok((
        scope,
        format!("{}{}", trusted.subject_prefix, presented.sub),
    ))
}

async fn exchange(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    // A JWT grant for a peer authority, or an ID-JAG (chaining.rs).
    if let Some(response) = super::chaining::exchange(state, client, form).await? {
        return Ok(response);
    }
    let subject_token = form.require("subject_token")?;
    let subject_type = form.require("subject_token_type")?;
    if subject_type != ACCESS_TOKEN_TYPE && subject_type != JWT_TYPE {
        return Err(OAuthError::invalid_request(
            "unsupported subject_token_type",
        ));
    }
    let issued_type = match form.get("requested_token_type") {
        None | Some(ACCESS_TOKEN_TYPE) => ACCESS_TOKEN_TYPE,
        Some(JWT_TYPE) => JWT_TYPE,
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "unsupported requested_token_type",
            ))
        }
    };
    let actor = match (form.get("actor_token"), form.get("actor_token_type")) {
        (None, None) => None,
        (Some(token), Some(ACCESS_TOKEN_TYPE | JWT_TYPE)) => Some(
            subject::validate(state, client, token)
                .await
                .map_err(|e| OAuthError::invalid_request(format!("actor_token: {e}")))?,
        ),
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("unsupported actor_token_type"))
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token requires actor_token_type",
            ))
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type without actor_token",
            ))
        }
    };
    let presented = subject::validate(state, client, subject_token)
        .await
        .map_err(|e| OAuthError::invalid_request(format!("subject_token: {e}")))?;
    let audiences = targets(state, client, form)?;
    let (scope, sub) = mapped(state, client, form, &presented)?;
    let max_exp = Some(
        actor
            .as_ref()
            .map_or(presented.exp, |a| a.exp.min(presented.exp)),
    );
    // RFC 8693 §4.1: the actor becomes the current `act`; earlier actors nest inside it.
    let act = actor.map(|a| {
        let mut act = json!({ "sub": a.sub, "iss": a.iss });
        if let Some(prior) = presented.act.clone() {
            act["act"] = prior;
        }
        act
    });
    let issue = Issue {
        sub: &sub,
        audiences,
        scope,
        max_exp,
        act,
    };
    let mut response = issue_token(state, client, issue, jkt)?;
    response["issued_token_type"] = Value::String(issued_type.to_string());
    // A JWT asked for as a JWT (an identity-chaining authorization grant) is not meant to be
    // used as an access token: RFC 8693 §2.2.1 says so with token_type N_A.
    if issued_type == JWT_TYPE {
        response["token_type"] = Value::String("N_A".to_string());
    }
    Ok(response)
}

/// Signs an RFC 9068 access token and builds the RFC 6749 §5.1 response (no refresh token).
fn issue_token(
    state: &Authority,
    client: &Client,
    issue: Issue<'_>,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    issue_token_jti(state, client, issue, jkt).map(|(response, _)| response)
}

/// [`issue_token`], also returning the token's `jti` and `exp` (to revoke it later).
pub(crate) fn issue_token_jti(
    state: &Authority,
    client: &Client,
    issue: Issue<'_>,
    jkt: Option<&str>,
) -> Result<(Value, (String, u64)), OAuthError> {
    let now = now_secs();
    let mut exp = now + state.config.token_ttl.as_secs();
    if let Some(max) = issue.max_exp {
        exp = exp.min(max);
    }
    if exp <= now {
        return Err(OAuthError::invalid_grant(
            "the presented token expires too soon",
        ));
    }
    let scope = (!issue.scope.is_empty()).then(|| join_scope(&issue.scope));
    let aud = match issue.audiences.as_slice() {
        [one] => Value::String(one.clone()),
        many => json!(many),
    };
    let claims = AccessTokenClaims {
        iss: &state.issuer,
        sub: issue.sub,
        aud,
        client_id: &client.id,
        scope: scope.clone(),
        iat: now,
        exp,
        jti: random_id(),
        act: issue.act,
        cnf: jkt.map(|jkt| json!({ "jkt": jkt })),
    };
    let jti = (claims.jti.clone(), exp);
    let token = state.signing.sign("at+jwt", &claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::unavailable("cannot sign the token")
    })?;
    tracing::info!(client_id = %client.id, sub = %issue.sub, exp, "issued access token");
    let mut response = json!({
        "access_token": token,
        "token_type": if jkt.is_some() { TOKEN_TYPE } else { "Bearer" },
        "expires_in": exp - now,
    });
    if let Some(scope) = scope {
        response["scope"] = Value::String(scope);
    }
    Ok((response, jti))
}
