//! The `chaingate` command: run the gateway, check a config, run the authority or the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chaingate::config::{Config, LogFormat};

/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "chaingate",
    version,
    about = "A token-exchanging reverse-proxy sidecar"
)]
struct Cli {
    /// Log format; overrides the config's `log.format`.
    #[arg(long, global = true, env = "CHAINGATE_LOG_FORMAT", value_parser = ["plain", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, env = "CHAINGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config: exit 0, or print one line naming the offending key and exit 64.
    Check {
        #[arg(long, env = "CHAINGATE_CONFIG")]
        config: PathBuf,
    },
    /// Config tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective config (file plus CHAINGATE_* overrides), secrets redacted.
    Print {
        #[arg(long, env = "CHAINGATE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    chaingate::tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config, std::env::vars()) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Config {
            action: ConfigAction::Print { config },
        } => match chaingate::config::read_file(&config)
            .and_then(|text| chaingate::config::effective_toml(&text, std::env::vars()))
        {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let config = match Config::load(&config, std::env::vars()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let format = match cli.log_format.as_deref() {
                Some("json") => LogFormat::Json,
                Some(_) => LogFormat::Plain,
                None => config.log.format,
            };
            init_logging(format);
            runtime().block_on(run(config))
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let running = match chaingate::spawn(config).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %running.addr, admin = %running.admin_addr, "chaingate ready");
    shutdown_signal().await;
    running.begin_shutdown();
    running.wait().await;
    ExitCode::SUCCESS
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}
