//! Config of identity chaining across domains: `[[peer_authorities]]`,
//! `identity_chaining_token_types` and `chaining_grant_ttl`.
//!
//! draft-ietf-oauth-identity-chaining-11 (JWT authorization grants, §2.3) and
//! draft-ietf-oauth-identity-assertion-authz-grant-02 (ID-JAG, §3): this authority issues grants
//! aimed at a peer authority, and accepts at its jwt-bearer grant those a peer signed for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::config::{duration, read_relative};
use super::config_entries::check_remote_uri;
use chaingate_core::config::ConfigError;
use chaingate_oauth::keys::{KeySet, DEFAULT_ALGORITHMS};

/// RFC 8693 §3 token type of a JWT authorization grant (identity chaining §2.3.3).
pub(crate) const JWT_GRANT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// ID-JAG §4.3: the token type of an Identity Assertion JWT Authorization Grant.
pub(crate) const ID_JAG_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    issuer: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    subject_prefix: String,
    /// ID-JAG `client_id` claim: this authority's client id → its client id at the peer.
    #[serde(default)]
    client_ids: BTreeMap<String, String>,
}

/// The top-level keys, as read.
pub(super) struct RawChaining {
    pub(super) peers: Vec<RawPeer>,
    pub(super) token_types: Option<Vec<String>>,
    pub(super) grant_ttl: Option<String>,
}

/// A peer authority: grants are issued for it (`aud` = its issuer), and with keys its grants
/// are accepted here.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) issuer: String,
    /// `None`: grants from this peer are not accepted (it is only an audience).
    pub(crate) keys: Option<PeerKeys>,
    pub(crate) subject_prefix: String,
    pub(crate) client_ids: BTreeMap<String, String>,
}

/// Where a peer's verification keys come from.
#[derive(Debug)]
pub(crate) enum PeerKeys {
    Remote(http::Uri),
    Static(KeySet),
}

/// Validated chaining settings.
#[derive(Debug)]
pub(crate) struct Chaining {
    pub(crate) peers: Vec<Peer>,
    /// Requested token types issued and advertised (identity chaining §3), as URNs.
    pub(crate) token_types: Vec<&'static str>,
    /// Lifetime of an issued grant (capped by the subject token's `exp`).
    pub(crate) grant_ttl: Duration,
}

impl Chaining {
    pub(crate) fn peer(&self, issuer: &str) -> Option<(usize, &Peer)> {
        self.peers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == issuer)
    }

    pub(crate) fn issues(&self, token_type: &str) -> bool {
        !self.peers.is_empty() && self.token_types.contains(&token_type)
    }
}

pub(super) fn validate_chaining(raw: RawChaining, base: &Path) -> Result<Chaining, ConfigError> {
    let mut peers: Vec<Peer> = Vec::with_capacity(raw.peers.len());
    for (i, p) in raw.peers.into_iter().enumerate() {
        let key = |k: &str| format!("peer_authorities[{i}].{k}");
        super::config::check_uri_like(&key("issuer"), &p.issuer)?;
        if peers.iter().any(|o| o.issuer == p.issuer) {
            return Err(ConfigError::key(key("issuer"), "duplicate issuer"));
        }
        let keys = match (&p.jwks_uri, &p.jwks_file) {
            (None, None) => None,
            (Some(uri), None) => Some(PeerKeys::Remote(
                check_remote_uri(uri, p.allow_insecure_http)
                    .map_err(|m| ConfigError::key(key("jwks_uri"), m))?,
            )),
            (None, Some(path)) => {
                let text = read_relative(base, &key("jwks_file"), path)?;
                Some(PeerKeys::Static(
                    KeySet::from_jwks(text.as_bytes(), DEFAULT_ALGORITHMS)
                        .map_err(|m| ConfigError::key(key("jwks_file"), m))?,
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::key(
                    key("jwks_uri"),
                    "set jwks_uri or jwks_file, not both",
                ))
            }
        };
        for (from, to) in &p.client_ids {
            if to.is_empty() {
                return Err(ConfigError::key(
                    key(&format!("client_ids.{from}")),
                    "must not be empty",
                ));
            }
        }
        peers.push(Peer {
            issuer: p.issuer,
            keys,
            subject_prefix: p.subject_prefix,
            client_ids: p.client_ids,
        });
    }
    let token_types = match raw.token_types {
        None => vec![JWT_GRANT_TYPE, ID_JAG_TYPE],
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let urn = match name.as_str() {
                    "jwt" | JWT_GRANT_TYPE => JWT_GRANT_TYPE,
                    "id-jag" | ID_JAG_TYPE => ID_JAG_TYPE,
                    _ => {
                        return Err(ConfigError::key(
                            format!("identity_chaining_token_types[{i}]"),
                            "not jwt or id-jag",
                        ))
                    }
                };
                if !out.contains(&urn) {
                    out.push(urn);
                }
            }
            out
        }
    };
    let grant_ttl = duration(
        "chaining_grant_ttl",
        raw.grant_ttl.as_deref(),
        Duration::from_secs(60),
    )?;
    if grant_ttl.is_zero() || grant_ttl > Duration::from_secs(600) {
        return Err(ConfigError::key(
            "chaining_grant_ttl",
            "must be between 1s and 10m: a grant is a short-lived bearer credential",
        ));
    }
    Ok(Chaining {
        peers,
        token_types,
        grant_ttl,
    })
}
