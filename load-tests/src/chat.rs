//! `chat`: pairs of users sending to each other at a target rate over
//! WebSocket; latency from the send to the peer's receipt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::Event;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::{api, proc_stats};

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

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
}

/// What every sending connection shares.
#[derive(Clone)]
struct Run {
    url: String,
    rate: u32,
    /// Time zero of the payload timestamps.
    epoch: Instant,
    /// When sending stops.
    until: Instant,
    counters: Arc<Counters>,
    latencies: Arc<Mutex<Histogram<u64>>>,
}

/// One user's connection: sends at the rate, reads acks and the peer's messages.
async fn drive(run: Run, me: api::User, chat: i64) -> anyhow::Result<()> {
    let Run { url, rate, epoch, until, counters, latencies } = run;
    let (socket, _) = tokio_tungstenite::connect_async(api::ws_url(&url, &me.token)).await?;
    let (mut sink, mut stream) = socket.split();
    let mut local = Histogram::<u64>::new(3)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let drain_until = until + Duration::from_secs(3);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick(), if Instant::now() < until => {
                n += 1;
                let sent_at = epoch.elapsed().as_micros();
                let command = json!({"type": "message.send", "id": n.to_string(),
                    "data": {"chat_id": chat, "content": format!("t:{sent_at}"), "client_message_id": format!("{}-{n}", me.id)}});
                if sink.send(Message::Text(command.to_string().into())).await.is_err() {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if frame.is_none() { break }
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Event>(text.as_str()) else { continue };
                match event.kind.as_str() {
                    "message.ack" => { counters.acked.fetch_add(1, Ordering::Relaxed); }
                    "message.new" if event.data["sender_id"].as_i64() != Some(me.id) => {
                        let sent_at = event.data["content"].as_str().and_then(|c| c.strip_prefix("t:")).and_then(|t| t.parse::<u128>().ok());
                        if let Some(sent_at) = sent_at {
                            let micros = epoch.elapsed().as_micros().saturating_sub(sent_at);
                            local.record(u64::try_from(micros).unwrap_or(u64::MAX))?;
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    "error" => { counters.errors.fetch_add(1, Ordering::Relaxed); }
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(drain_until.into()) => break,
        }
    }
    latencies.lock().await.add(local)?;
    Ok(())
}

pub(crate) async fn run(url: &str, server_pid: Option<u32>, args: Args) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let users = api::users(&http, url, 18_000_000_000, args.pairs * 2).await?;
    let mut chats = Vec::new();
    for pair in users.chunks(2) {
        chats.push(api::private_chat(&http, url, &pair[0], &pair[1]).await?);
    }
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let cpu_before = server_pid.and_then(proc_stats::cpu_seconds);
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(args.duration_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (pair, chat) in users.chunks(2).zip(&chats) {
        for me in pair {
            let run = Run {
                url: url.to_owned(),
                rate: args.rate,
                epoch,
                until,
                counters: counters.clone(),
                latencies: latencies.clone(),
            };
            tasks.spawn(drive(run, me.clone(), *chat));
        }
    }
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "sent {} acked {} delivered {} errors {}",
                    counters.sent.load(Ordering::Relaxed),
                    counters.acked.load(Ordering::Relaxed),
                    counters.delivered.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed)
                );
            }
        })
    };
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            eprintln!("connection failed: {error}");
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress.abort();
    let seconds = args.duration_secs as f64;
    let histogram = latencies.lock().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "scenario": "chat",
        "pairs": args.pairs,
        "rate_per_user": args.rate,
        "duration_s": args.duration_secs,
        "sent": counters.sent.load(Ordering::Relaxed),
        "acked": counters.acked.load(Ordering::Relaxed),
        "delivered": counters.delivered.load(Ordering::Relaxed),
        "acked_per_s": counters.acked.load(Ordering::Relaxed) as f64 / seconds,
        "delivered_per_s": counters.delivered.load(Ordering::Relaxed) as f64 / seconds,
        "errors": counters.errors.load(Ordering::Relaxed),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": histogram.max() as f64 / 1000.0},
        "server_rss_bytes": server_pid.and_then(proc_stats::rss_bytes),
        "server_cpu_s": match (cpu_before, server_pid.and_then(proc_stats::cpu_seconds)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        },
    }))
}
