//! The Redis router, seq counter and presence registry against a real Redis:
//! `REDIS_URL` when set (the test command starts a private one), otherwise
//! a `redis-server` this binary starts on a free port. Every test works
//! under its own key prefix, so tests never see each other's keys.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use protocol::server::CallRinging;
use protocol::time::now_millis;
use protocol::{Encoding, ServerEvent};
use router::redis::{RedisConfig, RedisConnection, RedisPresence, RedisRouter, RedisSequencer};
use router::{Delivery, PresenceChange, PresenceRegistry, Router};
use service::{SendLimits, SendPipeline};
use storage::model::{NewChat, NewMessage, NewUser};
use storage::{SeqCounter, SqliteConfig, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

/// The Redis every test here uses.
#[allow(clippy::zombie_processes, reason = "the shell outlives this process on purpose, to stop the server")]
fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    /// The private server's lifeline: when this process exits, the pipe
    /// closes and the wrapper shell stops the server.
    static LIFELINE: OnceLock<std::process::ChildStdin> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return url;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no >/dev/null & \
             server=$!; cat >/dev/null; kill $server"
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs redis-server (or set REDIS_URL)");
        let _ = LIFELINE.set(child.stdin.take().unwrap());
        format!("redis://127.0.0.1:{port}")
    })
}

/// A fresh key prefix per call.
fn ringing(call_id: &str) -> ServerEvent {
    ServerEvent::CallRinging(CallRinging { call_id: call_id.into() })
}

fn prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("sbtest:{}:{}:{}", std::process::id(), now_millis(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn connection(node_id: u16, prefix: &str) -> RedisConnection {
    let config = RedisConfig {
        prefix: prefix.into(),
        lease_ttl: Duration::from_millis(400),
        lease_refresh: Duration::from_millis(100),
        ..RedisConfig::new(redis_url(), node_id)
    };
    let redis = RedisConnection::open(config).unwrap();
    for _ in 0..100 {
        if redis.ping().await {
            return redis;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Redis at {} does not answer", redis_url());
}

struct World {
    store: Arc<dyn Store>,
    chat: i64,
    alice: i64,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap());
    let user = |phone: &str| NewUser { phone: phone.into(), created_at: now_millis(), ..NewUser::default() };
    let alice = store.create_user(user("1")).await.unwrap().id;
    let bob = store.create_user(user("2")).await.unwrap().id;
    let chat = store.create_chat(NewChat::group(alice, "g", vec![bob], now_millis())).await.unwrap().0.id;
    World { store, chat, alice, _dir: dir }
}

/// The cluster's send pipeline: Redis routing over `world`'s store.
fn redis_pipeline(world: &World, redis: RedisConnection) -> SendPipeline {
    SendPipeline::new(world.store.clone(), Arc::new(RedisRouter::new(redis)), SendLimits::default())
}

/// Sets a raw key, as an operator (or a failover to a stale replica) would.
async fn set_raw(redis_prefix: &str, key: &str, value: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{redis_prefix}:{key}");
    let command = if value.is_empty() {
        redis::cmd("DEL").arg(&key).clone()
    } else {
        redis::cmd("SET").arg(&key).arg(value).clone()
    };
    command.query_async::<()>(&mut connection).await.unwrap();
}

#[tokio::test]
async fn nodes_share_one_contiguous_sequence() {
    let prefix = prefix();
    let first = RedisSequencer::new(connection(1, &prefix).await);
    let second = RedisSequencer::new(connection(2, &prefix).await);
    let chat = 7;
    assert_eq!(first.take(chat, 1).await.unwrap(), None, "a counter never seeded counts nothing");
    let mut seqs = vec![first.seed(chat, 0, 1).await.unwrap(), second.take(chat, 1).await.unwrap().unwrap()];
    let range = first.take(chat, 3).await.unwrap().unwrap();
    seqs.extend(range..range + 3);
    seqs.push(second.take(chat, 1).await.unwrap().unwrap());
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(first.take(8, 1).await.unwrap(), None, "each chat counts on its own");
}

#[tokio::test]
async fn a_lost_or_stale_counter_is_raised_above_the_floor() {
    let prefix = prefix();
    let counter = RedisSequencer::new(connection(1, &prefix).await);
    let chat = 9;
    assert_eq!(counter.seed(chat, 5, 1).await.unwrap(), 6, "seeded above the store's highest seq");
    assert_eq!(counter.take(chat, 2).await.unwrap(), Some(7));
    // Redis restarted without persistence: the counter is gone, and says so.
    set_raw(&prefix, &format!("seq:{chat}"), "").await;
    assert_eq!(counter.take(chat, 1).await.unwrap(), None);
    assert_eq!(counter.seed(chat, 8, 1).await.unwrap(), 9);
    // A counter that went backwards (a stale replica promoted) hands out a
    // taken seq; the store refuses it and raises the counter above its top.
    set_raw(&prefix, &format!("seq:{chat}"), "2").await;
    assert_eq!(counter.take(chat, 1).await.unwrap(), Some(3));
    assert_eq!(counter.seed(chat, 9, 0).await.unwrap(), 10, "0 only raises");
    assert_eq!(counter.take(chat, 1).await.unwrap(), Some(10));
    // A floor below the counter never lowers it.
    assert_eq!(counter.seed(chat, 1, 1).await.unwrap(), 11);
}

#[tokio::test]
async fn retries_take_no_seq_and_batches_stay_in_order() {
    let world = world().await;
    let redis = connection(1, &prefix()).await;
    let pipeline = redis_pipeline(&world, redis);
    let with_id = |content: &str, client_id: &str| {
        let mut message = NewMessage::text(world.chat, world.alice, content, 0);
        message.client_message_id = Some(client_id.into());
        message
    };
    let first = pipeline.send(with_id("one", "c1")).await.unwrap();
    let again = pipeline.send(with_id("one", "c1")).await.unwrap();
    assert!(again.duplicate && again.message.id == first.message.id);
    let outcomes = pipeline
        .send_many(vec![with_id("two", "c2"), with_id("one", "c1"), with_id("three", "c3"), with_id("two", "c2")], None)
        .await;
    let seen: Vec<(u64, bool)> =
        outcomes.iter().map(|o| o.as_ref().map(|s| (s.message.seq, s.duplicate)).unwrap()).collect();
    assert_eq!(seen, vec![(2, false), (1, true), (3, false), (2, true)]);
    let next = pipeline.send(with_id("four", "c4")).await.unwrap();
    assert_eq!(next.message.seq, 4, "no seq was spent on a retry");
}

#[tokio::test]
async fn deliveries_reach_only_the_nodes_holding_recipients() {
    let prefix = prefix();
    let (one, two, three) = (connection(1, &prefix).await, connection(2, &prefix).await, connection(3, &prefix).await);
    let (first, second, third) =
        (RedisRouter::new(one.clone()), RedisRouter::new(two.clone()), RedisRouter::new(three));
    let shutdown = CancellationToken::new();
    for router in [&second, &third] {
        tokio::spawn(router.clone().run(shutdown.clone()));
    }
    let mut on_first = first.subscribe();
    let (mut on_second, mut on_third) = (second.subscribe(), third.subscribe());
    let bob_on_second = RedisPresence::new(two);
    assert_eq!(bob_on_second.sync(42, &|| true).await.unwrap(), Some(true));
    // The subscriber tasks subscribe in the background: publish until one arrives.
    let delivery = Delivery::new(vec![42], ringing("c1"));
    let arrived = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            first.publish(delivery.clone()).await.unwrap();
            if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(100), on_second.recv()).await {
                return got;
            }
        }
    })
    .await
    .expect("delivered across nodes");
    assert_eq!(arrived.recipients, vec![42]);
    assert!(arrived.frame.event().is_none(), "across nodes the frame is bytes, not decoded");
    for encoding in [Encoding::Json, Encoding::MsgPack] {
        assert_eq!(
            arrived.frame.bytes(encoding),
            delivery.frame.bytes(encoding),
            "written as the publisher encoded it"
        );
    }
    let own = on_first.recv().await.unwrap();
    assert_eq!(own.frame.event(), Some(&ringing("c1")), "the publishing node's own subscribers get it too");
    assert!(on_third.try_recv().is_err(), "a node without recipients gets nothing");
    shutdown.cancel();
}

#[tokio::test]
async fn a_dead_nodes_users_go_offline_once() {
    let prefix = prefix();
    let (dying, living) =
        (RedisPresence::new(connection(1, &prefix).await), RedisPresence::new(connection(2, &prefix).await));
    let (stop_dying, stop_living) = (CancellationToken::new(), CancellationToken::new());
    let (dying_changes, _) = tokio::sync::mpsc::channel(16);
    let lease = tokio::spawn({
        let (dying, stop) = (dying.clone(), stop_dying.clone());
        async move { dying.run(dying_changes, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let here = || true;
    assert_eq!(dying.sync(7, &here).await.unwrap(), Some(true), "user 7 comes online on the dying node");
    assert_eq!(dying.sync(8, &here).await.unwrap(), Some(true));
    assert_eq!(dying.sync(8, &here).await.unwrap(), None, "a second device is not news");
    assert_eq!(living.sync(8, &here).await.unwrap(), None, "user 8 is online elsewhere already");
    assert_eq!(living.online(&[7, 8, 9]).await.unwrap(), vec![true, true, false]);

    // The node dies without a goodbye: its lease stops being renewed.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test kills the lease task to play a node dying without a goodbye"
    )]
    lease.abort();
    let (changes, mut found) = tokio::sync::mpsc::channel(16);
    tokio::spawn({
        let (living, stop) = (living.clone(), stop_living.clone());
        async move { living.run(changes, stop).await }
    });
    let gone = tokio::time::timeout(Duration::from_secs(5), found.recv()).await.expect("reaped in time").unwrap();
    assert_eq!(gone, vec![PresenceChange { user_id: 7, online: false }], "user 8 is still on the living node");
    assert_eq!(living.online(&[7, 8]).await.unwrap(), vec![false, true]);
    assert_eq!(living.sync(8, &|| false).await.unwrap(), Some(false), "the last device anywhere");
    stop_living.cancel();
    stop_dying.cancel();
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_local_delivery_goes_on() {
    assert!(RedisConnection::open(RedisConfig::new("not a url", 1)).is_err(), "a bad URL is refused at once");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = RedisConnection::open(RedisConfig::new(format!("redis://127.0.0.1:{closed}"), 1)).unwrap();
    let router = RedisRouter::new(redis.clone());
    let mut local = router.subscribe();
    let started = std::time::Instant::now();
    router.publish(Delivery::new(vec![1], ringing("c2"))).await.unwrap();
    assert_eq!(local.recv().await.unwrap().frame.event(), Some(&ringing("c2")), "this node's clients still get it");
    let sequencer = RedisSequencer::new(redis.clone());
    assert!(matches!(sequencer.take(1, 1).await, Err(storage::StoreError::Unavailable(_))));
    assert!(RedisPresence::new(redis).sync(1, &|| true).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_silent_redis_costs_one_timeout_then_calls_fail_at_once() {
    // A listener that accepts and never answers: a partitioned Redis.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let config = RedisConfig { timeout: Duration::from_millis(300), ..RedisConfig::new(url, 1) };
    let redis = RedisConnection::open(config).unwrap();
    let sequencer = RedisSequencer::new(redis);
    let started = std::time::Instant::now();
    assert!(sequencer.take(1, 1).await.is_err());
    let first = started.elapsed();
    assert!(first >= Duration::from_millis(250), "the first call waited for an answer: {first:?}");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert!(sequencer.take(1, 1).await.is_err());
    }
    assert!(started.elapsed() < Duration::from_millis(250), "then failed at once: {:?}", started.elapsed());
}

#[tokio::test]
async fn released_scheduled_messages_take_the_next_seq() {
    let world = world().await;
    let redis = connection(1, &prefix()).await;
    let pipeline = redis_pipeline(&world, redis);
    let mut later = NewMessage::text(world.chat, world.alice, "later", 0);
    later.send_at = Some(now_millis() + 50);
    assert!(pipeline.send(later).await.unwrap().scheduled);
    let now = pipeline.send(NewMessage::text(world.chat, world.alice, "now", 0)).await.unwrap();
    assert_eq!(now.message.seq, 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(pipeline.release_due(now_millis(), &mut service::Retries::default()).await.unwrap(), 1);
    let after = pipeline.send(NewMessage::text(world.chat, world.alice, "after", 0)).await.unwrap();
    assert_eq!(after.message.seq, 3, "the released message took seq 2");
    let page = world.store.messages(world.chat, storage::model::MessageQuery::latest(10, now_millis())).await.unwrap();
    let order: Vec<(u64, &str)> = page.iter().map(|m| (m.seq, m.content.as_str())).collect();
    assert_eq!(order, vec![(1, "now"), (2, "later"), (3, "after")]);
}

#[tokio::test]
async fn a_node_id_held_by_a_live_process_cannot_be_claimed() {
    let prefix = prefix();
    let live = RedisPresence::new(connection(4, &prefix).await);
    let twin = RedisPresence::new(connection(4, &prefix).await);
    assert!(twin.claim().await.is_ok(), "a fresh id is free");
    let (changes, _found) = tokio::sync::mpsc::channel(16);
    let lease = tokio::spawn({
        let live = live.clone();
        async move { live.run(changes, CancellationToken::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(twin.claim().await, Err(router::PresenceError::NodeIdInUse(4))));
    // The holder dies without a goodbye: its lease stops moving and is taken over.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test kills the lease task to play a node dying without a goodbye"
    )]
    lease.abort();
    assert!(twin.claim().await.is_ok());
}

#[tokio::test]
async fn one_process_at_a_time_holds_a_work_lease() {
    use router::Lease;
    use router::redis::RedisLease;
    let prefix = prefix();
    let ttl = Duration::from_millis(400);
    let first = RedisLease::new(connection(1, &prefix).await, "scheduler", ttl);
    let second = RedisLease::new(connection(2, &prefix).await, "scheduler", ttl);
    // Even a process given the same node id by mistake is another holder.
    let twin = RedisLease::new(connection(1, &prefix).await, "scheduler", ttl);
    assert!(first.hold().await, "a free lease is taken");
    assert!(!second.hold().await && !twin.hold().await, "and then it is the first's alone");
    // Extended while its holder lives, past its ttl.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(first.hold().await);
        assert!(!second.hold().await);
    }
    // Given up: another takes it at once.
    first.release().await;
    assert!(second.hold().await);
    // A holder that dies (stops extending) loses it when it runs out.
    assert!(!first.hold().await);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(first.hold().await, "the silent holder's lease ran out");
    // Releasing someone else's lease does nothing.
    second.release().await;
    assert!(!second.hold().await);
    // Another piece of work is another lease.
    assert!(RedisLease::new(connection(2, &prefix).await, "other work", ttl).hold().await);
}
