//! `kill -9` of `switchboard serve` (SQLite, the embedded default) while 32
//! WebSocket clients have sends in flight: after a restart on the same data
//! dir, every acknowledged message is stored, every chat's seqs are
//! contiguous, and a client resending what was never acknowledged (same
//! `client_message_id`) gets each stored exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::Event;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{Process, seqs, sync_all};
use crate::harness::{self, User};

/// Sends each client keeps in flight.
const WINDOW: usize = 4;

/// What one client saw before the server died.
#[derive(Default)]
struct Seen {
    /// `client_message_id` → the acknowledged message's id.
    acked: HashMap<String, i64>,
    /// Sent, never acknowledged.
    unanswered: Vec<String>,
}

/// Sends `u{label}-{n}` messages into `chat`, `WINDOW` at a time, until the
/// connection dies.
async fn hammer(ws: String, user: User, chat: i64, label: usize, progress: Arc<AtomicUsize>) -> Seen {
    let mut client = harness::greeted(harness::connect_url(&ws, Some(&user.token), None).await.unwrap()).await;
    let mut seen = Seen::default();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut n = 0;
    'connection: loop {
        while in_flight.len() < WINDOW {
            let id = format!("u{label}-{n}");
            n += 1;
            let frame = json!({"type": "message.send", "id": id, "data": {"chat_id": chat, "content": id, "client_message_id": id}});
            // Sent or not, it counts as unanswered until acknowledged.
            in_flight.insert(id);
            if client.socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                break 'connection;
            }
        }
        let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(20), client.socket.next()).await else {
            break;
        };
        let Message::Text(text) = frame else { continue };
        let event: Event = serde_json::from_str(text.as_str()).unwrap();
        let Some(id) = event.reference.clone() else { continue };
        assert_eq!(event.kind, "message.ack", "{event:?}");
        in_flight.remove(&id);
        seen.acked.insert(id, event.data["message"]["id"].as_i64().unwrap());
        progress.fetch_add(1, Ordering::Relaxed);
    }
    seen.unanswered = in_flight.into_iter().collect();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_every_acknowledged_message_and_a_resend_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::launch("serve", 0, None, dir.path(), &[]);
    let http = reqwest::Client::new();
    let base = server.base();
    let mut users = Vec::new();
    for n in 0..32 {
        users.push(harness::register(&http, &base, &format!("1370000{n:04}"), &format!("crash{n}")).await);
    }
    // Eight groups of four: every client shares its chat's seqs with three others.
    let mut chats = Vec::new();
    for group in users.chunks(4) {
        let others: Vec<&User> = group[1..].iter().collect();
        chats.push(harness::chat(&http, &base, &group[0], "group", &others).await);
    }
    let chat_of = |n: usize| chats[n / 4];
    let progress = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(n, user)| tokio::spawn(hammer(server.ws(), user.clone(), chat_of(n), n, progress.clone())))
        .collect();
    let started = tokio::time::Instant::now();
    while progress.load(Ordering::Relaxed) < 500 {
        assert!(started.elapsed() < Duration::from_secs(60), "traffic flows before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.unwrap());
    }
    let unanswered: usize = seen.iter().map(|seen| seen.unanswered.len()).sum();
    assert!(unanswered > 0, "the kill came with sends in flight");

    let server = Process::launch("serve", 0, None, dir.path(), &[]);
    // Each client resends what it never heard back about, and one thing it did.
    let mut resent: HashMap<String, i64> = HashMap::new();
    for (n, user) in users.iter().enumerate() {
        let mut client = server.connect(user).await;
        let again = seen[n].acked.keys().next().cloned();
        for id in seen[n].unanswered.iter().chain(&again) {
            let body = json!({"chat_id": chat_of(n), "content": id, "client_message_id": id});
            let frame = client.send("message.send", body).await;
            let ack = client.reply(&frame).await;
            assert_eq!(ack.kind, "message.ack", "{ack:?}");
            resent.insert(id.clone(), ack.data["message"]["id"].as_i64().unwrap());
        }
        if let Some(id) = again {
            assert_eq!(resent[&id], seen[n].acked[&id], "an acknowledged send resent is the same message");
        }
    }
    // Every chat: contiguous seqs, every acknowledged message, each send once.
    let mut reader = server.connect(&users[0]).await;
    let mut stored: HashMap<String, i64> = HashMap::new();
    for (group, &chat) in chats.iter().enumerate() {
        let mut member = if group == 0 { None } else { Some(server.connect(&users[group * 4]).await) };
        let messages = sync_all(member.as_mut().unwrap_or(&mut reader), chat).await;
        assert_eq!(seqs(&messages), (1..=messages.len() as u64).collect::<Vec<_>>(), "chat {chat}: contiguous");
        for message in &messages {
            let content = message["content"].as_str().unwrap().to_owned();
            let first = stored.insert(content.clone(), message["id"].as_i64().unwrap());
            assert!(first.is_none(), "{content} stored twice");
        }
    }
    for (n, seen) in seen.iter().enumerate() {
        for (id, message) in &seen.acked {
            assert_eq!(stored.get(id), Some(message), "client {n}: acknowledged {id} is stored");
        }
        for id in &seen.unanswered {
            assert_eq!(stored.get(id), resent.get(id), "client {n}: {id} stored once, as its resend answered");
        }
    }
    let acked: usize = seen.iter().map(|seen| seen.acked.len()).sum();
    eprintln!("{acked} acknowledged before the kill, {unanswered} in flight, {} stored", stored.len());
}
