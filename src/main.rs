//! `switchboard`: parses the command line, sets up logging and the
//! runtime, and runs the composition root (`switchboard::run`) until
//! SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use switchboard::cli::{Cli, Command, LogFormat, StoreKind};
use switchboard::{Config, Role};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// mimalloc returns freed memory to the system; glibc's allocator kept
/// hundreds of MiB after bursts of 19 MiB password hashes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (role, args) = cli.command.map_or((Role::All, cli.serve), Command::into_parts);
    if role != Role::All && args.redis_url.is_none() {
        let message = format!("`switchboard {}` is a cluster process: give it --redis-url", role.name());
        <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit();
    }
    if args.store == StoreKind::Scylla && args.scylla_uri.is_empty() {
        let message = "--store scylla needs --scylla-uri (host:port of at least one node)";
        <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit();
    }
    init_logging(args.log_format);
    // Every WebSocket is a descriptor: use all the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    ops::install_recorder();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchboard")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let config = Config::from_args(args)?;
        let listen = config.args.listen;
        let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let signal = shutdown_signal().await;
                tracing::info!(signal, "signal received");
                shutdown.cancel();
            }
        });
        switchboard::run(role, config, listener, shutdown).await
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves with the name of the first of SIGINT / SIGTERM to arrive.
async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT only");
                let _ = interrupt.await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "SIGINT"
    }
}
