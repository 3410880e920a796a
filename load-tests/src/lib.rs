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
pub mod pacer;
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

    /// Where connection `n` of a scenario without senders opens: `url`, or
    /// the gateway nodes in turn.
    pub fn ws_base(&self, n: usize) -> &str {
        if self.gateways.is_empty() { &self.url } else { &self.gateways[n % self.gateways.len()] }
    }

    /// The servers holding connections: `url`, or every gateway node.
    pub fn ws_servers(&self) -> Vec<&str> {
        if self.gateways.is_empty() { vec![&self.url] } else { self.gateways.iter().map(String::as_str).collect() }
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

#[cfg(test)]
mod tests {
    use super::Common;

    #[test]
    fn connections_spread_over_the_gateways_given() {
        let one = Common::new("http://127.0.0.1:9000", None, 1, 1).unwrap();
        assert_eq!((one.ws_base(7), one.ws_servers()), ("http://127.0.0.1:9000", vec!["http://127.0.0.1:9000"]));
        let gateways = ["http://127.0.0.1:9001/".to_owned(), "http://localhost:9002".to_owned()];
        let cluster = one.with_gateways(&gateways).unwrap();
        assert_eq!(
            [cluster.ws_base(0), cluster.ws_base(1), cluster.ws_base(2)],
            ["http://127.0.0.1:9001", "http://localhost:9002", "http://127.0.0.1:9001"]
        );
        assert_eq!(cluster.ws_servers().len(), 2);
        assert!(cluster.with_gateways(&["not a url".to_owned()]).is_err(), "a malformed gateway is refused");
    }
}
