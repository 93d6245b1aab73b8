//! Who a client is on the consent page: name, end-user application, intermediaries; URL rules.

use serde_json::{json, Map, Value};

/// One party of draft-parecki-oauth-client-intermediary-metadata §4 (end-user application or
/// intermediary). `name` is required; the rest is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Party {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    pub(crate) contacts: Vec<String>,
}

/// What the consent page shows about a client.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parties {
    pub(crate) client_name: Option<String>,
    pub(crate) client_uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    pub(crate) end_user_application: Option<Party>,
    pub(crate) intermediaries: Vec<Party>,
}

impl Party {
    /// Validates one party object; `field` names it in errors (`intermediaries[1]`).
    pub(crate) fn from_json(value: &Value, field: &str, dev_mode: bool) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err(format!("{field} must be a JSON object"));
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 512 => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(format!(
                    "{field}.{key} must be a non-empty string of at most 512 bytes"
                )),
            }
        };
        let name = text("name")?.ok_or_else(|| format!("{field}.name is required"))?;
        let description = text("description")?;
        let uri = text("uri")?;
        let logo_uri = text("logo_uri")?;
        for (key, value) in [("uri", &uri), ("logo_uri", &logo_uri)] {
            if let Some(v) = value {
                check_web_url(v, dev_mode).map_err(|m| format!("{field}.{key} {m}"))?;
            }
        }
        let contacts = match map.get("contacts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("{field}.contacts must be an array of strings"))?,
            Some(_) => return Err(format!("{field}.contacts must be an array of strings")),
        };
        Ok(Self {
            name,
            description,
            uri,
            logo_uri,
            contacts,
        })
    }

    /// The registered form, echoed on registration and read (only members that are set).
    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("name".into(), json!(self.name));
        for (key, value) in [
            ("description", &self.description),
            ("uri", &self.uri),
            ("logo_uri", &self.logo_uri),
        ] {
            if let Some(v) = value {
                map.insert(key.into(), json!(v));
            }
        }
        if !self.contacts.is_empty() {
            map.insert("contacts".into(), json!(self.contacts));
        }
        Value::Object(map)
    }
}

/// Whether `host` (from a URL, brackets allowed) is `localhost` or a loopback IP.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A web page or image URL shown to users: absolute `https://` with a host and no credentials;
/// `http://` only in `dev_mode`.
pub(crate) fn check_web_url(value: &str, dev_mode: bool) -> Result<(), String> {
    let uri = parse_absolute(value)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if dev_mode => Ok(()),
        Some("http") => Err("must be an https URL (http needs dev_mode = true)".into()),
        _ => Err("must be an absolute https URL".into()),
    }
}

/// RFC 6749 §3.1.2 / RFC 8252: an absolute URI without fragment. `https://`; `http://` only for
/// loopback hosts (native apps, RFC 8252 §7.3) unless `dev_mode`; private-use schemes with a dot
/// (`com.example.app:/cb`, RFC 8252 §7.1).
pub(crate) fn check_redirect_uri(value: &str, dev_mode: bool) -> Result<(), String> {
    if value.contains('#') {
        return Err("must not have a fragment".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) || value.len() > 2000 {
        return Err("must be an absolute URI without whitespace".into());
    }
    let scheme = value.split_once(':').map_or("", |(s, _)| s);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => parse_absolute(value).map(|_| ()),
        "http" => {
            let uri = parse_absolute(value)?;
            if dev_mode || uri.host().is_some_and(is_loopback) {
                Ok(())
            } else {
                Err("http is allowed only for loopback hosts (or with dev_mode = true)".into())
            }
        }
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Err("scheme is not allowed".into())
        }
        s if s.contains('.')
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(())
        }
        _ => {
            Err("must be https, loopback http, or a private-use scheme like com.example.app".into())
        }
    }
}

fn parse_absolute(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| "must be an absolute URL".to_string())?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err("must be an absolute URL with a host".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) || value.contains('#') {
        return Err("must not contain credentials or a fragment".into());
    }
    Ok(uri)
}

/// The origin (`scheme://host[:port]`) of a URL, or `scheme:` for a private-use scheme; used in
/// the consent page's `form-action` so the browser may follow the redirect after submitting.
pub(crate) fn origin_of(value: &str) -> String {
    match value.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map_or("", |a| a.as_str())
        ),
        _ => format!("{}:", value.split_once(':').map_or(value, |(s, _)| s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_follow_rfc_8252() {
        assert!(check_redirect_uri("https://app.example/cb", false).is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb", false).is_ok());
        assert!(check_redirect_uri("http://app.example/cb", false).is_err());
        assert!(check_redirect_uri("http://app.example/cb", true).is_ok());
        assert!(check_redirect_uri("com.example.app:/cb", false).is_ok());
        assert!(check_redirect_uri("javascript:alert(1)", true).is_err());
        assert!(check_redirect_uri("https://app.example/cb#x", false).is_err());
        assert!(check_redirect_uri("/cb", true).is_err());
    }

    #[test]
    fn party_needs_a_name_and_https_urls() {
        let ok = json!({"name": "X", "uri": "https://x.example"});
        assert!(Party::from_json(&ok, "p", false).is_ok());
        assert!(Party::from_json(&json!({"uri": "https://x"}), "p", false).is_err());
        let http = json!({"name": "X", "logo_uri": "http://x.example/l.png"});
        assert!(Party::from_json(&http, "p", false).is_err());
        assert!(Party::from_json(&http, "p", true).is_ok());
        assert!(Party::from_json(&json!({"name": 3}), "p", false).is_err());
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://127.0.0.1:9/cb?x"), "http://127.0.0.1:9");
        assert_eq!(origin_of("com.example.app:/cb"), "com.example.app:");
    }
}
