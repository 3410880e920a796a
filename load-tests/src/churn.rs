//! `churn`: connections opened at a steady rate, each held a while and
//! closed. Measures connects per second, the time from TCP connect to the
//! server's `connect` event, failures, and whether the server gives back
//! what the connections took (its live-connection gauge and RSS after).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::idle;
use crate::dialect::Dialect;
use crate::progress::Progress;
use crate::traffic::{self, Counters, Percentiles, latency_histogram};
use crate::{Common, Report, api, net};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// New connections per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// How long each connection stays open, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    hold_ms: u64,
    /// Seconds of churning.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Users the connections belong to (as devices).
    #[arg(long, default_value_t = 100)]
    users: usize,
}

impl Args {
    /// A small run for tests: `rate` connects/s held `hold_ms` for `duration_secs` over 10 users.
    pub fn for_test(rate: u32, hold_ms: u64, duration_secs: u64) -> Self {
        Self { rate, hold_ms, duration_secs, users: 10 }
    }
}

/// `switchboard_ws_connections` from the server's /metrics (absent until
/// the first connection: 0), or `None` if /metrics cannot be read.
/// Live WebSocket connections on every server holding them (their gauges summed).
async fn live_connections(http: &reqwest::Client, common: &Common) -> Option<f64> {
    let mut live = 0.0;
    for url in common.ws_servers() {
        let text = http.get(format!("{url}/metrics")).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
        live += text
            .lines()
            .find_map(|line| line.strip_prefix("switchboard_ws_connections ")?.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Some(live)
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.rate > 0, "--rate must be at least 1");
    let http = reqwest::Client::new();
    let users = api::users(&http, &common.url, 16_000_000_000, args.users.max(1)).await?;
    let live_before = live_connections(&http, common).await;
    let rss_before = common.server.rss_bytes();
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(latency_histogram()));
    let mut progress = Progress::start("churn", common.server);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration_secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    let hold = Duration::from_millis(args.hold_ms);
    while Instant::now() < until {
        tokio::select! {
            _ = tick.tick() => {
              // What is owed comes from the clock: a late wake-up opens the backlog.
              let owed = (started.elapsed().as_secs_f64() * f64::from(args.rate)) as usize;
              while n < owed {
                let me = idle(&users[n % users.len()]);
                let base = common.ws_base(n).to_owned();
                let source = common.sources.for_connection(n);
                n += 1;
                let (counters, latencies) = (counters.clone(), latencies.clone());
                tasks.spawn(async move {
                    let begun = Instant::now();
                    let Ok(Ok(mut socket)) = tokio::time::timeout(Duration::from_secs(10), traffic::open(&base, Dialect::Switchboard, &me, source)).await else {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    latencies.lock().await.saturating_record(begun.elapsed().as_micros() as u64);
                    counters.open.fetch_add(1, Ordering::Relaxed);
                    let holding = tokio::time::sleep(hold);
                    tokio::pin!(holding);
                    loop {
                        tokio::select! {
                            () = &mut holding => break,
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
            }
            () = tokio::time::sleep_until(progress.next_tick().into()) => progress.sample(&counters, false),
            Some(_) = tasks.join_next() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    progress.sample(&counters, true);
    let timeline = progress.finish();
    // The server closes its side asynchronously: give it a moment before checking it let go.
    let mut live_after = live_connections(&http, common).await;
    for _ in 0..20 {
        if live_after <= live_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        live_after = live_connections(&http, common).await;
    }
    let opened = counters.open.load(Ordering::Relaxed);
    let summary = json!({
        "scenario": "churn",
        "rate": args.rate,
        "hold_ms": args.hold_ms,
        "duration_s": args.duration_secs,
        "attempted": n,
        "opened": opened,
        "failed": counters.failed.load(Ordering::Relaxed),
        "disconnects": counters.disconnects.load(Ordering::Relaxed),
        // Over the churning window (the last connections' hold comes after it).
        "connects_per_s": opened as f64 / args.duration_secs as f64,
        "connect_latency_ms": Percentiles::of(&*latencies.lock().await),
        "server_live_connections_before": live_before,
        "server_live_connections_after": live_after,
        "server_rss_before_bytes": rss_before,
        "server_rss_after_bytes": common.server.rss_bytes(),
        "timeline": &timeline,
    });
    let title = format!("churn: {} connects/s, held {} ms", args.rate, args.hold_ms);
    Ok(Report { summary, timeline, title })
}
