//! RFC 7591 §2 client metadata (plus the intermediary draft's parties): validation into a client.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::config::{Client, ClientAuthMethod, Grant};
use super::parties::{check_redirect_uri, check_web_url, Parties, Party};
use super::web::OAuthError;
use chaingate_oauth::util::{join_scope, parse_scope};

fn meta_error(d: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client_metadata", d)
}

fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, OAuthError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 2000 => Ok(Some(s)),
        Some(_) => Err(meta_error(format!("{key} must be a non-empty string"))),
    }
}

fn strings(m: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 50 => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| meta_error(format!("{key} must be an array of strings"))),
        Some(_) => Err(meta_error(format!("{key} must be an array of strings"))),
    }
}

/// A validated registration request: the client's settings and the metadata to echo.
#[derive(Debug)]
pub(crate) struct Metadata {
    pub(crate) method: &'static str,
    pub(crate) grants: BTreeSet<Grant>,
    pub(crate) scope: BTreeSet<String>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) parties: Parties,
    /// Registered metadata as returned to the client (RFC 7591 §3.2.1: all of it).
    pub(crate) echo: Map<String, Value>,
}

/// Validates a request body. `allowed_scope` bounds `scope` (values outside it are dropped,
/// RFC 7591 §3.2.1 lets the server replace values); omitted → all of it.
pub(crate) fn validate(
    m: &Map<String, Value>,
    allowed_scope: &BTreeSet<String>,
    dev_mode: bool,
) -> Result<Metadata, OAuthError> {
    let mut echo = Map::new();
    let redirect_uris = strings(m, "redirect_uris")?.unwrap_or_default();
    for uri in &redirect_uris {
        check_redirect_uri(uri, dev_mode)
            .map_err(|e| OAuthError::new("invalid_redirect_uri", format!("redirect_uris: {e}")))?;
    }
    let method = match string(m, "token_endpoint_auth_method")? {
        None | Some("client_secret_basic") => "client_secret_basic",
        Some("client_secret_post") => "client_secret_post",
        Some("none") => "none",
        Some(_) => return Err(meta_error(
            "token_endpoint_auth_method must be client_secret_basic, client_secret_post or none",
        )),
    };
    let grant_names =
        strings(m, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".to_string()]);
    let mut grants = BTreeSet::new();
    for name in &grant_names {
        grants.insert(match name.as_str() {
            "authorization_code" => Grant::AuthorizationCode,
            "refresh_token" => Grant::RefreshToken,
            "client_credentials" if method != "none" => Grant::ClientCredentials,
            // Extension grants, for confidential clients such as a self-registering gateway.
            "http://oauth.net/grant_type/chain" if method != "none" => Grant::Chain,
            "urn:ietf:params:oauth:grant-type:token-exchange" if method != "none" => {
                Grant::TokenExchange
            }
            "urn:ietf:params:oauth:grant-type:jwt-bearer" if method != "none" => Grant::JwtBearer,
            _ => {
                return Err(meta_error(format!(
                    "grant type {name} cannot be registered"
                )))
            }
        });
    }
    let code = grants.contains(&Grant::AuthorizationCode);
    let response_types = strings(m, "response_types")?.unwrap_or_else(|| {
        if code {
            vec!["code".into()]
        } else {
            Vec::new()
        }
    });
    if response_types.iter().any(|r| r != "code") || code == response_types.is_empty() {
        return Err(meta_error(
            "response_types must be [\"code\"] exactly when grant_types has authorization_code",
        ));
    }
    if code && redirect_uris.is_empty() {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            "authorization_code needs at least one redirect URI",
        ));
    }
    let scope = match string(m, "scope")? {
        Some(s) => parse_scope(s)
            .map_err(meta_error)?
            .intersection(allowed_scope)
            .cloned()
            .collect(),
        None => allowed_scope.clone(),
    };
    for key in ["jwks", "jwks_uri"] {
        if m.get(key).is_some_and(|v| !v.is_null()) {
            return Err(meta_error(format!(
                "{key} is not supported (no private_key_jwt for registered clients)"
            )));
        }
    }
    if m.get("software_statement").is_some_and(|v| !v.is_null()) {
        return Err(OAuthError::new(
            "unapproved_software_statement",
            "software statements are not accepted",
        ));
    }
    let mut parties = Parties::default();
    for key in ["client_uri", "logo_uri", "tos_uri", "policy_uri"] {
        if let Some(uri) = string(m, key)? {
            check_web_url(uri, dev_mode).map_err(|e| meta_error(format!("{key} {e}")))?;
            echo.insert(key.into(), json!(uri));
        }
    }
    parties.client_uri = string(m, "client_uri")?.map(str::to_string);
    parties.logo_uri = string(m, "logo_uri")?.map(str::to_string);
    for key in ["client_name", "software_id", "software_version"] {
        if let Some(v) = string(m, key)? {
            echo.insert(key.into(), json!(v));
        }
    }
    parties.client_name = string(m, "client_name")?.map(str::to_string);
    if let Some(contacts) = strings(m, "contacts")? {
        echo.insert("contacts".into(), json!(contacts));
    }
    match m.get("end_user_application") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let party =
                Party::from_json(v, "end_user_application", dev_mode).map_err(meta_error)?;
            echo.insert("end_user_application".into(), party.to_json());
            parties.end_user_application = Some(party);
        }
    }
    match m.get("intermediaries") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() <= 20 => {
            for (i, v) in items.iter().enumerate() {
                let party = Party::from_json(v, &format!("intermediaries[{i}]"), dev_mode)
                    .map_err(meta_error)?;
                parties.intermediaries.push(party);
            }
            let list: Vec<Value> = parties.intermediaries.iter().map(Party::to_json).collect();
            echo.insert("intermediaries".into(), Value::Array(list));
        }
        Some(_) => {
            return Err(meta_error(
                "intermediaries must be an array of at most 20 objects",
            ))
        }
    }
    if !redirect_uris.is_empty() {
        echo.insert("redirect_uris".into(), json!(redirect_uris));
    }
    echo.insert("token_endpoint_auth_method".into(), json!(method));
    echo.insert("grant_types".into(), json!(grant_names));
    echo.insert("response_types".into(), json!(response_types));
    echo.insert("scope".into(), json!(join_scope(&scope)));
    Ok(Metadata {
        method,
        grants,
        scope,
        redirect_uris,
        parties,
        echo,
    })
}

/// The client's authentication as registered; a secret method keeps `secret`.
pub(crate) fn auth_method(
    method: &str,
    secret: chaingate_oauth::secret::Secret,
) -> ClientAuthMethod {
    match method {
        "none" => ClientAuthMethod::None,
        "client_secret_post" => ClientAuthMethod::SecretPost(secret),
        _ => ClientAuthMethod::SecretBasic(secret),
    }
}

/// The current secret of a client, if it has one.
pub(crate) fn secret_of(client: &Client) -> Option<chaingate_oauth::secret::Secret> {
    match &client.auth {
        ClientAuthMethod::SecretBasic(s) | ClientAuthMethod::SecretPost(s) => Some(s.clone()),
        ClientAuthMethod::PrivateKeyJwt(_)
        | ClientAuthMethod::Federated(_)
        | ClientAuthMethod::None => None,
    }
}
