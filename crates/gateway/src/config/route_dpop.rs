//! `dpop` and `dpop_max_age` of a route: DPoP proofs from the caller (RFC 9449 §7).

use std::time::Duration;

use serde::Deserialize;

use super::file::FileRoute;
use super::{parse_duration, ConfigError};

/// Whether a route accepts `Authorization: DPoP` from the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundDpop {
    /// Bearer only; a `DPoP` scheme is no credential of ours (the behaviour before `dpop`).
    #[default]
    Off,
    /// Bearer or DPoP; a token bound to a key (`cnf.jkt`) must come with its proof.
    Allowed,
    /// DPoP only: a Bearer token is refused.
    Required,
}

impl InboundDpop {
    /// Whether proofs are checked on this route at all.
    pub fn enabled(self) -> bool {
        self != Self::Off
    }
}

/// `dpop_max_age` when unset: RFC 9449 §11.1 asks for a short window; a minute covers a
/// client's clock drift and a slow network without keeping many `jti`s.
pub const DEFAULT_DPOP_MAX_AGE: Duration = Duration::from_secs(60);

pub(super) fn max_age(key: &str, r: &FileRoute) -> Result<Duration, ConfigError> {
    let Some(text) = &r.dpop_max_age else {
        return Ok(DEFAULT_DPOP_MAX_AGE);
    };
    if !r.dpop.enabled() {
        return Err(ConfigError::key(
            key,
            "set only with dpop = \"allowed\" or \"required\"",
        ));
    }
    let age = parse_duration(key, text)?;
    if age < Duration::from_secs(1) || age > Duration::from_secs(3600) {
        return Err(ConfigError::key(key, "must be between 1s and 1h"));
    }
    Ok(age)
}
