//! Reference token server ("authority") for a downstream domain: chain grant, token exchange.
//!
//! Serves `POST /token` (client_credentials, `http://oauth.net/grant_type/chain`, RFC 8693
//! token exchange, RFC 7523 jwt-bearer, authorization_code, refresh_token), `GET /authorize`
//! with sign-in and consent pages, `POST /register` (RFC 7591/7592), `POST /introspect`
//! (RFC 7662), `POST /revoke` (RFC 7009), `GET /jwks.json` and RFC 8414 metadata, and both
//! roles of Reciprocal OAuth (the reciprocal grant; `POST /reciprocal/code` and
//! `GET /reciprocal/consent`). See `docs/authority.md`.

mod authorize;
mod chaining;
mod client_auth;
mod code_grant;
mod config;
mod config_chaining;
mod config_entries;
mod config_federated;
mod config_interactive;
mod dpop;
mod endpoints;
mod forms;
mod grants;
mod introspection;
mod pages;
mod parties;
mod reciprocal;
mod refresh;
mod reg_metadata;
mod registration;
mod sessions;
mod state;
mod store;
mod subject;
mod txn_token;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaingate_core::drain;
use chaingate_core::serve::ServeLimits;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use config::AuthorityConfig;
pub use reciprocal::ReciprocalGrant;
use state::Authority;

/// How long `shutdown` waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A test and demo server: enough for any load a test puts on it, bounded all the same.
const MAX_CONNECTIONS: usize = 4096;

/// A running authority. Dropping it stops accepting connections; prefer [`Self::shutdown`].
#[derive(Debug)]
pub struct RunningAuthority {
    local_addr: SocketAddr,
    issuer: String,
    stop: drain::Signal,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Authority>,
}

impl RunningAuthority {
    /// The bound address (useful when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The issuer identifier used in `iss` and metadata.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Reciprocal OAuth, party B: what party A granted for user `sub` after a code delivered by
    /// `party_a_client_id` (this authority's client) was redeemed; the newest code wins.
    pub fn reciprocal_grant(&self, sub: &str, party_a_client_id: &str) -> Option<ReciprocalGrant> {
        self.state.reciprocal.grant(sub, party_a_client_id)
    }

    /// Reciprocal code redemptions finished so far: (succeeded, failed).
    pub fn reciprocal_redemptions(&self) -> (u64, u64) {
        self.state.reciprocal.redemptions()
    }

    /// Waits until at least `count` redemptions have finished or `timeout` passes, then returns
    /// [`Self::reciprocal_redemptions`].
    pub async fn wait_reciprocal_redemptions(&self, count: u64, timeout: Duration) -> (u64, u64) {
        self.state.reciprocal.wait(count, timeout).await
    }

    /// Stops accepting connections and waits briefly for in-flight requests to finish.
    pub async fn shutdown(self) {
        self.stop.signal();
        let _ = self.task.await;
    }
}

/// Binds `listen` (may be port 0), starts serving in a tokio task and returns.
pub async fn spawn(config: AuthorityConfig) -> Result<RunningAuthority, std::io::Error> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let state = Arc::new(Authority::new(config, local_addr).map_err(std::io::Error::other)?);
    let issuer = state.issuer.clone();
    let (stop, stopped) = drain::channel();
    tracing::info!(%local_addr, %issuer, "authority listening");
    let task = tokio::spawn(serve(listener, state.clone(), stopped));
    Ok(RunningAuthority {
        local_addr,
        issuer,
        stop,
        task,
        state,
    })
}

/// The authority's server: the same accept loop as the gateway's, with its own limits.
async fn serve(listener: TcpListener, state: Arc<Authority>, stopped: drain::Watch) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let limits = ServeLimits {
        handshake_timeout: Duration::from_secs(10),
        drain_timeout: SHUTDOWN_GRACE,
        max_connections: MAX_CONNECTIONS,
    };
    chaingate_core::serve::serve(
        listener,
        None,
        builder,
        limits,
        stopped,
        move |req, _peer| {
            let state = state.clone();
            async move { endpoints::route(&state, req).await }
        },
    )
    .await;
}
