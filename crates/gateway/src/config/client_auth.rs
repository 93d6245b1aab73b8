//! How chaingate authenticates itself to a token endpoint: client secrets (Basic or in the body),
//! RFC 7523 client assertions, RFC 8705 mutual TLS.

use std::sync::Arc;

use super::assertion_file::{AssertionFile, AssertionType};
use super::digest::Digest;
use super::domain::{AssertionAudience, AssertionKey, ClientAuth};
use super::file::{FileDomain, SecretText};
use super::{load_identity, ConfigError};
pub(crate) use chaingate_oauth::client_auth::basic_authorization;
use chaingate_oauth::keys::{parse_asymmetric_alg, SigningKey};
use chaingate_oauth::secret::Secret;

pub(super) fn client_auth(name: &str, d: &FileDomain) -> Result<ClientAuth, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    let no_secret = |method: &str| {
        if d.client_secret.is_some() || d.client_secret_file.is_some() {
            return Err(ConfigError::key(
                key("client_secret"),
                format!("not used with auth_method = \"{method}\""),
            ));
        }
        Ok(())
    };
    if let Some(path) = &d.client_assertion_file {
        return assertion_file(name, d, path);
    }
    if d.client_assertion_type.is_some() {
        return Err(ConfigError::key(
            key("client_assertion_type"),
            "only used with client_assertion_file",
        ));
    }
    match d.auth_method() {
        "client_secret_basic" => Ok(ClientAuth::Basic(basic_authorization(
            d.client_id.as_deref().unwrap_or_default(),
            &secret(name, d)?,
        ))),
        "client_secret_post" => Ok(ClientAuth::Post(secret(name, d)?)),
        "private_key_jwt" => {
            no_secret("private_key_jwt")?;
            let path = d.client_key_file.as_ref().ok_or_else(|| {
                ConfigError::key(key("client_key_file"), "required for private_key_jwt")
            })?;
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::key(
                    key("client_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let alg = d
                .client_assertion_alg
                .as_deref()
                .map(parse_asymmetric_alg)
                .transpose()
                .map_err(|e| ConfigError::key(key("client_assertion_alg"), e))?;
            let mut signing = SigningKey::from_pem(&pem, alg)
                .map_err(|e| ConfigError::key(key("client_key_file"), e))?;
            if let Some(kid) = &d.client_key_id {
                signing = signing.with_kid(kid.clone());
            }
            let audience = match d.client_assertion_audience.as_deref() {
                // draft-ietf-oauth-rfc7523bis §4: the issuer identifier is the audience where it
                // is known (discovery); without an issuer the token endpoint stays the default.
                None if d.issuer.is_some() => AssertionAudience::Issuer,
                None | Some("token_endpoint") => AssertionAudience::TokenEndpoint,
                Some("issuer") => AssertionAudience::Issuer,
                Some(url) => AssertionAudience::Fixed(url.to_string()),
            };
            if audience == AssertionAudience::Issuer && d.issuer.is_none() {
                return Err(ConfigError::key(
                    key("client_assertion_audience"),
                    "\"issuer\" needs the domain's issuer",
                ));
            }
            let mut digest = Digest::new();
            digest.part(&pem);
            Ok(ClientAuth::PrivateKeyJwt(Arc::new(AssertionKey {
                key: signing,
                audience,
                pem_digest: digest.finish(),
            })))
        }
        "tls_client_auth" => {
            no_secret("tls_client_auth")?;
            let (Some(cert), Some(cert_key)) = (&d.client_cert_file, &d.client_cert_key_file)
            else {
                return Err(ConfigError::key(
                    key("client_cert_file"),
                    "tls_client_auth needs client_cert_file and client_cert_key_file",
                ));
            };
            let identity = load_identity(
                cert,
                cert_key,
                &key("client_cert_file"),
                &key("client_cert_key_file"),
            )?;
            Ok(ClientAuth::TlsClientAuth(Arc::new(identity)))
        }
        _ => Err(ConfigError::key(
            key("auth_method"),
            "not client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth",
        )),
    }
}

/// `client_assertion_file`: the file is the credential, so a secret, key or certificate
/// alongside it is a mistake (which one would the server see?).
fn assertion_file(
    name: &str,
    d: &FileDomain,
    path: &std::path::Path,
) -> Result<ClientAuth, ConfigError> {
    let key = |field: &str| format!("domains.{name}.{field}");
    if let Some(method) = d.auth_method.as_deref() {
        if method != "client_assertion_file" {
            return Err(ConfigError::key(
                key("auth_method"),
                format!(
                    "\"{method}\" conflicts with client_assertion_file (leave auth_method out)"
                ),
            ));
        }
    }
    let conflicting = [
        ("client_secret", d.client_secret.is_some()),
        ("client_secret_file", d.client_secret_file.is_some()),
        ("client_key_file", d.client_key_file.is_some()),
        ("client_cert_file", d.client_cert_file.is_some()),
    ];
    if let Some((field, _)) = conflicting.iter().find(|(_, set)| *set) {
        return Err(ConfigError::key(
            key(field),
            "not used with client_assertion_file",
        ));
    }
    let kind = match d.client_assertion_type.as_deref() {
        None | Some("jwt-bearer") => AssertionType::JwtBearer,
        Some("jwt-spiffe") => AssertionType::JwtSpiffe,
        Some(_) => {
            return Err(ConfigError::key(
                key("client_assertion_type"),
                "not jwt-bearer or jwt-spiffe",
            ))
        }
    };
    if path.as_os_str().is_empty() {
        return Err(ConfigError::key(
            key("client_assertion_file"),
            "must not be empty",
        ));
    }
    Ok(ClientAuth::AssertionFile(Arc::new(AssertionFile::new(
        path.to_path_buf(),
        kind,
    ))))
}

fn secret(name: &str, d: &FileDomain) -> Result<Secret, ConfigError> {
    read_secret(
        &format!("domains.{name}"),
        d.client_secret.as_ref().map(SecretText::expose),
        d.client_secret_file.as_deref(),
    )
}

/// `<prefix>.client_secret` or `<prefix>.client_secret_file` (one of them, not empty).
pub(super) fn read_secret(
    prefix: &str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Secret, ConfigError> {
    let key = |field: &str| format!("{prefix}.{field}");
    let secret = match (inline, file) {
        (Some(s), None) => Secret::new(s),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::key(
                    key("client_secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Secret::new(text.trim_end_matches(['\r', '\n']))
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                key("client_secret"),
                "set client_secret or client_secret_file, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::key(
                key("client_secret"),
                "missing (or client_secret_file)",
            ))
        }
    };
    if secret.is_empty() {
        return Err(ConfigError::key(key("client_secret"), "must not be empty"));
    }
    Ok(secret)
}
