//! `cargo bench -p bench`: the hot pieces of a message's way through the
//! engine, each on its own.
//! - `codec`: a `message.new` frame encoded, and a `message.send` frame decoded
//!   into its typed command, JSON and MessagePack; the sender's `message.ack`
//!   encoded whole, and with the view's bytes from its `message.new`;
//! - `fanout`: the real fan-out step queuing one event on 1,000 local connections;
//! - `sequencer`: durable appends to one hot chat, seq handed out in the
//!   writer's transaction (SQLite, `synchronous = FULL`), 64 senders at once;
//! - `dedupe`: a resend of an already-stored `client_message_id`, answered
//!   with the original from the unique index.

use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::prelude::*;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::bench_support::LocalConnections;
use protocol::server::MessageAck;
use protocol::time::now_millis;
use protocol::views::{MessageView, SenderView};
use protocol::{Encoding, ServerEvent};
use router::Delivery;
use serde_json::json;
use storage::model::{NewChat, NewMessage, NewUser};
use storage::{SqliteConfig, SqliteStore};
use tokio_tungstenite::tungstenite::Message;

/// A `message.new` as the gateway sends it (the full message view).
fn message_new() -> ServerEvent {
    ServerEvent::MessageNew(Arc::new(MessageView {
        id: 373_504_966_967_296,
        chat_id: 42,
        seq: 1234,
        sender_id: 7,
        client_message_id: Some("7-1763719000000000-1234".into()),
        content: "t:123456789:7 a message of ordinary length, with a little text".into(),
        kind: "text".into(),
        file_name: String::new(),
        file_size: 0,
        file_url: String::new(),
        thumbnail: String::new(),
        is_read: false,
        is_edited: false,
        is_deleted: false,
        is_pinned: false,
        reply_to_id: None,
        forward_from: None,
        ttl: 0,
        expires_at: None,
        send_at: None,
        is_silent: false,
        created_at: "2026-11-21T09:55:36.076Z".into(),
        updated_at: "2026-11-21T09:55:36.076Z".into(),
        sender: Some(SenderView {
            id: 7,
            username: "seven".into(),
            nickname: "sender seven".into(),
            avatar: String::new(),
        }),
        reactions: Vec::new(),
        width: None,
        height: None,
        duration: None,
        extra: None,
    }))
}

/// A `message.send` as the load generator sends it.
fn message_send() -> serde_json::Value {
    json!({"type": "message.send", "id": "1234", "data": {"chat_id": 42,
        "content": "t:123456789:7 a message of ordinary length, with a little text",
        "client_message_id": "7-1763719000000000-1234"}})
}

/// Seed 000's `message` frame, as a dating client sends it.
fn dating_message() -> serde_json::Value {
    json!({"type": "message", "data": {"conversation_id": 42,
        "content": "t:123456789:7 a message of ordinary length, with a little text",
        "client_message_id": "7-1763719000000000-1234"}, "timestamp": 1_763_719_000_000_i64})
}

fn codec(c: &mut Criterion) {
    let event = message_new();
    let send = message_send();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let dating = Encoding::Dialect(protocol::dialect::Dialect::Dating);
    let encodings = [
        ("json", Encoding::Json),
        ("compact", Encoding::CompactJson),
        ("msgpack", Encoding::MsgPack),
        ("dating", dating),
    ];
    for (name, encoding) in encodings {
        group.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| protocol::frame::encode(&event, None, 0, encoding));
        });
        let frame = match encoding {
            Encoding::Json | Encoding::CompactJson => Message::Text(send.to_string().into()),
            Encoding::MsgPack => Message::Binary(rmp_serde::to_vec_named(&send).unwrap().into()),
            Encoding::Dialect(_) => Message::Text(dating_message().to_string().into()),
        };
        group.bench_function(format!("decode_send_{name}"), |b| {
            b.iter(|| gateway::decode_as(&frame, encoding).unwrap());
        });
    }
    // The sender's ack: its view serialised again, or taken from the
    // `message.new` frame its recipients were sent (encoded already).
    let ServerEvent::MessageNew(view) = &event else { unreachable!("message_new is a message.new") };
    let ack = ServerEvent::MessageAck(Box::new(MessageAck {
        client_message_id: view.client_message_id.clone(),
        message: view.clone(),
        duplicate: false,
    }));
    let announced = protocol::Frame::new(event.clone());
    for (name, encoding) in [("json", Encoding::Json), ("compact", Encoding::CompactJson)] {
        announced.bytes(encoding);
        group.bench_function(format!("encode_ack_{name}"), |b| {
            b.iter(|| protocol::frame::encode(&ack, Some("1234"), 0, encoding));
        });
        group.bench_function(format!("encode_ack_{name}_from_message_new"), |b| {
            b.iter(|| protocol::frame::encode_reply(&ack, Some(&announced), Some("1234"), 0, encoding));
        });
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    const CONNECTIONS: usize = 1_000;
    let recipients: Vec<i64> = (1..=CONNECTIONS as i64).collect();
    let event = message_new();
    let mut group = c.benchmark_group("fanout");
    // One element is one frame queued for and taken by one connection.
    for (run, name, msgpack_every) in
        [(1, "1000_json", 0), (1, "1000_mixed_json_msgpack", 2), (16, "1000_json_runs_of_16", 0)]
    {
        group.throughput(Throughput::Elements((CONNECTIONS * run) as u64));
        let mut connections = LocalConnections::new(CONNECTIONS, msgpack_every, 64);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    // Fresh frames each time: their encoding is part of the fan-out.
                    let deliveries: Vec<Arc<Delivery>> =
                        (0..run).map(|_| Arc::new(Delivery::new(recipients.clone(), event.clone()))).collect();
                    let started = Instant::now();
                    assert_eq!(connections.deliver(&deliveries), (CONNECTIONS * run) as u64);
                    // Taking the frames from the queues, as connection tasks do.
                    assert_eq!(connections.drain(), CONNECTIONS * run);
                    spent += started.elapsed();
                }
                spent
            });
        });
    }
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn store_with_chat(dir: &std::path::Path) -> (SqliteStore, i64, i64) {
    let store = SqliteStore::open(&SqliteConfig::new(dir)).unwrap();
    let new_user = NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() };
    let user = store.create_user(new_user).await.unwrap().id;
    let chat = store.create_chat(NewChat::group(user, "bench", vec![], now_millis())).await.unwrap().0.id;
    (store, user, chat)
}

fn message(chat: i64, user: i64, client_id: String) -> NewMessage {
    let mut new = NewMessage::text(chat, user, "benchmark message with some text", now_millis());
    new.client_message_id = Some(client_id);
    new
}

fn sequencer(c: &mut Criterion) {
    const SENDERS: u64 = 64;
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = runtime.block_on(store_with_chat(dir.path()));
    let mut group = c.benchmark_group("sequencer");
    group.throughput(Throughput::Elements(SENDERS));
    group.sample_size(20);
    let mut round = 0u64;
    group.bench_function("hot_chat_64_senders_durable", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                round += 1;
                (0..SENDERS).map(|n| message(chat, user, format!("seq-{round}-{n}"))).collect::<Vec<_>>()
            },
            |batch| {
                let store = store.clone();
                async move {
                    let appends = batch.into_iter().map(|new| {
                        let store = store.clone();
                        tokio::spawn(async move { store.append_message(new).await.unwrap() })
                    });
                    for append in appends.collect::<Vec<_>>() {
                        append.await.unwrap();
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn dedupe(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = runtime.block_on(store_with_chat(dir.path()));
    runtime.block_on(async {
        for n in 0..10_000 {
            store.append_message(message(chat, user, format!("stored-{n}"))).await.unwrap();
        }
    });
    let mut group = c.benchmark_group("dedupe");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("resend_of_stored_client_message_id", |b| {
        b.to_async(&runtime).iter(|| {
            n = (n + 7919) % 10_000;
            let resend = message(chat, user, format!("stored-{n}"));
            let store = store.clone();
            async move {
                let appended = store.append_message(resend).await.unwrap();
                assert!(matches!(appended, storage::model::Appended::Duplicate(_)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, codec, fanout, sequencer, dedupe);
criterion_main!(benches);
