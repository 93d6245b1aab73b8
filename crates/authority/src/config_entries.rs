//! Config entries `[[clients]]` and `[[trusted_issuers]]`: TOML shape and validation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::{
    check_uri_like, duration, read_relative, Client, ClientAuthMethod, Grant, IntrospectionSource,
    KeySource, TrustedIssuer,
};
use super::parties::{check_redirect_uri, Parties};
use chaingate_core::config::{ConfigError, SecretText};
use chaingate_oauth::keys::{parse_asymmetric_alg, KeySet, DEFAULT_ALGORITHMS};
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::{join_scope, parse_scope};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    client_id: String,
    client_secret: Option<SecretText>,
    client_secret_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    auth_method: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    scope: String,
    audience: Option<String>,
    allowed_audiences: Option<Vec<String>>,
    subject_token_audiences: Option<Vec<String>>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    response_metadata: bool,
    resource_uri: Option<String>,
    client_name: Option<String>,
    /// Reciprocal OAuth: scope this authority asks the client's domain for in return.
    reciprocal: Option<String>,
    /// A workload issuer's JWT instead of a secret or keys.
    federated: Option<super::config_federated::RawFederated>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    issuer: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    audiences: Vec<String>,
    scope_map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    subject_prefix: String,
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    allow_insecure_http: bool,
    introspection_endpoint: Option<String>,
    introspection_client_id: Option<String>,
    introspection_client_secret: Option<SecretText>,
    introspection_cache_ttl: Option<String>,
}

pub(super) fn validate_client(
    mut c: RawClient,
    i: usize,
    base: &Path,
    dev_mode: bool,
) -> Result<Client, ConfigError> {
    let key = |k: &str| format!("clients[{i}].{k}");
    if c.client_id.is_empty() {
        return Err(ConfigError::key(key("client_id"), "must not be empty"));
    }
    let secret = match (&c.client_secret, &c.client_secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                key("client_secret_file"),
                "set client_secret or client_secret_file, not both",
            ))
        }
        (Some(s), None) => Some(Secret::new(s.expose())),
        (None, Some(path)) => {
            let text = read_relative(base, &key("client_secret_file"), path)?;
            Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
        }
        (None, None) => None,
    };
    if secret.as_ref().is_some_and(Secret::is_empty) {
        return Err(ConfigError::key(key("client_secret"), "must not be empty"));
    }
    if let Some(raw) = c.federated.take() {
        // The platform's token is the credential: a secret or key next to it is a mistake
        // (which one would the client use?).
        let conflicting = [
            ("client_secret", c.client_secret.is_some()),
            ("client_secret_file", c.client_secret_file.is_some()),
            ("jwks_file", c.jwks_file.is_some()),
            ("public", c.public),
        ];
        if let Some((field, _)) = conflicting.iter().find(|(_, set)| *set) {
            return Err(ConfigError::key(key(field), "conflicts with federated"));
        }
        if let Some(method) = c.auth_method.as_deref().filter(|m| *m != "federated") {
            return Err(ConfigError::key(
                key("auth_method"),
                format!("\"{method}\" conflicts with federated (leave auth_method out)"),
            ));
        }
        let federated = super::config_federated::validate_federated(raw, &key, base)?;
        return finish(c, i, ClientAuthMethod::Federated(federated), dev_mode);
    }
    let default_method = if c.public {
        "none"
    } else if c.jwks_file.is_some() {
        "private_key_jwt"
    } else {
        "client_secret_basic"
    };
    let method = c.auth_method.as_deref().unwrap_or(default_method);
    if c.public != (method == "none") {
        return Err(ConfigError::key(
            key("auth_method"),
            "public = true goes with auth_method = \"none\" (and only with it)",
        ));
    }
    let auth =
        match (method, secret, &c.jwks_file) {
            ("none", None, None) => ClientAuthMethod::None,
            ("none", _, _) => {
                return Err(ConfigError::key(
                    key("public"),
                    "a public client has no secret and no jwks_file",
                ))
            }
            ("client_secret_basic", Some(s), None) => ClientAuthMethod::SecretBasic(s),
            ("client_secret_post", Some(s), None) => ClientAuthMethod::SecretPost(s),
            ("private_key_jwt", None, Some(path)) => {
                let text = read_relative(base, &key("jwks_file"), path)?;
                let set = KeySet::from_jwks(text.as_bytes(), DEFAULT_ALGORITHMS)
                    .map_err(|m| ConfigError::key(key("jwks_file"), m))?;
                ClientAuthMethod::PrivateKeyJwt(set)
            }
            ("client_secret_basic" | "client_secret_post", _, _) => {
                return Err(ConfigError::key(
                    key("auth_method"),
                    format!("{method} needs client_secret or client_secret_file and no jwks_file"),
                ))
            }
            ("private_key_jwt", _, _) => {
                return Err(ConfigError::key(
                    key("auth_method"),
                    "private_key_jwt needs jwks_file and no client secret",
                ))
            }
            _ => return Err(ConfigError::key(
                key("auth_method"),
                "unknown method (client_secret_basic, client_secret_post, private_key_jwt, none)",
            )),
        };
    finish(c, i, auth, dev_mode)
}

/// Everything of a client but its authentication.
fn finish(
    c: RawClient,
    i: usize,
    auth: ClientAuthMethod,
    dev_mode: bool,
) -> Result<Client, ConfigError> {
    let key = |k: &str| format!("clients[{i}].{k}");
    let mut grants = BTreeSet::new();
    for (g, name) in c.grants.iter().enumerate() {
        grants.insert(match name.as_str() {
            "client_credentials" => Grant::ClientCredentials,
            "chain" | "http://oauth.net/grant_type/chain" => Grant::Chain,
            "token-exchange"
            | "token_exchange"
            | "urn:ietf:params:oauth:grant-type:token-exchange" => Grant::TokenExchange,
            "jwt-bearer" | "urn:ietf:params:oauth:grant-type:jwt-bearer" => Grant::JwtBearer,
            "authorization_code" => Grant::AuthorizationCode,
            "refresh_token" => Grant::RefreshToken,
            "reciprocal" | super::reciprocal::RECIPROCAL => Grant::Reciprocal,
            _ => {
                return Err(ConfigError::key(
                    key(&format!("grants[{g}]")),
                    "unknown grant (client_credentials, chain, token-exchange, jwt-bearer, authorization_code, refresh_token, reciprocal)",
                ))
            }
        });
    }
    let reciprocal = match &c.reciprocal {
        None => None,
        Some(_) if c.public => {
            return Err(ConfigError::key(
                key("reciprocal"),
                "a public client cannot use the reciprocal grant (it needs client authentication)",
            ))
        }
        Some(text) => {
            let scope = parse_scope(text).map_err(|m| ConfigError::key(key("reciprocal"), m))?;
            if scope.is_empty() {
                return Err(ConfigError::key(key("reciprocal"), "must not be empty"));
            }
            // The scope it asks for comes with the right to deliver the code.
            grants.insert(Grant::Reciprocal);
            Some(join_scope(&scope))
        }
    };
    if c.public
        && grants
            .iter()
            .any(|g| !matches!(g, Grant::AuthorizationCode | Grant::RefreshToken))
    {
        return Err(ConfigError::key(
            key("grants"),
            "a public client may use only authorization_code and refresh_token",
        ));
    }
    for (r, uri) in c.redirect_uris.iter().enumerate() {
        check_redirect_uri(uri, dev_mode)
            .map_err(|m| ConfigError::key(key(&format!("redirect_uris[{r}]")), m))?;
    }
    if let Some(uri) = &c.resource_uri {
        check_uri_like(&key("resource_uri"), uri)?;
    }
    let scope = parse_scope(&c.scope).map_err(|m| ConfigError::key(key("scope"), m))?;
    if let Some(aud) = &c.audience {
        check_uri_like(&key("audience"), aud)?;
    }
    Ok(Client {
        id: c.client_id,
        auth,
        grants,
        scope,
        audience: c.audience,
        allowed_audiences: c.allowed_audiences,
        subject_token_audiences: c.subject_token_audiences,
        redirect_uris: c.redirect_uris,
        response_metadata: c.response_metadata,
        resource_uri: c.resource_uri,
        parties: Parties {
            client_name: c.client_name,
            ..Parties::default()
        },
        registration: None,
        reciprocal,
    })
}

pub(super) fn validate_issuer(
    t: RawIssuer,
    i: usize,
    base: &Path,
) -> Result<TrustedIssuer, ConfigError> {
    let key = |k: &str| format!("trusted_issuers[{i}].{k}");
    if t.issuer.is_empty() {
        return Err(ConfigError::key(key("issuer"), "must not be empty"));
    }
    if t.audiences.is_empty() {
        return Err(ConfigError::key(
            key("audiences"),
            "list at least one audience the presented token must carry",
        ));
    }
    let algorithms = algorithms(&key, t.algorithms.as_deref())?;
    let keys = match (&t.jwks_uri, &t.jwks_file, &t.introspection_endpoint) {
        (Some(uri), None, None) => KeySource::Remote(
            check_remote_uri(uri, t.allow_insecure_http)
                .map_err(|m| ConfigError::key(key("jwks_uri"), m))?,
        ),
        (None, Some(path), None) => {
            let text = read_relative(base, &key("jwks_file"), path)?;
            KeySource::Static(
                KeySet::from_jwks(text.as_bytes(), &algorithms)
                    .map_err(|m| ConfigError::key(key("jwks_file"), m))?,
            )
        }
        (None, None, Some(endpoint)) => {
            let endpoint = check_remote_uri(endpoint, t.allow_insecure_http)
                .map_err(|m| ConfigError::key(key("introspection_endpoint"), m))?;
            let (Some(id), Some(secret)) =
                (&t.introspection_client_id, &t.introspection_client_secret)
            else {
                return Err(ConfigError::key(
                    key("introspection_client_id"),
                    "introspection_endpoint needs introspection_client_id and introspection_client_secret",
                ));
            };
            KeySource::Introspection(IntrospectionSource {
                endpoint,
                client_id: id.clone(),
                client_secret: Secret::new(secret.expose()),
                cache_ttl: duration(
                    &key("introspection_cache_ttl"),
                    t.introspection_cache_ttl.as_deref(),
                    std::time::Duration::from_secs(30),
                )?,
            })
        }
        _ => {
            return Err(ConfigError::key(
                key("jwks_uri"),
                "set exactly one of jwks_uri, jwks_file or introspection_endpoint",
            ))
        }
    };
    let scope_map = match t.scope_map {
        None => None,
        Some(map) => {
            let mut out = BTreeMap::new();
            for (from, to) in map {
                let to = parse_scope(&to)
                    .map_err(|m| ConfigError::key(key(&format!("scope_map.{from}")), m))?;
                out.insert(from, to);
            }
            Some(out)
        }
    };
    Ok(TrustedIssuer {
        issuer: t.issuer,
        keys,
        audiences: t.audiences,
        scope_map,
        subject_prefix: t.subject_prefix,
        algorithms,
    })
}

/// `https://` always; `http://` only with `allow_insecure_http` and a loopback host.
pub(super) fn check_remote_uri(uri: &str, allow_insecure_http: bool) -> Result<http::Uri, String> {
    let parsed: http::Uri = uri
        .parse()
        .map_err(|_| "must be an absolute URL".to_string())?;
    let host = parsed.host().ok_or("must be an absolute URL with a host")?;
    match parsed.scheme_str() {
        Some("https") => Ok(parsed),
        Some("http") => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !allow_insecure_http {
                Err("http:// needs allow_insecure_http = true (loopback hosts only)".into())
            } else if !loopback {
                Err("http:// is allowed only for loopback hosts".into())
            } else {
                Ok(parsed)
            }
        }
        _ => Err("must be an https:// URL".into()),
    }
}

/// `algorithms` of a table that trusts another issuer's keys: asymmetric JWS algorithms only
/// (RFC 8725 §3.1), the default set when absent, never an empty list.
pub(crate) fn algorithms(
    key: &dyn Fn(&str) -> String,
    names: Option<&[String]>,
) -> Result<Vec<jsonwebtoken::Algorithm>, ConfigError> {
    let algorithms = match names {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(a, n)| {
                parse_asymmetric_alg(n)
                    .map_err(|m| ConfigError::key(key(&format!("algorithms[{a}]")), m))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if algorithms.is_empty() {
        return Err(ConfigError::key(key("algorithms"), "must not be empty"));
    }
    Ok(algorithms)
}
