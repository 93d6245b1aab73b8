//! Client authentication (RFC 6749 §2.3): client_secret_basic, client_secret_post, private_key_jwt,
//! and federated clients whose platform's JWT is the assertion (RFC 7523 §2.2,
//! draft-ietf-oauth-spiffe-client-auth).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::config::{Client, ClientAuthMethod, Federated};
use super::state::Authority;
use super::store::InsertError;
use super::web::{Form, OAuthError};
use chaingate_oauth::jwt;
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::now_secs;

/// RFC 7523 §2.2 assertion type for client authentication.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// draft-ietf-oauth-spiffe-client-auth: a JWT-SVID as the client assertion.
const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

const FAILED: &str = "client authentication failed";

/// Credentials as presented, before checking them.
enum Presented {
    Basic {
        id: String,
        secret: Secret,
    },
    Post {
        id: String,
        secret: Secret,
    },
    Assertion {
        assertion: Secret,
        /// `client_assertion_type` was jwt-spiffe (only federated clients accept it).
        spiffe: bool,
    },
    /// Only `client_id` (public clients, RFC 6749 §2.3 / §3.2.1).
    IdOnly {
        id: String,
    },
}

/// Authenticates the client of a token, introspection or revocation request.
/// `endpoint` is the URL of the endpoint being called (accepted as a client assertion `aud`).
pub(crate) async fn authenticate(
    state: &Authority,
    headers: &HeaderMap,
    form: &Form,
    endpoint: &str,
) -> Result<Arc<Client>, OAuthError> {
    let presented = presented(headers, form)?;
    let id = match &presented {
        Presented::Basic { id, .. } | Presented::Post { id, .. } | Presented::IdOnly { id } => {
            id.clone()
        }
        Presented::Assertion { assertion, .. } => assertion_client_id(assertion, form)?,
    };
    let Some(client) = state.client(&id) else {
        // Spend comparable time on unknown clients so ids cannot be probed by timing.
        let _ = Secret::new("0123456789abcdef0123456789abcdef").ct_eq("fedcba9876543210");
        return Err(OAuthError::invalid_client(FAILED));
    };
    if state.locked_out(&client.id) {
        return Err(OAuthError::invalid_client(
            "too many failed authentication attempts; try again later",
        ));
    }
    let result = match (&presented, &client.auth) {
        (Presented::Basic { secret, .. }, ClientAuthMethod::SecretBasic(expected))
        | (Presented::Post { secret, .. }, ClientAuthMethod::SecretPost(expected)) => {
            if expected.ct_eq(secret.expose()) {
                Ok(())
            } else {
                Err(OAuthError::invalid_client(FAILED))
            }
        }
        (
            Presented::Assertion {
                assertion,
                spiffe: false,
            },
            ClientAuthMethod::PrivateKeyJwt(keys),
        ) => check_assertion(state, &client, keys, assertion, endpoint),
        (Presented::Assertion { assertion, .. }, ClientAuthMethod::Federated(federated)) => {
            check_federated(state, &client, federated, assertion, endpoint).await
        }
        (Presented::IdOnly { .. }, ClientAuthMethod::None) => Ok(()),
        (Presented::IdOnly { .. }, _) => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
        (_, method) => Err(OAuthError::invalid_client(format!(
            "this client must authenticate with {}",
            method.name()
        ))),
    };
    match result {
        Ok(()) => Ok(client),
        Err(e) => {
            state.record_failure(&client.id);
            Err(e)
        }
    }
}

/// Finds exactly one authentication method in the request (RFC 6749 §2.3: never more).
fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let mut found = Vec::new();
    let mut auth_headers = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = auth_headers.next() {
        if auth_headers.next().is_some() {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        found.push(basic(value.as_bytes())?);
    }
    if let Some(secret) = form.get("client_secret") {
        let id = form
            .get("client_id")
            .ok_or_else(|| OAuthError::invalid_client("client_secret without client_id"))?;
        found.push(Presented::Post {
            id: id.to_string(),
            secret: Secret::new(secret),
        });
    }
    if form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some() {
        let spiffe = match form.get("client_assertion_type") {
            Some(JWT_BEARER) => false,
            Some(JWT_SPIFFE) => true,
            _ => {
                return Err(OAuthError::invalid_client(
                    "unsupported or missing client_assertion_type",
                ))
            }
        };
        let assertion = form
            .get("client_assertion")
            .ok_or_else(|| OAuthError::invalid_client("missing client_assertion"))?;
        found.push(Presented::Assertion {
            assertion: Secret::new(assertion),
            spiffe,
        });
    }
    if found.len() > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method in one request",
        ));
    }
    let presented = match (found.pop(), form.get("client_id")) {
        (Some(p), _) => p,
        (None, Some(id)) => Presented::IdOnly { id: id.to_string() },
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is required",
            ))
        }
    };
    if let (Presented::Basic { id, .. }, Some(body_id)) = (&presented, form.get("client_id")) {
        if body_id != id {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
    }
    Ok(presented)
}

/// Parses `Authorization: Basic` with RFC 6749 §2.3.1 form-urlencoded id and secret.
fn basic(value: &[u8]) -> Result<Presented, OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed Basic credentials");
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported Authorization scheme; use Basic",
        ));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).ok_or_else(malformed)?;
    let secret = form_decode(secret).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Presented::Basic {
        id,
        secret: Secret::new(secret),
    })
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is space, `%XX` a byte.
pub(crate) fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client an assertion claims to be: `client_id` if sent, else its `iss`. A federated
/// client's assertion names the workload issuer as `iss`, so `client_id` is how it is found;
/// for private_key_jwt, `iss` = `sub` = the client is checked with the signature.
fn assertion_client_id(assertion: &Secret, form: &Form) -> Result<String, OAuthError> {
    if let Some(id) = form.get("client_id") {
        return Ok(id.to_string());
    }
    let (_, claims) = jwt::peek(assertion.expose())
        .map_err(|e| OAuthError::invalid_client(format!("client_assertion: {e}")))?;
    let iss = claims.get("iss").and_then(|v| v.as_str());
    match (form.get("client_id"), iss) {
        (Some(id), _) => Ok(id.to_string()),
        (None, Some(iss)) => Ok(iss.to_string()),
        (None, None) => Err(OAuthError::invalid_client("client_assertion has no iss")),
    }
}

/// RFC 7523 §3 checks for a client assertion, plus replay refusal by `jti`.
fn check_assertion(
    state: &Authority,
    client: &Client,
    keys: &chaingate_oauth::keys::KeySet,
    assertion: &Secret,
    endpoint: &str,
) -> Result<(), OAuthError> {
    let bad = |m: String| OAuthError::invalid_client(format!("client_assertion: {m}"));
    let (header, _) = jwt::peek(assertion.expose()).map_err(bad)?;
    // RFC 8725 §3.12: an access token is never a client assertion.
    if jwt::typ_is(&header, "at+jwt") {
        return Err(bad("an access token is not a client assertion".into()));
    }
    let verified = jwt::verify(assertion.expose(), &header, keys).map_err(bad)?;
    let claims = &verified.claims;
    if jwt::string_claim(claims, "iss").map_err(bad)? != client.id
        || jwt::string_claim(claims, "sub").map_err(bad)? != client.id
    {
        return Err(bad("iss and sub must both be the client_id".into()));
    }
    let accepted = [state.issuer.as_str(), &state.endpoint("/token"), endpoint];
    let auds = jwt::audiences(claims).map_err(bad)?;
    if !auds.iter().any(|a| accepted.contains(&a.as_str())) {
        return Err(bad("aud does not identify this authority".into()));
    }
    let skew = state.config.clock_skew.as_secs();
    let exp = jwt::check_times(claims, skew).map_err(bad)?;
    if exp > now_secs() + state.config.max_assertion_lifetime.as_secs() + skew {
        return Err(bad("exp is too far in the future".into()));
    }
    let jti = jwt::string_claim(claims, "jti").map_err(bad)?;
    match state.replay.insert(format!("{}\u{0}{jti}", client.id), exp) {
        Ok(()) => Ok(()),
        Err(InsertError::Present) => Err(bad("jti was already used".into())),
        Err(InsertError::Full) => Err(OAuthError::unavailable("replay cache is full")),
    }
}

/// A federated client's assertion: signed by its workload issuer, for exactly its subject,
/// aimed at this authority, in its lifetime, and (with `single_use`) never seen before.
/// Every refusal is the same `invalid_client` (RFC 6749 §5.2); the log says which check
/// failed, never anything of the assertion.
async fn check_federated(
    state: &Authority,
    client: &Client,
    federated: &Federated,
    assertion: &Secret,
    endpoint: &str,
) -> Result<(), OAuthError> {
    let refuse = |check: &'static str| {
        tracing::info!(client_id = %client.id, check, "federated client assertion refused");
        OAuthError::invalid_client(FAILED)
    };
    let (header, _) = jwt::peek(assertion.expose()).map_err(|_| refuse("malformed"))?;
    if jwt::typ_is(&header, "at+jwt") {
        return Err(refuse("typ"));
    }
    let kid = header.get("kid").and_then(|v| v.as_str());
    let keys = state
        .federated_keys(&client.id, federated, kid)
        .await
        .map_err(|e| {
            tracing::warn!(client_id = %client.id, error = %e, "workload issuer keys unavailable");
            OAuthError::unavailable("the workload issuer's keys are unavailable")
        })?;
    let verified =
        jwt::verify(assertion.expose(), &header, &keys).map_err(|_| refuse("signature"))?;
    let claims = &verified.claims;
    if jwt::string_claim(claims, "iss").ok() != Some(federated.issuer.as_str()) {
        return Err(refuse("iss"));
    }
    if jwt::string_claim(claims, "sub").ok() != Some(federated.subject.as_str()) {
        return Err(refuse("sub"));
    }
    let token_endpoint = state.endpoint("/token");
    let accepted: Vec<&str> = match &federated.audience {
        Some(aud) => vec![aud.as_str()],
        None => vec![state.issuer.as_str(), &token_endpoint, endpoint],
    };
    let auds = jwt::audiences(claims).map_err(|_| refuse("aud"))?;
    if !auds.iter().any(|a| accepted.contains(&a.as_str())) {
        return Err(refuse("aud"));
    }
    let exp = jwt::check_times(claims, state.config.clock_skew.as_secs())
        .map_err(|_| refuse("exp, nbf or iat"))?;
    if federated.single_use {
        let jti = jwt::string_claim(claims, "jti").map_err(|_| refuse("jti"))?;
        // A digest: the replay set holds no piece of the assertion.
        let mut digest = chaingate_oauth::digest::Sha256::new();
        digest.part(client.id.as_bytes());
        digest.part(jti.as_bytes());
        let key = format!(
            "federated\u{0}{}",
            chaingate_oauth::digest::hex(&digest.finish())
        );
        match state.replay.insert(key, exp) {
            Ok(()) => {}
            Err(InsertError::Present) => return Err(refuse("replay")),
            Err(InsertError::Full) => return Err(OAuthError::unavailable("replay cache is full")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        assert_eq!(form_decode("a%3Ab+%C3%BC").as_deref(), Some("a:b ü"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }
}
