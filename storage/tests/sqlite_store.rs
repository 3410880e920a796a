//! Behaviour particular to the SQLite backend: deferred full-text
//! indexing, reopening, and concurrent readers beside the writer.

use std::time::Duration;
use storage::prelude::*;

use protocol::time::now_millis;
use storage::model::{Appended, MessageQuery, NewChat, NewMessage, NewUser};
use storage::{SqliteConfig, SqliteStore, Store, StoreError};

async fn setup(dir: &std::path::Path) -> (SqliteStore, i64, i64) {
    setup_with(&SqliteConfig::new(dir)).await
}

/// A store opened with `config`, a user and a group chat of theirs.
async fn setup_with(config: &SqliteConfig) -> (SqliteStore, i64, i64) {
    let store = SqliteStore::open(config).unwrap();
    let user = store
        .create_user(NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() })
        .await
        .unwrap()
        .id;
    let chat = store.create_chat(NewChat::group(user, "g", vec![], now_millis())).await.unwrap().0.id;
    (store, user, chat)
}

/// A connection of the test's own on the store's database file, beside
/// the store's (waiting out its write lock rather than failing on it).
fn raw_connection(dir: &std::path::Path) -> rusqlite::Connection {
    let raw = rusqlite::Connection::open(dir.join(storage::sqlite::DATABASE_FILE)).unwrap();
    raw.busy_timeout(Duration::from_secs(5)).unwrap();
    raw
}

/// The store's WAL file.
fn wal_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("{}-wal", storage::sqlite::DATABASE_FILE))
}

/// Polls `check` until it holds, or fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn search(text: &str) -> MessageQuery {
    MessageQuery { search: Some(text.into()), ..MessageQuery::latest(100, now_millis() + 1) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_index_catches_up_and_follows_edits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let mut ids = Vec::new();
    for n in 0..1_000 {
        let text = if n % 100 == 7 { format!("needle 针眼 {n}") } else { format!("hay {n}") };
        ids.push(
            store.append_message(NewMessage::text(chat, user, text, now_millis())).await.unwrap().into_message().id,
        );
    }
    // Found whether indexed yet or not.
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 10);
    eventually(Duration::from_secs(10), || async { store.search_backlog().await.unwrap() == 0 }).await;
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 10);
    assert_eq!(store.messages(chat, search("针眼")).await.unwrap().len(), 10);

    // Edits and deletes of indexed rows leave no stale hits.
    store.edit_message(ids[7], "replaced text".into(), now_millis()).await.unwrap();
    store.delete_message(ids[107], now_millis()).await.unwrap();
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 8);
    assert_eq!(store.messages(chat, search("replaced")).await.unwrap().len(), 1);
    eventually(Duration::from_secs(10), || async { store.search_backlog().await.unwrap() == 0 }).await;
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 8);
    assert_eq!(store.messages(chat, search("replaced")).await.unwrap().len(), 1);
    store.shutdown().await.unwrap();
}

/// Enough indexing steps that FTS5 merges the index's segments many times
/// over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_stays_exact_across_many_merging_index_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let mut needles = 0;
    for batch in 0..40 {
        let texts = (0..500).map(|n| {
            let n = batch * 500 + n;
            if n % 250 == 3 {
                needles += 1;
                format!("needle {n}")
            } else {
                format!("hay {n} {}", n * 7919 % 10_007)
            }
        });
        let batch: Vec<NewMessage> = texts.map(|text| NewMessage::text(chat, user, text, now_millis())).collect();
        for appended in store.append_messages(batch).await.unwrap() {
            appended.unwrap();
        }
    }
    eventually(Duration::from_secs(120), || async { store.search_backlog().await.unwrap() == 0 }).await;
    let found = store
        .messages(chat, MessageQuery { search: Some("needle".into()), ..MessageQuery::latest(500, now_millis() + 1) })
        .await
        .unwrap();
    assert_eq!(found.len(), needles, "every needle, from the first step to the last");
    assert!(found.iter().all(|message| message.content.starts_with("needle ")));
    assert_eq!(store.messages(chat, search("hay 19999 ")).await.unwrap().len(), 1);
    store.shutdown().await.unwrap();
}

/// Long messages: an indexing step ends at its byte budget (4 MiB) well
/// before its row budget, and the next step goes on from the row after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_are_indexed_across_byte_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let filler = "lorem ipsum ".repeat(1_400);
    let texts = (0..700).map(|n| format!("needle {n} {filler} tail{n:04}x"));
    let batch: Vec<NewMessage> = texts.map(|text| NewMessage::text(chat, user, text, now_millis())).collect();
    for appended in store.append_messages(batch).await.unwrap() {
        appended.unwrap();
    }
    eventually(Duration::from_secs(60), || async { store.search_backlog().await.unwrap() == 0 }).await;
    let all = MessageQuery { search: Some("needle".into()), ..MessageQuery::latest(1_000, now_millis() + 1) };
    assert_eq!(store.messages(chat, all).await.unwrap().len(), 700);
    for n in [0, 1, 255, 256, 257, 511, 512, 698, 699] {
        let found = store.messages(chat, search(&format!("tail{n:04}x"))).await.unwrap();
        assert_eq!(found.len(), 1, "message {n}");
        assert!(found[0].content.starts_with(&format!("needle {n} ")));
    }
    store.shutdown().await.unwrap();
}

/// Removes the search index's file (and its WAL) from a closed store.
fn remove_search_index(dir: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(format!("{}{suffix}", storage::sqlite::SEARCH_FILE));
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
}

/// The index is a file of its own, derived from the database: a store
/// opened without it, or with another database's, builds it anew, and
/// search is exact meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_search_index_is_built_anew() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    for n in 0..300 {
        let text = if n % 30 == 0 { format!("needle {n}") } else { format!("hay {n}") };
        store.append_message(NewMessage::text(chat, user, text, now_millis())).await.unwrap();
    }
    eventually(Duration::from_secs(10), || async { store.search_backlog().await.unwrap() == 0 }).await;
    store.shutdown().await.unwrap();

    remove_search_index(dir.path());
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 10);
    eventually(Duration::from_secs(10), || async { store.search_backlog().await.unwrap() == 0 }).await;
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 10, "all found in the rebuilt index");
    store.shutdown().await.unwrap();

    // Another store's index, fully caught up, put beside this database.
    let other = tempfile::tempdir().unwrap();
    let (foreign, other_user, other_chat) = setup(other.path()).await;
    for n in 0..400 {
        foreign
            .append_message(NewMessage::text(other_chat, other_user, format!("other {n}"), now_millis()))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(10), || async { foreign.search_backlog().await.unwrap() == 0 }).await;
    foreign.shutdown().await.unwrap();
    remove_search_index(dir.path());
    std::fs::copy(other.path().join(storage::sqlite::SEARCH_FILE), dir.path().join(storage::sqlite::SEARCH_FILE))
        .unwrap();
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    eventually(Duration::from_secs(10), || async { store.search_backlog().await.unwrap() == 0 }).await;
    assert_eq!(store.messages(chat, search("needle")).await.unwrap().len(), 10);
    assert!(store.messages(chat, search("other")).await.unwrap().is_empty(), "nothing of the other store's");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    for n in 0..100 {
        store.append_message(NewMessage::text(chat, user, format!("m{n}"), now_millis())).await.unwrap();
    }
    store.shutdown().await.unwrap();
    let reopened = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    assert_eq!(reopened.max_seq(chat).await.unwrap(), 100);
    let next = reopened.append_message(NewMessage::text(chat, user, "after", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 101);
    reopened.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_proceed_while_writes_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..2_000 {
                store.append_message(NewMessage::text(chat, user, format!("m{n}"), now_millis())).await.unwrap();
            }
        })
    };
    let mut last_seen = 0;
    while !writer.is_finished() {
        let page = store.messages(chat, MessageQuery::latest(20, now_millis() + 1)).await.unwrap();
        // Every read sees a consistent, contiguous tail that only grows.
        assert!(page.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        let top = page.last().map_or(0, |m| m.seq);
        assert!(top >= last_seen);
        last_seen = top;
    }
    writer.await.unwrap();
    assert_eq!(store.max_seq(chat).await.unwrap(), 2_000);
    store.shutdown().await.unwrap();
}

/// Under writes that never pause, the WAL still starts over from its
/// beginning, again and again: the checkpoint sequence number in its
/// header (bytes 12..16) counts the start-overs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_while_writes_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) =
        setup_with(&SqliteConfig { wal_restart_pages: 256, ..SqliteConfig::new(dir.path()) }).await;
    let wal = wal_file(dir.path());
    let start_overs = || {
        std::fs::read(&wal)
            .ok()
            .filter(|header| header.len() >= 16)
            .map(|header| u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
    };
    // Eight senders keep the writer's queue from ever running dry; each
    // message takes most of a page of the WAL.
    let text = "lorem ipsum ".repeat(250);
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (store, text) = (store.clone(), text.clone());
            tokio::spawn(async move {
                for _ in 0..1_500 {
                    store.append_message(NewMessage::text(chat, user, text.clone(), now_millis())).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    while senders.iter().any(|sender| !sender.is_finished()) {
        seen.extend(start_overs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(seen.len() >= 3, "the WAL started over too rarely while 36 MB went through it: {seen:?}");
    assert_eq!(store.max_seq(chat).await.unwrap(), 12_000);
    store.shutdown().await.unwrap();
}

/// A steady trickle of commits keeps the checkpointer's passes short, so
/// the WAL never grows past a few passes' worth. (Its frame counts repeat
/// from pass to pass as the WAL starts over; read as silence, they once
/// sent the checkpointer to sleep for half a second at a time while the
/// WAL grew.) The file keeps its longest length, so it is read at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_trickle_of_writes_keeps_the_wal_short() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let wal = wal_file(dir.path());
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(4) {
        store.append_message(NewMessage::text(chat, user, "a trickle", now_millis())).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let longest = std::fs::metadata(&wal).unwrap().len();
    eprintln!("{sent} messages, the WAL at most {longest} bytes");
    assert!(longest < 3 << 19, "{sent} messages one by one left a WAL of {longest} bytes");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_erased_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let mut secret = NewMessage::text(chat, user, "burn after reading", now_millis());
    secret.ttl = 1;
    secret.file_url = "/api/files/9".into();
    let secret = store.append_message(secret).await.unwrap().into_message();
    let kept = store.append_message(NewMessage::text(chat, user, "kept", now_millis())).await.unwrap().into_message();

    let raw = raw_connection(dir.path());
    let on_disk = |id: i64| -> (String, String) {
        raw.query_row("SELECT content, file_url FROM messages WHERE id = ?1", [id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap()
    };
    assert_eq!(on_disk(secret.id).0, "burn after reading");
    // Once expired and the writer is idle, the text is gone from the file.
    eventually(Duration::from_secs(10), || async { on_disk(secret.id).0.is_empty() }).await;
    assert_eq!(on_disk(secret.id), (String::new(), String::new()));
    assert_eq!(on_disk(kept.id).0, "kept");
    let search = MessageQuery { search: Some("after reading".into()), ..MessageQuery::latest(10, 0) };
    assert!(store.messages(chat, search).await.unwrap().is_empty(), "gone from search at any time");
    // The seq slot stays: the next message continues the sequence.
    let next = store.append_message(NewMessage::text(chat, user, "next", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 3);
    store.shutdown().await.unwrap();
}

/// A message refused by the insert itself (here by a trigger added behind
/// the store's back that refuses one text) leaves nothing of itself,
/// neither the row nor its search-queue entry, nor a seq, and the rest of
/// its batch is written: the messages of a batch share one savepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_insert_leaves_nothing_and_its_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let other = store.create_chat(NewChat::group(user, "h", vec![], now_millis())).await.unwrap().0.id;
    store.append_message(NewMessage::text(chat, user, "first", now_millis())).await.unwrap();
    let raw = raw_connection(dir.path());
    raw.execute_batch(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON messages WHEN NEW.content = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let queued = || -> i64 { raw.query_row("SELECT COUNT(*) FROM fts_pending", [], |row| row.get(0)).unwrap() };
    let before = queued();

    let batch = vec![
        NewMessage::text(other, user, "kept one", now_millis()),
        NewMessage::text(chat, user, "refused", now_millis()),
        NewMessage::text(other, user, "kept two", now_millis()),
    ];
    let outcomes = store.append_messages(batch).await.unwrap();
    assert!(matches!(outcomes[1], Err(StoreError::Database(_))), "the trigger refuses it: {:?}", outcomes[1]);
    let seqs: Vec<u64> = [0, 2].iter().map(|&n| outcomes[n].as_ref().unwrap().message().seq).collect();
    assert_eq!(seqs, [1, 2]);
    let rows: i64 =
        raw.query_row("SELECT COUNT(*) FROM messages WHERE content = 'refused'", [], |row| row.get(0)).unwrap();
    assert_eq!(rows, 0, "no row of the refused message");
    assert_eq!(queued() - before, 2, "only the two written messages are queued for search");
    assert_eq!(store.chat(chat).await.unwrap().unwrap().last_seq, 1, "its chat's last seq is as it was");
    raw.execute_batch("DROP TRIGGER refuse_one").unwrap();
    let next = store.append_message(NewMessage::text(chat, user, "after", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 2, "the refused message took no seq");
    let check: String = raw.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok", "no index holds an entry of the refused row");
    assert_eq!(store.messages(other, search("kept")).await.unwrap().len(), 2);
    store.shutdown().await.unwrap();
}

/// The writer holds each chat's last seq in memory: appends that are
/// rolled back, with their job's savepoint or with their whole
/// transaction, take their seqs back, and the next append follows the
/// last kept message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_appends_give_their_seqs_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    store.append_message(NewMessage::text(chat, user, "first", now_millis())).await.unwrap();
    let raw = raw_connection(dir.path());
    // Fails a message after its row is written: its search queue entry.
    raw.execute_batch(
        "CREATE TRIGGER break_one BEFORE INSERT ON fts_pending \
         WHEN (SELECT content FROM messages WHERE id = NEW.message_id) = 'broken' \
         BEGIN SELECT RAISE(ABORT, 'broken by the test'); END;",
    )
    .unwrap();
    let batch = || {
        vec![
            NewMessage::text(chat, user, "rolled back", now_millis()),
            NewMessage::text(chat, user, "broken", now_millis()),
        ]
    };

    // A job of its own: its savepoint is rolled back.
    assert!(store.append_messages(batch()).await.is_err(), "the broken message fails its job");
    let next = store.append_message(NewMessage::text(chat, user, "second", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 2, "the rolled-back job's seqs are free again");

    // A queued batch has no savepoint: its transaction is rolled back.
    let queued = store.queue_messages(batch(), None).await.unwrap();
    assert!(queued.await.is_err(), "the broken message fails its transaction");
    let next = store.append_message(NewMessage::text(chat, user, "third", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 3, "the rolled-back transaction's seqs are free again");

    raw.execute_batch("DROP TRIGGER break_one").unwrap();
    let kept: Vec<String> = raw
        .prepare("SELECT content FROM messages WHERE chat_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([chat], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept, ["first", "second", "third"]);
    assert_eq!(store.max_seq(chat).await.unwrap(), 3);
    store.shutdown().await.unwrap();
}

/// Cluster processes sharing a data dir start together: every one opens
/// the same new database, one migrates it, and all see each other's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_openers_of_one_new_database_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let openers: Vec<_> = (0..6)
        .map(|node_id| {
            let config = SqliteConfig { node_id, shared: true, ..SqliteConfig::new(dir.path()) };
            std::thread::spawn(move || SqliteStore::open(&config))
        })
        .collect();
    let stores: Vec<SqliteStore> = openers.into_iter().map(|opener| opener.join().unwrap().unwrap()).collect();
    let user = NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() };
    let id = stores[0].create_user(user).await.unwrap().id;
    for store in &stores {
        assert_eq!(store.user(id).await.unwrap().unwrap().phone, "1");
    }
    for store in &stores {
        store.shutdown().await.unwrap();
    }
}

/// A single process holds its data dir: a second one, alone or as a
/// cluster node, is refused with the reason, until the first shuts down.
/// A cluster's nodes share one, and keep a single process out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_process_keeps_its_data_dir_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let open = |shared: bool| SqliteStore::open(&SqliteConfig { shared, node_id: 1, ..SqliteConfig::new(dir.path()) });
    let alone = open(false).unwrap();
    for shared in [false, true] {
        let refused = open(shared).unwrap_err();
        assert!(matches!(refused, StoreError::InUse(_)), "{refused}");
        assert!(refused.to_string().contains(&dir.path().display().to_string()), "{refused}");
    }
    alone.shutdown().await.unwrap();

    let (first, second) = (open(true).unwrap(), open(true).unwrap());
    let refused = open(false).unwrap_err();
    assert!(matches!(refused, StoreError::InUse(_)), "{refused}");
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    open(false).unwrap().shutdown().await.unwrap();
}

/// A chat's last seq and last activity come from its messages (migration
/// 012): an append does not rewrite the chat's row, yet the chat shows the
/// seq and time of its last message, lists follow the latest message, and
/// read markers stop at the last seq. A database made before it (the
/// chat's own counter column, schema version 11) is migrated on open and
/// goes on with the next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chats_last_seq_and_activity_come_from_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, first) = setup(dir.path()).await;
    let second = store.create_chat(NewChat::group(user, "h", vec![], now_millis())).await.unwrap().0.id;
    let raw = raw_connection(dir.path());
    let row_of = |chat: i64| -> String {
        raw.query_row("SELECT quote(name) || updated_at FROM chats WHERE id = ?1", [chat], |row| row.get(0)).unwrap()
    };
    let untouched = row_of(first);

    store.append_message(NewMessage::text(first, user, "one", now_millis())).await.unwrap();
    let last = NewMessage::text(first, user, "two", now_millis() + 50);
    let at = last.created_at;
    assert_eq!(store.append_message(last).await.unwrap().message().seq, 2);
    store.append_message(NewMessage::text(second, user, "other", now_millis())).await.unwrap();
    assert_eq!(row_of(first), untouched, "appends leave the chat's row alone");
    let chat = store.chat(first).await.unwrap().unwrap();
    assert_eq!((chat.last_seq, chat.updated_at), (2, at), "the last message's seq and time");
    let order: Vec<i64> =
        store.chats_of_user(user, 10, 0, now_millis()).await.unwrap().iter().map(|s| s.chat.id).collect();
    assert_eq!(order, [first, second], "the chat with the latest message first");
    assert_eq!(store.mark_read(first, user, 99, now_millis()).await.unwrap(), 2, "a marker stops at the last seq");
    store.shutdown().await.unwrap();

    // As a database of schema version 11 had it: the counter column, kept
    // by the appends then (and the dedupe index of version 12).
    raw.execute_batch(&format!(
        "{VERSION_12_KEYS} ALTER TABLE chats ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0; PRAGMA user_version = 11;"
    ))
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    assert_eq!(store.chat(first).await.unwrap().unwrap().last_seq, 2);
    let next = store.append_message(NewMessage::text(first, user, "three", now_millis())).await.unwrap();
    assert_eq!(next.message().seq, 3, "the next seq after the migration");
    let raw = raw_connection(dir.path());
    let counter = raw.prepare("SELECT last_seq FROM chats");
    assert!(counter.is_err(), "the column is gone");
    store.shutdown().await.unwrap();
}

/// Turns the keys of a database back into version 12's unique index.
const VERSION_12_KEYS: &str = "DROP TABLE message_keys; DROP TABLE recent_keys; \
     CREATE UNIQUE INDEX messages_dedupe ON messages(sender_id, client_message_id) \
     WHERE client_message_id IS NOT NULL;";

/// Rows of `table` in the store's file.
fn count(raw: &rusqlite::Connection, table: &str) -> i64 {
    raw.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).unwrap()
}

/// A sender's `client_message_id`s live in two tiers (migration 013): the
/// keys of recent appends, held by the writer and appended to
/// `recent_keys`, and `message_keys`, into which they are merged in
/// batches and at every open. A resend finds its original in either, in a
/// lone store and in a shared one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_finds_its_original_before_and_after_its_key_is_merged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let raw = raw_connection(dir.path());
    let keyed = |n: usize| {
        let mut message = NewMessage::text(chat, user, format!("m{n}"), now_millis());
        message.client_message_id = Some(format!("k-{n}"));
        message
    };
    let resend = |store: SqliteStore, n: usize| async move {
        let again = NewMessage { content: "changed".into(), ..keyed(n) };
        match store.append_message(again).await.unwrap() {
            Appended::Duplicate(original) => original,
            Appended::New(copy) => panic!("a resend of k-{n} was stored again: {copy:?}"),
        }
    };

    let first = store.append_message(keyed(0)).await.unwrap().into_message();
    assert_eq!((count(&raw, "recent_keys"), count(&raw, "message_keys")), (1, 0), "a new key is only appended");
    assert_eq!(resend(store.clone(), 0).await.id, first.id, "found among the held keys");

    // Well past a merge's size (16,384 keys), in batches of 1,000: each
    // commit merges twice as many keys as it appends.
    for start in (1..=30_000).step_by(1_000) {
        let outcomes = store.append_messages((start..start + 1_000).map(keyed).collect()).await.unwrap();
        assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(Appended::New(_)))));
        if start == 17_001 {
            // The 17,001 keys of the first 17 batches are being merged, in
            // key order: "k-9999" comes last, so it is not merged yet.
            let merged: i64 = raw
                .query_row("SELECT COUNT(*) FROM message_keys WHERE client_message_id = 'k-9999'", [], |row| row.get(0))
                .unwrap();
            assert_eq!((merged, count(&raw, "recent_keys")), (0, 18_001), "the merge is under way");
            assert_eq!(resend(store.clone(), 9_999).await.content, "m9999", "found among the keys being merged");
        }
    }
    let (held, merged) = (count(&raw, "recent_keys"), count(&raw, "message_keys"));
    assert!(held < 16_384 && merged > 0, "a merge ran: {held} keys held, {merged} merged");
    assert_eq!(held + merged, 30_001, "every key is in one tier or the other");
    assert_eq!(resend(store.clone(), 0).await.id, first.id, "found among the merged keys");
    assert_eq!(resend(store.clone(), 20_000).await.content, "m20000", "found among the held keys");
    let last = resend(store.clone(), 30_000).await;
    assert_eq!(last.content, "m30000", "the original comes back unchanged");
    store.shutdown().await.unwrap();

    // What was held when the store stopped is merged when it opens.
    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    assert_eq!((count(&raw, "recent_keys"), count(&raw, "message_keys")), (0, 30_001));
    assert_eq!(resend(store.clone(), 30_000).await.id, last.id);
    store.shutdown().await.unwrap();

    // A shared store writes its keys straight into the full index.
    let shared = SqliteConfig { shared: true, node_id: 1, ..SqliteConfig::new(dir.path()) };
    let store = SqliteStore::open(&shared).unwrap();
    let fresh = store.append_message(keyed(31_000)).await.unwrap().into_message();
    assert_eq!((count(&raw, "recent_keys"), count(&raw, "message_keys")), (0, 30_002));
    assert_eq!(resend(store.clone(), 31_000).await.id, fresh.id);
    assert_eq!(resend(store.clone(), 3).await.content, "m3");
    store.shutdown().await.unwrap();
    let check: String = raw.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// A key held for a message that was rolled back, or whose row is gone,
/// names nothing: the next send with that key is a new message, and a
/// merge keeps the key's latest message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_message_is_gone_is_free_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let raw = raw_connection(dir.path());
    let keyed = |key: &str, content: &str| {
        let mut message = NewMessage::text(chat, user, content, now_millis());
        message.client_message_id = Some(key.into());
        message
    };
    // Fails a message after its row and its key are written.
    raw.execute_batch(
        "CREATE TRIGGER break_one BEFORE INSERT ON fts_pending \
         WHEN (SELECT content FROM messages WHERE id = NEW.message_id) = 'broken' \
         BEGIN SELECT RAISE(ABORT, 'broken by the test'); END;",
    )
    .unwrap();
    assert!(store.append_message(keyed("k", "broken")).await.is_err(), "the broken message fails");
    raw.execute_batch("DROP TRIGGER break_one").unwrap();
    let kept = store.append_message(keyed("k", "kept")).await.unwrap();
    assert!(matches!(kept, Appended::New(ref m) if m.content == "kept" && m.seq == 1), "{kept:?}");

    // A row removed behind the store's back frees its key too.
    let gone = store.append_message(keyed("g", "gone")).await.unwrap().into_message();
    raw.execute("DELETE FROM messages WHERE id = ?1", [gone.id]).unwrap();
    let back = store.append_message(keyed("g", "back")).await.unwrap();
    assert!(matches!(back, Appended::New(ref m) if m.content == "back"), "{back:?}");
    let back = back.into_message();
    store.shutdown().await.unwrap();

    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    let merged: i64 = raw
        .query_row(
            "SELECT message_id FROM message_keys WHERE sender_id = ?1 AND client_message_id = 'g'",
            [user],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(merged, back.id, "the merge keeps the key's latest message");
    let again = store.append_message(keyed("g", "again")).await.unwrap();
    assert!(matches!(again, Appended::Duplicate(ref m) if m.id == back.id), "{again:?}");
    store.shutdown().await.unwrap();
}

/// A database of version 12 kept its keys in a unique index on messages:
/// migration 013 moves them into `message_keys`, and resends still find
/// their originals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_version_12_database_are_kept_by_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (store, user, chat) = setup(dir.path()).await;
    let keyed = |key: &str| {
        let mut message = NewMessage::text(chat, user, key, now_millis());
        message.client_message_id = Some(key.into());
        message
    };
    let originals = store.append_messages(vec![keyed("a"), keyed("b"), keyed("c")]).await.unwrap();
    store.append_message(NewMessage::text(chat, user, "no key", now_millis())).await.unwrap();
    store.shutdown().await.unwrap();
    let raw = raw_connection(dir.path());
    raw.execute_batch(&format!("{VERSION_12_KEYS} PRAGMA user_version = 12;")).unwrap();

    let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
    assert_eq!((count(&raw, "message_keys"), count(&raw, "recent_keys")), (3, 0), "the keyed messages' keys");
    let index: i64 = raw
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_dedupe'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(index, 0, "the index is gone");
    for (original, key) in originals.into_iter().zip(["a", "b", "c"]) {
        let again = store.append_message(NewMessage { content: "changed".into(), ..keyed(key) }).await.unwrap();
        assert!(matches!(again, Appended::Duplicate(ref m) if m.id == original.unwrap().message().id), "{again:?}");
    }
    assert_eq!(store.max_seq(chat).await.unwrap(), 4, "no resend was stored");
    store.shutdown().await.unwrap();
}
