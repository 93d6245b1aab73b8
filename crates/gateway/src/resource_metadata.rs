//! Protected Resource Metadata (RFC 9728): the documents a client without a token reads to
//! learn which authorization server to ask, served on the data listener before any route, and
//! the `resource_metadata`/`scope` parameters every challenge of a route carries (§5.1).

use bytes::Bytes;
use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::{InboundDpop, ProtectedResource, Route, WELL_KNOWN};
use crate::error::ChallengeParams;
use crate::Body;

/// Every metadata document of a config generation, rendered once.
#[derive(Debug)]
pub(crate) struct Documents {
    /// (path on the data listener, JSON body); a handful at most, so a scan beats a map.
    served: Vec<(String, Bytes)>,
}

impl Documents {
    /// The documents of `routes`; `None` when no route has metadata (nothing is served, and
    /// the request path does not even compare the path).
    pub(crate) fn new(routes: &[Route]) -> Option<Self> {
        let mut served: Vec<(String, Bytes)> = Vec::new();
        for route in routes {
            let Some(p) = &route.protected_resource else {
                continue;
            };
            if served.iter().any(|(path, _)| *path == p.metadata_path) {
                continue;
            }
            // Config validation made the routes sharing this document configure it alike; how
            // they take DPoP may still differ, so those members speak for all of them.
            let sharing: Vec<&Route> = routes
                .iter()
                .filter(|r| {
                    r.protected_resource
                        .as_ref()
                        .is_some_and(|o| o.metadata_path == p.metadata_path)
                })
                .collect();
            served.push((p.metadata_path.clone(), document(p, &sharing)));
        }
        (!served.is_empty()).then_some(Self { served })
    }

    /// Whether `request` asks for one of the documents (any method: others get 405).
    pub(crate) fn is_for<B>(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        path.starts_with(WELL_KNOWN) && self.served.iter().any(|(p, _)| p == path)
    }

    /// The document, to anyone: metadata is public (§3), so no token is asked for, and a
    /// browser-based client on another origin may read it.
    pub(crate) fn serve<B>(&self, request: &Request<B>) -> Response<Body> {
        let path = request.uri().path();
        let body = self
            .served
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
            .unwrap_or_default();
        let method = request.method();
        let mut response = if method == Method::GET || method == Method::HEAD {
            let mut r = Response::new(Body::Right(http_body_util::Full::new(body)));
            let headers = r.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            r
        } else {
            let mut r = Response::new(Body::Right(http_body_util::Full::default()));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        };
        response
            .headers_mut()
            .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response
    }
}

/// The §2 document: the configured members, `bearer_methods_supported` (chaingate reads the
/// Authorization header only, RFC 6750 §2.1), and the DPoP members when a route takes DPoP.
fn document(p: &ProtectedResource, routes: &[&Route]) -> Bytes {
    let mut doc = Map::new();
    doc.insert("resource".into(), json!(p.resource));
    doc.insert(
        "authorization_servers".into(),
        json!(p.authorization_servers),
    );
    if let Some(scopes) = &p.scopes_supported {
        doc.insert("scopes_supported".into(), json!(scopes));
    }
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    if let Some(name) = &p.resource_name {
        doc.insert("resource_name".into(), json!(name));
    }
    if let Some(url) = &p.resource_documentation {
        doc.insert("resource_documentation".into(), json!(url));
    }
    if routes.iter().any(|r| r.dpop.enabled()) {
        let algs: Vec<Value> = chaingate_oauth::keys::DEFAULT_ALGORITHMS
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        doc.insert(
            "dpop_signing_alg_values_supported".into(),
            Value::Array(algs),
        );
    }
    // §2: true only when every route behind this document refuses Bearer.
    let required = routes.iter().all(|r| r.dpop == InboundDpop::Required);
    doc.insert("dpop_bound_access_tokens_required".into(), json!(required));
    Bytes::from(Value::Object(doc).to_string())
}

/// The parameters of a route's challenges. Without metadata, 401s stay as they were and a 403
/// `insufficient_scope` names the route's scope.
pub(crate) fn challenge_params(route: &Route) -> ChallengeParams {
    let scope = |scope: Option<String>| scope.map_or(String::new(), |s| format!(", scope=\"{s}\""));
    match &route.protected_resource {
        None => ChallengeParams {
            on_401: Box::from(""),
            on_403: scope(route.scope.clone()).into_boxed_str(),
        },
        Some(p) => {
            // The scopes a client asks its authorization server for: the document's, else the
            // one chaingate asks the route's domain for.
            let wanted = p
                .scopes_supported
                .as_ref()
                .map(|s| s.join(" "))
                .or_else(|| route.scope.clone());
            let both = format!(
                ", resource_metadata=\"{}\"{}",
                p.metadata_url,
                scope(wanted)
            );
            ChallengeParams {
                on_401: both.clone().into_boxed_str(),
                on_403: both.into_boxed_str(),
            }
        }
    }
}
