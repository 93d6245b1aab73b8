//! Config for the user-facing side: `[[users]]`, `[registration]`, code/refresh/session lifetimes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::config::{duration, read_relative, Client, Grant};
use chaingate_core::config::{ConfigError, SecretText};
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::parse_scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    username: String,
    password: Option<SecretText>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistration {
    #[serde(default)]
    initial_access_tokens: Vec<SecretText>,
    initial_access_token_file: Option<PathBuf>,
    #[serde(default)]
    scope: String,
    max_clients: Option<usize>,
}

/// The top-level keys this module validates (moved out of the config's raw TOML shape).
#[derive(Debug)]
pub(super) struct RawInteractive {
    pub(super) dev_mode: bool,
    pub(super) users: Vec<RawUser>,
    pub(super) registration: Option<RawRegistration>,
    pub(super) code_ttl: Option<String>,
    pub(super) refresh_token_ttl: Option<String>,
    pub(super) session_ttl: Option<String>,
    pub(super) max_scopes_per_request: Option<usize>,
}

/// A development user who can sign in at `/authorize`.
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) username: String,
    pub(crate) password: Secret,
}

/// RFC 7591 registration, open only to holders of an initial access token.
#[derive(Debug)]
pub(crate) struct RegistrationConfig {
    pub(crate) initial_access_tokens: Vec<Secret>,
    /// Scopes a registered client may ask for (its `scope` is intersected with this).
    pub(crate) scope: BTreeSet<String>,
    pub(crate) max_clients: usize,
}

/// Validated settings of the authorization endpoint, code and refresh grants and registration.
#[derive(Debug)]
pub(crate) struct Interactive {
    /// Allows `http://` URLs for intermediaries' `uri`/`logo_uri` and for redirect URIs.
    pub(crate) dev_mode: bool,
    pub(crate) users: Vec<User>,
    pub(crate) registration: Option<RegistrationConfig>,
    pub(crate) code_ttl: Duration,
    pub(crate) refresh_token_ttl: Duration,
    pub(crate) session_ttl: Duration,
    /// Incremental authorization -04 §8.2: more scopes in one request → `overbroad_scope`.
    pub(crate) max_scopes_per_request: Option<usize>,
}

impl Interactive {
    /// The configured user with this name and password (constant-time; unknown names cost a
    /// dummy comparison).
    pub(crate) fn check_user(&self, username: &str, password: &str) -> Option<&User> {
        let mut found = None;
        for user in &self.users {
            let name_ok = Secret::new(user.username.as_str()).ct_eq(username);
            let pass_ok = user.password.ct_eq(password);
            if name_ok && pass_ok {
                found = Some(user);
            }
        }
        if self.users.is_empty() {
            let _ = Secret::new("0123456789abcdef").ct_eq(password);
        }
        found
    }
}

pub(super) fn validate_interactive(
    raw: RawInteractive,
    clients: &[Arc<Client>],
    base: &Path,
) -> Result<Interactive, ConfigError> {
    let mut users: Vec<User> = Vec::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        let key = |k: &str| format!("users[{i}].{k}");
        if u.username.is_empty() || u.username.chars().any(char::is_control) {
            return Err(ConfigError::key(key("username"), "must be non-empty text"));
        }
        if users.iter().any(|o| o.username == u.username) {
            return Err(ConfigError::key(key("username"), "duplicate username"));
        }
        let password = match (u.password, &u.password_file) {
            (Some(p), None) => p.expose().to_string(),
            (None, Some(path)) => read_relative(base, &key("password_file"), path)?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            _ => {
                return Err(ConfigError::key(
                    key("password"),
                    "set exactly one of password or password_file",
                ))
            }
        };
        if password.is_empty() {
            return Err(ConfigError::key(key("password"), "must not be empty"));
        }
        users.push(User {
            username: u.username,
            password: Secret::new(password),
        });
    }
    let registration = raw
        .registration
        .map(|r| validate_registration(r, base))
        .transpose()?;
    for (i, c) in clients.iter().enumerate() {
        let code = c.grants.contains(&Grant::AuthorizationCode);
        if code && c.redirect_uris.is_empty() {
            return Err(ConfigError::key(
                format!("clients[{i}].redirect_uris"),
                "authorization_code needs at least one redirect URI",
            ));
        }
    }
    if raw.max_scopes_per_request == Some(0) {
        return Err(ConfigError::key(
            "max_scopes_per_request",
            "must be at least 1",
        ));
    }
    let positive = |key: &str, value: Option<&str>, default: u64| {
        let d = duration(key, value, Duration::from_secs(default))?;
        if d.as_secs() == 0 {
            return Err(ConfigError::key(key, "must be at least 1s"));
        }
        Ok(d)
    };
    Ok(Interactive {
        dev_mode: raw.dev_mode,
        users,
        registration,
        code_ttl: positive("code_ttl", raw.code_ttl.as_deref(), 60)?,
        refresh_token_ttl: positive(
            "refresh_token_ttl",
            raw.refresh_token_ttl.as_deref(),
            86_400,
        )?,
        session_ttl: positive("session_ttl", raw.session_ttl.as_deref(), 1800)?,
        max_scopes_per_request: raw.max_scopes_per_request,
    })
}

fn validate_registration(
    r: RawRegistration,
    base: &Path,
) -> Result<RegistrationConfig, ConfigError> {
    let mut tokens: Vec<Secret> = r
        .initial_access_tokens
        .iter()
        .map(|t| Secret::new(t.expose()))
        .collect();
    if let Some(path) = &r.initial_access_token_file {
        let text = read_relative(base, "registration.initial_access_token_file", path)?;
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(Secret::new),
        );
    }
    if tokens.is_empty() {
        return Err(ConfigError::key(
            "registration.initial_access_tokens",
            "registration must be protected: list at least one initial access token",
        ));
    }
    if tokens.iter().any(|t| t.expose().len() < 16) {
        return Err(ConfigError::key(
            "registration.initial_access_tokens",
            "initial access tokens must be at least 16 characters",
        ));
    }
    Ok(RegistrationConfig {
        initial_access_tokens: tokens,
        scope: parse_scope(&r.scope).map_err(|m| ConfigError::key("registration.scope", m))?,
        max_clients: r.max_clients.unwrap_or(1000),
    })
}
