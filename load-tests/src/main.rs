//! `load-tests`: drives a running Switchboard over real sockets on
//! loopback and reports what it measured as JSON.
//!
//! - `connect`: holds N idle WebSocket connections and reports the
//!   server's RSS per connection (from /proc, given `--server-pid`).
//! - `chat`: pairs of users send to each other at a target rate; reports
//!   delivered messages per second and send-to-receipt latency percentiles.
//! - `fanout`: groups with every member online, one sender each; reports
//!   deliveries per second and latency across all receivers.
//!
//! Users and tokens are created through the real API before the clock
//! starts. Every run is bounded in count and time and stops by itself.

mod api;
mod chat;
mod connect;
mod fanout;
mod proc_stats;
mod traffic;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Load generator for Switchboard (loopback targets only)")]
struct Cli {
    /// The server's base URL (must be a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// The server's process id, to sample its RSS and CPU from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Hold idle connections and measure the server's memory per connection.
    Connect(connect::Args),
    /// Pairs of users chatting at a target rate.
    Chat(chat::Args),
    /// Groups with every member online and one sender each.
    Fanout(fanout::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let host = reqwest::Url::parse(&cli.url)?.host_str().unwrap_or_default().to_owned();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(loopback, "load is only ever sent to loopback addresses, not {host}");
    // Thousands of sockets need more than the usual 1024 descriptors.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    eprintln!("open-file limit: {limit}");
    let report = match cli.scenario {
        Scenario::Connect(args) => connect::run(&cli.url, cli.server_pid, args).await?,
        Scenario::Chat(args) => chat::run(&cli.url, cli.server_pid, args).await?,
        Scenario::Fanout(args) => fanout::run(&cli.url, cli.server_pid, args).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
