//! `[[clients]] federated = { ... }`: TOML shape and validation of a client that authenticates
//! with its platform's JWT (RFC 7523 §2.2 client assertions, draft-ietf-oauth-spiffe-client-auth).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::{read_relative, Federated, FederatedKeys};
use super::config_entries::{algorithms, check_remote_uri};
use chaingate_core::config::ConfigError;
use chaingate_oauth::keys::KeySet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFederated {
    issuer: String,
    subject: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    audience: Option<String>,
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    single_use: bool,
}

/// Validates `clients[i].federated`; `key` names the client's keys.
pub(super) fn validate_federated(
    f: RawFederated,
    key: &dyn Fn(&str) -> String,
    base: &Path,
) -> Result<Federated, ConfigError> {
    let key = |k: &str| key(&format!("federated.{k}"));
    if f.issuer.is_empty() {
        return Err(ConfigError::key(key("issuer"), "must not be empty"));
    }
    if f.subject.is_empty() {
        return Err(ConfigError::key(key("subject"), "must not be empty"));
    }
    if f.audience.as_deref() == Some("") {
        return Err(ConfigError::key(key("audience"), "must not be empty"));
    }
    let algorithms = algorithms(&key, f.algorithms.as_deref())?;
    let keys = match (&f.jwks_uri, &f.jwks_file) {
        (Some(uri), None) => FederatedKeys::Remote(
            check_remote_uri(uri, f.allow_insecure_http)
                .map_err(|m| ConfigError::key(key("jwks_uri"), m))?,
        ),
        (None, Some(path)) => {
            let text = read_relative(base, &key("jwks_file"), path)?;
            FederatedKeys::Static(
                KeySet::from_jwks(text.as_bytes(), &algorithms)
                    .map_err(|m| ConfigError::key(key("jwks_file"), m))?,
            )
        }
        _ => {
            return Err(ConfigError::key(
                key("jwks_uri"),
                "set exactly one of jwks_uri or jwks_file",
            ))
        }
    };
    Ok(Federated {
        issuer: f.issuer,
        subject: f.subject,
        keys,
        audience: f.audience,
        algorithms,
        single_use: f.single_use,
    })
}
