//! Transaction Tokens on a route (draft-ietf-oauth-transaction-tokens-10): at the edge
//! (`[routes.txn_token]`) a Txn-Token is requested from the Transaction Token Service for each
//! request and sent upstream in the `Txn-Token` header; inside the trust domain
//! (`[routes.txn_token_verify]`) the incoming one is checked and passed on unchanged.
//!
//! Nothing is cached: a Txn-Token names one transaction (`txn`, §12.2) with this request's
//! context (`rctx`, `tctx`); handing one to two requests would merge their audit trails and make
//! the replay detection of §12.2 refuse the second.
//!
//! `chaingate_txn_tokens_total{route,result}`: `issued`, `refused` (the TTS refused the caller's
//! token or scope), `failed` (the TTS refused us, failed or answered badly) and `stripped` (a
//! caller sent its own) at the edge; `verified`, `missing`, `absent` (allowed), `invalid` and
//! `unavailable` (no keys) inside.

mod verify;

use std::sync::Arc;

use http::header::HeaderValue;
use http::{HeaderMap, Request};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::authn::InboundToken;
use crate::config::{Route, TxnEdge, TxnMode};
use crate::error::Error;
use crate::outbound::Peer;
use crate::tokens::{DomainTokens, TxnRequest};
use chaingate_oauth::remote::SharedClient;
pub(crate) use verify::Verifier;

pub(crate) use crate::outbound::TXN_TOKEN;

/// `chaingate_txn_tokens_total`, by route and result.
pub(crate) type TxnTokensTotal = Family<RouteResult, Counter>;

/// `{route, result}`: the result is one of the fixed strings of the module doc.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteResult {
    route: Arc<str>,
    result: &'static str,
}

/// Registers `chaingate_txn_tokens_total` on `registry`.
pub(crate) fn register(registry: &mut Registry) -> TxnTokensTotal {
    let family = TxnTokensTotal::default();
    registry.register(
        "chaingate_txn_tokens",
        "Txn-Tokens requested at the edge and checked inside the trust domain, by route and result",
        family.clone(),
    );
    family
}

/// One route's Txn-Token role, if it has one.
#[derive(Debug)]
pub(crate) struct RouteTxn {
    role: Role,
    total: TxnTokensTotal,
    route: Arc<str>,
}

#[derive(Debug)]
enum Role {
    None,
    Edge {
        settings: Arc<TxnEdge>,
        tts: Arc<DomainTokens>,
    },
    Verify(Verifier),
}

impl RouteTxn {
    /// The route's role; `domains` holds the TTS domain (validated at load).
    pub(crate) fn new(
        route: &Route,
        domains: &[Arc<DomainTokens>],
        jwks_client: &SharedClient,
        total: &TxnTokensTotal,
    ) -> Self {
        let role = match (&route.txn_token, &route.txn_token_verify) {
            (Some(settings), _) => Role::Edge {
                tts: domains
                    .iter()
                    .find(|d| *d.name() == settings.domain.name)
                    .expect("txn_token names a validated domain")
                    .clone(),
                settings: settings.clone(),
            },
            (None, Some(settings)) => {
                Role::Verify(Verifier::new(settings.clone(), jwks_client.clone()))
            }
            (None, None) => Role::None,
        };
        Self {
            role,
            total: total.clone(),
            route: route.name.clone(),
        }
    }

    fn count(&self, result: &'static str) {
        self.total
            .get_or_create(&RouteResult {
                route: self.route.clone(),
                result,
            })
            .inc();
    }

    /// The verifier, for readiness.
    pub(crate) fn verifier(&self) -> Option<&Verifier> {
        match &self.role {
            Role::Verify(v) => Some(v),
            _ => None,
        }
    }

    /// `mode = "alone"` inside the trust domain: no bearer token is read, exchanged or sent.
    pub(crate) fn without_bearer(&self) -> bool {
        matches!(&self.role, Role::Verify(v) if v.mode() == TxnMode::Alone)
    }

    /// `mode = "alone"` at the edge: no exchange at the route's domain, no `Authorization` sent.
    pub(crate) fn without_exchange(&self) -> bool {
        matches!(&self.role, Role::Edge { settings, .. } if settings.mode == TxnMode::Alone)
    }

    /// Before anything else: at the edge a caller's `Txn-Token` is removed (only the TTS's may
    /// go upstream); inside, the incoming one is checked (draft §8.2) and left as it came.
    pub(crate) async fn inbound(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        match &self.role {
            Role::None => Ok(()),
            Role::Edge { .. } => {
                if headers.remove(TXN_TOKEN).is_some() {
                    // A second value would survive a single remove.
                    while headers.remove(TXN_TOKEN).is_some() {}
                    self.count("stripped");
                }
                Ok(())
            }
            Role::Verify(verifier) => {
                // Boxed, as the other rare paths: every request's future would otherwise be sized
                // for a JWKS fetch.
                let result = Box::pin(verifier.check(headers)).await;
                self.count(match &result {
                    Ok(true) => "verified",
                    Ok(false) => "absent",
                    Err(Error::TxnTokenMissing) => "missing",
                    Err(Error::TxnTokenInvalid) => "invalid",
                    Err(_) => "unavailable",
                });
                result.map(drop)
            }
        }
    }

    /// At the edge: a Txn-Token for this request, from the TTS, with `at1` as its subject.
    pub(crate) async fn issue<B>(
        &self,
        request: &Request<B>,
        at1: Option<InboundToken<'_>>,
        peer: &Peer,
    ) -> Result<Option<HeaderValue>, Error> {
        let (Role::Edge { settings, tts }, Some(at1)) = (&self.role, at1) else {
            return Ok(None);
        };
        // §7.1: `request_context` is the transaction's environment; `request_details` the
        // request itself, as the method and path only: a query string or header may carry
        // credentials, and the TTS copies these into claims every workload can read.
        let context = json!({ "req_ip": peer.addr.ip().to_string() }).to_string();
        let details = json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
        })
        .to_string();
        // Boxed: only edge routes pay for the TTS call's future.
        let issued = Box::pin(tts.txn_token(&TxnRequest {
            subject: at1.expose(),
            audience: &settings.audience,
            scope: &settings.scope,
            context: &context,
            details: &details,
        }))
        .await
        .and_then(|token| {
            HeaderValue::from_str(token.expose())
                .map_err(|_| Error::TxnTokenService("unusable Txn-Token"))
        });
        match &issued {
            Ok(_) => self.count("issued"),
            Err(e) if e.is_refusal() => self.count("refused"),
            Err(_) => self.count("failed"),
        }
        let mut value = issued.map_err(|e| at1.in_its_scheme(e))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}
