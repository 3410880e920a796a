//! `bench append`: how long one message append takes in a store, SQLite
//! or a CQL cluster, with `concurrency` appenders at once (the store's own
//! path: dedupe, seq, durable write; no network in front of it).
//!
//! Every append is timed from the call to its answer; failures are
//! counted, never dropped from the figures silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use storage::model::{NewChat, NewMessage, NewUser};
use storage::prelude::*;
use storage::{ScyllaConfig, ScyllaStore, SqliteConfig, SqliteStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: `sqlite` (a fresh file in a temp dir) or `scylla` (a
    /// fresh keyspace on `--scylla-uri`, dropped afterwards).
    #[arg(long, default_value = "sqlite")]
    store: StoreKind,
    /// CQL contact points, `host:port,host:port` (with `--store scylla`).
    #[arg(long, value_delimiter = ',')]
    scylla_uri: Vec<String>,
    /// The test keyspace's replication map.
    #[arg(long, default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}")]
    replication: String,
    /// Appends in all.
    #[arg(long, default_value_t = 5_000)]
    messages: usize,
    /// Appenders running at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Chats the appends are spread over (appender `i` writes to chat `i % chats`).
    #[arg(long, default_value_t = 16)]
    chats: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Scylla,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub store: StoreKind,
    pub messages: usize,
    pub concurrency: usize,
    pub chats: usize,
    pub appended: u64,
    pub failed: u64,
    pub appends_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Runs the appends and prints the summary (one JSON line, then a table row).
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0 && args.chats > 0, "--concurrency and --chats must be at least 1");
    let dir = tempfile::tempdir()?;
    let (store, keyspace): (Arc<dyn Store>, Option<ScyllaConfig>) = match args.store {
        StoreKind::Sqlite => {
            let path = dir.path().to_owned();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&SqliteConfig::new(path))).await??;
            (Arc::new(store), None)
        }
        StoreKind::Scylla => {
            anyhow::ensure!(!args.scylla_uri.is_empty(), "--store scylla needs --scylla-uri");
            let config = ScyllaConfig {
                keyspace: format!("sbbench_{}", std::process::id()),
                replication: args.replication.clone(),
                ..ScyllaConfig::new(args.scylla_uri.clone())
            };
            (Arc::new(ScyllaStore::open(&config).await?), Some(config))
        }
    };
    let outcome = measure(store.clone(), &args).await;
    store.shutdown().await?;
    if let Some(config) = keyspace {
        let session = storage::scylla::connect(&config).await?;
        session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), &[]).await?;
    }
    let summary = outcome?;
    println!("{}", serde_json::to_string(&summary)?);
    println!("| store | appends/s | p50 | p99 | p99.9 | max | failed |");
    println!(
        "| {:?} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
        summary.store,
        summary.appends_per_s,
        summary.p50_ms,
        summary.p99_ms,
        summary.p999_ms,
        summary.max_ms,
        summary.failed
    );
    Ok(())
}

async fn measure(store: Arc<dyn Store>, args: &Args) -> anyhow::Result<Summary> {
    let now = protocol::time::now_millis();
    let user =
        store.create_user(NewUser { phone: "13800000001".into(), created_at: now, ..NewUser::default() }).await?;
    let mut chats = Vec::with_capacity(args.chats);
    for n in 0..args.chats {
        chats.push(store.create_chat(NewChat::group(user.id, format!("bench {n}"), vec![], now)).await?.0.id);
    }
    let chats = Arc::new(chats);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut appenders = tokio::task::JoinSet::new();
    for appender in 0..args.concurrency {
        let (store, chats, next, total) = (store.clone(), chats.clone(), next.clone(), args.messages);
        appenders.spawn(async move {
            let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut failed = 0_u64;
            let chat = chats[appender % chats.len()];
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let mut message = NewMessage::text(chat, user.id, format!("append {n}"), protocol::time::now_millis());
                message.client_message_id = Some(format!("append-{n}"));
                let at = Instant::now();
                match store.append_message(message).await {
                    Ok(_) => latencies.saturating_record(at.elapsed().as_micros() as u64),
                    Err(error) => {
                        failed += 1;
                        eprintln!("append {n} failed: {error}");
                    }
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    while let Some(done) = appenders.join_next().await {
        let (part, part_failed) = done?;
        latencies.add(part)?;
        failed += part_failed;
    }
    let elapsed = started.elapsed().max(Duration::from_millis(1));
    let ms = |quantile: f64| latencies.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(Summary {
        store: args.store,
        messages: args.messages,
        concurrency: args.concurrency,
        chats: args.chats,
        appended: latencies.len(),
        failed,
        appends_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: latencies.max() as f64 / 1000.0,
    })
}
