//! `fanout`: groups of G members, all connected, one sender per group;
//! every message is delivered to every member. Measures deliveries per
//! second and send-to-receipt latency across all receivers. Speaks any
//! [`Dialect`], which is how the bench compares servers.

use std::time::Duration;

use serde_json::json;

use crate::api;
use crate::dialect::Dialect;
use crate::traffic::{self, Connection, Load, Measured, Plan};
use crate::{Common, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Members per group.
    #[arg(long, default_value_t = 50)]
    pub group_size: usize,
    /// Groups, each with its own sender.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Messages per second each group's sender sends (open loop).
    #[arg(long, conflicts_with = "window")]
    pub rate: Option<u32>,
    /// Unacknowledged sends each sender keeps in flight (closed loop, for
    /// the maximum throughput). The default when no rate is given: 8.
    #[arg(long)]
    pub window: Option<u32>,
    /// Seconds of sending that are measured.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// The server's protocol.
    #[arg(long, value_enum, default_value_t = Dialect::Switchboard)]
    pub dialect: Dialect,
    /// The token secret of a peer (`--dialect socketio` or `centrifugo`).
    #[arg(long, default_value = "bench-secret")]
    pub peer_secret: String,
}

impl Args {
    pub fn load(&self) -> Load {
        match (self.rate, self.window) {
            (Some(rate), _) => Load::Rate(rate),
            (None, window) => Load::Window(window.unwrap_or(8)),
        }
    }
}

/// The groups' connections, with users and chats created as the dialect needs.
pub async fn connections(common: &Common, args: &Args) -> anyhow::Result<Vec<Connection>> {
    anyhow::ensure!(args.group_size >= 2, "a group needs at least 2 members");
    anyhow::ensure!(args.groups >= 1, "at least one group");
    let count = args.group_size * args.groups;
    let http = reqwest::Client::new();
    let users = api::users_for(&http, &common.url, args.dialect, &args.peer_secret, 17_000_000_000, count).await?;
    let mut connections = Vec::with_capacity(count);
    for (index, group) in users.chunks(args.group_size).enumerate() {
        let chat = match args.dialect {
            Dialect::Switchboard | Dialect::Dating => {
                api::group_chat(&http, &common.url, &group[0], &group[1..]).await?
            }
            Dialect::SocketIo | Dialect::Ceiling | Dialect::Centrifugo => index as i64 + 1,
        };
        for (member, user) in group.iter().enumerate() {
            connections.push(Connection { user_id: user.id, token: user.token.clone(), chat, sends: member == 0 });
        }
    }
    Ok(connections)
}

/// Runs the traffic on connections made by [`connections`].
pub async fn measure(common: &Common, args: &Args, connections: Vec<Connection>) -> anyhow::Result<Measured> {
    let plan = Plan {
        url: common.url.clone(),
        gateways: common.gateways.clone(),
        dialect: args.dialect,
        load: args.load(),
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
        sources: common.sources,
        connect_concurrency: common.connect_concurrency,
        server: common.server,
    };
    traffic::run(connections, plan, "fanout").await
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<Report> {
    let connections = connections(common, &args).await?;
    let measured = measure(common, &args, connections).await?;
    let summary = json!({
        "scenario": "fanout",
        "dialect": args.dialect,
        "group_size": args.group_size,
        "groups": args.groups,
        "load": args.load(),
        "duration_s": args.duration_secs,
        "warmup_s": args.warmup_secs,
        "measured": &measured,
    });
    let title = format!("fanout: {} group(s) of {}, {:?}", args.groups, args.group_size, args.load());
    Ok(Report { summary, timeline: measured.timeline, title })
}
