//! Helpers for `benches/load/run.sh`: the parts of the load bench that wrk, h2load and nginx
//! cannot play. Each mode is bounded in time and exits by itself.
//!
//! - `token-server`: a chain-grant token endpoint with a fixed latency (the cold path's STS).
//! - `burst`: N connections, then one request each with the same fresh token, all at once.
//! - `fill`: N distinct tokens through the gateway (the cache-memory measurement).
//! - `startup`: time from exec to `/ready` answering 200.
//! - `gateway`: the gateway on a chosen tokio runtime (current-thread or N workers).

mod client;
mod runtime;
mod startup;
mod token_server;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve token responses after a fixed delay, for at most `--for-secs`.
    TokenServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 2)]
        latency_ms: u64,
        #[arg(long, default_value_t = 3600)]
        for_secs: u64,
    },
    /// Opens `--n` connections, then sends one request on each with the same token.
    Burst {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        n: usize,
    },
    /// Sends `--n` requests with distinct tokens (`<prefix><i>`) over `--conc` connections.
    Fill {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        conc: usize,
        /// Send the same token every time (`<prefix>0`): warms connections without caching more.
        #[arg(long)]
        same: bool,
    },
    /// Runs the gateway with `--workers` tokio workers (0: a current-thread runtime).
    Gateway {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long, default_value_t = 0)]
        workers: usize,
        #[arg(long, default_value_t = 3600)]
        for_secs: u64,
    },
    /// Runs the command `--repeat` times and reports the time from exec to `/ready` = 200.
    Startup {
        #[arg(long)]
        admin: SocketAddr,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Mode::Gateway {
        config,
        workers,
        for_secs,
    } = &cli.mode
    {
        runtime::run(config, *workers, *for_secs);
        return;
    }
    if let Mode::Startup {
        admin,
        repeat,
        command,
    } = cli.mode
    {
        // Blocking on purpose: no runtime between exec and the first poll.
        startup::run(admin, repeat, &command);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        match cli.mode {
            Mode::TokenServer {
                listen,
                latency_ms,
                for_secs,
            } => {
                let serve = token_server::serve(listen, Duration::from_millis(latency_ms));
                let _ = tokio::time::timeout(Duration::from_secs(for_secs), serve).await;
            }
            Mode::Burst {
                addr,
                path,
                token,
                n,
            } => client::burst(addr, &path, &token, n).await,
            Mode::Fill {
                addr,
                path,
                prefix,
                n,
                conc,
                same,
            } => client::fill(addr, &path, &prefix, n, conc, same).await,
            Mode::Startup { .. } | Mode::Gateway { .. } => unreachable!("handled above"),
        }
    });
}
