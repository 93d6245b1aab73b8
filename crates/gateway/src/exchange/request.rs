//! Token requests: the grant's parameters and chaingate's client authentication, form-encoded.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::Full;
use serde::Serialize;

use super::{Credentials, Endpoints, Failure};
use crate::config::{AssertionAudience, ClientAuth, Domain, Grant, OAuthTokenFormat, Targets};
use crate::error::Error;
use chaingate_oauth::util::{now_secs, random_id};

use chaingate_oauth::grant::CLIENT_ASSERTION_TYPE;
pub(crate) use chaingate_oauth::grant::{
    CHAIN_GRANT, JWT_BEARER_GRANT, RECIPROCAL_GRANT, TOKEN_EXCHANGE_GRANT,
};

/// Client assertions are single-use and short-lived (RFC 7523 §3: `exp` and `jti` are required, and a short life limits replay).
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// What one token request carries besides the domain's fixed settings.
pub(super) struct TokenRequest<'a> {
    pub(super) subject: &'a str,
    pub(super) scope: Option<&'a str>,
    /// The actor token (RFC 8693), already read from its file.
    pub(super) actor: Option<&'a str>,
    /// The route's audience, resource and authorization details over the domain's.
    pub(super) targets: Option<&'a Targets>,
}

pub(super) fn build(
    domain: &Domain,
    credentials: &Credentials,
    endpoints: &Endpoints,
    req: &TokenRequest<'_>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(512));
    match &domain.grant {
        Grant::Chain { oauth_token_format } => {
            form.append_pair("grant_type", CHAIN_GRANT);
            match oauth_token_format {
                OAuthTokenFormat::Bare => form.append_pair("oauth_token", req.subject),
                OAuthTokenFormat::AuthorizationValue => {
                    form.append_pair("oauth_token", &format!("Bearer {}", req.subject))
                }
            };
        }
        Grant::TokenExchange(settings) => {
            form.append_pair("grant_type", TOKEN_EXCHANGE_GRANT);
            form.append_pair("subject_token", req.subject);
            form.append_pair("subject_token_type", &settings.subject_token_type);
            // A route's targets already hold the domain's where the route sets none.
            let (audience, resource) = match req.targets {
                Some(targets) => (&targets.audience, &targets.resource),
                None => (&settings.audience, &settings.resource),
            };
            for audience in audience {
                form.append_pair("audience", audience);
            }
            for resource in resource {
                form.append_pair("resource", resource);
            }
            if let Some(wanted) = &settings.requested_token_type {
                form.append_pair("requested_token_type", wanted);
            }
            // actor_token_type is REQUIRED with actor_token and MUST NOT appear without it.
            if let Some(actor) = req.actor {
                form.append_pair("actor_token", actor);
                form.append_pair("actor_token_type", &settings.actor_token_type);
            }
        }
        Grant::JwtBearer => {
            form.append_pair("grant_type", JWT_BEARER_GRANT);
            form.append_pair("assertion", req.subject);
        }
        // Step 2 of identity chaining §2.4.1 / ID-JAG §4.4: the grant from step 1.
        Grant::Chained(_) => {
            form.append_pair("grant_type", JWT_BEARER_GRANT);
            form.append_pair("assertion", req.subject);
        }
    }
    if let Some(targets) = req.targets {
        // RFC 8707 §2 and RFC 9396 §6 apply to any token request, not only token exchange
        // (whose resources went above).
        if !matches!(domain.grant, Grant::TokenExchange(_)) {
            for resource in &targets.resource {
                form.append_pair("resource", resource);
            }
        }
        if let Some(details) = &targets.authorization_details {
            form.append_pair("authorization_details", details);
        }
    }
    if let Some(scope) = req.scope {
        form.append_pair("scope", scope);
    }
    for (name, value) in &domain.extra_params {
        form.append_pair(name, value);
    }
    authenticated(credentials, endpoints, form)
}

/// draft-ietf-oauth-reciprocal §2.2.2: party A hands the domain's token server an authorization
/// code for the scope it asked for, with the token it issued to us naming the user.
pub(super) fn reciprocal(
    credentials: &Credentials,
    endpoints: &Endpoints,
    code: &str,
    access_token: &str,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut form = form_urlencoded::Serializer::new(String::with_capacity(512));
    form.append_pair("grant_type", RECIPROCAL_GRANT);
    form.append_pair("code", code);
    form.append_pair("access_token", access_token);
    // REQUIRED in the body even when the credentials travel in the Authorization header.
    if matches!(credentials.auth, ClientAuth::Basic(_)) {
        form.append_pair("client_id", &credentials.client_id);
    }
    authenticated(credentials, endpoints, form)
}

/// The form, posted to the token endpoint with exactly one client authentication method
/// (RFC 6749 §2.3).
pub(super) fn authenticated(
    credentials: &Credentials,
    endpoints: &Endpoints,
    mut form: form_urlencoded::Serializer<'_, String>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(endpoints.token.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    match &credentials.auth {
        ClientAuth::Basic(value) => request = request.header(AUTHORIZATION, value.clone()),
        ClientAuth::Post(secret) => {
            form.append_pair("client_id", &credentials.client_id);
            form.append_pair("client_secret", secret.expose());
        }
        ClientAuth::PrivateKeyJwt(key) => {
            let audience = match &key.audience {
                AssertionAudience::TokenEndpoint => endpoints.token.to_string(),
                AssertionAudience::Issuer => endpoints
                    .issuer
                    .clone()
                    .unwrap_or_else(|| endpoints.token.to_string()),
                AssertionAudience::Fixed(aud) => aud.clone(),
            };
            let now = now_secs();
            let claims = AssertionClaims {
                iss: &credentials.client_id,
                sub: &credentials.client_id,
                aud: &audience,
                iat: now,
                exp: now + ASSERTION_LIFETIME_SECS,
                jti: random_id(),
            };
            let assertion = key.key.sign("JWT", &claims).map_err(|_| {
                Failure::error(
                    Error::ExchangeFailed("cannot sign client assertion"),
                    "assertion",
                )
            })?;
            form.append_pair("client_id", &credentials.client_id);
            form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE);
            form.append_pair("client_assertion", &assertion);
        }
        // RFC 7523 §2.2 / draft-ietf-oauth-spiffe-client-auth: the platform's JWT is the
        // credential. Never sent at or near its `exp`: the server would refuse it anyway, and a
        // 503 tells the caller to retry once the kubelet has rotated it.
        ClientAuth::AssertionFile(file) => {
            // Logged and counted by the exchanger, which knows the domain.
            let assertion = file.current().map_err(assertion_failure)?;
            form.append_pair("client_id", &credentials.client_id);
            form.append_pair("client_assertion_type", file.kind.urn());
            form.append_pair("client_assertion", assertion.expose());
        }
        // RFC 8705 §2: the certificate authenticates; client_id identifies.
        ClientAuth::TlsClientAuth(_) => {
            form.append_pair("client_id", &credentials.client_id);
        }
    }
    request
        .body(Full::new(Bytes::from(form.finish())))
        .map_err(|_| {
            Failure::error(
                Error::ExchangeFailed("cannot build request"),
                "request build",
            )
        })
}

/// The exchange's failure for an unusable assertion file: 503, so callers retry once the
/// kubelet (or spiffe-helper) has written a fresh one.
pub(super) fn assertion_failure(e: crate::config::AssertionFileError) -> Failure {
    let mut failure = Failure::error(
        Error::ExchangeUnavailable {
            retry_after: ASSERTION_RETRY_AFTER,
        },
        e.reason(),
    );
    failure.assertion = Some(e);
    failure
}

/// Retry-After when the assertion file is unusable: the kubelet refreshes a projected token
/// well before expiry, so a short wait usually finds a fresh one.
const ASSERTION_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}
