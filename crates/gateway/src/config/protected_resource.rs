//! `[protected_resource]` and `routes[].protected_resource`: OAuth 2.0 Protected Resource
//! Metadata (RFC 9728), so a client that meets chaingate without a token can find which
//! authorization server to get one from (the MCP authorization flow starts here).

use std::sync::Arc;

use http::Uri;
use serde::Deserialize;

use super::file::FileRoute;
use super::{validate_scope, ConfigError, Route};

/// The well-known path RFC 9728 §3 registers; a resource with a path gets it appended (§3.1).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// `[protected_resource]` or `routes[].protected_resource` as written; a route's table inherits
/// every member it leaves unset from the top-level one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileProtectedResource {
    resource: Option<String>,
    authorization_servers: Option<Vec<String>>,
    scopes_supported: Option<Vec<String>>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
}

/// A route's validated metadata (RFC 9728 §2), its own members over the top-level table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// `resource`: the resource identifier, an https URL (http only on loopback) without query
    /// or fragment; the document's `resource` is exactly this (§3.3).
    pub resource: String,
    /// `authorization_servers`: RFC 8414 issuer identifiers of the servers whose tokens the
    /// route accepts.
    pub authorization_servers: Vec<String>,
    /// `scopes_supported`: scopes a client may request to reach this resource; also the `scope`
    /// of this route's challenges (RFC 6750 §3).
    pub scopes_supported: Option<Vec<String>>,
    /// `resource_name`: a human-readable name (§2).
    pub resource_name: Option<String>,
    /// `resource_documentation`: a URL of documentation for developers (§2).
    pub resource_documentation: Option<String>,
    /// Where the document is served on the data listener: [`WELL_KNOWN`] then the resource's
    /// path, without a terminating slash (§3.1).
    pub metadata_path: String,
    /// The absolute URL of the document, sent as `resource_metadata` in challenges (§5.1).
    pub metadata_url: String,
}

/// Gives each route its merged metadata; `top` is the top-level table. Two routes whose
/// documents would be served at the same URL must configure the same members.
pub(super) fn resolve(
    top: Option<&FileProtectedResource>,
    files: &[FileRoute],
    routes: &mut [Route],
) -> Result<(), ConfigError> {
    if let Some(top) = top {
        // Checked on its own too, so a bad top-level member is named where it is written.
        check_members("protected_resource", top)?;
    }
    for (i, (file, route)) in files.iter().zip(routes.iter_mut()).enumerate() {
        let own = file.protected_resource.as_ref();
        let merged = match (top, own) {
            (None, None) => continue,
            (Some(top), None) => top.clone(),
            (None, Some(own)) => own.clone(),
            (Some(top), Some(own)) => FileProtectedResource {
                resource: own.resource.clone().or_else(|| top.resource.clone()),
                authorization_servers: own
                    .authorization_servers
                    .clone()
                    .or_else(|| top.authorization_servers.clone()),
                scopes_supported: own
                    .scopes_supported
                    .clone()
                    .or_else(|| top.scopes_supported.clone()),
                resource_name: own
                    .resource_name
                    .clone()
                    .or_else(|| top.resource_name.clone()),
                resource_documentation: own
                    .resource_documentation
                    .clone()
                    .or_else(|| top.resource_documentation.clone()),
            },
        };
        let prefix = match own {
            Some(_) => format!("routes[{i}].protected_resource"),
            None => "protected_resource".to_string(),
        };
        check_members(&prefix, &merged)?;
        route.protected_resource = Some(Arc::new(validated(&prefix, merged)?));
    }
    for (i, route) in routes.iter().enumerate() {
        let Some(mine) = &route.protected_resource else {
            continue;
        };
        let clash = routes[..i]
            .iter()
            .filter_map(|r| r.protected_resource.as_ref());
        if let Some(other) = clash
            .filter(|o| o.metadata_path == mine.metadata_path)
            .find(|o| o != &mine)
        {
            return Err(ConfigError::key(
                format!("routes[{i}].protected_resource.resource"),
                format!(
                    "another route serves different metadata at {}: give this route its own resource",
                    other.metadata_path
                ),
            ));
        }
    }
    Ok(())
}

/// Every member present is well formed (RFC 9728 §2).
fn check_members(prefix: &str, p: &FileProtectedResource) -> Result<(), ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    if let Some(resource) = &p.resource {
        resource_uri(&key("resource"), resource)?;
    }
    if let Some(servers) = &p.authorization_servers {
        if servers.is_empty() {
            return Err(ConfigError::key(
                key("authorization_servers"),
                "list at least one authorization server issuer",
            ));
        }
        for (n, issuer) in servers.iter().enumerate() {
            issuer_uri(&key(&format!("authorization_servers[{n}]")), issuer)?;
        }
    }
    if let Some(scopes) = &p.scopes_supported {
        for (n, scope) in scopes.iter().enumerate() {
            let k = key(&format!("scopes_supported[{n}]"));
            validate_scope(&k, scope)?;
            if scope.contains(' ') {
                return Err(ConfigError::key(k, "one scope per entry"));
            }
        }
    }
    if let Some(name) = &p.resource_name {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ConfigError::key(
                key("resource_name"),
                "must be non-empty text without control characters",
            ));
        }
    }
    if let Some(url) = &p.resource_documentation {
        let ok = url
            .parse::<Uri>()
            .ok()
            .is_some_and(|u| matches!(u.scheme_str(), Some("https" | "http")));
        if !ok {
            return Err(ConfigError::key(
                key("resource_documentation"),
                "must be an absolute http(s) URL",
            ));
        }
    }
    Ok(())
}

fn validated(prefix: &str, p: FileProtectedResource) -> Result<ProtectedResource, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    let resource = p.resource.ok_or_else(|| {
        ConfigError::key(
            key("resource"),
            "required: the resource identifier clients ask tokens for (RFC 9728 §2)",
        )
    })?;
    let authorization_servers = p.authorization_servers.ok_or_else(|| {
        ConfigError::key(
            key("authorization_servers"),
            "required: the issuer(s) a client gets its token from",
        )
    })?;
    let uri = resource_uri(&key("resource"), &resource)?;
    let path = uri.path().trim_end_matches('/');
    let metadata_path = format!("{WELL_KNOWN}{path}");
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str())
    );
    Ok(ProtectedResource {
        metadata_url: format!("{origin}{metadata_path}"),
        metadata_path,
        resource,
        authorization_servers,
        scopes_supported: p.scopes_supported,
        resource_name: p.resource_name,
        resource_documentation: p.resource_documentation,
    })
}

/// A resource identifier (RFC 9728 §1.2): https (http on loopback, for development), no query,
/// no fragment, and nothing that cannot sit in a quoted challenge parameter.
fn resource_uri(key: &str, value: &str) -> Result<Uri, ConfigError> {
    let uri = absolute(key, value)?;
    if uri.query().is_some() || value.contains('#') {
        return Err(ConfigError::key(key, "must not have a query or fragment"));
    }
    Ok(uri)
}

/// An RFC 8414 §2 issuer identifier: https (http on loopback), no query or fragment.
fn issuer_uri(key: &str, value: &str) -> Result<(), ConfigError> {
    let uri = absolute(key, value)?;
    if uri.query().is_some() || value.contains('#') {
        return Err(ConfigError::key(
            key,
            "an issuer has no query or fragment (RFC 8414 §2)",
        ));
    }
    Ok(())
}

fn absolute(key: &str, value: &str) -> Result<Uri, ConfigError> {
    if value
        .bytes()
        .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b >= 0x7f)
    {
        return Err(ConfigError::key(
            key,
            "must be a URL without spaces, quotes or backslashes",
        ));
    }
    let uri: Uri = value
        .parse()
        .map_err(|_| ConfigError::key(key, "not a valid URL"))?;
    let host = uri.host().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if loopback => Ok(uri),
        _ => Err(ConfigError::key(
            key,
            "must be an https URL (http only on loopback)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(resource: &str) -> FileProtectedResource {
        FileProtectedResource {
            resource: Some(resource.into()),
            authorization_servers: Some(vec!["https://as.example".into()]),
            ..FileProtectedResource::default()
        }
    }

    #[test]
    fn metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let p = validated("protected_resource", top("https://api.example/mcp/")).unwrap();
        assert_eq!(p.metadata_path, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            p.metadata_url,
            "https://api.example/.well-known/oauth-protected-resource/mcp"
        );
        let root = validated("protected_resource", top("https://api.example")).unwrap();
        assert_eq!(root.metadata_path, WELL_KNOWN);
    }

    #[test]
    fn bad_members_name_their_key() {
        let cases = [
            ("http://api.example", "protected_resource.resource"),
            ("https://api.example/?q=1", "protected_resource.resource"),
            ("https://api.example/#f", "protected_resource.resource"),
            ("https://api.example/\"x", "protected_resource.resource"),
        ];
        for (resource, key) in cases {
            let e = check_members("protected_resource", &top(resource)).unwrap_err();
            assert!(e.to_string().contains(key), "{resource}: {e}");
        }
        assert!(check_members("p", &top("http://127.0.0.1:8080/x")).is_ok());
        let mut servers = top("https://api.example");
        servers.authorization_servers = Some(vec![]);
        let e = check_members("p", &servers).unwrap_err().to_string();
        assert!(e.contains("p.authorization_servers"), "{e}");
        servers.authorization_servers = Some(vec!["https://as.example?x=1".into()]);
        let e = check_members("p", &servers).unwrap_err().to_string();
        assert!(e.contains("p.authorization_servers[0]"), "{e}");
        let mut scopes = top("https://api.example");
        scopes.scopes_supported = Some(vec!["a b".into()]);
        let e = check_members("p", &scopes).unwrap_err().to_string();
        assert!(e.contains("p.scopes_supported[0]"), "{e}");
        let missing = FileProtectedResource::default();
        let e = validated("p", missing).unwrap_err().to_string();
        assert!(e.contains("p.resource"), "{e}");
    }
}
