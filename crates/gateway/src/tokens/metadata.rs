//! `response_metadata = "verify"`: the token response's `Link` relations (draft-sakimura-oauth-meta
//! -05) must name the discovery document chaingate used (`duri`) and the route's resource
//! (`ruri`). A mismatch suggests a mix-up (RFC 9700 §4.4): the token is refused, never forwarded,
//! and chaingate never sends traffic to the URLs the links name.
//!
//! `duri` and presence are checked once per exchange (a refused token is never cached); `ruri`
//! is kept with the cached token and checked per request, since routes share a domain's tokens.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::CachedToken;
use crate::config::{Domain, ResponseMetadata, Route};
use crate::error::Error;
use crate::exchange::Issued;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Reason {
    RuriMismatch,
    DuriMismatch,
    Missing,
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Self::RuriMismatch => "ruri_mismatch",
                Self::DuriMismatch => "duri_mismatch",
                Self::Missing => "missing",
            },
        )
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainReason {
    domain: Arc<str>,
    reason: Reason,
}

/// `chaingate_response_metadata_refusals_total{domain,reason}`.
#[derive(Debug, Clone)]
pub(crate) struct MetadataMetrics {
    refusals: Family<DomainReason, Counter>,
}

impl MetadataMetrics {
    /// Registers `chaingate_response_metadata_refusals_total` on `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let refusals = Family::default();
        registry.register(
            "chaingate_response_metadata_refusals",
            "Tokens refused because the token response's ruri/duri links were missing or wrong",
            refusals.clone(),
        );
        Self { refusals }
    }
}

/// One domain's checks; a no-op unless the domain verifies.
#[derive(Debug)]
pub(super) struct MetadataCheck {
    verify: bool,
    domain: Arc<str>,
    refusals: Family<DomainReason, Counter>,
}

impl MetadataCheck {
    pub(super) fn new(domain: &Domain, metrics: &MetadataMetrics) -> Self {
        Self {
            verify: domain.response_metadata == ResponseMetadata::Verify,
            domain: domain.name.clone(),
            refusals: metrics.refusals.clone(),
        }
    }

    fn refuse(&self, reason: Reason) -> Error {
        self.refusals
            .get_or_create(&DomainReason {
                domain: self.domain.clone(),
                reason,
            })
            .inc();
        Error::ResponseMetadataRefused
    }

    /// Once per exchange, before the token is cached: both links present, `duri` one of the
    /// issuer's two metadata URLs (RFC 8414's or OpenID Discovery's, whichever discovery read),
    /// `ruri` an http(s) URL.
    pub(super) fn check_issued(&self, issued: Issued) -> Result<Issued, Error> {
        if !self.verify {
            return Ok(issued);
        }
        let links = &issued.links;
        let (Some(ruri), Some(duri)) = (&links.ruri, &links.duri) else {
            // A mix-up attacker would simply strip the header: "verify" means it must be there.
            tracing::warn!(domain = %self.domain, ruri = ?links.ruri, duri = ?links.duri, "token response lacks its ruri/duri links; token refused");
            return Err(self.refuse(Reason::Missing));
        };
        if !links.discovery.iter().any(|url| url == duri) {
            tracing::warn!(domain = %self.domain, %duri, expected = ?links.discovery, "token response names another discovery document (duri); token refused");
            return Err(self.refuse(Reason::DuriMismatch));
        }
        if issued
            .links
            .ruri
            .as_deref()
            .and_then(crate::config::origin)
            .is_none()
        {
            tracing::warn!(domain = %self.domain, %ruri, "token response's ruri is not an http(s) URL; token refused");
            return Err(self.refuse(Reason::RuriMismatch));
        }
        Ok(issued)
    }

    /// Per request: the cached token's `ruri` names this route's resource (origins compared).
    pub(super) fn check_route(&self, token: &CachedToken, route: &Route) -> Result<(), Error> {
        if !self.verify || token.ruri.as_deref() == Some(&*route.resource_origin) {
            return Ok(());
        }
        tracing::warn!(domain = %self.domain, route = %route.name, ruri = ?token.ruri, expected = %route.resource_origin, "token was issued for another resource (ruri); not forwarded");
        Err(self.refuse(Reason::RuriMismatch))
    }
}
