//! `[domains.X.registration]`: the gateway registers itself at the domain's authorization server
//! (RFC 7591, managed with RFC 7592) and describes the end-user application and the
//! intermediaries between it and the server (draft-parecki-oauth-client-intermediary-metadata).
//!
//! The whole registration request is built here, once, so that its digest tells at start whether
//! the stored registration still matches what would be sent now.

use std::path::PathBuf;

use http::Uri;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::digest::Digest;
use super::file::FileDomain;
use super::ConfigError;
use chaingate_oauth::grant::{CHAIN_GRANT, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRegistration {
    pub(crate) endpoint: Option<String>,
    pub(crate) initial_access_token_file: Option<PathBuf>,
    pub(crate) state_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) delete_on_shutdown: bool,
    pub(crate) client_name: Option<String>,
    pub(crate) client_uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    pub(crate) contacts: Option<Vec<String>>,
    pub(crate) software_id: Option<String>,
    pub(crate) software_version: Option<String>,
    pub(crate) end_user_application: Option<FileParty>,
    #[serde(default)]
    pub(crate) intermediaries: Vec<FileParty>,
}

/// A party of the intermediary draft: the end-user application or one intermediary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileParty {
    pub(crate) name: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) contacts: Option<Vec<String>>,
}

/// How the gateway registers itself for one domain.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `None`: the `registration_endpoint` of the domain's discovered metadata.
    pub endpoint: Option<Uri>,
    /// Re-read at every registration attempt: secret files are rotated in place.
    pub initial_access_token_file: PathBuf,
    /// Where the issued registration (client credentials, RFC 7592 registration access token
    /// and URI) is kept across restarts; written atomically, mode 0600, its contents secret.
    pub state_file: PathBuf,
    /// At graceful shutdown, delete the client (RFC 7592 §2.3) and remove `state_file`.
    pub delete_on_shutdown: bool,
    /// The RFC 7591 request body.
    pub metadata: Map<String, Value>,
    /// Hex SHA-256 of `metadata`: a stored registration with another digest is updated.
    pub metadata_digest: String,
    /// `client_secret_post` (else `client_secret_basic`).
    pub secret_in_body: bool,
}

impl Registration {
    pub(crate) fn fingerprint_part(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{}|{}",
            self.endpoint.as_ref().map(ToString::to_string),
            self.initial_access_token_file,
            self.state_file,
            self.delete_on_shutdown,
            self.metadata_digest
        )
    }
}

/// An http(s) URL (`http` only with `allow_insecure_http`) without userinfo: these URLs are
/// published to the server and shown to users.
fn url(key: &str, text: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    super::domain::http_url(key, text, allow_insecure_http)?;
    if text.contains('@') {
        return Err(ConfigError::key(key, "must carry no credentials"));
    }
    Ok(())
}

fn non_empty(key: &str, value: &Option<String>) -> Result<(), ConfigError> {
    if value.as_deref().is_some_and(str::is_empty) {
        return Err(ConfigError::key(key, "must not be empty"));
    }
    Ok(())
}

fn party(key: &str, p: &FileParty, allow_insecure_http: bool) -> Result<Value, ConfigError> {
    let name = p
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConfigError::key(format!("{key}.name"), "required"))?;
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    for (field, value) in [("uri", &p.uri), ("logo_uri", &p.logo_uri)] {
        if let Some(v) = value {
            url(&format!("{key}.{field}"), v, allow_insecure_http)?;
            out.insert(field.into(), json!(v));
        }
    }
    if let Some(description) = &p.description {
        non_empty(&format!("{key}.description"), &p.description)?;
        out.insert("description".into(), json!(description));
    }
    if let Some(contacts) = &p.contacts {
        out.insert("contacts".into(), json!(contacts));
    }
    Ok(Value::Object(out))
}

/// Validates `domains.<name>.registration` (if present) against the rest of the domain.
pub(super) fn validate_registration(
    name: &str,
    d: &FileDomain,
) -> Result<Option<Registration>, ConfigError> {
    let Some(r) = &d.registration else {
        return Ok(None);
    };
    let key = |field: &str| format!("domains.{name}.registration.{field}");
    let domain_key = |field: &str| format!("domains.{name}.{field}");
    if d.client_secret.is_some() || d.client_secret_file.is_some() {
        let field = if d.client_secret.is_some() {
            "client_secret"
        } else {
            "client_secret_file"
        };
        return Err(ConfigError::key(
            domain_key(field),
            "not used with registration: the issued secret is used",
        ));
    }
    if d.client_id.is_some() {
        return Err(ConfigError::key(
            domain_key("client_id"),
            "not used with registration: the issued client_id is used",
        ));
    }
    let secret_in_body = match d.auth_method() {
        "client_secret_basic" => false,
        "client_secret_post" => true,
        _ => {
            return Err(ConfigError::key(
                domain_key("auth_method"),
                "cannot be registered (client_secret_basic or client_secret_post)",
            ))
        }
    };
    let endpoint = match &r.endpoint {
        Some(text) => {
            url(&key("endpoint"), text, d.allow_insecure_http)?;
            Some(
                text.parse::<Uri>()
                    .map_err(|_| ConfigError::key(key("endpoint"), "not a valid URL"))?,
            )
        }
        None if d.issuer.is_some() => None,
        None => {
            return Err(ConfigError::key(
                key("endpoint"),
                "required without the domain's issuer (discovery gives registration_endpoint)",
            ))
        }
    };
    let initial_access_token_file = r.initial_access_token_file.clone().ok_or_else(|| {
        ConfigError::key(
            key("initial_access_token_file"),
            "required: registration is protected by an initial access token",
        )
    })?;
    let state_file = r.state_file.clone().ok_or_else(|| {
        ConfigError::key(
            key("state_file"),
            "required: where the issued registration is kept across restarts",
        )
    })?;

    let mut metadata = Map::new();
    let grant = match d.grant.as_str() {
        "token-exchange" => TOKEN_EXCHANGE_GRANT,
        "jwt-bearer" => JWT_BEARER_GRANT,
        _ => CHAIN_GRANT,
    };
    metadata.insert("grant_types".into(), json!([grant]));
    // Token requests only: no redirect-based flow is registered.
    metadata.insert("response_types".into(), json!([]));
    metadata.insert("token_endpoint_auth_method".into(), json!(d.auth_method()));
    if let Some(scope) = &d.scope {
        metadata.insert("scope".into(), json!(scope));
    }
    for (field, value) in [
        ("client_name", &r.client_name),
        ("software_id", &r.software_id),
        ("software_version", &r.software_version),
    ] {
        non_empty(&key(field), value)?;
        if let Some(v) = value {
            metadata.insert(field.into(), json!(v));
        }
    }
    for (field, value) in [("client_uri", &r.client_uri), ("logo_uri", &r.logo_uri)] {
        if let Some(v) = value {
            url(&key(field), v, d.allow_insecure_http)?;
            metadata.insert(field.into(), json!(v));
        }
    }
    if let Some(contacts) = &r.contacts {
        metadata.insert("contacts".into(), json!(contacts));
    }
    if let Some(app) = &r.end_user_application {
        metadata.insert(
            "end_user_application".into(),
            party(&key("end_user_application"), app, d.allow_insecure_http)?,
        );
    }
    if !r.intermediaries.is_empty() {
        let list = r
            .intermediaries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                party(
                    &key(&format!("intermediaries[{i}]")),
                    p,
                    d.allow_insecure_http,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        metadata.insert("intermediaries".into(), Value::Array(list));
    }
    // serde_json's Map is ordered by key, so equal metadata always serializes the same way.
    let mut digest = Digest::new();
    digest.part(&serde_json::to_vec(&metadata).unwrap_or_default());
    let metadata_digest = digest.finish().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(Registration {
        endpoint,
        initial_access_token_file,
        state_file,
        delete_on_shutdown: r.delete_on_shutdown,
        metadata,
        metadata_digest,
        secret_in_body,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn config(domain: &str) -> String {
        format!(
            r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"

[domains.billing]
grant = "chain"
scope = "invoices.read"
{domain}

[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:3000"
domain = "billing"
"#
        )
    }

    const GOOD: &str = r#"
token_endpoint = "https://as.example/token"
[domains.billing.registration]
endpoint = "https://as.example/register"
initial_access_token_file = "/run/secrets/iat"
state_file = "/var/lib/chaingate/billing.json"
client_name = "Billing gateway"
end_user_application = { name = "Tax Helper", uri = "https://taxhelper.example/" }
[[domains.billing.registration.intermediaries]]
name = "Relay"
uri = "https://relay.example/"
"#;

    fn error_for(domain: &str) -> String {
        Config::from_toml(&config(domain)).unwrap_err().to_string()
    }

    #[test]
    fn a_registration_builds_the_request_from_the_domain() {
        let loaded = Config::from_toml(&config(GOOD)).unwrap();
        let r = loaded.domains[0].registration.as_ref().unwrap();
        let m = serde_json::Value::Object(r.metadata.clone());
        assert_eq!(m["grant_types"][0], chaingate_oauth::grant::CHAIN_GRANT);
        assert_eq!(m["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(m["scope"], "invoices.read");
        assert_eq!(m["end_user_application"]["name"], "Tax Helper");
        assert_eq!(m["intermediaries"][0]["uri"], "https://relay.example/");
        assert!(!r.delete_on_shutdown);
        // The digest follows the metadata.
        let other = Config::from_toml(&config(&GOOD.replace("Relay", "Relay 2"))).unwrap();
        let other = other.domains[0].registration.as_ref().unwrap();
        assert_ne!(r.metadata_digest, other.metadata_digest);
    }

    #[test]
    fn a_missing_state_file_is_named() {
        let text = GOOD.replace("state_file = \"/var/lib/chaingate/billing.json\"", "");
        assert!(error_for(&text).contains("domains.billing.registration.state_file"));
    }

    #[test]
    fn a_missing_initial_access_token_file_is_named() {
        let text = GOOD.replace("initial_access_token_file = \"/run/secrets/iat\"", "");
        assert!(error_for(&text).contains("domains.billing.registration.initial_access_token_file"));
    }

    #[test]
    fn the_endpoint_is_required_without_discovery() {
        let text = GOOD.replace("endpoint = \"https://as.example/register\"", "");
        assert!(error_for(&text).contains("domains.billing.registration.endpoint"));
        let discovered = text.replace(
            "token_endpoint = \"https://as.example/token\"",
            "issuer = \"https://as.example\"",
        );
        assert!(Config::from_toml(&config(&discovered)).is_ok());
    }

    #[test]
    fn an_unsupported_auth_method_is_named() {
        let text = format!("auth_method = \"private_key_jwt\"\n{GOOD}");
        assert!(error_for(&text).contains("domains.billing.auth_method"));
    }

    #[test]
    fn a_configured_secret_or_client_id_conflicts_with_registration() {
        let text = format!("client_secret = \"s3cret\"\n{GOOD}");
        let error = error_for(&text);
        assert!(error.contains("domains.billing.client_secret"), "{error}");
        assert!(!error.contains("s3cret"));
        let text = format!("client_id = \"gw\"\n{GOOD}");
        assert!(error_for(&text).contains("domains.billing.client_id"));
    }

    #[test]
    fn without_registration_client_id_is_required() {
        let text = "token_endpoint = \"https://as.example/token\"\nclient_secret = \"s\"";
        assert!(error_for(text).contains("domains.billing.client_id"));
    }

    #[test]
    fn parties_need_a_name_and_https_urls() {
        let text = GOOD.replace("name = \"Relay\"", "");
        assert!(error_for(&text).contains("domains.billing.registration.intermediaries[0].name"));
        let text = GOOD.replace("https://relay.example/", "http://relay.example/");
        assert!(error_for(&text).contains("domains.billing.registration.intermediaries[0].uri"));
    }
}
