//! `bench`: the side-by-side runner (`compare`) and the ceiling server it
//! starts as its own process (`ceiling`).

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// The engine runs on mimalloc; so do the ceiling and the generator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "Switchboard side-by-side benchmarks (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The engine beside its peers (Centrifugo, Socket.IO, the bare ceiling), one after another, in the fan-out and chat scenarios.
    Compare(bench::compare::Args),
    /// Time message appends in a store (SQLite, or a CQL cluster).
    Append(bench::append::Args),
    /// Serve the bare broadcast ceiling.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    match Cli::parse().command {
        Command::Compare(args) => {
            eprintln!("open-file limit: {limit}");
            bench::compare::run(args).await
        }
        Command::Append(args) => bench::append::run(args).await,
        Command::Ceiling { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            eprintln!("ceiling listening on {}", listener.local_addr()?);
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            bench::ceiling::run(listener, shutdown).await?;
            Ok(())
        }
    }
}
