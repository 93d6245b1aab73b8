//! Outbound: the request as the upstream sees it, sent over a pooled keep-alive client.
//!
//! RFC 9110 §7.6.1: fields named in `Connection` and the hop-by-hop set are removed both ways.
//! Forwarding metadata (`X-Forwarded-*`, `Forwarded`) and client-certificate headers from the
//! caller are not trusted (RFC 9700 §4.13) and are replaced or dropped. `Authorization` is
//! replaced with the downstream token, so AT1 never leaves chaingate.

pub(crate) use chaingate_core::serve::Peer;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{HeaderMap, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use crate::config::Upstream;
use crate::error::Error;
use crate::shed::Permit;
use http_body_util::Either;

/// The header a Txn-Token travels in (draft-ietf-oauth-transaction-tokens-10 §8.1): kept
/// through `Connection`-listed removal, so a caller cannot strip the one chaingate adds.
pub(crate) const TXN_TOKEN: http::HeaderName = http::HeaderName::from_static("txn-token");

mod body;
mod dpop;
mod pool;
pub(crate) use body::{empty, forwarded, UpstreamBody};
pub(crate) use dpop::{asks_for_nonce, Credential, UpstreamNonce};
pub(crate) use pool::Http1Pool;

/// The upstream's response body, as either client streams it.
pub(crate) type UpstreamResponseBody = Incoming;

/// Removed from every forwarded request and response, listed or not (RFC 9110 §7.6.1).
/// `Connection` first: [`strip`] reads its bit.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Caller-supplied copies of what only chaingate may assert.
const UNTRUSTED: [HeaderName; 10] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
    HeaderName::from_static("x-forwarded-client-cert"),
    // The caller's proof was for chaingate (RFC 9449 §4.3); an upstream gets its own or none.
    chaingate_oauth::dpop::DPOP,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

type TlsClient = Client<chaingate_core::tls::Connector, UpstreamBody>;

/// One route's way to its upstream.
#[derive(Debug)]
pub(crate) enum UpstreamClient {
    /// `http://`, the sidecar's usual case: a lean pool of HTTP/1.1 connections.
    Plain(Arc<Http1Pool>),
    /// `https://`: hyper-util's pooled client, which brings TLS and h2 by ALPN.
    Tls(Box<TlsClient>),
}

/// Builds the pooled client for an upstream with the given trust roots.
pub(crate) fn client(
    upstream: &Upstream,
    connect_timeout: Duration,
    pool_idle: Duration,
) -> Result<UpstreamClient, rustls::Error> {
    if upstream.scheme == Scheme::HTTP {
        return Ok(UpstreamClient::Plain(Http1Pool::new(
            upstream,
            connect_timeout,
            pool_idle,
        )));
    }
    Ok(UpstreamClient::Tls(Box::new(
        chaingate_core::tls::pooled_client(
            upstream.ca_certs.as_deref(),
            None,
            connect_timeout,
            pool_idle,
        )?,
    )))
}

/// Where a route's requests go: its pooled client, the upstream's origin, and the DPoP nonce
/// the upstream last gave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) client: &'a UpstreamClient,
    pub(crate) upstream: &'a Upstream,
    pub(crate) nonce: &'a UpstreamNonce,
}

/// Rewrites `request` for the upstream: URI, hop-by-hop and untrusted fields, forwarding
/// headers, the credential (with its DPoP proof, whose `htu` is returned).
pub(crate) fn prepare(
    request: &mut Request<Incoming>,
    target: Target<'_>,
    credential: Credential,
    peer: &Peer,
) -> Result<Option<String>, Error> {
    let Target {
        client, upstream, ..
    } = target;
    // RFC 9449 §7.1: the proof is for the request as the upstream will see it.
    let htu = credential
        .dpop
        .as_ref()
        .map(|_| dpop::htu(upstream, request.uri().path()));
    let proof = match (&credential.dpop, &htu) {
        (Some(key), Some(htu)) => Some(target.nonce.proof(
            key,
            request.method(),
            htu,
            &credential.authorization,
        )?),
        _ => None,
    };
    let original_host = request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let via = match request.version() {
        Version::HTTP_10 => "1.0 chaingate",
        Version::HTTP_2 => "2 chaingate",
        _ => "1.1 chaingate",
    };
    match client {
        // The pool speaks to the connection directly: origin-form, which an HTTP/1 request
        // usually already is, so most requests keep their URI untouched.
        UpstreamClient::Plain(_) => {
            if request.uri().scheme().is_some() || request.uri().authority().is_some() {
                *request.uri_mut() = Uri::from(path_and_query(request.uri()));
            }
        }
        UpstreamClient::Tls(_) => {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(upstream.scheme.clone());
            parts.authority = Some(upstream.authority.clone());
            parts.path_and_query = Some(path_and_query(request.uri()));
            // Scheme, authority and path were each valid on their own, so this cannot fail.
            *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        }
    }
    // The upstream connection is ours: HTTP/1.1 unless the pool negotiates h2 by ALPN.
    *request.version_mut() = Version::HTTP_11;

    let headers = request.headers_mut();
    strip(headers, &UNTRUSTED);
    // Host names the upstream; the caller's goes in X-Forwarded-Host.
    match client {
        UpstreamClient::Plain(pool) => headers.insert(header::HOST, pool.host().clone()),
        // hyper-util's client sets Host from the URI when there is none.
        UpstreamClient::Tls(_) => headers.remove(header::HOST),
    };
    if credential.authorization.is_empty() {
        headers.remove(header::AUTHORIZATION);
    } else {
        headers.insert(header::AUTHORIZATION, credential.authorization);
    }
    if let Some(proof) = proof {
        headers.insert(chaingate_oauth::dpop::DPOP, proof);
    }
    headers.insert(X_FORWARDED_FOR, peer.forwarded_for().clone());
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
    );
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.append(header::VIA, HeaderValue::from_static(via));
    Ok(htu)
}

fn path_and_query(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// Removes the fields named in `Connection`, the fixed hop-by-hop set and `extra`, looking each
/// present field up once: most messages carry none of them, and a pass over a handful of fields
/// is cheaper than 16 hashed removals.
fn strip(headers: &mut HeaderMap, extra: &[HeaderName]) {
    // Which of the fixed set and `extra` are present, one bit each (`extra` is short).
    let doomed = || HOP_BY_HOP.iter().chain(extra);
    let present = headers.keys().fold(0u32, |bits, name| {
        doomed()
            .position(|d| d == name)
            .map_or(bits, |i| bits | 1 << i)
    });
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Almost always `Connection: keep-alive` or `close`, which name nothing beyond the
        // fixed set: only other names are collected (and allocate).
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|name| {
                !name.eq_ignore_ascii_case("keep-alive") && !name.eq_ignore_ascii_case("close")
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in listed {
            // A caller must not be able to make us drop the credential we add ourselves.
            if name != header::AUTHORIZATION && name != TXN_TOKEN {
                headers.remove(&name);
            }
        }
    }
    for (i, name) in doomed().enumerate() {
        if present & 1 << i != 0 {
            headers.remove(name);
        }
    }
}

/// A bodyless request, kept so that it can be sent once more with a fresh token (feedback): the
/// caller's credential (a refcounted clone, not a copy) and the prepared head.
#[derive(Debug)]
pub(crate) struct Replay {
    pub(crate) at1: HeaderValue,
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// The `htu` of the DPoP proof it was sent with, if any.
    htu: Option<String>,
    /// The key of the DPoP-bound token it was sent with, if any.
    dpop: Option<Arc<chaingate_oauth::dpop::ProofKey>>,
}

impl Replay {
    /// The same request with `credential` instead of the one the upstream refused, and a fresh
    /// proof when the token is DPoP-bound (a proof is never sent twice, RFC 9449 §11.1).
    pub(crate) fn with(
        self,
        credential: Credential,
        nonce: &UpstreamNonce,
        upstream: &Upstream,
    ) -> Result<Request<UpstreamBody>, Error> {
        let mut headers = self.headers;
        headers.remove(chaingate_oauth::dpop::DPOP);
        if let Some(key) = &credential.dpop {
            let htu = self
                .htu
                .unwrap_or_else(|| dpop::htu(upstream, self.uri.path()));
            let proof = nonce.proof(key, &self.method, &htu, &credential.authorization)?;
            headers.insert(chaingate_oauth::dpop::DPOP, proof);
        }
        headers.insert(header::AUTHORIZATION, credential.authorization);
        let mut retry = Request::new(empty());
        *retry.method_mut() = self.method;
        *retry.version_mut() = self.version;
        *retry.uri_mut() = self.uri;
        *retry.headers_mut() = headers;
        Ok(retry)
    }

    /// The credential it was sent with, if it was DPoP-bound: a nonce retry (RFC 9449 §9)
    /// sends the same token again with a new proof.
    pub(crate) fn dpop_credential(&self) -> Option<Credential> {
        Some(Credential {
            authorization: self.headers.get(header::AUTHORIZATION)?.clone(),
            dpop: Some(self.dpop.clone()?),
        })
    }
}

/// Outbound: swap the credential for `authorization`, strip hop-by-hop fields, stream both
/// bodies. Returns the upstream's response and, for a bodyless request, what a retry needs.
pub(crate) async fn forward(
    target: Target<'_>,
    mut request: Request<Incoming>,
    credential: Credential,
    peer: &Peer,
    permit: &mut Option<Permit>,
    limits: (Duration, Duration),
) -> Result<(Response<UpstreamResponseBody>, Option<Replay>), Error> {
    let (body_idle, response_timeout) = limits;
    let at1 = request
        .body()
        .is_end_stream()
        .then(|| request.headers().get(header::AUTHORIZATION).cloned())
        .flatten();
    let dpop = credential.dpop.clone();
    let bound = dpop.is_some();
    let htu = prepare(&mut request, target, credential, peer)?;
    let replay = at1.map(|at1| Replay {
        at1,
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        headers: request.headers().clone(),
        htu,
        dpop,
    });
    // hyper removed Content-Length when Transfer-Encoding came with it (RFC 9112 §6.3), so a
    // body without a length is the chunked one.
    let chunked = !request.headers().contains_key(header::CONTENT_LENGTH);
    let (parts, body) = request.into_parts();
    let mut body = forwarded(body, body_idle);
    if let Either::Left(upload) = &mut body {
        // The upload counts as in flight until its last byte has gone upstream.
        if let Some((request, upload_half)) = permit.take().map(Permit::share) {
            upload.hold(upload_half);
            *permit = Some(request);
        }
    }
    if chunked && !body.is_end_stream() {
        // Boxed: the rare chunked upload should not grow every request's future.
        body = Box::pin(body::first_frame(body, body_idle))
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, source = %e.0, "request body refused");
                Error::BadFraming("malformed chunked body")
            })?;
    }
    let request = Request::from_parts(parts, body);
    let response = send(target.client, request, response_timeout).await?;
    if bound {
        target.nonce.remember(response.headers());
    }
    Ok((response, replay))
}

/// Sends the prepared request; waits at most `timeout` for the response head.
pub(crate) async fn send(
    client: &UpstreamClient,
    request: Request<UpstreamBody>,
    timeout: Duration,
) -> Result<Response<UpstreamResponseBody>, Error> {
    let sent = match client {
        UpstreamClient::Plain(pool) => tokio::time::timeout(timeout, pool.send(request)).await,
        UpstreamClient::Tls(client) => {
            tokio::time::timeout(timeout, async {
                client.request(request).await.map_err(|e| {
                tracing::debug!(error = ?e, connect = e.is_connect(), "upstream request failed");
                Error::UpstreamUnavailable
            })
            })
            .await
        }
    };
    match sent {
        Ok(Ok(mut response)) => {
            strip(response.headers_mut(), &[header::PROXY_AUTHENTICATE]);
            Ok(response)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::UpstreamTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_and_hop_by_hop_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Foo, close, Authorization"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ours"),
        );
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip(&mut h, &[]);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(h.contains_key("x-keep") && h.contains_key(header::AUTHORIZATION));
    }
}
