//! The warm-cache token path exactly as `Gateway::handle` runs it (route,
//! authn, tokens), without sockets: the entry point of `benches/cache.rs`. Not an API.

use http::Request;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::gateway::{Gateway, GatewayMetrics};

/// A gateway generation built from a config, for benchmarks.
#[derive(Debug)]
pub struct HitPath {
    gateway: Gateway,
}

impl HitPath {
    /// Builds the gateway's runtime for `config` (metrics on a private registry).
    pub fn new(config: &Config) -> Result<Self, rustls::Error> {
        let metrics =
            GatewayMetrics::register(&mut prometheus_client::registry::Registry::default(), false);
        let access_log = AccessLog::start(config.log.format, 0, Box::new(std::io::sink()));
        Ok(Self {
            gateway: Gateway::new(config, &metrics, None, &access_log)?,
        })
    }

    /// Route, authn and tokens for `request`; the length of the `Authorization` value that
    /// would be forwarded.
    pub async fn token<B>(&self, request: &Request<B>) -> Result<usize, String> {
        let phases = async {
            let route = self.gateway.route(request)?;
            let at1 = route.authn.authenticate(request, false).await?;
            let caller = crate::tokens::Caller::new(&route.label.route, false, || None);
            let (at2, _) = route.tokens.for_route(&route.config, at1, &caller).await?;
            Ok::<_, crate::error::Error>(at2.authorization.len())
        };
        phases.await.map_err(|e| e.to_string())
    }
}

/// The bearer token's length, if the headers carry exactly one valid one (RFC 6750 §2.1).
pub fn bearer_len(headers: &http::HeaderMap, uri: &http::Uri) -> Option<usize> {
    crate::authn::bearer(headers, uri)
        .ok()
        .map(|t| t.expose().len())
}
