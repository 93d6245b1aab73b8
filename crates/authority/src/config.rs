//! Authority configuration: TOML shape (serde) validated once into typed values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::config_chaining::{validate_chaining, Chaining, RawChaining, RawPeer};
use super::config_entries::{validate_client, validate_issuer, RawClient, RawIssuer};
use super::config_interactive::{validate_interactive, Interactive, RawRegistration, RawUser};
use super::parties::Parties;
use super::reciprocal::config::{
    validate_policies, validate_redeemer, Policy, RawPolicy, RawReciprocal, Redeemer,
};
use chaingate_core::config::{parse_duration, parse_toml, read_file, ConfigError};
use chaingate_oauth::keys::{parse_asymmetric_alg, KeySet, SigningKey};
use chaingate_oauth::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    issuer: Option<String>,
    token_ttl: Option<String>,
    default_audience: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    signing_key_file: Option<PathBuf>,
    signing_alg: Option<String>,
    clock_skew: Option<String>,
    max_assertion_lifetime: Option<String>,
    max_body_bytes: Option<usize>,
    jwks_fetch_timeout: Option<String>,
    jwks_max_bytes: Option<usize>,
    jwks_cache_ttl: Option<String>,
    jwks_min_refetch_interval: Option<String>,
    max_failed_auth_per_minute: Option<u32>,
    #[serde(default)]
    require_dpop_nonce: bool,
    #[serde(default)]
    clients: Vec<RawClient>,
    #[serde(default)]
    trusted_issuers: Vec<RawIssuer>,
    #[serde(default)]
    dev_mode: bool,
    #[serde(default)]
    users: Vec<RawUser>,
    registration: Option<RawRegistration>,
    code_ttl: Option<String>,
    refresh_token_ttl: Option<String>,
    session_ttl: Option<String>,
    max_scopes_per_request: Option<usize>,
    reciprocal: Option<RawReciprocal>,
    #[serde(default)]
    reciprocal_policies: Vec<RawPolicy>,
    txn_token_service: Option<super::txn_token::RawTxnTokenService>,
    #[serde(default)]
    peer_authorities: Vec<RawPeer>,
    identity_chaining_token_types: Option<Vec<String>>,
    chaining_grant_ttl: Option<String>,
}

/// Validated authority configuration. Build with [`AuthorityConfig::from_toml`] or `load`.
#[derive(Debug)]
pub struct AuthorityConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) issuer: Option<String>,
    pub(crate) token_ttl: Duration,
    pub(crate) default_audience: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) signing_key: Option<SigningKey>,
    pub(crate) clock_skew: Duration,
    pub(crate) max_assertion_lifetime: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) jwks_fetch_timeout: Duration,
    pub(crate) jwks_max_bytes: usize,
    pub(crate) jwks_cache_ttl: Duration,
    pub(crate) jwks_min_refetch_interval: Duration,
    pub(crate) max_failed_auth_per_minute: u32,
    /// RFC 9449 §8: DPoP proofs at the token endpoint must carry a nonce this authority issued.
    pub(crate) require_dpop_nonce: bool,
    pub(crate) clients: Vec<Arc<Client>>,
    pub(crate) trusted_issuers: Vec<TrustedIssuer>,
    /// Users, sessions, codes, refresh tokens and registration (the user-facing side).
    pub(crate) interactive: Interactive,
    /// Party B of Reciprocal OAuth: where to redeem codes (absent: the grant is unsupported).
    pub(crate) reciprocal: Option<Arc<Redeemer>>,
    /// Party A of Reciprocal OAuth: service-to-service pre-consent.
    pub(crate) reciprocal_policies: Vec<Policy>,
    /// `[txn_token_service]`: Txn-Tokens for the listed clients (absent: none are issued).
    pub(crate) txn_token_service: Option<super::txn_token::TxnTokenService>,
    /// Identity chaining and ID-JAG: peer authorities, issued grant types, grant lifetime.
    pub(crate) chaining: Chaining,
}

/// How a client proves its identity at the token endpoint.
#[derive(Debug)]
pub(crate) enum ClientAuthMethod {
    SecretBasic(Secret),
    SecretPost(Secret),
    PrivateKeyJwt(KeySet),
    /// `federated`: a workload issuer's JWT is the credential (RFC 7523 §2.2,
    /// draft-ietf-oauth-spiffe-client-auth).
    Federated(Federated),
    /// A public client (RFC 6749 §2.1): sends only `client_id`.
    None,
}

/// `[[clients]] federated`: the client authenticates with a JWT its platform issued to it
/// (a Kubernetes projected service account token, a SPIFFE JWT-SVID), not one it signed.
#[derive(Debug)]
pub(crate) struct Federated {
    /// The workload issuer's `iss` (e.g. the cluster's service account issuer).
    pub(crate) issuer: String,
    /// The one `sub` accepted, e.g. `system:serviceaccount:ns:sa`.
    pub(crate) subject: String,
    /// `jwks_uri` (fetched and cached by the authority) or `jwks_file`.
    pub(crate) keys: FederatedKeys,
    /// The only `aud` accepted; `None`: this authority's issuer or token endpoint URL.
    pub(crate) audience: Option<String>,
    /// Algorithms accepted from the workload issuer.
    pub(crate) algorithms: Vec<Algorithm>,
    /// Refuse a second use of one `jti` within its lifetime. Off by default: the kubelet
    /// hands the same projected token to every request until it rotates it.
    pub(crate) single_use: bool,
}

/// Where a federated client's workload issuer keys come from.
#[derive(Debug)]
pub(crate) enum FederatedKeys {
    Remote(http::Uri),
    Static(KeySet),
}

impl ClientAuthMethod {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::Federated(_) => "a federated client assertion",
            Self::None => "none",
        }
    }
}

/// Grant types a client may use (short names in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Grant {
    ClientCredentials,
    Chain,
    TokenExchange,
    /// RFC 7523 §2.1: a JWT from a trusted issuer as an authorization grant.
    JwtBearer,
    AuthorizationCode,
    RefreshToken,
    /// draft-ietf-oauth-reciprocal: the client delivers a code of its own domain.
    Reciprocal,
}

/// A registered client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) auth: ClientAuthMethod,
    pub(crate) grants: BTreeSet<Grant>,
    pub(crate) scope: BTreeSet<String>,
    pub(crate) audience: Option<String>,
    pub(crate) allowed_audiences: Option<Vec<String>>,
    pub(crate) subject_token_audiences: Option<Vec<String>>,
    /// Registered redirection endpoints, matched exactly (RFC 6749 §3.1.2.3).
    pub(crate) redirect_uris: Vec<String>,
    /// draft-sakimura-oauth-meta: `turi`/`duri` on redirects, `Link` on token responses.
    pub(crate) response_metadata: bool,
    /// `ruri` for the `Link` header (else the default audience if it is a URL).
    pub(crate) resource_uri: Option<String>,
    /// Display name on the consent page, end-user application and intermediaries.
    pub(crate) parties: Parties,
    /// Set for clients created at `POST /register`.
    pub(crate) registration: Option<super::registration::Registered>,
    /// Reciprocal OAuth (draft §2.1): scope string added to this client's token responses.
    pub(crate) reciprocal: Option<String>,
}

impl Client {
    pub(crate) fn is_public(&self) -> bool {
        matches!(self.auth, ClientAuthMethod::None)
    }
}

/// Where a trusted issuer's verification keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    Remote(http::Uri),
    Static(KeySet),
    /// Opaque (or any) tokens validated at the issuer's RFC 7662 endpoint.
    Introspection(IntrospectionSource),
}

/// Where and as whom to introspect a trusted issuer's tokens.
#[derive(Debug)]
pub(crate) struct IntrospectionSource {
    pub(crate) endpoint: http::Uri,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) cache_ttl: Duration,
}

/// An issuer whose access tokens the chain grant and token exchange accept.
#[derive(Debug)]
pub(crate) struct TrustedIssuer {
    pub(crate) issuer: String,
    pub(crate) keys: KeySource,
    pub(crate) audiences: Vec<String>,
    /// `None`: scopes pass through unchanged; `Some`: only mapped scopes survive.
    pub(crate) scope_map: Option<BTreeMap<String, BTreeSet<String>>>,
    pub(crate) subject_prefix: String,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl AuthorityConfig {
    /// Parses and validates TOML; relative file paths are resolved against the working directory.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_in(text, Path::new("."))
    }

    /// Reads, parses and validates a config file; relative paths in it are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_in(&text, base)
    }

    fn from_toml_in(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_toml(text)?;
        validate(raw, base)
    }
}

pub(super) fn duration(
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    value.map_or(Ok(default), |v| parse_duration(key, v))
}

pub(super) fn read_relative(base: &Path, key: &str, path: &Path) -> Result<String, ConfigError> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    std::fs::read_to_string(&full)
        .map_err(|e| ConfigError::key(key, format!("cannot read {}: {e}", full.display())))
}

pub(super) fn check_uri_like(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(ConfigError::key(
            key,
            "must be a non-empty string without whitespace",
        ));
    }
    Ok(())
}

fn validate(raw: RawConfig, base: &Path) -> Result<AuthorityConfig, ConfigError> {
    let listen = raw
        .listen
        .parse()
        .map_err(|_| ConfigError::key("listen", "must be an IP:port socket address"))?;
    if let Some(issuer) = &raw.issuer {
        check_issuer(issuer).map_err(|m| ConfigError::key("issuer", m))?;
    }
    let token_ttl = duration(
        "token_ttl",
        raw.token_ttl.as_deref(),
        Duration::from_secs(300),
    )?;
    if token_ttl.as_secs() == 0 {
        return Err(ConfigError::key("token_ttl", "must be at least 1s"));
    }
    if let Some(aud) = &raw.default_audience {
        check_uri_like("default_audience", aud)?;
    }
    for (i, aud) in raw.audiences.iter().enumerate() {
        check_uri_like(&format!("audiences[{i}]"), aud)?;
    }
    let signing_alg = raw
        .signing_alg
        .as_deref()
        .map(|a| parse_asymmetric_alg(a).map_err(|m| ConfigError::key("signing_alg", m)))
        .transpose()?;
    let signing_key = match &raw.signing_key_file {
        Some(path) => {
            let pem = read_relative(base, "signing_key_file", path)?;
            Some(
                SigningKey::from_pem(pem.as_bytes(), signing_alg)
                    .map_err(|m| ConfigError::key("signing_key_file", m))?,
            )
        }
        None if signing_alg.is_some_and(|a| a != Algorithm::ES256) => {
            return Err(ConfigError::key(
                "signing_alg",
                "a generated key is ES256; set signing_key_file for other algorithms",
            ))
        }
        None => None,
    };
    let dev_mode = raw.dev_mode;
    let mut clients = Vec::with_capacity(raw.clients.len());
    for (i, c) in raw.clients.into_iter().enumerate() {
        let client = validate_client(c, i, base, dev_mode)?;
        if clients.iter().any(|o: &Arc<Client>| o.id == client.id) {
            return Err(ConfigError::key(
                format!("clients[{i}].client_id"),
                "duplicate client_id",
            ));
        }
        clients.push(Arc::new(client));
    }
    let mut trusted_issuers = Vec::with_capacity(raw.trusted_issuers.len());
    for (i, t) in raw.trusted_issuers.into_iter().enumerate() {
        let issuer = validate_issuer(t, i, base)?;
        if trusted_issuers
            .iter()
            .any(|o: &TrustedIssuer| o.issuer == issuer.issuer)
        {
            return Err(ConfigError::key(
                format!("trusted_issuers[{i}].issuer"),
                "duplicate issuer",
            ));
        }
        trusted_issuers.push(issuer);
    }
    let interactive = validate_interactive(
        super::config_interactive::RawInteractive {
            dev_mode: raw.dev_mode,
            users: raw.users,
            registration: raw.registration,
            code_ttl: raw.code_ttl,
            refresh_token_ttl: raw.refresh_token_ttl,
            session_ttl: raw.session_ttl,
            max_scopes_per_request: raw.max_scopes_per_request,
        },
        &clients,
        base,
    )?;
    let reciprocal = raw
        .reciprocal
        .map(|r| validate_redeemer(r, base))
        .transpose()?;
    let reciprocal_policies = validate_policies(raw.reciprocal_policies, &clients)?;
    let txn_token_service = raw
        .txn_token_service
        .map(|t| super::txn_token::validate(t, &clients))
        .transpose()?;
    let chaining = validate_chaining(
        RawChaining {
            peers: raw.peer_authorities,
            token_types: raw.identity_chaining_token_types,
            grant_ttl: raw.chaining_grant_ttl,
        },
        base,
    )?;
    Ok(AuthorityConfig {
        listen,
        issuer: raw.issuer,
        token_ttl,
        default_audience: raw.default_audience,
        audiences: raw.audiences,
        signing_key,
        clock_skew: duration(
            "clock_skew",
            raw.clock_skew.as_deref(),
            Duration::from_secs(30),
        )?,
        max_assertion_lifetime: duration(
            "max_assertion_lifetime",
            raw.max_assertion_lifetime.as_deref(),
            Duration::from_secs(300),
        )?,
        max_body_bytes: raw.max_body_bytes.unwrap_or(64 * 1024),
        require_dpop_nonce: raw.require_dpop_nonce,
        jwks_fetch_timeout: duration(
            "jwks_fetch_timeout",
            raw.jwks_fetch_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        jwks_max_bytes: raw.jwks_max_bytes.unwrap_or(256 * 1024),
        jwks_cache_ttl: duration(
            "jwks_cache_ttl",
            raw.jwks_cache_ttl.as_deref(),
            Duration::from_secs(300),
        )?,
        jwks_min_refetch_interval: duration(
            "jwks_min_refetch_interval",
            raw.jwks_min_refetch_interval.as_deref(),
            Duration::from_secs(10),
        )?,
        max_failed_auth_per_minute: raw.max_failed_auth_per_minute.unwrap_or(20),
        clients,
        trusted_issuers,
        interactive,
        reciprocal,
        reciprocal_policies,
        txn_token_service,
        chaining,
    })
}

/// RFC 8414 §2: an issuer is an http(s) URL without query or fragment.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let uri: http::Uri = issuer
        .parse()
        .map_err(|_| "must be an absolute URL".to_string())?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err("must be an absolute http(s) URL".into());
    }
    if issuer.contains('?') || issuer.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every inline secret an authority config can hold.
    const WITH_SECRETS: &str = r#"
listen = "127.0.0.1:0"
users = [{ username = "alice", password = "user-password-value" }]

[[clients]]
client_id = "gw"
client_secret = "client-secret-value"

[[trusted_issuers]]
issuer = "https://a.example"
audiences = ["x"]
introspection_client_secret = "introspection-secret-value"

[registration]
initial_access_tokens = ["initial-access-token-value"]

[reciprocal]
token_endpoint = "https://b.example/token"
client_id = "agent"
client_secret = "reciprocal-secret-value"
"#;

    #[test]
    fn raw_config_debug_shows_no_secret() {
        let raw: RawConfig = parse_toml(WITH_SECRETS).unwrap();
        let shown = format!("{raw:?}");
        for value in [
            "user-password",
            "client-secret",
            "introspection-secret",
            "initial-access",
            "reciprocal-secret",
        ] {
            assert!(!shown.contains(value), "{value}: {shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
