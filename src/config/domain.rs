//! Downstream domains: where chaingate exchanges tokens, with which grant, as which client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::Uri;
use rustls::pki_types::CertificateDer;

use super::client_auth::client_auth;
use super::digest::Digest;
use super::file::FileDomain;
use super::reciprocal::Reciprocal;
use super::response_metadata::{response_metadata, ResponseMetadata};
use super::scope_strategy::{scope_strategy, ScopeStrategy};
use super::{load_certs, parse_duration, validate_scope, ConfigError, TlsIdentity};
use crate::oauth::keys::SigningKey;
use crate::secret::Secret;

/// A downstream OAuth domain whose token endpoint chaingate exchanges tokens at.
#[derive(Debug)]
pub struct Domain {
    pub name: Arc<str>,
    pub endpoint: TokenEndpoint,
    pub allow_insecure_http: bool,
    pub grant: Grant,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scope: Option<String>,
    /// Sent with every token request, after the grant's own parameters.
    pub extra_params: Vec<(String, String)>,
    /// The domain whose token is this domain's subject token (multi-hop), if any.
    pub subject_domain: Option<Arc<str>>,
    /// CA certificates for the token endpoint; `None` means the system roots.
    pub ca_certs: Option<Vec<CertificateDer<'static>>>,
    pub timeout: Duration,
    pub protection: Protection,
    /// Reciprocal OAuth: where to obtain codes for this domain's `reciprocal` requests.
    pub reciprocal: Option<Reciprocal>,
    /// RFC 7591 self-registration; the exchanger then uses the issued credentials.
    pub registration: Option<Arc<super::Registration>>,
    pub scope_strategy: ScopeStrategy,
    pub response_metadata: ResponseMetadata,
}

/// How chaingate protects a token server, and its callers, when the server struggles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Extra attempts after a connect error, 5xx or 429, within the exchange deadline.
    pub retries: u32,
    /// Retries may add at most this share of traffic on top of first attempts (plus a floor).
    pub retry_budget_percent: u32,
    /// Consecutive unavailable answers that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one probe is let through.
    pub breaker_open: Duration,
    /// Exchanges in flight to this domain at once; beyond it, 503 at once.
    pub max_in_flight: usize,
}

/// Where the token endpoint comes from.
#[derive(Debug, Clone)]
pub enum TokenEndpoint {
    Fixed(Uri),
    /// RFC 8414 discovery from the issuer, refreshed periodically.
    Discover {
        issuer: String,
        refresh: Duration,
    },
}

/// The grant profile used at a domain's token endpoint.
#[derive(Debug, Clone)]
pub enum Grant {
    /// draft-hunt-oauth-chain-01: `grant_type=http://oauth.net/grant_type/chain`.
    Chain {
        oauth_token_format: OAuthTokenFormat,
    },
    /// RFC 8693 token exchange.
    TokenExchange(TokenExchange),
    /// RFC 7523 §2.1: the subject token is the `assertion` (on-behalf-of, identity chaining).
    JwtBearer,
}

/// RFC 8693 §2.1 request parameters.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    pub subject_token_type: String,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
    pub requested_token_type: Option<String>,
    /// Re-read at every exchange: projected service-account tokens rotate on disk.
    pub actor_token_file: Option<PathBuf>,
    pub actor_token_type: String,
}

/// What goes into `oauth_token` (specs.md §19.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthTokenFormat {
    /// The bare token, as every RFC 8693/7523 server expects.
    Bare,
    /// The whole Authorization value, `Bearer <AT1>`, as the draft's text reads.
    AuthorizationValue,
}

/// How chaingate authenticates itself to a token endpoint (RFC 6749 §2.3, RFC 7523, RFC 8705).
#[derive(Clone)]
pub enum ClientAuth {
    /// Precomputed `Authorization: Basic` value (id and secret form-urlencoded first, §2.3.1).
    Basic(HeaderValue),
    /// `client_id` and `client_secret` in the form body.
    Post(Secret),
    /// A fresh signed client assertion per request.
    PrivateKeyJwt(Arc<AssertionKey>),
    /// Mutual TLS with this certificate; `client_id` in the body.
    TlsClientAuth(Arc<TlsIdentity>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Basic(_) => "ClientAuth::Basic([redacted])",
            Self::Post(_) => "ClientAuth::Post([redacted])",
            Self::PrivateKeyJwt(_) => "ClientAuth::PrivateKeyJwt([redacted])",
            Self::TlsClientAuth(_) => "ClientAuth::TlsClientAuth([redacted])",
        })
    }
}

/// The key that signs RFC 7523 client assertions, and the `aud` they carry.
#[derive(Debug)]
pub struct AssertionKey {
    pub(crate) key: SigningKey,
    pub audience: AssertionAudience,
    /// The PEM the key came from, for change detection on reload.
    pub(super) pem_digest: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionAudience {
    TokenEndpoint,
    Issuer,
    Fixed(String),
}

pub const TOKEN_TYPE_PREFIX: &str = "urn:ietf:params:oauth:token-type:";

/// `access_token` → `urn:ietf:params:oauth:token-type:access_token`; URNs stay as they are.
fn token_type_urn(key: &str, value: &str) -> Result<String, ConfigError> {
    match value {
        "access_token" | "jwt" | "id_token" | "refresh_token" | "saml1" | "saml2" => {
            Ok(format!("{TOKEN_TYPE_PREFIX}{value}"))
        }
        v if v.contains(':') => Ok(v.to_string()),
        other => Err(ConfigError::key(
            key,
            format!("`{other}` is not a token type (access_token, jwt, or a URN)"),
        )),
    }
}

pub(super) fn http_url(
    key: &str,
    text: &str,
    allow_insecure_http: bool,
) -> Result<Uri, ConfigError> {
    let uri: Uri = text
        .parse()
        .map_err(|_| ConfigError::key(key, "not a valid URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_insecure_http => {}
        Some("http") => return Err(ConfigError::key(
            key,
            "plain http sends secrets in clear text; use https or set allow_insecure_http = true",
        )),
        _ => return Err(ConfigError::key(key, "must be an http(s) URL")),
    }
    if uri.authority().is_none() {
        return Err(ConfigError::key(key, "has no host"));
    }
    Ok(uri)
}

pub(super) fn validate_domain(
    name: &str,
    d: &FileDomain,
    default_timeout: Duration,
) -> Result<Domain, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    let endpoint = match (&d.token_endpoint, &d.issuer) {
        (Some(url), None) => TokenEndpoint::Fixed(http_url(
            &key("token_endpoint"),
            url,
            d.allow_insecure_http,
        )?),
        (None, Some(issuer)) => {
            let uri = http_url(&key("issuer"), issuer, d.allow_insecure_http)?;
            if uri.query().is_some() || issuer.contains('#') {
                return Err(ConfigError::key(
                    key("issuer"),
                    "must have no query or fragment (RFC 8414 §2)",
                ));
            }
            let refresh = match &d.discovery_refresh {
                Some(t) => parse_duration(&key("discovery_refresh"), t)?,
                None => Duration::from_secs(3600),
            };
            TokenEndpoint::Discover {
                issuer: issuer.clone(),
                refresh,
            }
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                key("issuer"),
                "set token_endpoint or issuer, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::key(
                key("token_endpoint"),
                "missing (or issuer, for discovery)",
            ))
        }
    };

    let exchange_only = [
        ("subject_token_type", d.subject_token_type.is_some()),
        ("audience", !d.audience.to_vec().is_empty()),
        ("resource", !d.resource.to_vec().is_empty()),
        ("requested_token_type", d.requested_token_type.is_some()),
        ("actor_token_file", d.actor_token_file.is_some()),
        ("actor_token_type", d.actor_token_type.is_some()),
    ];
    let grant = match d.grant.as_str() {
        "chain" => Grant::Chain {
            oauth_token_format: match d.oauth_token_format.as_deref() {
                None | Some("bare") => OAuthTokenFormat::Bare,
                Some("authorization") => OAuthTokenFormat::AuthorizationValue,
                Some(other) => {
                    return Err(ConfigError::key(
                        key("oauth_token_format"),
                        format!("`{other}` is not bare or authorization"),
                    ))
                }
            },
        },
        "token-exchange" => {
            for resource in d.resource.to_vec() {
                let ok = resource.parse::<Uri>().is_ok_and(|u| u.scheme().is_some())
                    && !resource.contains('#');
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
        other => {
            return Err(ConfigError::key(
                key("grant"),
                format!("`{other}` is not a supported grant (chain, token-exchange, jwt-bearer)"),
            ))
        }
    };
    if !matches!(grant, Grant::TokenExchange(_)) {
        if let Some((field, _)) = exchange_only.iter().find(|(_, set)| *set) {
            return Err(ConfigError::key(
                key(field),
                "applies to grant = \"token-exchange\" only",
            ));
        }
    }
    if d.oauth_token_format.is_some() && !matches!(grant, Grant::Chain { .. }) {
        return Err(ConfigError::key(
            key("oauth_token_format"),
            "applies to grant = \"chain\" only",
        ));
    }

    let registration = super::registration::validate_registration(name, d)?;
    let client_id = match (&d.client_id, &registration) {
        (Some(id), None) if !id.is_empty() => id.clone(),
        (Some(_), None) => return Err(ConfigError::key(key("client_id"), "must not be empty")),
        (None, None) => {
            return Err(ConfigError::key(
                key("client_id"),
                "missing (or [domains.NAME.registration])",
            ))
        }
        (_, Some(_)) => String::new(),
    };
    // With registration this only names the method: the exchanger uses the issued secret.
    let client_auth = match &registration {
        Some(r) if r.secret_in_body => ClientAuth::Post(Secret::new("")),
        Some(_) => ClientAuth::Basic(HeaderValue::from_static("Basic")),
        None => client_auth(name, d)?,
    };
    if let Some(scope) = &d.scope {
        validate_scope(&key("scope"), scope)?;
    }
    for param in d.extra_params.keys() {
        const RESERVED: [&str; 9] = [
            "grant_type",
            "client_id",
            "client_secret",
            "client_assertion",
            "client_assertion_type",
            "oauth_token",
            "subject_token",
            "assertion",
            "actor_token",
        ];
        if RESERVED.contains(&param.as_str()) {
            return Err(ConfigError::key(
                key(&format!("extra_params.{param}")),
                "is set by chaingate itself",
            ));
        }
    }
    if d.subject_domain.as_deref() == Some(name) {
        return Err(ConfigError::key(
            key("subject_domain"),
            "a domain cannot be its own subject domain",
        ));
    }
    Ok(Domain {
        name: Arc::from(name),
        endpoint,
        allow_insecure_http: d.allow_insecure_http,
        grant,
        client_id,
        client_auth,
        scope: d.scope.clone(),
        extra_params: d
            .extra_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        subject_domain: d.subject_domain.as_deref().map(Arc::from),
        ca_certs: d
            .ca_file
            .as_deref()
            .map(|p| load_certs(&key("ca_file"), p))
            .transpose()?,
        timeout: match &d.timeout {
            Some(t) => parse_duration(&key("timeout"), t)?,
            None => default_timeout,
        },
        protection: Protection {
            retries: d.retries.unwrap_or(2),
            retry_budget_percent: d.retry_budget_percent.unwrap_or(20),
            breaker_failures: match d.breaker_failures.unwrap_or(5) {
                0 => {
                    return Err(ConfigError::key(
                        key("breaker_failures"),
                        "must be at least 1",
                    ))
                }
                n => n,
            },
            breaker_open: match &d.breaker_open {
                Some(t) => parse_duration(&key("breaker_open"), t)?,
                None => Duration::from_secs(5),
            },
            max_in_flight: match d.max_in_flight.unwrap_or(128) {
                0 => return Err(ConfigError::key(key("max_in_flight"), "must be at least 1")),
                n => n,
            },
        },
        reciprocal: d
            .reciprocal
            .as_ref()
            .map(|r| super::reciprocal::validate(name, r, default_timeout))
            .transpose()?,
        registration: registration.map(Arc::new),
        scope_strategy: scope_strategy(name, d.scope_strategy.as_deref())?,
        response_metadata: response_metadata(
            name,
            d.response_metadata.as_deref(),
            d.issuer.is_some(),
        )?,
    })
}

impl Domain {
    /// A digest of every setting, secret and key included: equal digests mean an exchanger and
    /// its cached tokens can be kept across a reload.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut d = Digest::new();
        d.part(self.name.as_bytes());
        d.part(
            format!(
                "{:?}|{:?}|{:?}|{:?}",
                self.endpoint, self.grant, self.extra_params, self.subject_domain
            )
            .as_bytes(),
        );
        d.part(&[u8::from(self.allow_insecure_http)]);
        d.part(self.client_id.as_bytes());
        match &self.client_auth {
            ClientAuth::Basic(value) => d.part(value.as_bytes()),
            ClientAuth::Post(secret) => d.part(secret.expose().as_bytes()),
            ClientAuth::PrivateKeyJwt(key) => {
                d.part(&key.pem_digest);
                d.part(format!("{:?}|{:?}", key.audience, key.key.kid()).as_bytes());
            }
            ClientAuth::TlsClientAuth(identity) => d.part(&identity.digest()),
        }
        d.part(self.scope.as_deref().unwrap_or("").as_bytes());
        for cert in self.ca_certs.iter().flatten() {
            d.part(cert.as_ref());
        }
        d.part(&self.timeout.as_nanos().to_be_bytes());
        d.part(format!("{:?}", self.protection).as_bytes());
        if let Some(reciprocal) = &self.reciprocal {
            reciprocal.fingerprint(&mut d);
        }
        if let Some(r) = &self.registration {
            d.part(r.fingerprint_part().as_bytes());
        }
        d.part(format!("{:?}|{:?}", self.scope_strategy, self.response_metadata).as_bytes());
        d.finish()
    }
}
