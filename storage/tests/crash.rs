//! Kill -9 in the middle of a stream of appends loses nothing that was
//! acknowledged and leaves the per-chat seq contiguous.
//!
//! The test binary runs itself as the writer child: `crash_child` (ignored
//! in normal runs) appends from many tasks and prints one `ACK` line per
//! durable append; the parent SIGKILLs it mid-stream, reopens the store
//! and checks every acknowledged message.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use storage::prelude::*;

use protocol::time::now_millis;
use storage::model::{MessageQuery, NewChat, NewMessage, NewUser};
use storage::{SqliteConfig, SqliteStore, Store};

const CHILD_DIR: &str = "SWITCHBOARD_CRASH_CHILD_DIR";
const CHILD_CHAT: &str = "SWITCHBOARD_CRASH_CHILD_CHAT";
const CHILD_TAG: &str = "SWITCHBOARD_CRASH_CHILD_TAG";
/// Acks the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 3_000;
/// The child stops by itself after this long if nobody kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "the writer child of `acked_appends_survive_sigkill`; it runs only when that test spawns it"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run by the crash test");
    let chat: i64 = std::env::var(CHILD_CHAT).unwrap().parse().unwrap();
    let tag = std::env::var(CHILD_TAG).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = SqliteStore::open(&SqliteConfig::new(&dir)).unwrap();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..32 {
            let store = store.clone();
            let tag = tag.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < CHILD_LIMIT {
                    let mut new = NewMessage::text(chat, 1, format!("{tag}-{writer}-{n}"), now_millis());
                    new.client_message_id = Some(format!("{tag}-{writer}-{n}"));
                    let message = store.append_message(new).await.unwrap().into_message();
                    // One line per durable append; a whole line or nothing.
                    let line = format!("ACK {} {} {}\n", message.seq, message.id, message.content);
                    std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
                    n += 1;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// Runs the child until it has acked [`ACKS_BEFORE_KILL`] appends, kills it
/// with SIGKILL and returns every `seq -> (id, content)` it acknowledged.
fn run_and_kill(dir: &Path, chat: i64, tag: &str) -> BTreeMap<u64, (i64, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_CHAT, chat.to_string())
        .env(CHILD_TAG, tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = BTreeMap::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Some(rest) = line.strip_prefix("ACK ") else { continue };
        let mut parts = rest.splitn(3, ' ');
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        let id: i64 = parts.next().unwrap().parse().unwrap();
        let content = parts.next().unwrap().to_owned();
        assert!(acked.insert(seq, (id, content)).is_none(), "seq {seq} acked twice");
        if !killed && acked.len() >= ACKS_BEFORE_KILL {
            child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child ended by itself ({status}) before {ACKS_BEFORE_KILL} acks");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let chat = {
        let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
        let user = store
            .create_user(NewUser { phone: "1".into(), created_at: now_millis(), ..NewUser::default() })
            .await
            .unwrap();
        assert_eq!(user.id, 1);
        let new_chat = NewChat::group(user.id, "crash", vec![], now_millis());
        let chat = store.create_chat(new_chat).await.unwrap().0.id;
        store.shutdown().await.unwrap();
        chat
    };

    let mut all_acked = BTreeMap::new();
    // Two rounds: the store must also come back cleanly from its own crash.
    for round in ["first", "second"] {
        let dir_path = dir.path().to_owned();
        let acked = tokio::task::spawn_blocking(move || run_and_kill(&dir_path, chat, round)).await.unwrap();
        let store = SqliteStore::open(&SqliteConfig::new(dir.path())).unwrap();
        let max = store.max_seq(chat).await.unwrap();
        let stored = store.messages(chat, MessageQuery::latest(u32::MAX, now_millis() + 1)).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=max).collect::<Vec<_>>(),
            "seq is contiguous after the {round} crash"
        );
        all_acked.extend(acked);
        for (seq, (id, content)) in &all_acked {
            let message = &stored[(*seq - 1) as usize];
            assert_eq!((&message.id, &message.content), (id, content), "acked seq {seq} survived the {round} crash");
        }
        assert!(max as usize >= all_acked.len());
        store.shutdown().await.unwrap();
    }
}
