//! Switchboard's load generator, as a library the `load-tests` binary and
//! the bench's side-by-side runner share. It drives a running server over
//! real sockets on loopback and reports what it measured.
//!
//! - `connect`: holds N idle WebSocket connections, spread over loopback
//!   source addresses, and reports the server's RSS per connection.
//! - `chat`: pairs of users send to each other at a target rate.
//! - `fanout`: groups with every member online, one sender each, at a rate
//!   or with a window of sends in flight; speaks Switchboard, Socket.IO or
//!   the ceiling server's protocol ([`dialect::Dialect`]).
//! - `churn`: connections opened at a rate, held, and closed.
//!
//! Users and tokens are created through the real API before the clock
//! starts. Every run is bounded in count and time and stops by itself.

pub mod api;
pub mod chat;
pub mod churn;
pub mod connect;
pub mod dialect;
pub mod fanout;
pub mod net;
pub mod proc_stats;
pub mod progress;
pub mod report;
pub mod traffic;

/// What every scenario is given.
#[derive(Debug, Clone)]
pub struct Common {
    /// The server's base URL (a loopback address).
    pub url: String,
    pub server: proc_stats::ServerProbe,
    pub sources: net::Sources,
    /// Connections being opened at once.
    pub connect_concurrency: usize,
    /// Gateway nodes of a cluster to open WebSocket connections on, when
    /// they are not `url`: senders on the first, everyone else spread over
    /// the rest, so deliveries cross nodes.
    pub gateways: Vec<String>,
}

impl Common {
    /// Checks that `url` is on loopback: load is never sent anywhere else.
    pub fn new(url: &str, server_pid: Option<u32>, sources: u8, connect_concurrency: usize) -> anyhow::Result<Self> {
        ensure_loopback(url)?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            server: proc_stats::ServerProbe::new(server_pid),
            sources: net::Sources::new(sources)?,
            connect_concurrency: connect_concurrency.max(1),
            gateways: Vec::new(),
        })
    }

    /// Opens WebSocket connections on these gateway nodes (loopback only)
    /// instead of `url`, which still serves the REST set-up.
    pub fn with_gateways(mut self, gateways: &[String]) -> anyhow::Result<Self> {
        for gateway in gateways {
            ensure_loopback(gateway)?;
        }
        self.gateways = gateways.iter().map(|url| url.trim_end_matches('/').to_owned()).collect();
        Ok(self)
    }
}

fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let host = reqwest::Url::parse(url)?.host_str().unwrap_or_default().to_owned();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(loopback, "load is only ever sent to loopback addresses, not {host}");
    Ok(())
}

/// A finished scenario: its JSON summary, its timeline and a chart title.
#[derive(Debug)]
pub struct Report {
    pub summary: serde_json::Value,
    pub timeline: Vec<progress::Sample>,
    pub title: String,
}
