//! DPoP toward the upstream (RFC 9449 §7.1, §9): a bound token goes as `Authorization: DPoP`
//! with a fresh proof per request, for the URL the resource server sees (the upstream's origin
//! and the request's path), carrying the resource server's last nonce.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::config::Upstream;
use crate::error::Error;
use chaingate_oauth::dpop::{self, ProofKey, DPOP_NONCE};

/// The credential a request goes upstream with: the token's `Authorization` value, and the key
/// it is bound to when it is a DPoP token.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) authorization: HeaderValue,
    pub(crate) dpop: Option<Arc<ProofKey>>,
}

impl Credential {
    /// No credential at all: the upstream gets no `Authorization` (a `mode = "alone"`
    /// Txn-Token route, where the Txn-Token is the only one).
    pub(crate) fn withheld() -> Self {
        Self {
            authorization: HeaderValue::from_static(""),
            dpop: None,
        }
    }
}

/// One route's DPoP state toward its upstream: the resource server's last `DPoP-Nonce`.
#[derive(Debug, Default)]
pub(crate) struct UpstreamNonce {
    nonce: ArcSwapOption<String>,
}

impl UpstreamNonce {
    /// Keeps a well-formed `DPoP-Nonce` from an upstream response (§9: on a 401 or any other
    /// answer); `true` when it is a new one.
    pub(crate) fn remember(&self, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let nqchar = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        if nonce.is_empty() || nonce.len() > 512 || !nonce.bytes().all(nqchar) {
            return false;
        }
        if self.nonce.load().as_deref().map(String::as_str) == Some(nonce) {
            return false;
        }
        self.nonce.store(Some(Arc::new(nonce.to_owned())));
        true
    }

    /// A proof by `key` for `method` `htu`, for the token in `authorization`.
    pub(crate) fn proof(
        &self,
        key: &ProofKey,
        method: &Method,
        htu: &str,
        authorization: &HeaderValue,
    ) -> Result<HeaderValue, Error> {
        let token = authorization
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .map(|(_, t)| t);
        let nonce = self.nonce.load();
        let mut proof = key
            .proof(
                method.as_str(),
                htu,
                token,
                nonce.as_deref().map(String::as_str),
            )
            .ok()
            .and_then(|p| HeaderValue::try_from(p).ok())
            .ok_or(Error::ExchangeFailed("cannot sign DPoP proof"))?;
        proof.set_sensitive(true);
        Ok(proof)
    }
}

/// The `htu` of a request to `upstream` for `path`: the resource server sees the upstream's
/// origin (chaingate sets `Host` to it) and the path, without the query (§4.2).
pub(crate) fn htu(upstream: &Upstream, path: &str) -> String {
    dpop::htu(upstream.scheme.as_str(), upstream.authority.as_str(), path)
}

/// A 401 whose DPoP challenge says `error="use_dpop_nonce"` (§9).
pub(crate) fn asks_for_nonce<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response.headers().contains_key(DPOP_NONCE)
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")))
}
