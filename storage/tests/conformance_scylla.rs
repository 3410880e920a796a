//! The conformance suite on ScyllaDB, each case in a fresh keyspace of the
//! cluster named by `SCYLLA_URI` (`host:port[,host:port...]`), dropped
//! when the case ends. The cases are ignored unless asked for: the default
//! test command has no CQL node to give them (see `storage/docs/scylla.md`,
//! "Verified where"). Asked for without `SCYLLA_URI`, each fails.
//!
//! ```text
//! SCYLLA_URI=127.0.0.1:9042 cargo test -p storage --test conformance_scylla -- --ignored
//! ```
//!
//! `SCYLLA_REPLICATION` overrides the test keyspaces' replication map
//! (default: `SimpleStrategy`, one replica, for a single test node).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use protocol::time::now_millis;
use storage::model::{Appended, MessageQuery, NewChat, NewMessage, NewUser};
use storage::prelude::*;
use storage::scylla::connect;
use storage::{ScyllaConfig, ScyllaStore, SeqCounter};

/// Drops its keyspace when the case ends, on a thread of its own (the
/// case's runtime is going away).
struct Keyspace(ScyllaConfig);

impl Drop for Keyspace {
    fn drop(&mut self) {
        let config = self.0.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let session = connect(&config).await.ok()?;
                let drop = format!("DROP KEYSPACE IF EXISTS {}", config.keyspace);
                session.query_unpaged(drop, &[]).await.ok()
            })
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("could not drop test keyspace {}; drop it by hand", self.0.keyspace);
        }
    }
}

async fn fresh() -> Option<(ScyllaStore, Keyspace)> {
    static CASES: AtomicU32 = AtomicU32::new(0);
    let Ok(uri) = std::env::var("SCYLLA_URI") else {
        eprintln!("SCYLLA_URI is not set: these cases need a CQL node (see this file's header)");
        return None;
    };
    let nodes = uri.split(',').map(str::trim).filter(|node| !node.is_empty()).map(str::to_owned).collect();
    let config = ScyllaConfig {
        keyspace: format!("sbconf_{}_{}", std::process::id(), CASES.fetch_add(1, Ordering::Relaxed)),
        replication: std::env::var("SCYLLA_REPLICATION")
            .unwrap_or_else(|_| "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()),
        ..ScyllaConfig::new(nodes)
    };
    let store = ScyllaStore::open(&config).await.unwrap_or_else(|error| panic!("opening {uri}: {error}"));
    Some((store, Keyspace(config)))
}

storage::conformance_suite!(optional fresh());

/// Seq counters in memory that a case can set back, as a Redis that lost
/// or rolled back its counters would.
#[derive(Debug, Default)]
struct MemoryCounter(std::sync::Mutex<HashMap<i64, u64>>);

impl MemoryCounter {
    fn set(&self, chat: i64, last: Option<u64>) {
        let mut counters = self.0.lock().unwrap();
        match last {
            Some(last) => counters.insert(chat, last),
            None => counters.remove(&chat),
        };
    }

    fn last(&self, chat: i64) -> Option<u64> {
        self.0.lock().unwrap().get(&chat).copied()
    }
}

#[async_trait]
impl SeqCounter for MemoryCounter {
    async fn take(&self, chat_id: i64, count: u64) -> StoreResult<Option<u64>> {
        let mut counters = self.0.lock().unwrap();
        Ok(counters.get_mut(&chat_id).map(|last| {
            *last += count;
            *last + 1 - count
        }))
    }

    async fn seed(&self, chat_id: i64, floor: u64, count: u64) -> StoreResult<u64> {
        let mut counters = self.0.lock().unwrap();
        let last = counters.entry(chat_id).or_insert(0);
        *last = (*last).max(floor) + count;
        Ok(*last + 1 - count)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a server: see this test file's header"]
async fn counter_seqs_are_seeded_repaired_and_never_overwrite() {
    let Some((store, _keyspace)) = fresh().await else {
        panic!("this case needs a server, and none is configured");
    };
    let counter = Arc::new(MemoryCounter::default());
    let store = store.with_seq_counter(counter.clone());
    let user = |phone: &str| NewUser { phone: phone.into(), created_at: now_millis(), ..NewUser::default() };
    let alice = store.create_user(user("1")).await.unwrap().id;
    let chat = store.create_chat(NewChat::group(alice, "g", vec![], now_millis())).await.unwrap().0.id;
    let send = |text: &str, client_id: Option<&str>| {
        let mut new = NewMessage::text(chat, alice, text, now_millis());
        new.client_message_id = client_id.map(str::to_owned);
        store.append_message(new)
    };
    for n in 1..=3 {
        assert_eq!(send(&format!("m{n}"), None).await.unwrap().message().seq, n, "seeded, then counted");
    }
    // Lost: seeded again from the store's top.
    counter.set(chat, None);
    assert_eq!(send("after the loss", Some("c1")).await.unwrap().message().seq, 4);
    // Rolled back: the taken seq is refused, the counter raised, the send lands.
    counter.set(chat, Some(1));
    assert_eq!(send("after the rollback", None).await.unwrap().message().seq, 5);
    // A retry is answered from its claim and takes no seq.
    let retry = send("after the loss", Some("c1")).await.unwrap();
    assert!(matches!(retry, Appended::Duplicate(ref m) if m.seq == 4), "{retry:?}");
    assert_eq!(counter.last(chat), Some(5));
    // A scheduled message is released on the counter too.
    let mut later = NewMessage::text(chat, alice, "later", now_millis());
    later.send_at = Some(now_millis());
    let held = store.schedule_message(later).await.unwrap().into_message();
    assert_eq!(store.release_scheduled(held.id, now_millis()).await.unwrap().unwrap().seq, 6);
    let page = store.messages(chat, MessageQuery::latest(10, now_millis() + 1)).await.unwrap();
    let order: Vec<(u64, &str)> = page.iter().map(|m| (m.seq, m.content.as_str())).collect();
    assert_eq!(
        order,
        vec![(1, "m1"), (2, "m2"), (3, "m3"), (4, "after the loss"), (5, "after the rollback"), (6, "later")],
        "nothing was overwritten"
    );
}

/// A keyspace made before migrations 2 and 3 (no `media`, no `email`)
/// gains their columns through the `ALTER TABLE`s; running them again
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a server: see this test file's header"]
async fn an_earlier_keyspace_gains_the_columns_later_migrations_add() {
    let Some((store, keyspace)) = fresh().await else {
        panic!("this case needs a server, and none is configured");
    };
    store.shutdown().await.unwrap();
    let config = keyspace.0.clone();
    let session = connect(&config).await.unwrap();
    session.use_keyspace(&config.keyspace, false).await.unwrap();
    // Back to the schema of version 1.
    for undo in [
        "ALTER TABLE messages DROP media",
        "ALTER TABLE scheduled_by_id DROP media",
        "ALTER TABLE users DROP email",
        "DROP TABLE users_by_email",
        "DELETE FROM schema_migrations WHERE version IN (2, 3)",
    ] {
        session.query_unpaged(undo, &[]).await.unwrap_or_else(|error| panic!("{undo}: {error}"));
    }
    assert_eq!(storage::scylla::migrate(&session, &config).await.unwrap(), 2, "migrations 2 and 3 ran");
    assert_eq!(storage::scylla::migrate(&session, &config).await.unwrap(), 0, "and are recorded");
    let store = ScyllaStore::open(&config).await.unwrap();
    let by_email = NewUser { email: Some("Ann@Example.com".into()), created_at: now_millis(), ..NewUser::default() };
    let ann = store.create_user(by_email).await.unwrap();
    assert_eq!(store.user_by_email("ann@example.com").await.unwrap().map(|user| user.id), Some(ann.id));
    let chat = store.create_chat(NewChat::group(ann.id, "g", vec![], now_millis())).await.unwrap().0.id;
    let mut new = NewMessage::text(chat, ann.id, "a photo", now_millis());
    new.media = r#"{"width":4,"height":3}"#.into();
    let sent = store.append_message(new).await.unwrap().into_message();
    assert_eq!(store.message(sent.id).await.unwrap().unwrap().media, r#"{"width":4,"height":3}"#);
    store.shutdown().await.unwrap();
}
