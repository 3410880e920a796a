//! `chat`: pairs of users sending to each other at a target rate over
//! WebSocket; latency from the send to the peer's receipt.

use std::time::Duration;

use serde_json::json;

use crate::dialect::Dialect;
use crate::traffic::{self, Connection, Load, Plan};
use crate::{Common, Report, api};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pairs of users, each pair in its own private chat.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// Messages per second each user sends (open loop). The default when
    /// no window is given: 500.
    #[arg(long, conflicts_with = "window")]
    rate: Option<u32>,
    /// Unacknowledged sends each user keeps in flight instead (closed
    /// loop, for the maximum throughput; `bench compare` uses 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    window: Option<u32>,
    /// Seconds of sending that are measured.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
}

/// `pairs` pairs of users, each pair in its own 1:1 chat (a private chat
/// on Switchboard, a room of two on the peers), both of them sending.
pub async fn connections(
    common: &Common,
    dialect: Dialect,
    peer_secret: &str,
    pairs: usize,
) -> anyhow::Result<Vec<Connection>> {
    anyhow::ensure!(pairs >= 1, "at least one pair");
    let http = reqwest::Client::new();
    let users = api::users_for(&http, &common.url, dialect, peer_secret, 18_000_000_000, pairs * 2).await?;
    let mut connections = Vec::with_capacity(pairs * 2);
    for (index, pair) in users.chunks(2).enumerate() {
        let chat = match dialect {
            Dialect::Switchboard | Dialect::Dating => api::private_chat(&http, &common.url, &pair[0], &pair[1]).await?,
            Dialect::SocketIo | Dialect::Ceiling | Dialect::Centrifugo => index as i64 + 1,
        };
        for user in pair {
            connections.push(Connection { user_id: user.id, token: user.token.clone(), chat, sends: true });
        }
    }
    Ok(connections)
}

/// Runs chat traffic under `load` on connections made by [`connections`].
pub async fn measure(
    common: &Common,
    dialect: Dialect,
    load: Load,
    warmup: Duration,
    duration: Duration,
    connections: Vec<Connection>,
) -> anyhow::Result<traffic::Measured> {
    let plan = Plan {
        url: common.url.clone(),
        gateways: common.gateways.clone(),
        dialect,
        load,
        warmup,
        duration,
        sources: common.sources,
        connect_concurrency: common.connect_concurrency,
        server: common.server,
    };
    traffic::run(connections, plan, "chat").await
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<Report> {
    let connections = connections(common, Dialect::Switchboard, "", args.pairs).await?;
    let (warmup, duration) = (Duration::from_secs(args.warmup_secs), Duration::from_secs(args.duration_secs));
    let load = match (args.rate, args.window) {
        (None, Some(window)) => Load::Window(window),
        (rate, _) => Load::Rate(rate.unwrap_or(500)),
    };
    let measured = measure(common, Dialect::Switchboard, load, warmup, duration, connections).await?;
    let summary = json!({
        "scenario": "chat",
        "pairs": args.pairs,
        "rate_per_user": args.rate,
        "window": args.window,
        "duration_s": args.duration_secs,
        "warmup_s": args.warmup_secs,
        "measured": &measured,
    });
    let title = match load {
        Load::Window(window) => format!("chat: {} pair(s), {window} send(s) in flight per user", args.pairs),
        Load::Rate(rate) => format!("chat: {} pair(s), {rate} msg/s per user", args.pairs),
    };
    Ok(Report { summary, timeline: measured.timeline, title })
}
