//! Optional local validation of the caller's JWT (`[routes.validate]`), before any exchange.
//!
//! RFC 9068 §4 and RFC 8725: `typ`, issuer, signature by the issuer's keys only (`jku`, `x5u`,
//! `jwk` headers are ignored; `none` and HMAC algorithms are refused), numeric `exp`/`nbf`/`iat`,
//! audience, required claims. A token that fails is a 401 `invalid_token` without calling the
//! token server. The token server still has the last word on tokens that pass.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Validate, ValidateKeys};
use crate::error::Error;
use chaingate_oauth::jwt;
use chaingate_oauth::keys::KeySet;
use chaingate_oauth::remote::{FetchLimits, RemoteKeys, SharedClient};

/// JWKS documents larger than this are refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The `[routes.validate]` checks of one route, with its issuer's keys (fetched or from a file).
#[derive(Debug)]
pub(crate) struct InboundValidator {
    settings: Arc<Validate>,
    keys: IssuerKeys,
}

/// An issuer's keys: a `jwks_uri` fetched lazily (5 s, 256 KiB, cached 10 minutes, refetched
/// for an unknown `kid` at most once per `min_refetch_interval`), or a `jwks_file` already
/// loaded with the config. Shared by the route checks and the security-event receiver.
#[derive(Debug)]
pub(crate) enum IssuerKeys {
    Remote(Box<RemoteKeys>),
    File(Arc<KeySet>),
}

impl IssuerKeys {
    /// The keys of `source`; a remote one is fetched through `client` when first needed.
    pub(crate) fn new(
        source: &ValidateKeys,
        algorithms: Vec<jsonwebtoken::Algorithm>,
        min_refetch_interval: Duration,
        client: SharedClient,
    ) -> Self {
        match source {
            ValidateKeys::Remote(uri) => Self::Remote(Box::new(RemoteKeys::new(
                uri.clone(),
                algorithms,
                FetchLimits {
                    timeout: Duration::from_secs(5),
                    max_bytes: MAX_JWKS_BYTES,
                    cache_ttl: Duration::from_secs(600),
                    min_refetch_interval,
                },
                client,
            ))),
            ValidateKeys::File(set) => Self::File(Arc::new(set.clone())),
        }
    }

    /// The claims of `token` once its signature verifies with these keys. `typ` (when required)
    /// and `iss` (when known) are checked first, so a stranger's token never causes a key fetch.
    pub(crate) async fn verify(
        &self,
        token: &str,
        typ: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<Value, Refusal> {
        let (header, unverified) = jwt::peek(token).map_err(Refusal::Token)?;
        if let Some(typ) = typ {
            if !jwt::typ_is(&header, typ) {
                return Err(Refusal::Token(format!("typ is not {typ}")));
            }
        }
        if let Some(issuer) = issuer {
            if unverified.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err(Refusal::Token("issuer is not the configured one".into()));
            }
        }
        let kid = short_kid(&header).map_err(|e| Refusal::Token(e.into()))?;
        let keys = self.get(kid).await.map_err(Refusal::KeysUnavailable)?;
        Ok(jwt::verify(token, &header, &keys)
            .map_err(Refusal::Token)?
            .claims)
    }

    /// The keys to try for a JWS naming `kid`; an error: they cannot be had at all.
    pub(crate) async fn get(&self, kid: Option<&str>) -> Result<Arc<KeySet>, String> {
        match self {
            Self::Remote(remote) => remote.keys(kid).await,
            Self::File(set) => Ok(set.clone()),
        }
    }

    /// Whether they are at hand (always, for a file).
    pub(crate) fn is_loaded(&self) -> bool {
        match self {
            Self::Remote(remote) => remote.is_loaded(),
            Self::File(_) => true,
        }
    }
}

/// A JWS header's `kid`, if it is a short string: only such a one may cause a key lookup.
pub(crate) fn short_kid(header: &Value) -> Result<Option<&str>, &'static str> {
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(kid)) if kid.len() <= 256 => Ok(Some(kid.as_str())),
        Some(_) => Err("kid is not a short string"),
    }
}

impl InboundValidator {
    /// A validator for `settings`; a `jwks_uri` is fetched lazily through `client`.
    pub(crate) fn new(settings: Arc<Validate>, client: SharedClient) -> Self {
        let keys = IssuerKeys::new(
            &settings.keys,
            settings.algorithms.clone(),
            settings.jwks_min_refetch_interval,
            client,
        );
        Self { settings, keys }
    }

    /// Loads the issuer's keys once (readiness waits for this), retrying with backoff.
    pub(crate) async fn ready(&self) {
        if self.keys.is_loaded() {
            return;
        }
        let mut backoff = self
            .settings
            .jwks_min_refetch_interval
            .max(Duration::from_millis(100));
        while let Err(e) = self.keys.get(None).await {
            tracing::warn!(issuer = %self.settings.issuer, error = %e, "JWKS not loaded yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Whether the issuer's keys are at hand (always, for a `jwks_file`): `/ready` waits for it.
    pub(crate) fn is_ready(&self) -> bool {
        self.keys.is_loaded()
    }

    /// Checks the caller's token: a bad token is `invalid_token` (the reason goes to the log);
    /// keys that cannot be had at all are our outage, a 503, not the caller's fault. `Ok(true)`:
    /// its `aud` names the route's target audience (`exchange = "if_needed"`).
    pub(crate) async fn check(&self, token: &str) -> Result<bool, Error> {
        match self.verify(token).await {
            Ok(aimed) => Ok(aimed),
            Err(Refusal::Token(reason)) => {
                tracing::debug!(issuer = %self.settings.issuer, reason, "caller's token refused locally");
                Err(Error::InvalidToken)
            }
            Err(Refusal::KeysUnavailable(reason)) => {
                tracing::warn!(issuer = %self.settings.issuer, reason, "issuer keys unavailable");
                Err(Error::ExchangeUnavailable {
                    retry_after: Duration::from_secs(5),
                })
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<bool, Refusal> {
        let settings = &self.settings;
        // Only the configured issuer's tokens may even cause a key lookup.
        let claims = self
            .keys
            .verify(token, settings.typ.as_deref(), Some(&settings.issuer))
            .await?;
        check_claims(settings, &claims).map_err(Refusal::Token)
    }
}

/// `Ok(true)`: the token's `aud` names a target audience (then chaingate's own `audience` need not
/// be among them: such a token is only ever forwarded to that target, never exchanged).
fn check_claims(settings: &Validate, claims: &Value) -> Result<bool, String> {
    if jwt::string_claim(claims, "iss")? != settings.issuer {
        return Err("issuer mismatch".into());
    }
    jwt::check_times(claims, settings.clock_skew.as_secs())?;
    let audiences = jwt::audiences(claims)?;
    let aimed = audiences
        .iter()
        .any(|a| settings.target_audiences.contains(a));
    if !aimed && !audiences.iter().any(|a| settings.audiences.contains(a)) {
        return Err("audience validation failed".into());
    }
    if let Some(missing) = settings
        .required_claims
        .iter()
        .find(|c| claims.get(c.as_str()).is_none())
    {
        return Err(format!("required claim {missing} is missing"));
    }
    Ok(aimed)
}

pub(crate) enum Refusal {
    /// The caller's token is bad.
    Token(String),
    /// The issuer's keys could not be had: our problem, not the caller's.
    KeysUnavailable(String),
}
