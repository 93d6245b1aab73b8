//! `[domains.X] scope_strategy`: one token per route scope, or one growing grant per caller.

use super::ConfigError;

/// How a domain's tokens are requested and cached (README "Incremental scopes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScopeStrategy {
    /// One token per (caller, domain, route scope): each route's token has its least privilege.
    #[default]
    PerRoute,
    /// One token per (caller, domain) whose scope grows to the union the routes have needed
    /// (draft-ietf-oauth-incremental-authz): fewer exchanges, broader tokens.
    Incremental,
}

pub(super) fn scope_strategy(
    domain: &str,
    value: Option<&str>,
) -> Result<ScopeStrategy, ConfigError> {
    match value {
        None | Some("per-route") => Ok(ScopeStrategy::PerRoute),
        Some("incremental") => Ok(ScopeStrategy::Incremental),
        Some(_) => Err(ConfigError::key(
            format!("domains.{domain}.scope_strategy"),
            "not \"per-route\" or \"incremental\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_per_route_and_names_the_key_when_wrong() {
        assert_eq!(scope_strategy("b", None).unwrap(), ScopeStrategy::PerRoute);
        assert_eq!(
            scope_strategy("b", Some("incremental")).unwrap(),
            ScopeStrategy::Incremental
        );
        let e = scope_strategy("b", Some("union")).unwrap_err().to_string();
        assert!(e.contains("domains.b.scope_strategy"), "{e}");
    }
}
