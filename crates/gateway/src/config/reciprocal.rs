//! `[domains.X.reciprocal]`: chaingate as party A's agent in Reciprocal OAuth
//! (draft-ietf-oauth-reciprocal-04). When domain X's token response asks for a `reciprocal`
//! scope, chaingate obtains an authorization code for it from the authority of the caller's
//! domain (party A) and delivers it to X's token endpoint with the token X just issued.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::client_auth::{basic_authorization, read_secret};
use super::digest::Digest;
use super::domain::{http_url, ClientAuth};
use super::{load_certs, parse_duration, validate_scope, ConfigError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileReciprocal {
    /// Party A's code endpoint (the chaingate authority's `/reciprocal/code`).
    code_endpoint: String,
    /// The domain's client id at party A: the client that redeems the code there.
    recipient: String,
    /// chaingate's own client at party A, allowed to ask for codes on a caller's behalf.
    client_id: String,
    client_secret: Option<super::file::SecretText>,
    client_secret_file: Option<PathBuf>,
    auth_method: Option<String>,
    /// The reciprocal scopes chaingate agrees to pass on; anything else is declined.
    scopes: Vec<String>,
    remember: Option<String>,
    consent_retry: Option<String>,
    failure_retry: Option<String>,
    max_subjects: Option<u64>,
    max_in_flight: Option<usize>,
    timeout: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    allow_insecure_http: bool,
}

/// Validated `[domains.X.reciprocal]`.
#[derive(Debug)]
pub struct Reciprocal {
    /// Party A's code endpoint, asked for an authorization code for the domain's client there.
    pub code_endpoint: Uri,
    /// The domain's client id at party A: the code is issued to it, and it redeems it at A.
    pub recipient: String,
    /// chaingate's own client id at party A, allowed to ask for codes on a caller's behalf.
    pub client_id: String,
    /// `Basic` or `Post` only: the agent's credentials at party A.
    pub client_auth: ClientAuth,
    /// The reciprocal scopes chaingate agrees to pass on (one scope per entry); others are declined.
    pub scopes: BTreeSet<String>,
    /// How long a delivered (caller, scope) is remembered, so it is delivered at most once.
    pub remember: Duration,
    /// After `consent_required`, how long before the same (caller, scope) is asked for again:
    /// not at once (incremental authorization §6.1), but the user may consent meanwhile.
    pub consent_retry: Duration,
    /// After a failure at either party, how long before a later exchange tries again.
    pub failure_retry: Duration,
    /// Most (caller, scope) pairs remembered at once; beyond it some are forgotten early.
    pub max_subjects: u64,
    /// Deliveries running at once; beyond it an offer is dropped (and retried on a later exchange).
    pub max_in_flight: usize,
    /// Deadline of one code request to party A (delivery to the domain uses the domain's).
    pub timeout: Duration,
    /// CA certificates for party A's code endpoint; `None` means the system roots.
    pub ca_certs: Option<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for FileReciprocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReciprocal")
            .field("code_endpoint", &self.code_endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub(super) fn validate(
    domain: &str,
    r: &FileReciprocal,
    default_timeout: Duration,
) -> Result<Reciprocal, ConfigError> {
    let prefix = format!("domains.{domain}.reciprocal");
    let key = |field: &str| format!("{prefix}.{field}");
    let code_endpoint = http_url(
        &key("code_endpoint"),
        &r.code_endpoint,
        r.allow_insecure_http,
    )?;
    for (field, value) in [("recipient", &r.recipient), ("client_id", &r.client_id)] {
        if value.is_empty() {
            return Err(ConfigError::key(key(field), "must not be empty"));
        }
    }
    let secret = read_secret(
        &prefix,
        r.client_secret
            .as_ref()
            .map(super::file::SecretText::expose),
        r.client_secret_file.as_deref(),
    )?;
    let client_auth = match r.auth_method.as_deref() {
        None | Some("client_secret_basic") => {
            ClientAuth::Basic(basic_authorization(&r.client_id, &secret))
        }
        Some("client_secret_post") => ClientAuth::Post(secret),
        Some(_) => {
            return Err(ConfigError::key(
                key("auth_method"),
                "not client_secret_basic or client_secret_post",
            ))
        }
    };
    let mut scopes = BTreeSet::new();
    for scope in &r.scopes {
        validate_scope(&key("scopes"), scope)?;
        if scope.contains(' ') {
            return Err(ConfigError::key(
                key("scopes"),
                format!("`{scope}`: one scope per list entry"),
            ));
        }
        scopes.insert(scope.clone());
    }
    if scopes.is_empty() {
        return Err(ConfigError::key(
            key("scopes"),
            "list the reciprocal scopes chaingate may pass on (at least one)",
        ));
    }
    let positive = |field: &str, value: Option<u64>, default: u64| match value.unwrap_or(default) {
        0 => Err(ConfigError::key(key(field), "must be at least 1")),
        n => Ok(n),
    };
    Ok(Reciprocal {
        code_endpoint,
        recipient: r.recipient.clone(),
        client_id: r.client_id.clone(),
        client_auth,
        scopes,
        remember: match &r.remember {
            Some(t) => parse_duration(&key("remember"), t)?,
            None => Duration::from_secs(24 * 3600),
        },
        consent_retry: match &r.consent_retry {
            Some(t) => parse_duration(&key("consent_retry"), t)?,
            None => Duration::from_secs(600),
        },
        failure_retry: match &r.failure_retry {
            Some(t) => parse_duration(&key("failure_retry"), t)?,
            None => Duration::from_secs(60),
        },
        max_subjects: positive("max_subjects", r.max_subjects, 100_000)?,
        max_in_flight: usize::try_from(positive(
            "max_in_flight",
            r.max_in_flight.map(|n| n as u64),
            16,
        )?)
        .unwrap_or(usize::MAX),
        timeout: match &r.timeout {
            Some(t) => parse_duration(&key("timeout"), t)?,
            None => default_timeout,
        },
        ca_certs: r
            .ca_file
            .as_deref()
            .map(|p| load_certs(&key("ca_file"), p))
            .transpose()?,
    })
}

impl Reciprocal {
    /// Every setting, secret included, for reload change detection.
    pub(super) fn fingerprint(&self, d: &mut Digest) {
        d.part(
            format!(
                "{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}",
                self.code_endpoint,
                self.recipient,
                self.client_id,
                self.scopes,
                self.remember,
                self.consent_retry,
                self.failure_retry,
                self.max_subjects,
                self.max_in_flight,
                self.timeout
            )
            .as_bytes(),
        );
        match &self.client_auth {
            ClientAuth::Basic(value) => d.part(value.as_bytes()),
            ClientAuth::Post(secret) => d.part(secret.expose().as_bytes()),
            ClientAuth::PrivateKeyJwt(_)
            | ClientAuth::TlsClientAuth(_)
            | ClientAuth::AssertionFile(_) => {}
        }
        for cert in self.ca_certs.iter().flatten() {
            d.part(cert.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn with(section: &str) -> Result<Config, String> {
        Config::from_toml(&format!(
            r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"
[domains.b]
token_endpoint = "https://as.b.example/token"
client_id = "gateway"
client_secret = "s"
[domains.b.reciprocal]
{section}
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:3000"
domain = "b"
"#
        ))
        .map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
code_endpoint = "https://as.a.example/reciprocal/code"
recipient = "b-at-a"
client_id = "agent"
client_secret = "agent-secret"
scopes = ["a:read"]
"#;

    #[test]
    fn a_policy_loads_with_defaults() {
        let config = with(GOOD).unwrap();
        let policy = config.domains[0].reciprocal.as_ref().unwrap();
        assert_eq!(policy.recipient, "b-at-a");
        assert!(policy.scopes.contains("a:read"));
        assert_eq!(policy.remember, std::time::Duration::from_secs(86_400));
        assert!(!format!("{policy:?}").contains("agent-secret"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (
                GOOD.replace(r#"scopes = ["a:read"]"#, "scopes = []"),
                "domains.b.reciprocal.scopes",
            ),
            (
                GOOD.replace("a:read", "a:read a:write"),
                "domains.b.reciprocal.scopes",
            ),
            (
                GOOD.replace("https://as.a", "http://as.a"),
                "domains.b.reciprocal.code_endpoint",
            ),
            (
                GOOD.replace("client_secret = \"agent-secret\"", ""),
                "domains.b.reciprocal.client_secret",
            ),
            (
                GOOD.to_string() + "auth_method = \"private_key_jwt\"\n",
                "domains.b.reciprocal.auth_method",
            ),
            (
                GOOD.replace("recipient = \"b-at-a\"", "recipient = \"\""),
                "domains.b.reciprocal.recipient",
            ),
            (
                GOOD.to_string() + "max_in_flight = 0\n",
                "domains.b.reciprocal.max_in_flight",
            ),
            (
                GOOD.to_string() + "consent_retry = \"soon\"\n",
                "domains.b.reciprocal.consent_retry",
            ),
            (GOOD.to_string() + "surprise = 1\n", "surprise"),
        ];
        for (section, key) in cases {
            let error = with(&section).unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn changing_the_policy_changes_the_domain_fingerprint() {
        let before = with(GOOD).unwrap().domains[0].fingerprint();
        let after = with(&GOOD.replace("agent-secret", "rotated"))
            .unwrap()
            .domains[0]
            .fingerprint();
        assert_ne!(before, after);
    }
}
