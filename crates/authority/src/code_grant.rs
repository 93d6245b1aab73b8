//! Token endpoint: `authorization_code` (PKCE, `existing_grant`), `refresh_token`, `Link` header.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::config::{Client, Grant};
use super::grants::{issue_token_jti, Issue};
use super::refresh::RefreshError;
use super::sessions::{digest, CodeRecord, UsedCode};
use super::state::Authority;
use super::web::{Form, OAuthError};
use chaingate_oauth::util::parse_scope;

/// RFC 7636 §4.1: 43–128 unreserved characters.
fn verifier_ok(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Everything about the code request except single use; `Err` burns the code.
fn check_code(record: &CodeRecord, client: &Client, form: &Form) -> Result<(), OAuthError> {
    let redirect = form.get("redirect_uri");
    let redirect_ok = match redirect {
        Some(r) => r == record.redirect_uri,
        None => !record.redirect_given,
    };
    if !redirect_ok {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&record.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            let computed = URL_SAFE_NO_PAD.encode(hash.as_ref());
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                computed.as_bytes(),
                challenge.as_bytes(),
            )
            .is_ok();
            if !verifier_ok(verifier) || !same {
                return Err(OAuthError::invalid_grant("code_verifier does not match"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade sign.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            ))
        }
        (None, None) if client.is_public() => {
            return Err(OAuthError::invalid_grant(
                "PKCE is required for public clients",
            ))
        }
        (None, None) => {}
    }
    Ok(())
}

/// Token response, new refresh family id, access token `jti` and `exp`.
type Issued = (Value, Option<String>, (String, u64));

enum Redeem {
    Ok(CodeRecord),
    Replay(UsedCode),
    Bad(OAuthError),
}

/// RFC 6749 §4.1.3 with RFC 7636 and incremental authorization's `existing_grant` (-04 §5).
pub(crate) fn authorization_code(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let key = digest(form.require("code")?);
    let outcome = state.flows.codes.with(&key, |record| match record {
        None => Redeem::Bad(OAuthError::invalid_grant("code is invalid or expired")),
        Some(r) if r.client_id != client.id => Redeem::Bad(OAuthError::invalid_grant(
            "code was issued to another client",
        )),
        Some(r) => match &r.used {
            Some(used) => Redeem::Replay(used.clone()),
            None => {
                r.used = Some(UsedCode::default());
                match check_code(r, client, form) {
                    Ok(()) => Redeem::Ok(r.clone()),
                    Err(e) => Redeem::Bad(e),
                }
            }
        },
    });
    let record = match outcome {
        Redeem::Ok(r) => r,
        Redeem::Bad(e) => return Err(e),
        Redeem::Replay(used) => {
            // RFC 6749 §4.1.2: revoke what the first redemption produced.
            if let Some(family) = &used.family {
                state.refresh.revoke_family(family);
            }
            if let Some((jti, exp)) = used.jti {
                // Never skipped: a full revocation list gives up the entry closest to expiry.
                if let Some(until) = state.revoked.insert_evicting(jti, exp) {
                    tracing::error!(
                        client_id = %client.id,
                        reinstated_for_secs = until.saturating_sub(chaingate_oauth::util::now_secs()),
                        "revocation list full: an older revocation was dropped to record this one"
                    );
                }
            }
            tracing::warn!(client_id = %client.id, "authorization code replayed; its tokens are revoked");
            return Err(OAuthError::invalid_grant("code was already used"));
        }
    };
    let mut scope = record.scope.clone();
    if let Some(existing) = form.get("existing_grant") {
        let family = state
            .refresh
            .existing(existing, &client.id)
            .map_err(|e| OAuthError::invalid_grant(format!("existing_grant: {}", e.describe())))?;
        if family.user != record.user {
            return Err(OAuthError::invalid_grant(
                "existing_grant: it belongs to another user",
            ));
        }
        scope.extend(family.scope.iter().cloned());
        let _ = state.flows.add_granted(&record.user, &client.id, &scope);
    }
    let (response, family, jti) =
        issue_with_refresh(state, client, &record.user, scope, None, jkt)?;
    state.flows.codes.with(&key, |r| {
        if let Some(r) = r {
            r.used = Some(UsedCode {
                family,
                jti: Some(jti),
            });
        }
    });
    Ok(response)
}

/// Signs the access token; starts a refresh family (or continues one with `rotated`) if the
/// client may use `refresh_token`.
fn issue_with_refresh(
    state: &Authority,
    client: &Client,
    user: &str,
    scope: BTreeSet<String>,
    rotated: Option<String>,
    jkt: Option<&str>,
) -> Result<Issued, OAuthError> {
    let audiences = vec![client
        .audience
        .clone()
        .unwrap_or_else(|| state.default_audience.clone())];
    let issue = Issue {
        sub: user,
        audiences,
        scope: scope.clone(),
        max_exp: None,
        act: None,
    };
    let (mut response, jti) = issue_token_jti(state, client, issue, jkt)?;
    let ttl = state.config.interactive.refresh_token_ttl.as_secs();
    let unavailable = |e: RefreshError| OAuthError::unavailable(e.describe());
    let family = match rotated {
        Some(token) => {
            response["refresh_token"] = Value::String(token);
            None
        }
        None if client.grants.contains(&Grant::RefreshToken) => {
            let (family, token) = state
                .refresh
                // RFC 9449 §5: a public client's refresh token is bound to its DPoP key; a
                // confidential client's is not (it authenticates on every refresh).
                .start(
                    &client.id,
                    user,
                    scope,
                    jkt.filter(|_| client.is_public()),
                    ttl,
                )
                .map_err(unavailable)?;
            response["refresh_token"] = Value::String(token);
            Some(family)
        }
        None => None,
    };
    Ok((response, family, jti))
}

/// RFC 6749 §6 with rotation: the presented token is spent; presenting it again revokes the
/// grant. `scope` may narrow the access token; the new refresh token keeps the grant's scope.
pub(crate) fn refresh(
    state: &Authority,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
) -> Result<Value, OAuthError> {
    let token = form.require("refresh_token")?;
    let bad = |e: RefreshError| match e {
        RefreshError::Full => OAuthError::unavailable(e.describe()),
        _ => OAuthError::invalid_grant(e.describe()),
    };
    let requested = form
        .get("scope")
        .map(|s| parse_scope(s).map_err(OAuthError::invalid_scope))
        .transpose()?;
    // Check a narrowed scope before spending the token (errors leave it usable).
    if let (Some(req), Ok(family)) = (&requested, state.refresh.existing(token, &client.id)) {
        if !req.is_subset(&family.scope) {
            return Err(OAuthError::invalid_scope(
                "scope exceeds the scope of the grant",
            ));
        }
    }
    let ttl = state.config.interactive.refresh_token_ttl.as_secs();
    let (family, new_token) = state
        .refresh
        .rotate(token, &client.id, jkt, ttl)
        .map_err(bad)?;
    let scope = requested.unwrap_or_else(|| family.scope.clone());
    let (response, _, _) =
        issue_with_refresh(state, client, &family.user, scope, Some(new_token), jkt)?;
    Ok(response)
}

/// `Link: <ruri>; rel="ruri", <duri>; rel="duri"` (RFC 8288) for clients with
/// `response_metadata`; `ruri` is the client's `resource_uri`, else the default audience if it
/// is an http(s) URL.
pub(crate) fn link_header(state: &Authority, client: &Client) -> Option<String> {
    if !client.response_metadata {
        return None;
    }
    let ruri = client.resource_uri.clone().or_else(|| {
        let aud = client.audience.as_ref().unwrap_or(&state.default_audience);
        (aud.starts_with("https://") || aud.starts_with("http://")).then(|| aud.clone())
    });
    let duri = format!("<{}>; rel=\"duri\"", state.discovery_url());
    Some(match ruri {
        Some(r) => format!("<{r}>; rel=\"ruri\", {duri}"),
        None => duri,
    })
}
