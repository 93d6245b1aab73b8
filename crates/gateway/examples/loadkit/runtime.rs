//! The gateway under a runtime of our choosing, to measure what `main.rs` should build.
//!
//! `chaingate run` uses tokio's multi-thread runtime with one worker per CPU it may run on. A
//! sidecar is often given one CPU or less, where a current-thread runtime skips the work-stealing
//! machinery entirely. This mode runs the same library with either, logging as `chaingate run`
//! does (plain, `RUST_LOG` or `info`, to stderr), until SIGTERM or `--for-secs`.

use std::path::Path;
use std::time::Duration;

pub(crate) fn run(config: &Path, workers: usize, for_secs: u64) {
    chaingate_core::tls::install_crypto_provider();
    let config =
        chaingate_gateway::config::Config::load(config, std::iter::empty()).expect("config");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match workers {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    runtime.block_on(async move {
        let running = chaingate_gateway::spawn(config)
            .await
            .expect("gateway starts");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(for_secs)) => {}
        }
        running.begin_shutdown();
        running.wait().await;
    });
}
