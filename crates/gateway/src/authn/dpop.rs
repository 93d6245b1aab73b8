//! DPoP from the caller (RFC 9449 §4.3, §7.1): on a route with `dpop = "allowed"` or
//! `"required"`, `Authorization: DPoP <AT1>` must come with exactly one `DPoP` proof of the key
//! AT1 is bound to, made for this request, fresh and never seen before.

use std::sync::Arc;
use std::time::Duration;

use chaingate_oauth::digest::Sha256;
use chaingate_oauth::dpop::{self, Expect, ProofError};
use http::header::HOST;
use moka::future::Cache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::config::InboundDpop;
use crate::error::Error;

/// How far a proof's `iat` may be ahead of our clock.
const SKEW: Duration = Duration::from_secs(5);
/// `jti`s remembered per route at most: a flood of valid proofs evicts the oldest first
/// rather than growing without bound (§11.1).
const MAX_SEEN: u64 = 100_000;

/// `chaingate_dpop_proofs_total{route,result}`: `ok`, a [`ProofError::reason`], `missing` or
/// `multiple` (§4.3 step 1).
pub(crate) type ProofsTotal = Family<RouteResult, Counter>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteResult {
    route: Arc<str>,
    result: &'static str,
}

/// Registers `chaingate_dpop_proofs_total` on `registry`.
pub(crate) fn register(registry: &mut Registry) -> ProofsTotal {
    let family = ProofsTotal::default();
    registry.register(
        "chaingate_dpop_proofs",
        "DPoP proofs from callers, by route and result",
        family.clone(),
    );
    family
}

/// One route's proof checks and replay store.
#[derive(Debug)]
pub(crate) struct InboundProofs {
    mode: InboundDpop,
    max_age: Duration,
    /// Digests of `jti` and key thumbprint seen within the window (§11.1).
    seen: Cache<[u8; 32], ()>,
    total: ProofsTotal,
    route: Arc<str>,
}

impl InboundProofs {
    /// `None` for a route with `dpop = "off"`.
    pub(crate) fn new(
        mode: InboundDpop,
        max_age: Duration,
        route: Arc<str>,
        total: &ProofsTotal,
    ) -> Option<Self> {
        mode.enabled().then(|| Self {
            mode,
            max_age,
            // A proof stays acceptable until `iat + max_age`, and `iat` may be `SKEW` ahead.
            seen: Cache::builder()
                .max_capacity(MAX_SEEN)
                .time_to_live(max_age + SKEW * 2)
                .build(),
            total: total.clone(),
            route,
        })
    }

    pub(crate) fn mode(&self) -> InboundDpop {
        self.mode
    }

    fn count(&self, result: &'static str) {
        self.total
            .get_or_create(&RouteResult {
                route: self.route.clone(),
                result,
            })
            .inc();
    }

    /// A Bearer token on a DPoP route: refused when the route requires DPoP, or when the token
    /// is bound to a key (§7.1: a bound token under the Bearer scheme is invalid).
    pub(crate) fn check_bearer(&self, bound: Option<&str>) -> Result<(), Error> {
        if self.mode == InboundDpop::Required || bound.is_some() {
            return Err(Error::DpopInvalidToken);
        }
        Ok(())
    }

    /// `Authorization: DPoP <token>`: the request's proof, checked against the request as the
    /// caller addressed it and against `bound`, the token's `cnf.jkt` when it was validated here.
    pub(crate) async fn check<B>(
        &self,
        request: &http::Request<B>,
        tls: bool,
        token: &str,
        bound: Option<&str>,
    ) -> Result<(), Error> {
        let mut proofs = request.headers().get_all(dpop::DPOP).iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => proof,
            (None, _) => {
                self.count("missing");
                return Err(Error::InvalidDpopProof("a DPoP proof is required"));
            }
            (Some(_), Some(_)) => {
                self.count("multiple");
                return Err(Error::InvalidDpopProof("exactly one DPoP proof is allowed"));
            }
        };
        let refuse = |e: ProofError| {
            self.count(e.reason());
            Err(Error::InvalidDpopProof(e.description()))
        };
        let Ok(proof) = proof.to_str() else {
            return refuse(ProofError::Malformed);
        };
        // §4.3 step 9: the URI the caller used. The scheme is the listener's own: chaingate
        // strips X-Forwarded-Proto as untrusted, so it does not believe it here either.
        let authority = request
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let htu = dpop::htu(
            if tls { "https" } else { "http" },
            authority,
            request.uri().path(),
        );
        let expect = Expect {
            htm: request.method().as_str(),
            htu: &htu,
            access_token: Some(token),
            nonces: &[],
            max_age: self.max_age.as_secs(),
            skew: SKEW.as_secs(),
        };
        let checked = match dpop::verify(proof, &expect) {
            Ok(checked) => checked,
            Err(e) => return refuse(e),
        };
        if bound.is_some_and(|jkt| jkt != checked.jkt) {
            return refuse(ProofError::Binding);
        }
        let mut digest = Sha256::new();
        digest.part(checked.jti.as_bytes());
        digest.part(checked.jkt.as_bytes());
        if !self
            .seen
            .entry(digest.finish())
            .or_insert(())
            .await
            .is_fresh()
        {
            return refuse(ProofError::Replay);
        }
        self.count("ok");
        Ok(())
    }
}
