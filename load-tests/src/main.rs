//! `load-tests`: drives a running Switchboard over real sockets on
//! loopback; prints a JSON summary and, with `--out DIR`, writes
//! `DIR/summary.json` and `DIR/chart.svg`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use load_tests::{Common, chat, churn, connect, fanout, report};

#[derive(Debug, Parser)]
#[command(version, about = "Load generator for Switchboard (loopback targets only)")]
struct Cli {
    /// The server's base URL (must be a loopback address).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A cluster's gateway node to open WebSocket connections on (repeat;
    /// `--url` then only serves the REST set-up). Senders use the first,
    /// everyone else the rest, so every delivery crosses nodes.
    #[arg(long = "gateway", global = true)]
    gateways: Vec<String>,
    /// The server's process id, to sample its RSS and CPU from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Spread connections over this many source addresses (127.0.0.1 up);
    /// one address allows about 28k connections to one server port.
    #[arg(long, default_value_t = 1, global = true)]
    source_addrs: u8,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200, global = true)]
    connect_concurrency: usize,
    /// Folder for summary.json and chart.svg.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
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
    /// Connections opened, held and closed at a steady rate.
    Churn(churn::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = Common::new(&cli.url, cli.server_pid, cli.source_addrs, cli.connect_concurrency)?
        .with_gateways(&cli.gateways)?;
    // Thousands of sockets need more than the usual 1024 descriptors.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    eprintln!("open-file limit: {limit}");
    let report = match cli.scenario {
        Scenario::Connect(args) => connect::run(&common, args).await?,
        Scenario::Chat(args) => chat::run(&common, args).await?,
        Scenario::Fanout(args) => fanout::run(&common, args).await?,
        Scenario::Churn(args) => churn::run(&common, args).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report.summary)?);
    if let Some(dir) = &cli.out {
        report::write(dir, &report.summary, &report.timeline, &report.title)?;
        eprintln!("wrote {0}/summary.json and {0}/chart.svg", dir.display());
    }
    Ok(())
}
