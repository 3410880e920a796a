//! The traffic `chat` and `fanout` both make: connections that send
//! timestamped messages at a rate (or only listen), and measure how long
//! each message takes to reach the other members. Sending starts once every
//! connection is open, and lasts the given duration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::Event;
use serde_json::{Map, Value, json};
use tokio::sync::{Barrier, Mutex};
use tokio_tungstenite::tungstenite::Message;

use crate::{api, proc_stats};

/// One user's connection in a chat.
pub(crate) struct Connection {
    pub(crate) url: String,
    pub(crate) user: api::User,
    pub(crate) chat: i64,
    /// Messages per second it sends; `None` only listens.
    pub(crate) rate: Option<u32>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    /// Time zero of the payload timestamps.
    epoch: Instant,
    duration: Duration,
    /// When sending started: the first connection through the barrier sets it.
    started: OnceLock<Instant>,
    /// Everyone connects before anyone sends.
    ready: Barrier,
    counters: Counters,
    latencies: Mutex<Histogram<u64>>,
}

async fn drive(me: Connection, shared: Arc<Shared>) -> anyhow::Result<()> {
    let (socket, _) = tokio_tungstenite::connect_async(api::ws_url(&me.url, &me.user.token)).await?;
    let (mut sink, mut stream) = socket.split();
    shared.ready.wait().await;
    let until = *shared.started.get_or_init(Instant::now) + shared.duration;
    let drain_until = until + Duration::from_secs(3);
    let counters = &shared.counters;
    let mut local = Histogram::<u64>::new(3)?;
    let period = Duration::from_secs_f64(1.0 / f64::from(me.rate.unwrap_or(1).max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick(), if me.rate.is_some() && Instant::now() < until => {
                n += 1;
                let sent_at = shared.epoch.elapsed().as_micros();
                let command = json!({"type": "message.send", "id": n.to_string(),
                    "data": {"chat_id": me.chat, "content": format!("t:{sent_at}"),
                             "client_message_id": format!("{}-{n}", me.user.id)}});
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
                    "message.new" if event.data["sender_id"].as_i64() != Some(me.user.id) => {
                        let sent_at = event.data["content"].as_str().and_then(|c| c.strip_prefix("t:")).and_then(|t| t.parse::<u128>().ok());
                        if let Some(sent_at) = sent_at {
                            let micros = shared.epoch.elapsed().as_micros().saturating_sub(sent_at);
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
    shared.latencies.lock().await.add(local)?;
    Ok(())
}

/// Runs `connections` for `duration` of sending; answers the measured
/// fields of the report (counts, rates, latency percentiles, server stats).
pub(crate) async fn run(
    connections: Vec<Connection>,
    duration: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<Map<String, Value>> {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        duration,
        started: OnceLock::new(),
        ready: Barrier::new(connections.len()),
        counters: Counters::default(),
        latencies: Mutex::new(Histogram::<u64>::new(3)?),
    });
    let cpu_before = server_pid.and_then(proc_stats::cpu_seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for connection in connections {
        tasks.spawn(drive(connection, shared.clone()));
    }
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let c = &shared.counters;
                eprintln!(
                    "sent {} acked {} delivered {} errors {}",
                    c.sent.load(Ordering::Relaxed),
                    c.acked.load(Ordering::Relaxed),
                    c.delivered.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed)
                );
            }
        })
    };
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            eprintln!("connection failed: {error}");
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress.abort();
    let seconds = duration.as_secs_f64();
    let c = &shared.counters;
    let histogram = shared.latencies.lock().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "sent": c.sent.load(Ordering::Relaxed),
        "acked": c.acked.load(Ordering::Relaxed),
        "delivered": c.delivered.load(Ordering::Relaxed),
        "acked_per_s": c.acked.load(Ordering::Relaxed) as f64 / seconds,
        "delivered_per_s": c.delivered.load(Ordering::Relaxed) as f64 / seconds,
        "errors": c.errors.load(Ordering::Relaxed),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": histogram.max() as f64 / 1000.0},
        "server_rss_bytes": server_pid.and_then(proc_stats::rss_bytes),
        "server_cpu_s": match (cpu_before, server_pid.and_then(proc_stats::cpu_seconds)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        },
    });
    let Value::Object(fields) = report else { unreachable!("a json! object literal") };
    Ok(fields)
}
