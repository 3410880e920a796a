//! `fanout`: groups of G members, all connected, one sender per group at a
//! target rate; every message is delivered to every member. Measures
//! deliveries per second and send-to-receipt latency across all receivers.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::api;
use crate::traffic::{self, Connection};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Members per group.
    #[arg(long, default_value_t = 50)]
    group_size: usize,
    /// Groups, each with its own sender.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Messages per second each group's sender sends.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
}

pub(crate) async fn run(url: &str, server_pid: Option<u32>, args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(args.group_size >= 2, "a group needs at least 2 members");
    let http = reqwest::Client::new();
    let users = api::users(&http, url, 17_000_000_000, args.group_size * args.groups).await?;
    let mut connections = Vec::new();
    for group in users.chunks(args.group_size) {
        let ids: Vec<i64> = group[1..].iter().map(|user| user.id).collect();
        let reply: Value = http
            .post(format!("{url}/api/chats"))
            .bearer_auth(&group[0].token)
            .json(&json!({"type": "group", "name": "fanout", "members": ids}))
            .send()
            .await?
            .json()
            .await?;
        let chat = reply["data"]["id"].as_i64().with_context(|| format!("create group: {reply}"))?;
        for (index, user) in group.iter().enumerate() {
            let rate = (index == 0).then_some(args.rate);
            connections.push(Connection { url: url.to_owned(), user: user.clone(), chat, rate });
        }
    }
    let measured = traffic::run(connections, Duration::from_secs(args.duration_secs), server_pid).await?;
    let mut report = json!({
        "scenario": "fanout",
        "group_size": args.group_size,
        "groups": args.groups,
        "rate_per_sender": args.rate,
        "duration_s": args.duration_secs,
        "deliveries_per_s": measured["delivered_per_s"],
    });
    report.as_object_mut().expect("an object literal").extend(measured);
    Ok(report)
}
