//! `[routes.txn_token]` (at the edge: get a Txn-Token from a Transaction Token Service) and
//! `[routes.txn_token_verify]` (inside the trust domain: check the one that came), after
//! draft-ietf-oauth-transaction-tokens-10.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::file::FileRoute;
use super::route::{algorithms, issuer_keys, ValidateKeys};
use super::{parse_duration, validate_scope, ConfigError, Domain, Grant};

/// Default `max_lifetime`: Txn-Tokens live "on the order of minutes or less" (draft §5).
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(300);

/// What goes upstream besides the Txn-Token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnMode {
    /// The route's swapped `Authorization` as always, and `Txn-Token` beside it.
    #[default]
    Beside,
    /// `Txn-Token` only: no `Authorization` upstream and no exchange at the route's domain.
    Alone,
}

/// `[routes.txn_token]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTxnToken {
    domain: String,
    audience: String,
    scope: Option<String>,
    #[serde(default)]
    mode: TxnMode,
}

/// `[routes.txn_token_verify]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTxnVerify {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    jwks_file: Option<std::path::PathBuf>,
    #[serde(default)]
    allow_insecure_http: bool,
    audience: String,
    algorithms: Option<Vec<String>>,
    max_lifetime: Option<String>,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    mode: TxnMode,
    clock_skew: Option<String>,
    jwks_min_refetch_interval: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[routes.txn_token]`: the edge asks the TTS for a Txn-Token per request.
#[derive(Debug)]
pub struct TxnEdge {
    /// The Transaction Token Service: a token-exchange domain (its endpoint and credentials).
    pub domain: Arc<Domain>,
    /// The trust domain, sent as `audience` (draft §7.1).
    pub audience: String,
    /// The `scope` sent (REQUIRED by §7.1): this table's, else the TTS domain's.
    pub scope: String,
    /// `beside` or `alone`.
    pub mode: TxnMode,
}

/// `[routes.txn_token_verify]`: the incoming `Txn-Token` is checked (draft §8.2).
#[derive(Debug)]
pub struct TxnVerify {
    /// The `iss` required, if set (the claim is OPTIONAL in draft §6.2).
    pub issuer: Option<String>,
    pub(crate) keys: ValidateKeys,
    /// The trust domain `aud` must contain.
    pub audience: String,
    /// Accepted asymmetric algorithms (never `none` or HMAC).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// `exp - iat` above this is refused.
    pub max_lifetime: Duration,
    /// A request without a `Txn-Token` is refused.
    pub required: bool,
    /// `alone`: the Txn-Token is the only credential (no bearer token needed or forwarded).
    pub mode: TxnMode,
    /// Leeway for `iat` in the future.
    pub clock_skew: Duration,
    /// Least time between two JWKS fetches.
    pub jwks_min_refetch_interval: Duration,
}

/// `routes[i].txn_token`, checked against the configured domains.
pub(super) fn edge(
    i: usize,
    r: &FileRoute,
    domains: &[Arc<Domain>],
) -> Result<Option<Arc<TxnEdge>>, ConfigError> {
    let Some(t) = &r.txn_token else {
        return Ok(None);
    };
    let key = |field: &str| format!("routes[{i}].txn_token.{field}");
    let domain = domains
        .iter()
        .find(|d| *d.name == *t.domain)
        .ok_or_else(|| {
            ConfigError::key(
                key("domain"),
                format!("no [domains.{}] is defined", t.domain),
            )
        })?;
    // Draft §7: a Txn-Token Request over HTTP is an RFC 8693 token exchange.
    if !matches!(domain.grant, Grant::TokenExchange(_)) {
        return Err(ConfigError::key(
            key("domain"),
            format!(
                "[domains.{}] must use grant = \"token_exchange\" to be a Transaction Token Service",
                t.domain
            ),
        ));
    }
    if t.audience.is_empty() || t.audience.chars().any(char::is_whitespace) {
        return Err(ConfigError::key(
            key("audience"),
            "name the trust domain (non-empty, no whitespace)",
        ));
    }
    let Some(scope) = t.scope.clone().or_else(|| domain.scope.clone()) else {
        return Err(ConfigError::key(
            key("scope"),
            "a Txn-Token Request needs a scope (draft §7.1): set it here or on the domain",
        ));
    };
    validate_scope(&key("scope"), &scope)?;
    if r.txn_token_verify.is_some() {
        return Err(ConfigError::key(
            key("domain"),
            "a route is either the edge (txn_token) or inside the trust domain (txn_token_verify)",
        ));
    }
    Ok(Some(Arc::new(TxnEdge {
        domain: domain.clone(),
        audience: t.audience.clone(),
        scope,
        mode: t.mode,
    })))
}

/// `routes[i].txn_token_verify`.
pub(super) fn verify(i: usize, r: &FileRoute) -> Result<Option<Arc<TxnVerify>>, ConfigError> {
    let Some(v) = &r.txn_token_verify else {
        return Ok(None);
    };
    let key = |field: &str| format!("routes[{i}].txn_token_verify.{field}");
    let algorithms = algorithms(&key, v.algorithms.as_deref())?;
    let keys = issuer_keys(
        &key,
        (v.jwks_uri.as_deref(), v.jwks_file.as_deref()),
        v.allow_insecure_http,
        &algorithms,
    )?;
    if v.audience.is_empty() {
        return Err(ConfigError::key(key("audience"), "name the trust domain"));
    }
    let duration = |field: &str, value: &Option<String>, default| match value {
        Some(t) => parse_duration(&key(field), t),
        None => Ok(default),
    };
    let max_lifetime = duration("max_lifetime", &v.max_lifetime, DEFAULT_MAX_LIFETIME)?;
    if max_lifetime.is_zero() {
        return Err(ConfigError::key(key("max_lifetime"), "must be at least 1s"));
    }
    // A route whose only credential is optional would let anything through.
    if v.mode == TxnMode::Alone && !v.required {
        return Err(ConfigError::key(
            key("required"),
            "mode = \"alone\" makes the Txn-Token the only credential: it must be required",
        ));
    }
    Ok(Some(Arc::new(TxnVerify {
        issuer: v.issuer.clone(),
        keys,
        audience: v.audience.clone(),
        algorithms,
        max_lifetime,
        required: v.required,
        mode: v.mode,
        clock_skew: duration("clock_skew", &v.clock_skew, Duration::from_secs(30))?,
        jwks_min_refetch_interval: duration(
            "jwks_min_refetch_interval",
            &v.jwks_min_refetch_interval,
            Duration::from_secs(30),
        )?,
    })))
}
