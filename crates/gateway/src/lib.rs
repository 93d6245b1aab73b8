//! chaingate's sidecar: a reverse proxy that swaps the caller's token for the route's domain
//! token. The public API is [`spawn`] / [`spawn_with_reload`] with a [`config::Config`]; the
//! rest is the request path, private so that `unreachable_pub` keeps the API honest.
//!
//! The life of a request is one function, `Gateway::handle` (in `gateway/`), outermost first:
//!
//! ```text
//! route    first matching path prefix; 414 past the target limit, 404 when none   (gateway/)
//! shed     503 + Retry-After when too many requests are in flight                 (shed.rs)
//! authn    exactly one bearer token (RFC 6750 §2.1); optional local JWT checks    (authn.rs, validate.rs)
//! tokens   the only caller of the cache and the exchange: per-route or            (tokens/ over cache/, exchange/,
//!          incremental, coalesced, negative entries, refresh-ahead, multi-hop,     fleet/)
//!          response-metadata checks, N_A refused; the fleet's tier on Redis
//! outbound swap Authorization, strip hop-by-hop, stream both bodies               (outbound.rs)
//! feedback upstream 401 invalid_token: evict, re-exchange, retry once             (feedback.rs)
//! ```
//!
//! Around it: the accept loop (`chaingate_core::serve`, settings in `inbound.rs`), one error
//! enum mapped to responses in one place (`error.rs`), `/live`, `/ready` and `/metrics`
//! (`admin.rs`), and reload (`reload.rs`).

mod access_log;
mod admin;
mod audit;
mod authn;
#[doc(hidden)]
pub mod bench;
mod cache;
pub mod config;
mod error;
mod exchange;
mod feedback;
mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod inbound;
mod metrics;
mod outbound;
pub mod reload;
mod resource_metadata;
mod shed;
mod signals;
mod tokens;
pub mod trace;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chaingate_core::drain;
use chaingate_core::serve::{self, ServeLimits};
use chaingate_core::tls;
use http_body_util::{Either, Full};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::access_log::AccessLog;
use crate::admin::{Admin, Readiness};
use crate::config::Config;
use crate::gateway::{Gateway, GatewayMetrics};
use crate::reload::{ReloadMetrics, ReloadSource, Reloader};
use arc_swap::ArcSwap;

/// Response bodies: streamed from the upstream (holding the request's place under
/// `limits.max_concurrent_requests` until it ends), or a small synthetic one.
pub(crate) type Body = Either<shed::InFlight<hyper::body::Incoming>, Full<Bytes>>;

/// A gateway whose listeners are bound and serving.
#[derive(Debug)]
pub struct Running {
    /// The data listener's address (the port is the OS's pick when configured as 0).
    pub addr: SocketAddr,
    /// The admin listener's address: `/live`, `/ready`, `/metrics`.
    pub admin_addr: SocketAddr,
    readiness: Readiness,
    stop: drain::Signal,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts a drain: `/ready` turns 503 at once, then the data listener closes after the
    /// configured delay and in-flight requests get the drain timeout to finish.
    pub fn begin_shutdown(&self) {
        self.readiness.set(false);
        self.stop.signal();
    }

    /// Waits until the drain has finished and both listeners are closed.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Where access log lines go when not to stderr: any writer (an embedding program's, a test's).
pub use access_log::Sink as AccessLogSink;

/// What [`start`] takes beyond the config.
#[derive(Default)]
pub struct Options {
    /// Re-read this source (if `reload.enabled`) to apply config changes.
    pub reload: Option<ReloadSource>,
    /// Where the access log is written; stderr when `None`.
    pub access_log: Option<AccessLogSink>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("reload", &self.reload)
            .field(
                "access_log",
                &self.access_log.as_ref().map(|_| "custom sink"),
            )
            .finish()
    }
}

/// Binds both listeners and starts serving; `/ready` is 200 when this returns.
pub async fn spawn(config: Config) -> Result<Running, StartError> {
    start(config, Options::default()).await
}

/// Like [`spawn`], and re-reads `reload` (if given and `reload.enabled`) to apply config changes.
pub async fn spawn_with_reload(
    config: Config,
    reload: Option<ReloadSource>,
) -> Result<Running, StartError> {
    start(
        config,
        Options {
            reload,
            ..Options::default()
        },
    )
    .await
}

/// Like [`spawn`], with [`Options`].
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let Options { reload, access_log } = options;
    let access_log = AccessLog::start(
        config.log.format,
        config.log.access_log_buffer,
        access_log.unwrap_or_else(|| Box::new(std::io::stderr())),
    );
    access_log.flush_every(config.log.access_log_flush);
    let mut registry = Registry::default();
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let data_listener = serve::bind(config.listen).await?;
    let admin_listener = serve::bind(config.admin_listen).await?;
    let addr = data_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let data_builder = inbound::http_builder(&config.timeouts, &config.limits);
    let admin_builder = inbound::http_builder(&config.timeouts, &config.limits);
    let handshake_timeout = config.timeouts.tls_handshake;
    let max_connections = config.limits.max_connections;
    let shutdown = config.shutdown.clone();
    let metrics = GatewayMetrics::register(&mut registry, config.tracing.is_some());
    let reloads = ReloadMetrics::register(&mut registry);
    let gateway = Arc::new(ArcSwap::from_pointee(Gateway::new(
        &config,
        &metrics,
        None,
        &access_log,
    )?));
    let readiness = Readiness::default();
    let admin = Arc::new(Admin {
        readiness: readiness.clone(),
        registry,
        gateway: gateway.clone(),
    });
    let (reload_stop, reload_stop_rx) = drain::channel();
    if let Some(source) = reload.filter(|_| config.reload.enabled) {
        let reloader = Reloader {
            source,
            applied: config,
            current: gateway.clone(),
            metrics,
            reloads,
            access_log: access_log.clone(),
        };
        tokio::spawn(reloader.run(reload_stop_rx));
    }

    let (stop, stop_rx) = drain::channel();
    // Ready once listeners are bound and every token endpoint is known (discovery may lag);
    // never after a drain has begun.
    let first = gateway.load_full();
    if first.is_ready() {
        readiness.set(true);
    } else {
        let (readiness, draining) = (readiness.clone(), stop_rx.clone());
        tokio::spawn(async move {
            first.ready().await;
            if !draining.is_signaled() {
                readiness.set(true);
            }
        });
    }
    let registered = gateway.clone();
    let (data_stop, data_stop_rx) = drain::channel();
    let (admin_stop, admin_stop_rx) = drain::channel();
    let data = tokio::spawn(serve::serve(
        data_listener,
        serve::tls_acceptor(tls),
        data_builder,
        ServeLimits {
            handshake_timeout,
            drain_timeout: shutdown.drain_timeout,
            max_connections,
        },
        data_stop_rx,
        move |request, peer| {
            // The generation current when the request arrived serves it to the end.
            // The future is `handle`'s own (it holds the `Arc`): no wrapper around it.
            gateway.load_full().handle(request, peer)
        },
    ));
    let admin_task = tokio::spawn(serve::serve(
        admin_listener,
        None,
        admin_builder,
        ServeLimits {
            handshake_timeout,
            drain_timeout: std::time::Duration::from_secs(1),
            max_connections: 64,
        },
        admin_stop_rx,
        move |request, _peer| {
            let admin = admin.clone();
            async move { admin.handle(request).await }
        },
    ));
    let task = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        stop_rx.signaled().await;
        tracing::info!(delay = ?shutdown.drain_delay, timeout = ?shutdown.drain_timeout, "draining");
        reload_stop.signal();
        tokio::time::sleep(shutdown.drain_delay).await;
        data_stop.signal();
        let _ = data.await;
        // After the drain: in-flight requests needed the registered credentials until now.
        let deregister = registered.load_full();
        if tokio::time::timeout(shutdown.drain_timeout, deregister.deregister())
            .await
            .is_err()
        {
            tracing::warn!("deleting client registrations timed out");
        }
        admin_stop.signal();
        let _ = admin_task.await;
        // Every request has been answered: its line is written before the process may exit.
        let _ = tokio::task::spawn_blocking(move || access_log.flush_and_wait()).await;
        tracing::info!("drained");
    });
    Ok(Running {
        addr,
        admin_addr,
        readiness,
        stop,
        task,
    })
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound (the message names the address).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server or a client TLS configuration was refused by rustls.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}
