//! `chat`: pairs of users sending to each other at a target rate over
//! WebSocket; latency from the send to the peer's receipt.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api;
use crate::traffic::{self, Connection};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Pairs of users, each pair in its own private chat.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// Messages per second each user sends.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
}

pub(crate) async fn run(url: &str, server_pid: Option<u32>, args: Args) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let users = api::users(&http, url, 18_000_000_000, args.pairs * 2).await?;
    let mut connections = Vec::new();
    for pair in users.chunks(2) {
        let chat = api::private_chat(&http, url, &pair[0], &pair[1]).await?;
        for user in pair {
            connections.push(Connection { url: url.to_owned(), user: user.clone(), chat, rate: Some(args.rate) });
        }
    }
    let measured = traffic::run(connections, Duration::from_secs(args.duration_secs), server_pid).await?;
    let mut report = json!({
        "scenario": "chat",
        "pairs": args.pairs,
        "rate_per_user": args.rate,
        "duration_s": args.duration_secs,
    });
    report.as_object_mut().expect("an object literal").extend(measured);
    Ok(report)
}
