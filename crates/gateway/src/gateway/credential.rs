//! The credential a route sends upstream, decided between authn and outbound: the exchanged
//! AT2, the caller's own token (`exchange = "never"`, or `"if_needed"` with a token already for
//! the target audience), or none (a Txn-Token alone, draft-ietf-oauth-transaction-tokens §7).

use http::header::AUTHORIZATION;
use http::Request;

use super::RouteRuntime;
use crate::authn::InboundToken;
use crate::config::ExchangeMode;
use crate::error::Error;
use crate::outbound::Credential;
use crate::tokens::{Caller, Lookup};

/// What goes upstream in `Authorization` (or `DPoP`).
pub(super) enum Outgoing {
    /// AT2, from the cache or the token endpoint: the upstream refusing it may be answered by
    /// exchanging again (feedback).
    Exchanged(Credential),
    /// The caller's own `Authorization`, unchanged: a refusal is the caller's to hear.
    Own(Credential),
    /// Nothing: the Txn-Token is the only credential.
    Withheld,
}

impl Outgoing {
    /// Whether an upstream 401 `invalid_token` may be retried with a fresh exchange.
    pub(super) fn exchanged(&self) -> bool {
        matches!(self, Self::Exchanged(_))
    }

    pub(super) fn into_credential(self) -> Credential {
        match self {
            Self::Exchanged(c) | Self::Own(c) => c,
            Self::Withheld => Credential::withheld(),
        }
    }
}

impl RouteRuntime {
    /// The caller's token, unless the route reads none (a Txn-Token alone inside the trust
    /// domain).
    pub(super) async fn authenticate<'r, B>(
        &self,
        request: &'r Request<B>,
        tls: bool,
    ) -> Result<Option<InboundToken<'r>>, Error> {
        if self.txn.without_bearer() {
            return Ok(None);
        }
        self.authn.authenticate(request, tls).await.map(Some)
    }

    /// The credential for the upstream; `lookup` records how AT2 was found, or `skipped`.
    pub(super) async fn credential<B>(
        &self,
        request: &Request<B>,
        at1: Option<InboundToken<'_>>,
        caller: &Caller<'_>,
        lookup: &mut Option<Lookup>,
    ) -> Result<Outgoing, Error> {
        let Some(at1) = at1.filter(|_| !self.txn.without_exchange()) else {
            return Ok(Outgoing::Withheld);
        };
        let skip = match self.config.exchange {
            ExchangeMode::Always => false,
            ExchangeMode::IfNeeded => at1.aimed_at_target(),
            ExchangeMode::Never => true,
        };
        if let Some(own) = request.headers().get(AUTHORIZATION).filter(|_| skip) {
            if let Some(skipped) = &self.skipped {
                skipped.inc();
            }
            *lookup = Some(Lookup::Skipped);
            return Ok(Outgoing::Own(Credential {
                authorization: own.clone(),
                dpop: None,
            }));
        }
        let (at2, found) = self
            .tokens
            .for_route(&self.config, at1, caller)
            .await
            .map_err(|e| at1.in_its_scheme(e))?;
        *lookup = Some(found);
        Ok(Outgoing::Exchanged(Credential {
            authorization: at2.authorization.clone(),
            dpop: at2.dpop.clone(),
        }))
    }
}
