//! The ScyllaDB store on a real three-node CQL cluster: Apache Cassandra
//! nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (`scripts/cassandra.sh`),
//! replication factor 3, written at quorum (the driver's `LOCAL_QUORUM` and
//! `LOCAL_SERIAL`, which are `QUORUM` and `SERIAL` in one datacenter), with
//! two `switchboard gateway` nodes and a sidecar on `--store scylla` routed
//! through a private Redis. One CQL node is killed with SIGKILL while 20
//! clients send through both gateways, then brought back.
//!
//! `cargo test` reports it as ignored: it needs Java 17 and Maven, about
//! 4 GiB and a few minutes. `scripts/cql-cluster-test.sh`, which `.ci/run`
//! calls after the README's test command, runs it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use protocol::Event;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::cluster::{PrivateRedis, Process, free_port, reconnect, seqs, sync_all};
use crate::harness::{self, Client, User};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cassandra.sh");

/// One Cassandra node of the test's cluster, in a folder of its own.
struct CqlNode {
    dir: tempfile::TempDir,
    address: &'static str,
    seeds: &'static str,
    storage_port: u16,
    cql_port: u16,
}

impl CqlNode {
    fn start(address: &'static str, seeds: &'static str, storage_port: u16, cql_port: u16) -> Self {
        let node = Self { dir: tempfile::tempdir().unwrap(), address, seeds, storage_port, cql_port };
        node.launch();
        node
    }

    /// Starts the node (again, on the data it has) and waits until CQL
    /// answers. A joining node that could not reach the seed on a busy
    /// machine is given a second try.
    fn launch(&self) {
        for _ in 0..2 {
            if self.try_launch() {
                return;
            }
        }
        panic!("Cassandra did not start on {}", self.address);
    }

    fn try_launch(&self) -> bool {
        let status = Command::new("bash")
            .arg(SCRIPT)
            .arg("start")
            .arg(self.dir.path())
            .args([self.address, self.seeds])
            .env("CASSANDRA_STORAGE_PORT", self.storage_port.to_string())
            .env("CASSANDRA_CQL_PORT", self.cql_port.to_string())
            .env("CASSANDRA_HEAP", "768M")
            .stdout(Stdio::null())
            .status()
            .expect("bash runs scripts/cassandra.sh");
        status.success()
    }

    /// SIGKILL: no flush, no goodbye to the other nodes.
    fn kill(&self) {
        let pid_file = self.dir.path().join("pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let status = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        assert!(status.success(), "killed Cassandra on {}", self.address);
        std::fs::remove_file(pid_file).unwrap();
    }
}

impl Drop for CqlNode {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(SCRIPT).arg("stop").arg(self.dir.path()).status();
    }
}

/// The reply to command `id`, skipping pushed events; `None` when the
/// connection ends or nothing answers `within`.
async fn reply_within(client: &mut Client, id: &str, within: Duration) -> Option<Event> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let event: Event = serde_json::from_str(text.as_str()).unwrap();
                if event.reference.as_deref() == Some(id) {
                    return Some(event);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}

/// What one sending client saw.
#[derive(Default)]
struct Sent {
    acked: HashSet<i64>,
    /// Sends answered with an error (then retried with the same key).
    errors: usize,
    /// Reconnections after the gateway closed the connection.
    reconnects: usize,
}

/// Sends numbered messages into `chat` one after another until `stop`,
/// each with its own `client_message_id`; a send answered with an error,
/// or not at all, is sent again with the same key.
async fn send_until(
    ws: String,
    user: User,
    label: usize,
    chat: i64,
    progress: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Sent {
    let mut sent = Sent::default();
    let mut client = harness::connect_url(&ws, Some(&user.token), None).await.unwrap();
    let mut n = 0;
    while !*stop.borrow() {
        let key = format!("u{label}-{n}");
        let id = client.send("message.send", json!({"chat_id": chat, "content": key, "client_message_id": key})).await;
        match reply_within(&mut client, &id, Duration::from_secs(30)).await {
            Some(event) if event.kind == "message.ack" => {
                sent.acked.insert(event.data["message"]["id"].as_i64().unwrap());
                progress.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Some(_) => {
                sent.errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => {
                sent.reconnects += 1;
                client = reconnect(&ws, &user).await;
            }
        }
    }
    let _ = client.socket.close(None).await;
    sent
}

/// Sends the twin message with its fixed key until it is acknowledged;
/// answers the acknowledged message's id.
async fn send_twin(mut client: Client, chat: i64) -> i64 {
    let frame = json!({"chat_id": chat, "content": "twin", "client_message_id": "twin-key"});
    for _ in 0..10 {
        let id = client.send("message.send", frame.clone()).await;
        let reply = reply_within(&mut client, &id, Duration::from_secs(30)).await.expect("a reply");
        if reply.kind == "message.ack" {
            return reply.data["message"]["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the twin message was never acknowledged");
}

/// Waits until `progress` reaches `target`, for up to `within`.
async fn reach(progress: &AtomicUsize, target: usize, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while progress.load(Ordering::Relaxed) < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {target} acked",
            progress.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_switchboard(role: &str, node_id: u16, redis: &str, data: &Path, uri: &str) -> Process {
    let store = [
        "--store",
        "scylla",
        "--scylla-uri",
        uri,
        "--scylla-keyspace",
        "sbcluster",
        "--scylla-replication",
        "{'class': 'SimpleStrategy', 'replication_factor': 3}",
    ];
    Process::start_with(role, node_id, redis, data, &store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Java 17, Maven and three CQL nodes: scripts/cql-cluster-test.sh runs it"]
async fn a_three_node_cql_cluster_loses_nothing_when_a_node_dies() {
    let (storage_port, cql_port) = (free_port(), free_port());
    let seeds = "127.0.0.1";
    // One at a time: a node joins a ring that has settled.
    let nodes: Vec<CqlNode> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .into_iter()
        .map(|address| CqlNode::start(address, seeds, storage_port, cql_port))
        .collect();
    let uri = nodes.iter().map(|node| format!("{}:{cql_port}", node.address)).collect::<Vec<_>>().join(",");
    let redis = PrivateRedis::start();
    let data = tempfile::tempdir().unwrap();
    // The sidecar first: it creates and migrates the keyspace.
    let sidecar = start_switchboard("sidecar", 3, &redis.url(), data.path(), &uri);
    let gateways = [
        start_switchboard("gateway", 1, &redis.url(), data.path(), &uri),
        start_switchboard("gateway", 2, &redis.url(), data.path(), &uri),
    ];
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for n in 0..20 {
        users.push(harness::register(&http, &sidecar.base(), &format!("1391000{n:04}"), &format!("user{n}")).await);
    }
    // Four groups of five; each group's members send through both gateways.
    let mut chats = Vec::new();
    for group in users.chunks(5) {
        let members: Vec<&User> = group[1..].iter().collect();
        chats.push(harness::chat(&http, &sidecar.base(), &group[0], "group", &members).await);
    }

    let progress = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let senders: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(n, user)| {
            let ws = gateways[n % 2].ws();
            tokio::spawn(send_until(ws, user.clone(), n, chats[n / 5], progress.clone(), stopped.clone()))
        })
        .collect();
    reach(&progress, 100, Duration::from_secs(60), "sends flow through both gateways").await;

    nodes[2].kill();
    let at_kill = progress.load(Ordering::Relaxed);
    reach(&progress, at_kill + 200, Duration::from_secs(60), "sends go on with two of three nodes").await;

    // One key sent through both gateways at the same moment is stored once:
    // each side retries until acknowledged (two conditional writes racing
    // for one claim may time out, and a client then sends again), and both
    // acknowledgements name the same message.
    let twin = &users[0];
    let (one, two) = (gateways[0].connect(twin).await, gateways[1].connect(twin).await);
    let (first, second) = tokio::join!(send_twin(one, chats[0]), send_twin(two, chats[0]));
    assert_eq!(first, second, "stored once, answered as one message through both gateways");
    let twin_id = first;

    nodes[2].launch();
    let at_return = progress.load(Ordering::Relaxed);
    reach(&progress, at_return + 100, Duration::from_secs(60), "sends go on after the node returns").await;
    stop.send(true).unwrap();
    let mut acked = HashSet::from([twin_id]);
    let (mut errors, mut reconnects) = (0, 0);
    for sender in senders {
        let sent = sender.await.unwrap();
        acked.extend(sent.acked);
        errors += sent.errors;
        reconnects += sent.reconnects;
    }
    eprintln!("{} acked, {errors} refused and sent again, {reconnects} reconnections", acked.len());

    // Every chat's history, read through each gateway: the same, contiguous,
    // holding every acknowledged message.
    let mut stored = HashSet::new();
    let mut histories: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for (group, &chat) in users.chunks(5).zip(&chats) {
        let (mut through_one, mut through_two) =
            (gateways[0].connect(&group[1]).await, gateways[1].connect(&group[2]).await);
        let (one, two) = (sync_all(&mut through_one, chat).await, sync_all(&mut through_two, chat).await);
        let log = |messages: &[Value]| -> Vec<(Value, Value, Value)> {
            messages.iter().map(|m| (m["id"].clone(), m["seq"].clone(), m["content"].clone())).collect()
        };
        assert_eq!(log(&one), log(&two), "chat {chat} reads the same through both gateways");
        assert_eq!(seqs(&one), (1..=one.len() as u64).collect::<Vec<_>>(), "chat {chat}: seqs contiguous");
        stored.extend(one.iter().map(|message| message["id"].as_i64().unwrap()));
        histories.insert(chat, one);
    }
    let lost: Vec<&i64> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    let twins = histories[&chats[0]].iter().filter(|message| message["content"] == "twin").count();
    assert_eq!(twins, 1, "the twin key is stored once");
}
