//! Downstream domains: where chaingate exchanges tokens, with which grant, as which client.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::Uri;
use rustls::pki_types::CertificateDer;

use super::client_auth::client_auth;
use super::digest::Digest;
use super::file::FileDomain;
use super::grant::{parse_grant, Grant};
use super::reciprocal::Reciprocal;
use super::response_metadata::{response_metadata, ResponseMetadata};
use super::scope_strategy::{scope_strategy, ScopeStrategy};
use super::{load_certs, parse_duration, validate_scope, ConfigError, TlsIdentity};
use chaingate_oauth::keys::SigningKey;
use chaingate_oauth::secret::Secret;

/// A downstream OAuth domain whose token endpoint chaingate exchanges tokens at.
#[derive(Debug)]
pub struct Domain {
    /// The `<name>` of `[domains.<name>]`: what routes refer to, and the `domain` metric label.
    pub name: Arc<str>,
    /// `token_endpoint`, or the `issuer` it is discovered from.
    pub endpoint: TokenEndpoint,
    /// `allow_insecure_http`: permit `http://` token, discovery and registration endpoints.
    pub allow_insecure_http: bool,
    /// `grant`: the token request's profile (chain, RFC 8693 token exchange, RFC 7523 jwt-bearer).
    pub grant: Grant,
    /// `client_id`: chaingate's client at this domain; empty with `registration` (issued later).
    pub client_id: String,
    /// `auth_method` with its secret, key or certificate (RFC 6749 §2.3).
    pub client_auth: ClientAuth,
    /// `scope`: the default a route without its own `scope` requests (RFC 6749 §3.3).
    pub scope: Option<String>,
    /// Sent with every token request, after the grant's own parameters.
    pub extra_params: Vec<(String, String)>,
    /// The domain whose token is this domain's subject token (multi-hop), if any.
    pub subject_domain: Option<Arc<str>>,
    /// CA certificates for the token endpoint; `None` means the system roots.
    pub ca_certs: Option<Vec<CertificateDer<'static>>>,
    /// `timeout`: deadline of one whole exchange (retries included), else `timeouts.token_endpoint`.
    pub timeout: Duration,
    /// Retries, retry budget, circuit breaker and in-flight cap for this token server.
    pub protection: Protection,
    /// Reciprocal OAuth: where to obtain codes for this domain's `reciprocal` requests.
    pub reciprocal: Option<Reciprocal>,
    /// RFC 7591 self-registration; the exchanger then uses the issued credentials.
    pub registration: Option<Arc<super::Registration>>,
    /// `scope_strategy`: one token per route scope, or one per caller whose scope grows.
    pub scope_strategy: ScopeStrategy,
    /// `response_metadata`: whether token responses' `Link` `ruri`/`duri` must match.
    pub response_metadata: ResponseMetadata,
    /// `dpop`: the key proving possession to the token server and to upstreams (RFC 9449).
    pub dpop: Option<super::DpopKey>,
    /// Set on the first step of `identity-chaining`/`id-jag` (built by [`super::step_one`]): its
    /// discovery checks `identity_chaining_requested_token_types_supported`.
    pub chaining_step: bool,
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
    /// `token_endpoint`: this URL, as configured.
    Fixed(Uri),
    /// RFC 8414 discovery from the issuer, refreshed periodically.
    Discover {
        /// `issuer`: the metadata document's `issuer` must equal it exactly (RFC 8414 §3.3).
        issuer: String,
        /// `discovery_refresh`: how often discovery is repeated; a failure keeps the last endpoint.
        refresh: Duration,
    },
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
    /// `client_assertion_file`: a platform-issued JWT, re-read when the file changes.
    AssertionFile(Arc<super::AssertionFile>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Basic(_) => "ClientAuth::Basic([redacted])",
            Self::Post(_) => "ClientAuth::Post([redacted])",
            Self::PrivateKeyJwt(_) => "ClientAuth::PrivateKeyJwt([redacted])",
            Self::TlsClientAuth(_) => "ClientAuth::TlsClientAuth([redacted])",
            Self::AssertionFile(_) => "ClientAuth::AssertionFile([redacted])",
        })
    }
}

/// The key that signs RFC 7523 client assertions, and the `aud` they carry.
#[derive(Debug)]
pub struct AssertionKey {
    pub(crate) key: SigningKey,
    /// `client_assertion_audience`: what the assertion's `aud` names (RFC 7523 §3).
    pub audience: AssertionAudience,
    /// The PEM the key came from, for change detection on reload.
    pub(super) pem_digest: [u8; 32],
}

/// `client_assertion_audience`: the `aud` of RFC 7523 client assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionAudience {
    /// `"token_endpoint"`: the token endpoint URL in use (the default).
    TokenEndpoint,
    /// `"issuer"`: the domain's `issuer` (needs discovery).
    Issuer,
    /// A literal URL from the config.
    Fixed(String),
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

    let grant = parse_grant(name, d)?;

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
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect(),
        subject_domain: d.subject_domain.as_deref().map(Arc::from),
        dpop: super::dpop::dpop_key(name, d.dpop, d.dpop_key_file.as_deref())?,
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
        chaining_step: false,
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
            ClientAuth::TlsClientAuth(identity) => d.part(&super::digest::tls_digest(identity)),
            // The path and type identify it; the contents rotate by design.
            ClientAuth::AssertionFile(file) => {
                d.part(format!("{}|{:?}", file.path.display(), file.kind).as_bytes())
            }
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
        if let Some(dpop) = &self.dpop {
            dpop.fingerprint(&mut d);
        }
        d.finish()
    }
}
