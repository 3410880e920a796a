//! `connect`: N idle connections held open, spread over loopback source
//! addresses; the server's RSS growth per connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::dialect::Dialect;
use crate::progress::Progress;
use crate::traffic::{self, Connection, Counters, released};
use crate::{Common, Report, api, net};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Users they belong to (connections are spread over them as devices).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
}

impl Args {
    /// A small run for tests: `connections` over 10 users, held `hold_secs`.
    pub fn for_test(connections: usize, hold_secs: u64) -> Self {
        Self { connections, users: 10, hold_secs }
    }
}

/// An idle Switchboard connection of `user` (no chat, never sends).
pub(crate) fn idle(user: &api::User) -> Connection {
    Connection { user_id: user.id, token: user.token.clone(), chat: 0, sends: false }
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<Report> {
    if let Ok((limit, _)) = rlimit::Resource::NOFILE.get()
        && args.connections as u64 + 64 > limit
    {
        eprintln!(
            "warning: {} connections need more descriptors than this process may open ({limit}); \
             the rest will be counted as failed (the server needs as many)",
            args.connections
        );
    }
    let http = reqwest::Client::new();
    let users = api::users(&http, &common.url, 19_000_000_000, args.users.max(1)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = common.server.rss_bytes();
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(common.connect_concurrency));
    let (release_tx, release) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.connections {
        let me = idle(&users[n % users.len()]);
        let base = common.ws_base(n).to_owned();
        let source = common.sources.for_connection(n);
        let (counters, gate, mut release) = (counters.clone(), gate.clone(), release.clone());
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened =
                tokio::time::timeout(Duration::from_secs(30), traffic::open(&base, Dialect::Switchboard, &me, source))
                    .await;
            drop(permit);
            let Ok(Ok(mut socket)) = opened else {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            counters.open.fetch_add(1, Ordering::Relaxed);
            // Idle, but alive: a ping now and then keeps the heartbeat happy.
            loop {
                tokio::select! {
                    () = released(&mut release) => break,
                    () = tokio::time::sleep(Duration::from_secs(25)) => {
                        let ping = json!({"type": protocol::kinds::PING, "data": {}}).to_string();
                        if socket.send(Message::Text(ping.into())).await.is_err() {
                            counters.disconnects.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    frame = socket.next() => if matches!(frame, None | Some(Err(_) | Ok(Message::Close(_)))) {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                        break;
                    },
                }
            }
            net::close(socket).await;
            counters.closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    let mut progress = Progress::start("connect", common.server);
    let settled = || counters.open.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
    while settled() < args.connections as u64 && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep_until(progress.next_tick().into()).await;
        progress.sample(&counters, false);
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let open = counters.open.load(Ordering::Relaxed);
    // Let allocations settle, then hold.
    let hold_until = Instant::now() + Duration::from_secs(2 + args.hold_secs);
    while Instant::now() < hold_until {
        tokio::time::sleep_until(progress.next_tick().into()).await;
        progress.sample(&counters, Instant::now() >= hold_until);
    }
    let rss_held = common.server.rss_bytes();
    release_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}
    let timeline = progress.finish();
    let per_connection = match (rss_before, rss_held) {
        (Some(before), Some(after)) if open > 0 => Some(after.saturating_sub(before) / open),
        _ => None,
    };
    let summary = json!({
        "scenario": "connect",
        "connections": args.connections,
        "source_addresses": common.sources.count(),
        "opened": open,
        "failed": counters.failed.load(Ordering::Relaxed),
        "disconnects": counters.disconnects.load(Ordering::Relaxed),
        "connect_seconds": connect_seconds,
        "server_rss_before_bytes": rss_before,
        "server_rss_held_bytes": rss_held,
        "server_rss_per_connection_bytes": per_connection,
        "timeline": &timeline,
    });
    let title = format!("connect: {} idle connections", args.connections);
    Ok(Report { summary, timeline, title })
}
