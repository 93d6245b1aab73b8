//! `[shared_signals]`: the transmitter whose Security Event Tokens (RFC 8417) the gateway takes
//! by push (RFC 8935), so a revoked session stops being served from the token cache (OpenID
//! CAEP `session-revoked`, `credential-change`).

use serde::Deserialize;
use std::path::PathBuf;

use super::route::{algorithms, issuer_keys};
use super::{ConfigError, ValidateKeys};

/// `[shared_signals]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSharedSignals {
    issuer: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    audience: String,
    path: Option<String>,
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    allow_insecure_http: bool,
}

/// The path SETs are pushed to on the data port unless `path` says otherwise.
pub(super) const DEFAULT_PATH: &str = "/ssf/events";

/// Validated `[shared_signals]`.
#[derive(Debug)]
pub struct SharedSignals {
    /// `issuer`: the transmitter's `iss`, compared exactly; only its keys are trusted.
    pub issuer: String,
    pub(crate) keys: ValidateKeys,
    /// `audience`: a SET's `aud` must contain it (this receiver, as the stream names it).
    pub audience: String,
    /// `path`: where on the data port SETs are pushed (matched exactly, before any route).
    pub path: String,
    /// Accepted JWS algorithms (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

/// Validates `[shared_signals]`.
pub(super) fn shared_signals(file: &FileSharedSignals) -> Result<SharedSignals, ConfigError> {
    let key = |field: &str| format!("shared_signals.{field}");
    let algorithms = algorithms(&key, file.algorithms.as_deref())?;
    let keys = issuer_keys(
        &key,
        (file.jwks_uri.as_deref(), file.jwks_file.as_deref()),
        file.allow_insecure_http,
        &algorithms,
    )?;
    if file.issuer.is_empty() {
        return Err(ConfigError::key(key("issuer"), "must not be empty"));
    }
    if file.audience.is_empty() {
        return Err(ConfigError::key(key("audience"), "must not be empty"));
    }
    let path = file
        .path
        .clone()
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(ConfigError::key(
            key("path"),
            "must be an absolute path without query or fragment",
        ));
    }
    Ok(SharedSignals {
        issuer: file.issuer.clone(),
        keys,
        audience: file.audience.clone(),
        path,
        algorithms,
    })
}
