//! Config for Reciprocal OAuth: `[reciprocal]` (party B redeems codes at party A) and
//! `[[reciprocal_policies]]` (party A's service-to-service pre-consent).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::super::config::{duration, read_relative, Client, Grant};
use super::super::config_entries::check_remote_uri;
use chaingate_core::config::{ConfigError, SecretText};
use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::parse_scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReciprocal {
    token_endpoint: String,
    client_id: String,
    client_secret: Option<SecretText>,
    client_secret_file: Option<PathBuf>,
    auth_method: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    allow_insecure_http: bool,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    agent: String,
    recipient: String,
    scope: String,
}

/// How this authority, as party B, redeems codes at party A's token endpoint.
#[derive(Debug)]
pub(crate) struct Redeemer {
    pub(crate) token_endpoint: http::Uri,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    /// `client_secret_post` instead of the default `client_secret_basic`.
    pub(crate) secret_in_body: bool,
    /// Roots for an https token endpoint (else the system roots).
    pub(crate) ca: Option<Vec<CertificateDer<'static>>>,
    pub(crate) timeout: Duration,
}

/// Party A pre-consent: `agent` may ask for codes for `recipient` up to `scope`.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) agent: String,
    pub(crate) recipient: String,
    pub(crate) scope: BTreeSet<String>,
}

pub(crate) fn validate_redeemer(
    raw: RawReciprocal,
    base: &Path,
) -> Result<Arc<Redeemer>, ConfigError> {
    let token_endpoint = check_remote_uri(&raw.token_endpoint, raw.allow_insecure_http)
        .map_err(|m| ConfigError::key("reciprocal.token_endpoint", m))?;
    if raw.client_id.is_empty() {
        return Err(ConfigError::key(
            "reciprocal.client_id",
            "must not be empty",
        ));
    }
    let client_secret = match (raw.client_secret, &raw.client_secret_file) {
        (Some(s), None) => Secret::new(s.expose()),
        (None, Some(path)) => Secret::new(
            read_relative(base, "reciprocal.client_secret_file", path)?
                .trim_end_matches(['\r', '\n']),
        ),
        _ => {
            return Err(ConfigError::key(
                "reciprocal.client_secret",
                "set exactly one of client_secret or client_secret_file",
            ))
        }
    };
    if client_secret.is_empty() {
        return Err(ConfigError::key(
            "reciprocal.client_secret",
            "must not be empty",
        ));
    }
    let secret_in_body = match raw.auth_method.as_deref() {
        None | Some("client_secret_basic") => false,
        Some("client_secret_post") => true,
        Some(_) => {
            return Err(ConfigError::key(
                "reciprocal.auth_method",
                "unknown method (client_secret_basic, client_secret_post)",
            ))
        }
    };
    let ca = raw
        .ca_file
        .as_ref()
        .map(|p| {
            let full = if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            };
            chaingate_core::config::load_certs("reciprocal.ca_file", &full)
        })
        .transpose()?;
    let timeout = duration(
        "reciprocal.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(10),
    )?;
    if timeout.is_zero() {
        return Err(ConfigError::key("reciprocal.timeout", "must be positive"));
    }
    Ok(Arc::new(Redeemer {
        token_endpoint,
        client_id: raw.client_id,
        client_secret,
        secret_in_body,
        ca,
        timeout,
    }))
}

/// A client that can redeem a reciprocal code: confidential, with the code grant.
pub(crate) fn can_receive_codes(client: &Client) -> bool {
    !client.is_public() && client.grants.contains(&Grant::AuthorizationCode)
}

pub(crate) fn validate_policies(
    raw: Vec<RawPolicy>,
    clients: &[Arc<Client>],
) -> Result<Vec<Policy>, ConfigError> {
    let mut policies: Vec<Policy> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("reciprocal_policies[{i}].{k}");
        let find = |id: &str| clients.iter().find(|c| c.id == id);
        let Some(agent) = find(&p.agent) else {
            return Err(ConfigError::key(
                key("agent"),
                format!("unknown client `{}`", p.agent),
            ));
        };
        if agent.is_public() {
            return Err(ConfigError::key(
                key("agent"),
                "the agent must be a confidential client (it authenticates to ask for codes)",
            ));
        }
        let Some(recipient) = find(&p.recipient) else {
            return Err(ConfigError::key(
                key("recipient"),
                format!("unknown client `{}`", p.recipient),
            ));
        };
        if !can_receive_codes(recipient) {
            return Err(ConfigError::key(
                key("recipient"),
                "the recipient must be a confidential client with the authorization_code grant",
            ));
        }
        let scope = parse_scope(&p.scope).map_err(|m| ConfigError::key(key("scope"), m))?;
        if scope.is_empty() {
            return Err(ConfigError::key(key("scope"), "must not be empty"));
        }
        if let Some(extra) = scope.difference(&recipient.scope).next() {
            return Err(ConfigError::key(
                key("scope"),
                format!("`{extra}` is not in the recipient's registered scope"),
            ));
        }
        if policies
            .iter()
            .any(|o| o.agent == p.agent && o.recipient == p.recipient)
        {
            return Err(ConfigError::key(
                key("recipient"),
                "duplicate policy for this agent and recipient",
            ));
        }
        policies.push(Policy {
            agent: p.agent,
            recipient: p.recipient,
            scope,
        });
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::super::super::AuthorityConfig;

    const CLIENTS: &str = r#"
[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["client_credentials"]

[[clients]]
client_id = "party-b"
client_secret = "b-secret"
grants = ["authorization_code"]
redirect_uris = ["https://b.example/cb"]
scope = "read write"

[[clients]]
client_id = "app"
public = true
grants = ["authorization_code"]
redirect_uris = ["https://app.example/cb"]
scope = "read"
"#;

    fn load(top: &str, tables: &str) -> Result<AuthorityConfig, String> {
        AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\n{top}\n{CLIENTS}\n{tables}"
        ))
        .map_err(|e| e.to_string())
    }

    fn policy(agent: &str, recipient: &str, scope: &str) -> String {
        format!(
            "[[reciprocal_policies]]\nagent = \"{agent}\"\nrecipient = \"{recipient}\"\nscope = \"{scope}\"\n"
        )
    }

    #[test]
    fn policies_name_the_bad_key() {
        assert!(load("", &policy("gateway", "party-b", "read")).is_ok());
        let e = load("", &policy("nobody", "party-b", "read")).unwrap_err();
        assert!(
            e.contains("reciprocal_policies[0].agent") && e.contains("nobody"),
            "{e}"
        );
        let e = load("", &policy("gateway", "ghost", "read")).unwrap_err();
        assert!(e.contains("reciprocal_policies[0].recipient"), "{e}");
        let e = load("", &policy("gateway", "gateway", "read")).unwrap_err();
        assert!(e.contains("reciprocal_policies[0].recipient"), "{e}");
        let e = load("", &policy("gateway", "app", "read")).unwrap_err();
        assert!(e.contains("reciprocal_policies[0].recipient"), "{e}");
        let e = load("", &policy("app", "party-b", "read")).unwrap_err();
        assert!(e.contains("reciprocal_policies[0].agent"), "{e}");
        let e = load("", &policy("gateway", "party-b", "read admin")).unwrap_err();
        assert!(
            e.contains("reciprocal_policies[0].scope") && e.contains("admin"),
            "{e}"
        );
        let e = load("", &policy("gateway", "party-b", "")).unwrap_err();
        assert!(e.contains("reciprocal_policies[0].scope"), "{e}");
        let two = format!(
            "{}{}",
            policy("gateway", "party-b", "read"),
            policy("gateway", "party-b", "write")
        );
        let e = load("", &two).unwrap_err();
        assert!(e.contains("reciprocal_policies[1].recipient"), "{e}");
    }

    #[test]
    fn redeemer_settings_are_checked() {
        let table = |body: &str| format!("[reciprocal]\n{body}\n");
        let ok = "token_endpoint = \"https://a.example/token\"\nclient_id = \"b\"\nclient_secret = \"s\"";
        assert!(load(&table(ok), "").is_ok());
        let http = "token_endpoint = \"http://127.0.0.1:9/token\"\nclient_id = \"b\"\nclient_secret = \"s\"";
        let e = load(&table(http), "").unwrap_err();
        assert!(e.contains("reciprocal.token_endpoint"), "{e}");
        assert!(load(&table(&format!("{http}\nallow_insecure_http = true")), "").is_ok());
        let remote_http = "token_endpoint = \"http://a.example/token\"\nclient_id = \"b\"\nclient_secret = \"s\"\nallow_insecure_http = true";
        let e = load(&table(remote_http), "").unwrap_err();
        assert!(e.contains("reciprocal.token_endpoint"), "{e}");
        let e = load(
            &table("token_endpoint = \"https://a.example/token\"\nclient_id = \"b\""),
            "",
        )
        .unwrap_err();
        assert!(e.contains("reciprocal.client_secret"), "{e}");
        let e = load(
            &table(&format!("{ok}\nauth_method = \"private_key_jwt\"")),
            "",
        )
        .unwrap_err();
        assert!(e.contains("reciprocal.auth_method"), "{e}");
        let e = load(&table(&format!("{ok}\ntimeout = \"soon\"")), "").unwrap_err();
        assert!(e.contains("reciprocal.timeout"), "{e}");
        let e = load(
            &table(&format!("{ok}\nca_file = \"/nonexistent/ca.pem\"")),
            "",
        )
        .unwrap_err();
        assert!(e.contains("reciprocal.ca_file"), "{e}");
        let e = load(&table(&format!("{ok}\nretries = 3")), "").unwrap_err();
        assert!(e.contains("retries"), "{e}");
    }

    #[test]
    fn per_client_reciprocal_scope_is_checked() {
        let client = |extra: &str| {
            format!("[[clients]]\nclient_id = \"x\"\nclient_secret = \"s\"\ngrants = [\"client_credentials\"]\n{extra}\n")
        };
        assert!(load("", &client("reciprocal = \"contacts.read\"")).is_ok());
        let listed =
            "[[clients]]\nclient_id = \"y\"\nclient_secret = \"s\"\ngrants = [\"reciprocal\"]\n";
        assert!(
            load("", listed).is_ok(),
            "the grant without asking for a scope"
        );
        let e = load("", &client("reciprocal = \"\"")).unwrap_err();
        assert!(e.contains("clients[3].reciprocal"), "{e}");
        let e = load("", &client("reciprocal = \"a\\\"b\"")).unwrap_err();
        assert!(e.contains("clients[3].reciprocal"), "{e}");
        let public = "[[clients]]\nclient_id = \"p\"\npublic = true\ngrants = [\"authorization_code\"]\nredirect_uris = [\"https://p.example/cb\"]\nreciprocal = \"x\"\n";
        let e = load("", public).unwrap_err();
        assert!(e.contains("clients[3].reciprocal"), "{e}");
    }
}
