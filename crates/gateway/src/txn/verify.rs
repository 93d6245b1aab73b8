//! Inside the trust domain: the incoming `Txn-Token` checked as draft §8.2 says (signature by
//! the TTS keys, `aud` the trust domain, not expired) and as §6 shapes one (`typ`
//! `txntoken+jwt`, `iat`, `txn`, `sub`), with a lifetime no longer than `max_lifetime` (§5:
//! "on the order of minutes or less"; §12.1: a long one is a replay risk).

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use super::TXN_TOKEN;
use crate::config::{TxnMode, TxnVerify};
use crate::error::Error;
use crate::validate::{IssuerKeys, Refusal};
use chaingate_oauth::jwt;
use chaingate_oauth::remote::SharedClient;

/// The `typ` of a Txn-Token (§6.1).
const TYP: &str = "txntoken+jwt";

/// One route's Txn-Token checks, with the TTS keys.
#[derive(Debug)]
pub(crate) struct Verifier {
    settings: Arc<TxnVerify>,
    keys: IssuerKeys,
}

impl Verifier {
    pub(crate) fn new(settings: Arc<TxnVerify>, client: SharedClient) -> Self {
        let keys = IssuerKeys::new(
            &settings.keys,
            settings.algorithms.clone(),
            settings.jwks_min_refetch_interval,
            client,
        );
        Self { settings, keys }
    }

    pub(crate) fn mode(&self) -> TxnMode {
        self.settings.mode
    }

    /// Whether the TTS keys are at hand (`/ready`).
    pub(crate) fn is_ready(&self) -> bool {
        self.keys.is_loaded()
    }

    /// Loads the TTS keys once, retrying with backoff (startup waits for this).
    pub(crate) async fn ready(&self) {
        let mut backoff = self
            .settings
            .jwks_min_refetch_interval
            .max(std::time::Duration::from_millis(100));
        while !self.keys.is_loaded() {
            if let Err(e) = self.keys.get(None).await {
                tracing::warn!(error = %e, "Txn-Token keys not loaded yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }

    /// `Ok(true)`: a valid Txn-Token; `Ok(false)`: none, and none is required.
    pub(crate) async fn check(&self, headers: &HeaderMap) -> Result<bool, Error> {
        let mut values = headers.get_all(TXN_TOKEN).iter();
        let token = match (values.next(), values.next()) {
            (None, _) if self.settings.required => return Err(Error::TxnTokenMissing),
            (None, _) => return Ok(false),
            (Some(value), None) => value.to_str().map_err(|_| Error::TxnTokenInvalid)?,
            // §8.1: "exactly one Txn-Token".
            (Some(_), Some(_)) => {
                tracing::debug!("several Txn-Token headers refused");
                return Err(Error::TxnTokenInvalid);
            }
        };
        match self.verify(token).await {
            Ok(txn) => {
                // §12.2: the `txn` is what lets a transaction be audited across workloads.
                tracing::debug!(txn = %txn, "Txn-Token verified");
                Ok(true)
            }
            Err(Refusal::Token(reason)) => {
                tracing::debug!(reason, "Txn-Token refused");
                Err(Error::TxnTokenInvalid)
            }
            Err(Refusal::KeysUnavailable(reason)) => {
                tracing::warn!(reason, "Txn-Token keys unavailable");
                Err(Error::ExchangeUnavailable {
                    retry_after: std::time::Duration::from_secs(5),
                })
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<String, Refusal> {
        let settings = &self.settings;
        let claims = self
            .keys
            .verify(token, Some(TYP), settings.issuer.as_deref())
            .await?;
        check_claims(settings, &claims).map_err(Refusal::Token)
    }
}

/// The claims of a verified Txn-Token; its `txn` when they pass.
fn check_claims(settings: &TxnVerify, claims: &Value) -> Result<String, String> {
    if let Some(issuer) = &settings.issuer {
        if jwt::string_claim(claims, "iss")? != issuer {
            return Err("issuer mismatch".into());
        }
    }
    let exp = jwt::check_times(claims, settings.clock_skew.as_secs())?;
    let iat = jwt::numeric(claims, "iat")?.ok_or("token has no iat claim")?;
    if exp.saturating_sub(iat) > settings.max_lifetime.as_secs() {
        return Err("lifetime is longer than max_lifetime".into());
    }
    // §6.2: a Txn-Token MUST NOT be accepted outside the trust domain its `aud` names.
    if !jwt::audiences(claims)?.contains(&settings.audience) {
        return Err("audience is not this trust domain".into());
    }
    jwt::string_claim(claims, "sub")?;
    Ok(jwt::string_claim(claims, "txn")?.to_owned())
}
