//! The binary: command line, logging, signals, and the server with its grace period.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use switchyard::api::state::AppState;
use switchyard::config::file::Config;
use switchyard::server::router::router;
use switchyard::server::serve::{ConnectionLimits, serve};
use switchyard::telemetry::logging::{self, log_writer};
use tracing_appender::non_blocking::ErrorCounter;

/// OpenAI-compatible LLM proxy.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Path to the TOML configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: PathBuf,
    /// Address to listen on (overrides `server.bind`).
    #[arg(long, env = "SWITCHYARD_BIND")]
    bind: Option<String>,
    /// Port to listen on, 0 to let the OS pick (overrides `server.port`).
    #[arg(long, env = "SWITCHYARD_PORT")]
    port: Option<u16>,
    /// File to write the bound port to once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every request logs a line; writing it on a background thread keeps the write off the
    // request path. Lossy: when the destination cannot keep up and the buffer is full, lines
    // are dropped and counted (switchyard_log_lines_dropped_total) rather than making the
    // runtime's workers wait. The guard flushes what is buffered when main returns.
    let (log_writer, dropped_log_lines, _flush_logs_on_exit) =
        log_writer(std::io::stderr(), logging::BUFFERED_LINES);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        // Colour codes would garble log files and anything grepping them.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match run(cli, dropped_log_lines).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, dropped_log_lines: ErrorCounter) -> Result<(), String> {
    let config = Config::load(&cli.config).map_err(|err| err.to_string())?;
    let bind = cli.bind.unwrap_or_else(|| config.server.bind.clone());
    let port = cli.port.unwrap_or(config.server.port);
    let grace = config.server.shutdown_grace();
    let limits = ConnectionLimits {
        header_read_timeout: config.server.header_read_timeout(),
        max_connections: config.server.max_connections,
        http2: config.server.http2,
    };

    let state = Arc::new(AppState::new(config).await?);
    state
        .metrics
        .count_dropped_log_lines(Box::new(move || dropped_log_lines.dropped_lines() as u64));
    let app = router(state.clone());

    let listener = TcpListener::bind((bind.as_str(), port))
        .await
        .map_err(|err| format!("cannot listen on {bind}:{port}: {err}"))?;
    let local = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    if let Some(path) = &cli.port_file {
        write_port_file(path, local.port())
            .map_err(|err| format!("cannot write port file {}: {err}", path.display()))?;
    }
    tracing::info!("listening on {local}");
    if local.ip().is_unspecified() {
        tracing::warn!(
            "listening on all interfaces ({}): anyone who can reach this host can use the proxy",
            local.ip()
        );
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|err| format!("cannot watch SIGTERM: {err}"))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|err| format!("cannot watch SIGINT: {err}"))?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        tracing::info!(
            "{name} received, draining for up to {} ms",
            grace.as_millis()
        );
        let _ = shutdown_tx.send(true);
    });

    let server = serve(listener, app, limits, signalled(shutdown_rx.clone()));
    let grace_expired = async {
        signalled(shutdown_rx).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = grace_expired => {
            tracing::warn!("shutdown grace period over, closing open connections");
        }
    }
    // Every finished request has been handed to the ledger; make it durable
    // before exiting. (Requests cut by the grace period are recorded as their
    // connections are dropped, and the ledger writes those when it is dropped.)
    state.ledger.flush().await;
    tracing::info!("stopped");
    Ok(())
}

async fn signalled(mut shutdown: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once it has signalled.
    let _ = shutdown.wait_for(|&requested| requested).await;
}

/// Written via a temporary file and a rename so a reader polling for the file
/// never sees it empty or half-written.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{port}\n"))?;
    std::fs::rename(&temporary, path)
}
