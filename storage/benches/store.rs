//! `cargo bench -p storage`: durable appends per second with concurrent
//! writers, single-append latency percentiles, and page-read latency.
//!
//! Every append here is durable (WAL, `synchronous = FULL`): the future
//! resolves only after the batch holding it has been fsynced.

use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::prelude::*;

use criterion::{BenchmarkId, Criterion, Throughput};
use hdrhistogram::Histogram;
use protocol::time::now_millis;
use storage::model::{Cursor, MessageQuery, NewChat, NewMessage, NewUser};
use storage::{SqliteConfig, SqliteStore, Store};
use tokio::runtime::Runtime;

const WRITERS: [usize; 3] = [1, 64, 512];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn fresh(dir: &std::path::Path) -> (SqliteStore, i64, i64) {
    let store = SqliteStore::open(&SqliteConfig::new(dir)).unwrap();
    let user = store
        .create_user(NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() })
        .await
        .unwrap()
        .id;
    let chat = store.create_chat(NewChat::group(user, "bench", vec![], now_millis())).await.unwrap().0.id;
    (store, user, chat)
}

fn message(chat: i64, user: i64, n: u64) -> NewMessage {
    let mut new = NewMessage::text(chat, user, format!("benchmark message number {n} with some text"), now_millis());
    new.client_message_id = Some(format!("bench-{n}-{}", now_millis()));
    new
}

/// Appends `total` messages from `writers` concurrent tasks; returns the
/// wall time and, when asked, each append's latency.
async fn append_burst(
    store: &SqliteStore,
    chat: i64,
    user: i64,
    writers: usize,
    total: u64,
    latencies: Option<&mut Histogram<u64>>,
) -> Duration {
    let started = Instant::now();
    let per_writer = total.div_ceil(writers as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers as u64 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).unwrap();
            for n in 0..per_writer {
                let one = Instant::now();
                store.append_message(message(chat, user, writer * 1_000_000_000 + n)).await.unwrap();
                histogram.record(one.elapsed().as_micros() as u64).unwrap();
            }
            histogram
        });
    }
    let mut merged = Histogram::<u64>::new(3).unwrap();
    while let Some(done) = tasks.join_next().await {
        merged.add(done.unwrap()).unwrap();
    }
    if let Some(latencies) = latencies {
        latencies.add(merged).unwrap();
    }
    started.elapsed()
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = rt.block_on(fresh(dir.path()));
    let mut group = c.benchmark_group("append_durable");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for writers in WRITERS {
        group.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &writers| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move { append_burst(&store, chat, user, writers, iters.max(writers as u64), None).await }
            });
        });
    }
    group.finish();
    rt.block_on(store.shutdown()).unwrap();
}

fn page_reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = rt.block_on(fresh(dir.path()));
    rt.block_on(append_burst(&store, chat, user, 256, 20_000, None));
    let store = Arc::new(store);
    let mut group = c.benchmark_group("page_read");
    group.bench_function("latest_50", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            async move { store.messages(chat, MessageQuery::latest(50, now_millis())).await.unwrap() }
        });
    });
    group.bench_function("before_seq_50", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            async move {
                let query =
                    MessageQuery { before: Some(Cursor::Seq(10_000)), ..MessageQuery::latest(50, now_millis()) };
                store.messages(chat, query).await.unwrap()
            }
        });
    });
    group.bench_function("search_50", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            async move {
                let query =
                    MessageQuery { search: Some("number 1999".into()), ..MessageQuery::latest(50, now_millis()) };
                store.messages(chat, query).await.unwrap()
            }
        });
    });
    group.finish();
    rt.block_on(store.shutdown()).unwrap();
}

/// Per-append latency percentiles, which criterion's means do not show.
fn latency_report() {
    let rt = runtime();
    for writers in [1usize, 64, 512] {
        let dir = tempfile::tempdir().unwrap();
        let (store, user, chat) = rt.block_on(fresh(dir.path()));
        let total = if writers == 1 { 2_000 } else { 100_000 };
        let mut latencies = Histogram::<u64>::new(3).unwrap();
        let elapsed = rt.block_on(append_burst(&store, chat, user, writers, total, Some(&mut latencies)));
        println!(
            "append latency, {writers} writer(s), {total} durable appends: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            total as f64 / elapsed.as_secs_f64(),
            latencies.value_at_quantile(0.50) as f64 / 1000.0,
            latencies.value_at_quantile(0.99) as f64 / 1000.0,
            latencies.max() as f64 / 1000.0,
        );
        rt.block_on(store.shutdown()).unwrap();
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    appends(&mut criterion);
    page_reads(&mut criterion);
    criterion.final_summary();
    // `cargo test --benches` runs this binary in test mode: keep that quick.
    if !std::env::args().any(|arg| arg == "--test") {
        latency_report();
    }
}
