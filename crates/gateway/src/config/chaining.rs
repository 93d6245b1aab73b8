//! `grant = "identity-chaining"` and `grant = "id-jag"`: the two named cross-domain profiles.
//!
//! Both are two steps. Step 1 is RFC 8693 at `chaining_domain` (the caller's authority, domain
//! A) with `requested_token_type` `jwt` (draft-ietf-oauth-identity-chaining-11 §2.3) or `id-jag`
//! (draft-ietf-oauth-identity-assertion-authz-grant-02 §4.3) and `audience` = this domain's
//! authorization server (its `issuer`, or `chaining_audience`). Step 2 is RFC 7523 `jwt-bearer`
//! at this domain (B) with the grant as the `assertion`. The grant is never cached: an ID-JAG
//! is single-use at B, and each B exchange (first try, retry or renewal) gets a fresh one.

use std::sync::Arc;

use http::Uri;

use super::domain::Domain;
use super::file::FileDomain;
use super::grant::{Grant, TokenExchange};
use super::ConfigError;

/// Which of the two profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainingProfile {
    /// draft-ietf-oauth-identity-chaining-11: a JWT authorization grant.
    IdentityChaining,
    /// draft-ietf-oauth-identity-assertion-authz-grant-02: an Identity Assertion JWT
    /// Authorization Grant.
    IdJag,
}

impl ChainingProfile {
    /// The `grant` value, also the audit/span name.
    pub fn name(self) -> &'static str {
        match self {
            Self::IdentityChaining => "identity-chaining",
            Self::IdJag => "id-jag",
        }
    }

    /// Step 1's `requested_token_type`; the answer's `issued_token_type` must equal it.
    pub fn requested_token_type(self) -> &'static str {
        match self {
            Self::IdentityChaining => "urn:ietf:params:oauth:token-type:jwt",
            Self::IdJag => "urn:ietf:params:oauth:token-type:id-jag",
        }
    }
}

/// A chained domain's settings.
#[derive(Debug, Clone)]
pub struct Chaining {
    /// `grant`: identity-chaining or id-jag.
    pub profile: ChainingProfile,
    /// `chaining_domain`: the `[domains.<name>]` of the caller's authority.
    pub domain: Arc<str>,
    /// Step 1's `audience`: this domain's authorization server.
    pub audience: String,
    /// `resource` (id-jag only): the resource server at this domain (RFC 8707, ID-JAG §4.3).
    pub resource: Vec<String>,
}

pub(super) fn parse(name: &str, d: &FileDomain) -> Result<Chaining, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    let profile = match d.grant.as_str() {
        "id-jag" => ChainingProfile::IdJag,
        _ => ChainingProfile::IdentityChaining,
    };
    let domain = match d.chaining_domain.as_deref() {
        None | Some("") => return Err(ConfigError::key(
            key("chaining_domain"),
            "missing: the [domains.<name>] of the caller's authority, where the grant is obtained",
        )),
        Some(other) if other == name => {
            return Err(ConfigError::key(
                key("chaining_domain"),
                "a domain cannot chain from itself",
            ))
        }
        Some(other) => Arc::from(other),
    };
    let audience = match (&d.chaining_audience, &d.issuer) {
        (Some(aud), _) if aud.is_empty() || aud.chars().any(char::is_whitespace) => {
            return Err(ConfigError::key(
                key("chaining_audience"),
                "must be a non-empty string without whitespace",
            ))
        }
        (Some(aud), _) => aud.clone(),
        (None, Some(issuer)) => issuer.clone(),
        (None, None) => {
            return Err(ConfigError::key(
                key("chaining_audience"),
                "missing: set issuer (the grant's audience is this domain's issuer) or chaining_audience",
            ))
        }
    };
    if d.subject_domain.is_some() {
        return Err(ConfigError::key(
            key("subject_domain"),
            "does not apply with identity-chaining or id-jag (chaining_domain is the first hop)",
        ));
    }
    let resource = d.resource.to_vec();
    for r in &resource {
        let ok = r.parse::<Uri>().is_ok_and(|u| u.scheme().is_some()) && !r.contains('#');
        if !ok {
            return Err(ConfigError::key(
                key("resource"),
                "each resource is an absolute URI without fragment (RFC 8707)",
            ));
        }
    }
    Ok(Chaining {
        profile,
        domain,
        audience,
        resource,
    })
}

/// `chaining_domain` and `chaining_audience` belong to the two profiles only.
pub(super) fn refuse_keys(name: &str, d: &FileDomain) -> Result<(), ConfigError> {
    for (field, set) in [
        ("chaining_domain", d.chaining_domain.is_some()),
        ("chaining_audience", d.chaining_audience.is_some()),
    ] {
        if set {
            return Err(ConfigError::key(
                format!("domains.{name}.{field}"),
                "applies to grant = \"identity-chaining\" or \"id-jag\" only",
            ));
        }
    }
    Ok(())
}

/// Every `chaining_domain` names a plain RFC 8693 domain: the profile sets its
/// `requested_token_type` and `audience`, and its own registration or reciprocal agent would be
/// duplicated by the first step.
pub(super) fn validate_chaining_domains(domains: &[Arc<Domain>]) -> Result<(), ConfigError> {
    for domain in domains {
        let Grant::Chained(chaining) = &domain.grant else {
            continue;
        };
        let key = format!("domains.{}.chaining_domain", domain.name);
        let a = domains
            .iter()
            .find(|d| d.name == chaining.domain)
            .ok_or_else(|| {
                ConfigError::key(&key, format!("no [domains.{}] is defined", chaining.domain))
            })?;
        let why = match &a.grant {
            Grant::TokenExchange(t) if t.requested_token_type.is_some() => {
                "names a domain with requested_token_type set; the profile sets it"
            }
            Grant::TokenExchange(_) if a.registration.is_some() || a.reciprocal.is_some() => {
                "names a domain with registration or reciprocal; use configured credentials there"
            }
            Grant::TokenExchange(_) => continue,
            _ => "names a domain whose grant is not token-exchange (RFC 8693 is the first step)",
        };
        return Err(ConfigError::key(key, why));
    }
    Ok(())
}

/// Step 1 as a domain of its own: A's endpoint, client and protection, with the profile's
/// RFC 8693 parameters. Its exchanger (and breaker) is separate from A's routes' own.
pub fn step_one(a: &Domain, chaining: &Chaining) -> Domain {
    // ID-JAG §4.3: actor_token is not used; neither profile sends A's.
    let (subject_token_type, actor_token_type) = match &a.grant {
        Grant::TokenExchange(t) => (t.subject_token_type.clone(), t.actor_token_type.clone()),
        // Validation admits token-exchange domains only.
        _ => (
            format!("{}access_token", super::TOKEN_TYPE_PREFIX),
            format!("{}jwt", super::TOKEN_TYPE_PREFIX),
        ),
    };
    Domain {
        name: a.name.clone(),
        endpoint: a.endpoint.clone(),
        allow_insecure_http: a.allow_insecure_http,
        grant: Grant::TokenExchange(TokenExchange {
            subject_token_type,
            audience: vec![chaining.audience.clone()],
            resource: chaining.resource.clone(),
            requested_token_type: Some(chaining.profile.requested_token_type().to_string()),
            actor_token_file: None,
            actor_token_type,
        }),
        client_id: a.client_id.clone(),
        client_auth: a.client_auth.clone(),
        scope: a.scope.clone(),
        extra_params: a.extra_params.clone(),
        subject_domain: None,
        ca_certs: a.ca_certs.clone(),
        timeout: a.timeout,
        protection: a.protection.clone(),
        reciprocal: None,
        registration: None,
        scope_strategy: a.scope_strategy,
        response_metadata: a.response_metadata,
        dpop: a.dpop.clone(),
        chaining_step: true,
    }
}
