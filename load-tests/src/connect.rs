//! `connect`: N idle connections held open; the server's RSS growth per
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{api, proc_stats};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Users they belong to (connections are spread over them as devices).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10)]
    hold_secs: u64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
}

pub(crate) async fn run(url: &str, server_pid: Option<u32>, args: Args) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let users = api::users(&http, url, 19_000_000_000, args.users.max(1)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server_pid.and_then(proc_stats::rss_bytes);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let all_open = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.connections {
        let target = api::ws_url(url, &users[n % users.len()].token);
        let (opened, failed, gate, release) = (opened.clone(), failed.clone(), gate.clone(), release.clone());
        let (total, all_open) = (args.connections, all_open.clone());
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let Ok(Ok((mut socket, _))) =
                tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(&target)).await
            else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // The `connect` event proves the server accepted the session.
            if !matches!(socket.next().await, Some(Ok(Message::Text(_)))) {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            drop(permit);
            if opened.fetch_add(1, Ordering::Relaxed) + 1 + failed.load(Ordering::Relaxed) >= total {
                all_open.notify_one();
            }
            // Idle, but alive: a ping now and then keeps the heartbeat happy.
            loop {
                tokio::select! {
                    () = release.notified() => break,
                    () = tokio::time::sleep(Duration::from_secs(25)) => {
                        let ping = json!({"type": "ping", "data": {}}).to_string();
                        if socket.send(Message::Text(ping.into())).await.is_err() {
                            break;
                        }
                    }
                    frame = socket.next() => if frame.is_none() { break },
                }
            }
            let _ = socket.close(None).await;
        });
    }
    let progress = {
        let (opened, failed) = (opened.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("open {} failed {}", opened.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
            }
        })
    };
    let opening = tokio::time::timeout(Duration::from_secs(300), all_open.notified()).await;
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let allocations settle before sampling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server_pid.and_then(proc_stats::rss_bytes);
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let rss_held = server_pid.and_then(proc_stats::rss_bytes);
    release.notify_waiters();
    progress.abort();
    let open = opened.load(Ordering::Relaxed);
    tasks.shutdown().await;
    let per_connection = match (rss_before, rss_held) {
        (Some(before), Some(after)) if open > 0 => Some(after.saturating_sub(before) / open as u64),
        _ => None,
    };
    Ok(json!({
        "scenario": "connect",
        "connections": args.connections,
        "opened": open,
        "failed": failed.load(Ordering::Relaxed),
        "timed_out": opening.is_err(),
        "connect_seconds": connect_seconds,
        "server_rss_before_bytes": rss_before,
        "server_rss_open_bytes": rss_after,
        "server_rss_held_bytes": rss_held,
        "server_rss_per_connection_bytes": per_connection,
    }))
}
