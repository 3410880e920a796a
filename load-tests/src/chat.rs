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
    /// Messages per second each user sends.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of sending that are measured.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<Report> {
    let http = reqwest::Client::new();
    let users = api::users(&http, &common.url, 18_000_000_000, args.pairs * 2).await?;
    let mut connections = Vec::new();
    for pair in users.chunks(2) {
        let chat = api::private_chat(&http, &common.url, &pair[0], &pair[1]).await?;
        for user in pair {
            connections.push(Connection { user_id: user.id, token: user.token.clone(), chat, sends: true });
        }
    }
    let plan = Plan {
        url: common.url.clone(),
        gateways: common.gateways.clone(),
        dialect: Dialect::Switchboard,
        load: Load::Rate(args.rate),
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
        sources: common.sources,
        connect_concurrency: common.connect_concurrency,
        server: common.server,
    };
    let measured = traffic::run(connections, plan, "chat").await?;
    let summary = json!({
        "scenario": "chat",
        "pairs": args.pairs,
        "rate_per_user": args.rate,
        "duration_s": args.duration_secs,
        "warmup_s": args.warmup_secs,
        "measured": &measured,
    });
    let title = format!("chat: {} pair(s), {} msg/s per user", args.pairs, args.rate);
    Ok(Report { summary, timeline: measured.timeline, title })
}
