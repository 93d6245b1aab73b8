//! The `chaingate` command: run the gateway, check a config, print the effective config; with
//! the `authority` and `demo` features, run the reference authority or the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
mod demo;
use tracing_subscriber::EnvFilter;

use chaingate_gateway::config::{Config, LogFormat};
use chaingate_gateway::trace::Pipeline;

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
    /// Run the reference authority (a token server speaking the chain grant).
    #[cfg(feature = "authority")]
    Authority {
        #[arg(long, env = "CHAINGATE_AUTHORITY_CONFIG")]
        config: PathBuf,
    },
    /// Run the whole flow on loopback: two authorities, an echo upstream and the gateway.
    #[cfg(feature = "demo")]
    Demo {
        /// The gateway's data port (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Present in every build so that a production binary says what is missing.
    #[cfg(not(feature = "authority"))]
    #[command(hide = true, disable_help_flag = true)]
    Authority {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    #[cfg(not(feature = "demo"))]
    #[command(hide = true, disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
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

/// Runs the `chaingate` command line.
pub fn main() -> ExitCode {
    chaingate_core::tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config, std::env::vars()) {
            Ok(loaded) => {
                // Valid but likely not what was meant: said, and still exit 0.
                for warning in loaded.warnings() {
                    eprintln!("{}: warning: {warning}", config.display());
                }
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
        } => match chaingate_gateway::config::read_file(&config)
            .and_then(|text| chaingate_gateway::config::effective_toml(&text, std::env::vars()))
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
        #[cfg(feature = "authority")]
        Command::Authority { config } => {
            let config = match chaingate_authority::AuthorityConfig::load(&config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let _logs = init_logging(
                log_format(cli.log_format.as_deref(), LogFormat::Plain),
                None,
            );
            runtime().block_on(async {
                let running = match chaingate_authority::spawn(config).await {
                    Ok(running) => running,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the authority");
                        return ExitCode::FAILURE;
                    }
                };
                tracing::info!(issuer = running.issuer(), listen = %running.local_addr(), "authority ready");
                shutdown_signal().await;
                running.shutdown().await;
                ExitCode::SUCCESS
            })
        }
        #[cfg(feature = "demo")]
        Command::Demo { port } => {
            let _logs = init_logging(
                log_format(cli.log_format.as_deref(), LogFormat::Plain),
                None,
            );
            runtime().block_on(async {
                let demo = match crate::demo::start(port).await {
                    Ok(demo) => demo,
                    Err(e) => {
                        eprintln!("chaingate demo: {e} (is port {port} free? try --port 0)");
                        return ExitCode::FAILURE;
                    }
                };
                println!("{}", demo.instructions());
                shutdown_signal().await;
                demo.shutdown().await;
                ExitCode::SUCCESS
            })
        }
        #[cfg(not(feature = "authority"))]
        Command::Authority { .. } => missing_feature("authority"),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => missing_feature("demo"),
        Command::Run { config: path } => {
            let config = match Config::load(&path, std::env::vars()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let runtime = runtime_with(config.worker_threads);
            // Built before the subscriber: its layer goes in the subscriber, its exports run
            // on this runtime.
            let pipeline = match &config.tracing {
                Some(settings) => match Pipeline::start(settings, runtime.handle().clone()) {
                    Ok(pipeline) => Some(pipeline),
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
                None => None,
            };
            let format = log_format(cli.log_format.as_deref(), config.log.format);
            let _logs = init_logging(format, pipeline.as_ref());
            let reload = chaingate_gateway::reload::ReloadSource {
                path,
                env: std::env::vars().collect(),
            };
            runtime.block_on(run(config, reload, pipeline))
        }
    }
}

/// A production build leaves out the reference authority and the demo: say how to get them.
#[cfg(any(not(feature = "authority"), not(feature = "demo")))]
fn missing_feature(name: &str) -> ExitCode {
    eprintln!(
        "chaingate: `{name}` is not in this build (the production binary has run, check and \
         config print); build with `cargo build --release --features {name}`"
    );
    ExitCode::from(EXIT_CONFIG)
}

async fn run(
    config: Config,
    reload: chaingate_gateway::reload::ReloadSource,
    pipeline: Option<Pipeline>,
) -> ExitCode {
    let running = match chaingate_gateway::spawn_with_reload(config, Some(reload)).await {
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
    if let Some(pipeline) = pipeline {
        // The last spans (the drained requests') go out before exit; shutting down blocks on the
        // export, which itself runs on this runtime, hence another thread.
        let _ = tokio::task::spawn_blocking(move || pipeline.shutdown()).await;
    }
    ExitCode::SUCCESS
}

/// One worker per CPU the process may use (its affinity mask and cgroup quota count). With one
/// CPU, a current-thread runtime: no work stealing or cross-thread wake-ups, about 20 % less CPU
/// per request in `benches/load` than a multi-thread runtime squeezed onto that CPU.
fn runtime_with(workers: Option<usize>) -> tokio::runtime::Runtime {
    let workers = workers
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build().expect("tokio runtime")
}

#[cfg(feature = "authority")]
fn runtime() -> tokio::runtime::Runtime {
    runtime_with(None)
}

fn log_format(flag: Option<&str>, configured: LogFormat) -> LogFormat {
    match flag {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Plain,
        None => configured,
    }
}

/// Logs go to stderr through a writer thread, so a request never waits on a `write(2)` (the
/// access log cost ~4.8 µs per request written directly). Not lossy: when the buffer is full,
/// logging blocks rather than drops lines. The guard flushes on exit; keep it alive until then.
///
/// With `[tracing]`, the pipeline's layer exports the spans of `chaingate::trace`; the log layer
/// never writes them, so log lines look the same with tracing on or off.
fn init_logging(
    format: LogFormat,
    pipeline: Option<&Pipeline>,
) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::filter::{FilterExt, FilterFn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Plain => fmt.boxed(),
    };
    let logs = filter.and(FilterFn::new(|m| {
        !chaingate_gateway::trace::is_trace_span(m)
    }));
    let logging = tracing_subscriber::registry().with(fmt.with_filter(logs));
    // Not `.with(Option<Layer>)`: a `None` layer enables every callsite, so every request would
    // build its trace spans only for the log filter to drop them. Without `[tracing]` no
    // subscriber is interested in them and `info_span!` is a disabled span.
    match pipeline {
        Some(pipeline) => logging.with(pipeline.layer()).init(),
        None => logging.init(),
    }
    guard
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
