//! The first step of `identity-chaining` and `id-jag` (config/chaining.rs): a fresh grant from
//! the chaining domain per attempt at this one, and the start-up check of the chaining domain's
//! `identity_chaining_requested_token_types_supported` (draft-ietf-oauth-identity-chaining-11 §3).

use std::sync::Arc;

use super::{Endpoints, Exchanger, Failure, OnBehalf, Outcome};
use crate::config::{Grant, Targets};
use crate::error::Error;
use chaingate_oauth::secret::Secret;

/// Step 1 at `at` (the chaining domain's step exchanger): RFC 8693 for a grant, never cached.
/// Its own exchange is counted, audited and retried under the chaining domain's name; a failure
/// here fails this domain's exchange without asking its server.
pub(super) async fn fresh_grant(
    at: &Exchanger,
    subject: &str,
    scope: Option<&str>,
    on_behalf: OnBehalf<'_>,
) -> Result<Secret, Failure> {
    let step_one = |error: Error, reason| {
        let outcome = match error.is_refusal() {
            true => Outcome::Rejected,
            false => Outcome::Error,
        };
        Failure {
            outcome,
            step_one: true,
            ..Failure::error(error, reason)
        }
    };
    if at.chaining_refused.load().is_some() {
        return Err(step_one(
            Error::ExchangeFailed("chaining domain does not offer the requested token type"),
            "chaining unsupported",
        ));
    }
    // Boxed: an exchange that may itself start with a step is recursive as a type.
    match Box::pin(at.exchange(subject, scope, None, on_behalf)).await {
        Ok(issued) => Ok(issued.access_token),
        Err(error) => Err(step_one(error, "chaining grant")),
    }
}

impl Exchanger {
    /// `Some` (why) if this is a chaining step its domain's metadata says it cannot serve.
    pub(crate) fn chaining_unsupported(&self) -> Option<Arc<String>> {
        self.chaining_refused.load_full()
    }

    /// Exchanges at this (chained) domain, step 1 at `step` first, within this domain's deadline.
    pub(crate) async fn exchange_chained(
        &self,
        step: &Exchanger,
        subject: &str,
        (scope, targets): (Option<&str>, Option<&Targets>),
        on_behalf: OnBehalf<'_>,
    ) -> Result<super::Issued, Error> {
        self.exchange_for(subject, (scope, targets), false, on_behalf, Some(step))
            .await
    }

    /// Identity chaining §3: a chaining domain that advertises the member without the requested
    /// type is refused (not ready, and exchanges fail at once); one that does not advertise it
    /// may still support it (the member is OPTIONAL and may be partial), so that only warns.
    /// Re-checked at every discovery refresh, so a fixed server becomes usable without restart.
    pub(super) fn check_chaining(&self, endpoints: &Endpoints) {
        let Grant::TokenExchange(settings) = &self.domain.grant else {
            return;
        };
        let Some(wanted) = settings.requested_token_type.as_deref() else {
            return;
        };
        match &endpoints.chaining_token_types {
            None => {
                tracing::warn!(
                    domain = %self.domain.name,
                    requested_token_type = wanted,
                    "the chaining domain does not advertise identity_chaining_requested_token_types_supported; trying anyway"
                );
                self.chaining_refused.store(None);
            }
            Some(types) if types.iter().any(|t| t == wanted) => self.chaining_refused.store(None),
            Some(_) => {
                let why =
                    format!("identity_chaining_requested_token_types_supported lacks {wanted}");
                tracing::error!(domain = %self.domain.name, reason = %why, "chaining domain refused");
                self.chaining_refused.store(Some(Arc::new(why)));
            }
        }
    }
}
