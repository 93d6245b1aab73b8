//! `[domains.X] response_metadata` and `[[routes]] resource_uri`: checks of the `Link` relations
//! `ruri`/`duri` on token responses (draft-sakimura-oauth-meta-05, a mix-up defence).

use http::Uri;

use super::ConfigError;

/// What chaingate does with a token response's `ruri`/`duri` links (README "Response metadata
/// checks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMetadata {
    /// Not read: servers that do not emit them, and servers that do, both work.
    #[default]
    Ignore,
    /// Both links are required; `duri` must be the discovery URL chaingate used and `ruri` must
    /// name the route's resource. Anything else: 502, and the token is never used.
    Verify,
}

pub(super) fn response_metadata(
    domain: &str,
    value: Option<&str>,
    discovers: bool,
) -> Result<ResponseMetadata, ConfigError> {
    let key = format!("domains.{domain}.response_metadata");
    match value {
        None | Some("ignore") => Ok(ResponseMetadata::Ignore),
        // `duri` is compared with the metadata URL discovery actually read; with a fixed
        // token_endpoint there is nothing trustworthy to compare it with.
        Some("verify") if !discovers => Err(ConfigError::key(
            key,
            "\"verify\" needs `issuer` (RFC 8414 discovery) instead of token_endpoint: duri is compared with the discovery URL",
        )),
        Some("verify") => Ok(ResponseMetadata::Verify),
        Some(_) => Err(ConfigError::key(
            key,
            "not \"ignore\" or \"verify\"",
        )),
    }
}

/// `scheme://host:port` of an absolute http(s) URL, lower-cased, with the default port made
/// explicit, so equal origins compare equal as strings. `None` for anything else.
pub fn origin(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = authority.port_u16().unwrap_or(default_port);
    Some(format!("{scheme}://{host}:{port}"))
}

/// A route's `resource_uri`, as the origin `ruri` is compared with.
pub(super) fn resource_origin(
    route: usize,
    resource_uri: &str,
    verify: bool,
) -> Result<String, ConfigError> {
    let key = format!("routes[{route}].resource_uri");
    if !verify {
        return Err(ConfigError::key(
            key,
            "applies only to routes of a domain with response_metadata = \"verify\"",
        ));
    }
    origin(resource_uri).ok_or_else(|| ConfigError::key(key, "must be an absolute http(s) URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://API.b.example/userinfo?x=1").as_deref(),
            Some("https://api.b.example:443")
        );
        assert_eq!(
            origin("https://api.b.example:443"),
            origin("https://api.b.example/")
        );
        assert_ne!(
            origin("http://api.b.example"),
            origin("https://api.b.example")
        );
        assert_ne!(
            origin("https://api.b.example:8443"),
            origin("https://api.b.example")
        );
        for bad in [
            "api.b.example",
            "/userinfo",
            "ftp://x.example",
            "https://u@x.example",
            "",
        ] {
            assert_eq!(origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn verify_needs_discovery_and_each_error_names_its_key() {
        assert_eq!(
            response_metadata("b", None, false).unwrap(),
            ResponseMetadata::Ignore
        );
        assert_eq!(
            response_metadata("b", Some("verify"), true).unwrap(),
            ResponseMetadata::Verify
        );
        for (value, discovers) in [("verify", false), ("strict", true)] {
            let e = response_metadata("b", Some(value), discovers)
                .unwrap_err()
                .to_string();
            assert!(e.contains("domains.b.response_metadata"), "{e}");
        }
        let e = resource_origin(2, "https://api.b.example", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes[2].resource_uri"), "{e}");
        assert!(resource_origin(2, "not a url", true).is_err());
    }

    #[test]
    fn a_route_expects_its_upstream_unless_resource_uri_says_otherwise() {
        let text = |resource: &str| {
            format!(
                "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[domains.b]\nissuer = \"https://as.example\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nresponse_metadata = \"verify\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\ndomain = \"b\"\n{resource}\n"
            )
        };
        let config = crate::config::Config::from_toml(&text("")).unwrap();
        assert_eq!(&*config.routes[0].resource_origin, "http://127.0.0.1:3000");
        let config =
            crate::config::Config::from_toml(&text("resource_uri = \"https://API.b.example/v1\""))
                .unwrap();
        assert_eq!(
            &*config.routes[0].resource_origin,
            "https://api.b.example:443"
        );
    }
}
