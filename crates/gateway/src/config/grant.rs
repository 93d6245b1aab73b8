//! Grant profiles at a domain's token endpoint: the chain grant, RFC 8693 token exchange, the
//! RFC 7523 JWT bearer grant, and the keys that only one of them takes.

use std::path::PathBuf;

use super::file::FileDomain;
use super::ConfigError;

/// The grant profile used at a domain's token endpoint.
#[derive(Debug, Clone)]
pub enum Grant {
    /// draft-hunt-oauth-chain-01: `grant_type=http://oauth.net/grant_type/chain`.
    Chain {
        /// `oauth_token_format`: how the caller's token is put into `oauth_token`.
        oauth_token_format: OAuthTokenFormat,
    },
    /// RFC 8693 token exchange.
    TokenExchange(TokenExchange),
    /// RFC 7523 §2.1: the subject token is the `assertion` (on-behalf-of, identity chaining).
    JwtBearer,
    /// `identity-chaining` or `id-jag`: RFC 8693 at `chaining_domain` for a grant aimed at this
    /// domain's authority, then RFC 7523 `jwt-bearer` here with it as the `assertion`.
    Chained(super::chaining::Chaining),
}

impl Grant {
    /// The grant's short name in audit events and spans.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Chain { .. } => "chain",
            Self::TokenExchange(_) => "token-exchange",
            Self::JwtBearer => "jwt-bearer",
            Self::Chained(chaining) => chaining.profile.name(),
        }
    }
}

/// RFC 8693 §2.1 request parameters.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    /// `subject_token_type` as a token-type URN (RFC 8693 §3); default `access_token`.
    pub subject_token_type: String,
    /// `audience` values, each sent as its own parameter (RFC 8693 §2.1).
    pub audience: Vec<String>,
    /// `resource` values, absolute URIs, each sent as its own parameter (RFC 8707 §2).
    pub resource: Vec<String>,
    /// `requested_token_type` URN; when set, the answer's `issued_token_type` must equal it.
    pub requested_token_type: Option<String>,
    /// Re-read at every exchange: projected service-account tokens rotate on disk.
    pub actor_token_file: Option<PathBuf>,
    /// `actor_token_type` URN sent with the actor token; default `jwt`.
    pub actor_token_type: String,
}

/// What goes into `oauth_token` (draft-hunt-oauth-chain-01 §2.1): the caller's token as received,
/// or the RFC 8693 token type it is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthTokenFormat {
    /// The bare token, as every RFC 8693/7523 server expects.
    Bare,
    /// The whole Authorization value, `Bearer <AT1>`, as the draft's text reads.
    AuthorizationValue,
}

/// The RFC 8693 §3 token-type URN namespace; short names in the config (`jwt`) get it prepended.
pub const TOKEN_TYPE_PREFIX: &str = "urn:ietf:params:oauth:token-type:";

/// `access_token` → `urn:ietf:params:oauth:token-type:access_token`; URNs stay as they are.
fn token_type_urn(key: &str, value: &str) -> Result<String, ConfigError> {
    match value {
        "access_token" | "jwt" | "id_token" | "refresh_token" | "saml1" | "saml2" => {
            Ok(format!("{TOKEN_TYPE_PREFIX}{value}"))
        }
        v if v.contains(':') => Ok(v.to_string()),
        _ => Err(ConfigError::key(
            key,
            "not a token type (access_token, jwt, or a URN)",
        )),
    }
}

pub(super) fn parse_grant(name: &str, d: &FileDomain) -> Result<Grant, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    let exchange_only = [
        ("subject_token_type", d.subject_token_type.is_some()),
        ("audience", !d.audience.to_vec().is_empty()),
        // An ID-JAG may name the resource server at B (ID-JAG §4.3).
        (
            "resource",
            !d.resource.to_vec().is_empty() && d.grant != "id-jag",
        ),
        ("requested_token_type", d.requested_token_type.is_some()),
        ("actor_token_file", d.actor_token_file.is_some()),
        ("actor_token_type", d.actor_token_type.is_some()),
    ];
    let grant = match d.grant.as_str() {
        "chain" => Grant::Chain {
            oauth_token_format: match d.oauth_token_format.as_deref() {
                None | Some("bare") => OAuthTokenFormat::Bare,
                Some("authorization") => OAuthTokenFormat::AuthorizationValue,
                Some(_) => {
                    return Err(ConfigError::key(
                        key("oauth_token_format"),
                        "not bare or authorization",
                    ))
                }
            },
        },
        "token-exchange" => {
            for resource in d.resource.to_vec() {
                let ok = super::targets::is_resource_uri(&resource);
                if !ok {
                    return Err(ConfigError::key(
                        key("resource"),
                        "each resource is an absolute URI without fragment (RFC 8707)",
                    ));
                }
            }
            Grant::TokenExchange(TokenExchange {
                subject_token_type: token_type_urn(
                    &key("subject_token_type"),
                    d.subject_token_type.as_deref().unwrap_or("access_token"),
                )?,
                audience: d.audience.to_vec(),
                resource: d.resource.to_vec(),
                requested_token_type: d
                    .requested_token_type
                    .as_deref()
                    .map(|t| token_type_urn(&key("requested_token_type"), t))
                    .transpose()?,
                actor_token_file: d.actor_token_file.clone(),
                actor_token_type: token_type_urn(
                    &key("actor_token_type"),
                    d.actor_token_type.as_deref().unwrap_or("jwt"),
                )?,
            })
        }
        "jwt-bearer" => Grant::JwtBearer,
        "identity-chaining" | "id-jag" => Grant::Chained(super::chaining::parse(name, d)?),
        _ => return Err(ConfigError::key(
            key("grant"),
            "not a supported grant (chain, token-exchange, jwt-bearer, identity-chaining, id-jag)",
        )),
    };
    if !matches!(grant, Grant::TokenExchange(_)) {
        if let Some((field, _)) = exchange_only.iter().find(|(_, set)| *set) {
            return Err(ConfigError::key(
                key(field),
                "applies to grant = \"token-exchange\" only",
            ));
        }
    }
    if !matches!(grant, Grant::Chained(_)) {
        super::chaining::refuse_keys(name, d)?;
    }
    if d.oauth_token_format.is_some() && !matches!(grant, Grant::Chain { .. }) {
        return Err(ConfigError::key(
            key("oauth_token_format"),
            "applies to grant = \"chain\" only",
        ));
    }
    Ok(grant)
}
