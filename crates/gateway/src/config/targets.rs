//! A route's token targets and exchange mode: `audience` (RFC 8693 §2.1), `resource`
//! (RFC 8707 §2) and `authorization_details` (RFC 9396 §2) overriding the domain's, and
//! `exchange = "always" | "if_needed" | "never"`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::digest::Digest;
use super::file::FileRoute;
use super::{ConfigError, Domain, Grant};

/// What a route asks the token server for beyond the scope: set when the route has any of
/// `audience`, `resource` or `authorization_details`, else the domain's settings apply alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// `audience`: the route's, else the domain's (RFC 8693 §2.1; token exchange only).
    pub audience: Vec<String>,
    /// `resource`: the route's, else the domain's; absolute URIs without fragment (RFC 8707 §2).
    pub resource: Vec<String>,
    /// `authorization_details` as the JSON array sent in one form parameter (RFC 9396 §2).
    pub authorization_details: Option<String>,
    /// SHA-256 over the three: what enters the cache key, so routes asking for different
    /// targets never share a token, and the key never holds the values themselves.
    pub digest: [u8; 32],
}

/// `exchange`: whether a route's request swaps the caller's token at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeMode {
    /// Every request exchanges (from the cache or the token server): the behaviour before
    /// `exchange`.
    #[default]
    Always,
    /// A caller's token that validates locally and whose `aud` already names the target
    /// audience is forwarded unchanged; any other is exchanged.
    IfNeeded,
    /// The validated caller's token is forwarded unchanged; nothing is exchanged.
    Never,
}

/// An absolute URI without a fragment (RFC 8707 §2): any scheme (RFC 3986 §4.3), so URNs such
/// as `urn:example:api` are resources too, not only URLs.
pub(super) fn is_resource_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.contains('#')
        && text
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && b != b'"' && b != b'\\')
}

/// The route's targets, if it sets any, merged over the domain's.
pub(super) fn targets(
    i: usize,
    r: &FileRoute,
    domain: &Domain,
) -> Result<Option<Arc<Targets>>, ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let audience = r.audience.to_vec();
    let resource = r.resource.to_vec();
    let exchange = match &domain.grant {
        Grant::TokenExchange(settings) => Some(settings),
        _ => None,
    };
    if r.audience.is_set() {
        if exchange.is_none() {
            return Err(ConfigError::key(
                key("audience"),
                "applies to a domain with grant = \"token-exchange\" only (RFC 8693 §2.1)",
            ));
        }
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(ConfigError::key(key("audience"), "must not be empty"));
        }
    }
    if r.resource.is_set() {
        if resource.is_empty() {
            return Err(ConfigError::key(key("resource"), "must not be empty"));
        }
        if let Some(n) = resource.iter().position(|r| !is_resource_uri(r)) {
            return Err(ConfigError::key(
                key(&format!("resource[{n}]")),
                "an absolute URI without fragment (RFC 8707 §2)",
            ));
        }
    }
    let details = r
        .authorization_details
        .as_deref()
        .map(|d| authorization_details(&key("authorization_details"), d))
        .transpose()?;
    if !r.audience.is_set() && !r.resource.is_set() && details.is_none() {
        return Ok(None);
    }
    let audience = match (r.audience.is_set(), exchange) {
        (false, Some(settings)) => settings.audience.clone(),
        _ => audience,
    };
    let resource = match (r.resource.is_set(), exchange) {
        (false, Some(settings)) => settings.resource.clone(),
        _ => resource,
    };
    let mut d = Digest::new();
    for (tag, values) in [(b"audience", &audience), (b"resource", &resource)] {
        d.part(tag);
        d.part(&values.len().to_be_bytes());
        for value in values {
            d.part(value.as_bytes());
        }
    }
    d.part(b"authorization_details");
    d.part(details.as_deref().unwrap_or("").as_bytes());
    Ok(Some(Arc::new(Targets {
        audience,
        resource,
        authorization_details: details,
        digest: d.finish(),
    })))
}

/// RFC 9396 §2: a non-empty array of objects, each with a string `type`; written in TOML as an
/// array of tables, sent as its JSON text.
fn authorization_details(key: &str, details: &[Value]) -> Result<String, ConfigError> {
    if details.is_empty() {
        return Err(ConfigError::key(key, "must not be empty"));
    }
    for (n, detail) in details.iter().enumerate() {
        let typed = detail
            .as_object()
            .and_then(|o| o.get("type"))
            .is_some_and(Value::is_string);
        if !typed {
            return Err(ConfigError::key(
                format!("{key}[{n}]"),
                "each entry is a table with a string `type` (RFC 9396 §2)",
            ));
        }
    }
    serde_json::to_string(details).map_err(|e| ConfigError::key(key, e.to_string()))
}

/// `exchange`, checked against what it needs: the caller's token validated locally and, for
/// `if_needed`, a target audience to compare its `aud` with.
pub(super) fn exchange_mode(
    i: usize,
    r: &FileRoute,
    targets: Option<&Targets>,
    domain: &Domain,
) -> Result<(ExchangeMode, Vec<String>), ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let mode = r.exchange;
    if mode == ExchangeMode::Always {
        return Ok((mode, Vec::new()));
    }
    if r.validate.is_none() {
        return Err(ConfigError::key(
            key("exchange"),
            "forwarding the caller's token needs [routes.validate]",
        ));
    }
    if mode == ExchangeMode::Never && r.dpop.enabled() {
        return Err(ConfigError::key(
            key("exchange"),
            "\"never\" forwards bearer tokens only; a DPoP proof is for chaingate, not the upstream",
        ));
    }
    if mode == ExchangeMode::Never {
        return Ok((mode, Vec::new()));
    }
    let audience = match (targets, &domain.grant) {
        (Some(t), _) => t.audience.clone(),
        (None, Grant::TokenExchange(settings)) => settings.audience.clone(),
        (None, _) => Vec::new(),
    };
    if audience.is_empty() {
        return Err(ConfigError::key(
            key("audience"),
            "exchange = \"if_needed\" needs the target audience, here or on the domain",
        ));
    }
    Ok((mode, audience))
}

#[cfg(test)]
mod tests {
    use super::is_resource_uri;

    #[test]
    fn resources_are_absolute_uris_of_any_scheme() {
        for ok in ["urn:b:api", "https://api.example/x", "spiffe://trust/ns/a"] {
            assert!(is_resource_uri(ok), "{ok}");
        }
        for bad in [
            "/relative",
            "https://a/#f",
            "1urn:x",
            "urn:",
            "urn:a b",
            "api",
        ] {
            assert!(!is_resource_uri(bad), "{bad}");
        }
    }
}
