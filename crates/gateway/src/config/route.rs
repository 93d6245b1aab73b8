//! Routes: path prefixes, upstream origins, and optional local validation of the caller's JWT.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use rustls::pki_types::CertificateDer;

use super::file::{self, FileRoute};
use super::{load_certs, parse_duration, validate_scope, ConfigError, Domain};

/// A route: requests whose path starts with `path_prefix` go to `upstream` with a token of `domain`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`, else the `path_prefix` (or `path`): the `route` label in metrics and logs.
    pub name: Arc<str>,
    /// Requests whose path starts with this (it starts with `/`) take this route; with
    /// `path_exact`, only the path equal to it (`path`).
    pub path_prefix: String,
    /// Where matching requests are forwarded, their own path and query kept.
    pub upstream: Upstream,
    /// The domain whose token replaces the caller's on the forwarded request.
    pub domain: Arc<Domain>,
    /// The scope requested at the token endpoint: the route's, else the domain's.
    pub scope: Option<String>,
    /// Local checks of the caller's JWT before any exchange, if configured.
    pub validate: Option<Arc<Validate>>,
    /// The origin a token's `ruri` must name (response_metadata = "verify"): `resource_uri`'s,
    /// else the upstream's, as `scheme://host:port`.
    pub resource_origin: Arc<str>,
    /// `dpop`: whether the caller may present `Authorization: DPoP` with a proof (RFC 9449 §7).
    pub dpop: super::InboundDpop,
    /// `dpop_max_age`: the oldest proof `iat` accepted, and how long a `jti` is remembered.
    pub dpop_max_age: Duration,
    /// `path` was set: `path_prefix` holds it, and the request's path must equal it.
    pub path_exact: bool,
    /// `host`, `methods`, `headers`; `None`: the path alone picks the route.
    pub conditions: Option<Arc<super::Conditions>>,
    /// `audience`, `resource`, `authorization_details` of the route over the domain's; `None`:
    /// the domain's alone, and the cache key as before these keys existed.
    pub targets: Option<Arc<super::Targets>>,
    /// `exchange`: always (default), only if the caller's token is not already for the
    /// target audience, or never.
    pub exchange: super::ExchangeMode,
    /// RFC 9728 metadata of this route (its own table over `[protected_resource]`), if any.
    pub protected_resource: Option<Arc<super::ProtectedResource>>,
}

/// `[routes.validate]`: RFC 9068 §4 / RFC 8725 checks of the caller's token.
#[derive(Debug)]
pub struct Validate {
    /// The `iss` a caller's token must carry, compared exactly; only its keys are trusted.
    pub issuer: String,
    pub(crate) keys: ValidateKeys,
    /// `audience`: the token's `aud` must contain at least one of these (RFC 7519 §4.1.3).
    pub audiences: Vec<String>,
    /// The accepted asymmetric JWS algorithms; `none` and HMAC are never among them (RFC 8725 §3.1).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Claims the token must carry, whatever their value (e.g. `sub`).
    pub required_claims: Vec<String>,
    /// The header `typ` required, lowercased (default `at+jwt`, RFC 9068 §2.1); `None`: any.
    pub typ: Option<String>,
    /// `exchange = "if_needed"`: the route's target audience. A token whose `aud` names one of
    /// these passes too (it is forwarded unchanged, never exchanged).
    pub target_audiences: Vec<String>,
    /// Leeway for `nbf` and `iat` in the future; `exp` gets none.
    pub clock_skew: Duration,
    /// Least time between two JWKS fetches, however many tokens name an unknown `kid`.
    pub jwks_min_refetch_interval: Duration,
}

#[derive(Debug)]
pub(crate) enum ValidateKeys {
    Remote(Uri),
    File(chaingate_oauth::keys::KeySet),
}

/// An upstream origin: scheme and authority only; the request's own path is kept.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http` or `https` (rustls).
    pub scheme: Scheme,
    /// `host:port` of the upstream.
    pub authority: Authority,
    /// CA certificates for an `https` upstream; `None` means the system roots.
    pub ca_certs: Option<Vec<CertificateDer<'static>>>,
}

pub(super) fn validate_route(
    i: usize,
    r: &FileRoute,
    domains: &[Arc<Domain>],
) -> Result<Route, ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let matching = super::matching::parse(i, r)?;
    let uri: Uri = r
        .upstream
        .parse()
        .map_err(|_| ConfigError::key(key("upstream"), "not a valid URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        return Err(ConfigError::key(
            key("upstream"),
            "must be an absolute http(s) URL",
        ));
    };
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(ConfigError::key(key("upstream"), "must be http or https"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ConfigError::key(
            key("upstream"),
            "must be an origin (scheme://host:port) without a path",
        ));
    }
    let domain = domains
        .iter()
        .find(|d| *d.name == *r.domain)
        .ok_or_else(|| {
            ConfigError::key(
                key("domain"),
                format!("no [domains.{}] is defined", r.domain),
            )
        })?;
    if let Some(scope) = &r.scope {
        validate_scope(&key("scope"), scope)?;
    }
    let verify = domain.response_metadata == super::ResponseMetadata::Verify;
    let resource_origin = match &r.resource_uri {
        Some(uri) => super::response_metadata::resource_origin(i, uri, verify)?,
        None => super::origin(&r.upstream)
            .ok_or_else(|| ConfigError::key(key("upstream"), "must be an http(s) origin"))?,
    };
    let dpop_max_age = super::route_dpop::max_age(&key("dpop_max_age"), r)?;
    let targets = super::targets::targets(i, r, domain)?;
    let (exchange, target_audiences) =
        super::targets::exchange_mode(i, r, targets.as_deref(), domain)?;
    Ok(Route {
        path_exact: matching.exact,
        conditions: matching.conditions,
        targets,
        exchange,
        // Set once every route is known: routes may share a metadata document.
        protected_resource: None,
        dpop: r.dpop,
        dpop_max_age,
        resource_origin: Arc::from(resource_origin),
        name: Arc::from(r.name.as_deref().unwrap_or(&matching.path)),
        path_prefix: matching.path.clone(),
        upstream: Upstream {
            scheme,
            authority,
            ca_certs: r
                .ca_file
                .as_deref()
                .map(|p| load_certs(&key("ca_file"), p))
                .transpose()?,
        },
        domain: domain.clone(),
        scope: r.scope.clone().or_else(|| domain.scope.clone()),
        validate: r
            .validate
            .as_ref()
            .map(|v| validate_settings(i, v))
            .transpose()?
            .map(|v| Validate {
                target_audiences,
                ..v
            })
            .map(Arc::new),
    })
}

fn validate_settings(i: usize, v: &file::FileValidate) -> Result<Validate, ConfigError> {
    let key = |field: &str| format!("routes[{i}].validate.{field}");
    let algorithms = algorithms(&key, v.algorithms.as_deref())?;
    let keys = issuer_keys(
        &key,
        (v.jwks_uri.as_deref(), v.jwks_file.as_deref()),
        v.allow_insecure_http,
        &algorithms,
    )?;
    let audiences = v.audience.to_vec();
    if audiences.is_empty() {
        return Err(ConfigError::key(
            key("audience"),
            "list the audience(s) a caller's token must carry",
        ));
    }
    let duration = |field: &str, value: &Option<String>, default| match value {
        Some(t) => parse_duration(&key(field), t),
        None => Ok(default),
    };
    Ok(Validate {
        issuer: v.issuer.clone(),
        keys,
        audiences,
        algorithms,
        required_claims: v.required_claims.clone(),
        target_audiences: Vec::new(),
        typ: match v.typ.as_deref() {
            None => Some("at+jwt".to_string()),
            Some("") => None,
            Some(t) => Some(t.to_ascii_lowercase()),
        },
        clock_skew: duration("clock_skew", &v.clock_skew, Duration::from_secs(30))?,
        jwks_min_refetch_interval: duration(
            "jwks_min_refetch_interval",
            &v.jwks_min_refetch_interval,
            Duration::from_secs(30),
        )?,
    })
}

/// Every `subject_domain` names a domain, and following them never loops.
pub(super) fn validate_subject_domains(domains: &[Arc<Domain>]) -> Result<(), ConfigError> {
    for domain in domains {
        let mut hops = 0;
        let mut at = domain;
        while let Some(next) = &at.subject_domain {
            let key = format!("domains.{}.subject_domain", at.name);
            at = domains
                .iter()
                .find(|d| d.name == *next)
                .ok_or_else(|| ConfigError::key(&key, format!("no [domains.{next}] is defined")))?;
            hops += 1;
            if hops > 4 {
                return Err(ConfigError::key(
                    key,
                    "subject domains loop or chain more than 4 hops",
                ));
            }
        }
    }
    Ok(())
}

/// `algorithms`: the asymmetric JWS algorithms accepted for an issuer's tokens (default: all
/// of them; `none` and HMAC are never accepted, RFC 8725 §3.1).
pub(super) fn algorithms(
    key: &dyn Fn(&str) -> String,
    names: Option<&[String]>,
) -> Result<Vec<jsonwebtoken::Algorithm>, ConfigError> {
    use chaingate_oauth::keys::{parse_asymmetric_alg, DEFAULT_ALGORITHMS};
    match names {
        None => Ok(DEFAULT_ALGORITHMS.to_vec()),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                parse_asymmetric_alg(name)
                    .map_err(|e| ConfigError::key(key(&format!("algorithms[{n}]")), e))
            })
            .collect(),
    }
}

/// An issuer's keys: exactly one of `jwks_uri` (https, or http when allowed) and `jwks_file`
/// (read and parsed here, once).
pub(super) fn issuer_keys(
    key: &dyn Fn(&str) -> String,
    (jwks_uri, jwks_file): (Option<&str>, Option<&std::path::Path>),
    allow_insecure_http: bool,
    algorithms: &[jsonwebtoken::Algorithm],
) -> Result<ValidateKeys, ConfigError> {
    use chaingate_oauth::keys::KeySet;
    match (jwks_uri, jwks_file) {
        (Some(uri), None) => {
            let parsed: Uri = uri
                .parse()
                .map_err(|_| ConfigError::key(key("jwks_uri"), "not a valid URL"))?;
            match parsed.scheme_str() {
                Some("https") => {}
                Some("http") if allow_insecure_http => {}
                _ => {
                    return Err(ConfigError::key(
                        key("jwks_uri"),
                        "must be https (or http with allow_insecure_http)",
                    ))
                }
            }
            Ok(ValidateKeys::Remote(parsed))
        }
        (None, Some(path)) => {
            let text = std::fs::read(path).map_err(|e| {
                ConfigError::key(
                    key("jwks_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Ok(ValidateKeys::File(
                KeySet::from_jwks(&text, algorithms)
                    .map_err(|e| ConfigError::key(key("jwks_file"), e))?,
            ))
        }
        _ => Err(ConfigError::key(
            key("jwks_uri"),
            "set exactly one of jwks_uri and jwks_file",
        )),
    }
}
