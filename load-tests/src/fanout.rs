//! `fanout`: groups of G members, all connected, one sender per group at a
//! target rate; every message is delivered to every member. Measures
//! deliveries per second and send-to-receipt latency across all receivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::Event;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Mutex};
use tokio_tungstenite::tungstenite::Message;

use crate::{api, proc_stats};

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

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
}

struct Member {
    url: String,
    user: api::User,
    chat: i64,
    /// Sends at this rate, or only listens.
    rate: Option<u32>,
}

struct Shared {
    epoch: Instant,
    /// Sending starts once everyone is connected and lasts this long.
    duration: Duration,
    started: std::sync::OnceLock<Instant>,
    counters: Counters,
    latencies: Mutex<Histogram<u64>>,
    /// Everyone connects before anyone sends.
    ready: Barrier,
}

async fn member(me: Member, shared: Arc<Shared>) -> anyhow::Result<()> {
    let (socket, _) = tokio_tungstenite::connect_async(api::ws_url(&me.url, &me.user.token)).await?;
    let (mut sink, mut stream) = socket.split();
    shared.ready.wait().await;
    let until = *shared.started.get_or_init(Instant::now) + shared.duration;
    let mut local = Histogram::<u64>::new(3)?;
    let period = Duration::from_secs_f64(1.0 / f64::from(me.rate.unwrap_or(1).max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let drain_until = until + Duration::from_secs(3);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick(), if me.rate.is_some() && Instant::now() < until => {
                n += 1;
                let sent_at = shared.epoch.elapsed().as_micros();
                let command = json!({"type": "message.send", "id": n.to_string(),
                    "data": {"chat_id": me.chat, "content": format!("t:{sent_at}")}});
                if sink.send(Message::Text(command.to_string().into())).await.is_err() {
                    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                shared.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if frame.is_none() { break }
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Event>(text.as_str()) else { continue };
                match event.kind.as_str() {
                    "message.ack" => { shared.counters.acked.fetch_add(1, Ordering::Relaxed); }
                    "message.new" if event.data["sender_id"].as_i64() != Some(me.user.id) => {
                        let sent_at = event.data["content"].as_str().and_then(|c| c.strip_prefix("t:")).and_then(|t| t.parse::<u128>().ok());
                        if let Some(sent_at) = sent_at {
                            let micros = shared.epoch.elapsed().as_micros().saturating_sub(sent_at);
                            local.record(u64::try_from(micros).unwrap_or(u64::MAX))?;
                            shared.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    "error" => { shared.counters.errors.fetch_add(1, Ordering::Relaxed); }
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(drain_until.into()) => break,
        }
    }
    shared.latencies.lock().await.add(local)?;
    Ok(())
}

pub(crate) async fn run(url: &str, server_pid: Option<u32>, args: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(args.group_size >= 2, "a group needs at least 2 members");
    let http = reqwest::Client::new();
    let users = api::users(&http, url, 17_000_000_000, args.group_size * args.groups).await?;
    let mut members = Vec::new();
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
            members.push(Member { url: url.to_owned(), user: user.clone(), chat, rate });
        }
    }
    let epoch = Instant::now();
    let shared = Arc::new(Shared {
        epoch,
        duration: Duration::from_secs(args.duration_secs),
        started: std::sync::OnceLock::new(),
        counters: Counters::default(),
        latencies: Mutex::new(Histogram::<u64>::new(3)?),
        ready: Barrier::new(members.len()),
    });
    let cpu_before = server_pid.and_then(proc_stats::cpu_seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for one in members {
        tasks.spawn(member(one, shared.clone()));
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
            eprintln!("member failed: {error}");
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress.abort();
    let seconds = args.duration_secs as f64;
    let c = &shared.counters;
    let histogram = shared.latencies.lock().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "scenario": "fanout",
        "group_size": args.group_size,
        "groups": args.groups,
        "rate_per_sender": args.rate,
        "duration_s": args.duration_secs,
        "sent": c.sent.load(Ordering::Relaxed),
        "acked": c.acked.load(Ordering::Relaxed),
        "delivered": c.delivered.load(Ordering::Relaxed),
        "deliveries_per_s": c.delivered.load(Ordering::Relaxed) as f64 / seconds,
        "errors": c.errors.load(Ordering::Relaxed),
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": histogram.max() as f64 / 1000.0},
        "server_rss_bytes": server_pid.and_then(proc_stats::rss_bytes),
        "server_cpu_s": match (cpu_before, server_pid.and_then(proc_stats::cpu_seconds)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        },
    }))
}
