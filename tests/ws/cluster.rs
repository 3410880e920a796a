//! Cluster mode as it is deployed: real `switchboard gateway` and
//! `switchboard sidecar` processes on 127.0.0.1 sharing one SQLite data
//! dir, routed through a private `redis-server` that each test starts on a
//! free port (so it can kill and restart it without touching anyone else's).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::Event;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{self, Client, User};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const SECRET: &str = "cluster test secret, at least 32 bytes long";

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of the test's own, without persistence.
pub(super) struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    pub(super) fn start() -> Self {
        let mut redis = Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        redis.launch();
        redis
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server on this port and waits until it answers PING.
    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() {
                    assert_eq!(&answer, b"+PONG\r\n");
                    return;
                }
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "a synchronous helper polling a child process it just started"
            )]
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: everything it held is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `switchboard` process of the cluster.
pub(super) struct Process {
    child: Child,
    addr: String,
}

impl Process {
    /// Starts `switchboard <role>` and waits until it serves (a gateway:
    /// also until it has subscribed to its Redis channel).
    fn start(role: &str, node_id: u16, redis: &str, data_dir: &Path) -> Self {
        Self::start_with(role, node_id, redis, data_dir, &[])
    }

    /// [`Process::start`] with more flags (another store).
    pub(super) fn start_with(role: &str, node_id: u16, redis: &str, data_dir: &Path, flags: &[&str]) -> Self {
        Self::launch(role, node_id, Some(redis), data_dir, flags)
    }

    /// `switchboard <role>` on `data_dir`, in a cluster when `redis` is given.
    pub(super) fn launch(role: &str, node_id: u16, redis: Option<&str>, data_dir: &Path, flags: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.arg(role).args(["--listen", "127.0.0.1:0", "--node-id", &node_id.to_string()]);
        if let Some(redis) = redis {
            command.args(["--redis-url", redis]);
        }
        let mut child = command
            .args(["--jwt-secret", SECRET, "--ws-commands-per-second", "100000"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(flags)
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Read only while the process starts, then dropped (sends then fail at once).
        let (tx, logs) = mpsc::sync_channel::<Value>(1024);
        let stderr = child.stderr.take().unwrap();
        // Keeps reading to the end, so the process never blocks on a full
        // pipe; warnings are shown with a failing test's output.
        let name = format!("{role} {node_id}");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if value["level"] != "INFO" && value["level"] != "DEBUG" {
                        eprintln!("[{name}] {line}");
                    }
                    let _ = tx.send(value);
                }
            }
        });
        let mut addr = None;
        let mut subscribed = role == "sidecar" || redis.is_none();
        while addr.is_none() || !subscribed {
            // A keyspace created and migrated on a three-node CQL cluster
            // waits for schema agreement at each step.
            let line = logs.recv_timeout(Duration::from_secs(120)).expect("the process starts");
            if line["message"] == "switchboard serving" {
                addr = line["addr"].as_str().map(str::to_owned);
            }
            subscribed |= line["message"] == "router subscribed";
        }
        Self { child, addr: addr.unwrap() }
    }

    pub(super) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn ws(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub(super) async fn connect(&self, user: &User) -> Client {
        harness::greeted(harness::connect_url(&self.ws(), Some(&user.token), None).await.unwrap()).await
    }

    /// One counter of this process's `/metrics` (0 when not yet counted).
    async fn metric(&self, name: &str) -> f64 {
        harness::metric(&self.base(), name).await
    }
}

impl Process {
    /// SIGKILL, and wait for it to be gone.
    pub(super) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two gateway nodes and a sidecar over one Redis and one data dir.
struct Cluster {
    redis: PrivateRedis,
    first: Process,
    second: Process,
    sidecar: Process,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let redis = PrivateRedis::start();
        let dir = tempfile::tempdir().unwrap();
        let url = redis.url();
        Self {
            first: Process::start("gateway", 1, &url, dir.path()),
            second: Process::start("gateway", 2, &url, dir.path()),
            sidecar: Process::start("sidecar", 3, &url, dir.path()),
            redis,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn register(&self, phone: &str, name: &str) -> User {
        harness::register(&self.http, &self.sidecar.base(), phone, name).await
    }

    async fn chat(&self, owner: &User, kind: &str, members: &[&User]) -> i64 {
        harness::chat(&self.http, &self.sidecar.base(), owner, kind, members).await
    }

    /// A REST call to the sidecar as `user`; answers the body.
    async fn api(&self, method: reqwest::Method, path: &str, user: &User, body: Value) -> Value {
        harness::api(&self.http, &self.sidecar.base(), method, path, &user.token, body).await
    }
}

/// Reads frames until one satisfies `wanted`, for up to `within`.
async fn wait_for(client: &mut Client, within: Duration, wanted: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, client.socket.next()).await.expect("the awaited event came");
        match frame.expect("connection open").expect("read ok") {
            Message::Text(text) => {
                let event: Event = serde_json::from_str(text.as_str()).unwrap();
                if wanted(&event) {
                    return event;
                }
            }
            Message::Close(frame) => panic!("closed while waiting: {frame:?}"),
            _ => {}
        }
    }
}

/// Every message of `chat` after `after_seq`, paged through `sync`.
pub(super) async fn sync_all(client: &mut Client, chat: i64) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    loop {
        let after = messages.last().map_or(0, |message| message["seq"].as_u64().unwrap());
        let id = client.send("sync", json!({"chat_id": chat, "after_seq": after})).await;
        let batch = client.reply(&id).await;
        assert_eq!(batch.kind, "sync.batch", "{batch:?}");
        messages.extend(batch.data["messages"].as_array().unwrap().iter().cloned());
        if batch.data["has_more"] != true {
            return messages;
        }
    }
}

/// Connects `user` to `ws` again, trying every 100 ms until the node takes it.
pub(super) async fn reconnect(ws: &str, user: &User) -> Client {
    loop {
        if let Ok(client) = harness::connect_url(ws, Some(&user.token), None).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|message| message["seq"].as_u64().unwrap()).collect()
}

async fn send_text(client: &mut Client, chat: i64, content: &str) -> Event {
    let id =
        client.send("message.send", json!({"chat_id": chat, "content": content, "client_message_id": content})).await;
    client.reply(&id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_different_nodes_chat_type_and_see_each_other() {
    let cluster = Cluster::start();
    let alice = cluster.register("13900000001", "alice").await;
    let bob = cluster.register("13900000002", "bob").await;
    let carol = cluster.register("13900000003", "carol").await;
    let chat = cluster.chat(&alice, "group", &[&bob, &carol]).await;
    // Private-chat peers hear of each other's presence.
    cluster.chat(&alice, "private", &[&bob]).await;

    let mut bobs = cluster.second.connect(&bob).await;
    let mut alices = cluster.first.connect(&alice).await;
    let online = bobs.expect("presence").await;
    assert_eq!((online.data["user_id"].as_i64(), online.data["is_online"].as_bool()), (Some(alice.id), Some(true)));
    let id = bobs.send("presence.query", json!({"user_ids": [alice.id, carol.id]})).await;
    let state = bobs.reply(&id).await;
    let online: BTreeMap<i64, bool> = state.data["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| (user["user_id"].as_i64().unwrap(), user["is_online"].as_bool().unwrap()))
        .collect();
    // Carol shares a group with Bob: he may query her presence (offline:
    // she has no connection on any node).
    assert_eq!(online, BTreeMap::from([(alice.id, true), (carol.id, false)]), "the registry sees every node");

    alices.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    let typing = bobs.expect("typing").await;
    assert_eq!(typing.data["user_id"].as_i64(), Some(alice.id));

    let ack = send_text(&mut alices, chat, "hello from node 1").await;
    assert_eq!(ack.kind, "message.ack", "{ack:?}");
    assert_eq!(bobs.expect("message.new").await.data["content"], "hello from node 1");
    let ack = send_text(&mut bobs, chat, "hello from node 2").await;
    assert_eq!(ack.kind, "message.ack", "{ack:?}");
    // Alice's own devices get her message too; Bob's follows it.
    wait_for(&mut alices, Duration::from_secs(5), |event| event.data["content"] == "hello from node 2").await;

    // A REST send through the sidecar reaches clients on every node.
    let mut carols = cluster.first.connect(&carol).await;
    // A compact connection gets a frame that crossed nodes compacted there.
    let compact_url = format!("{}?compact=1", cluster.second.ws());
    let mut carols_compact =
        harness::greeted(harness::connect_url(&compact_url, Some(&carol.token), None).await.unwrap()).await;
    let path = format!("/api/chats/{chat}/messages");
    let sent = cluster.api(reqwest::Method::POST, &path, &carol, json!({"content": "from the sidecar"})).await;
    assert_eq!(sent["code"], 200, "{sent}");
    let mut full = Value::Null;
    for client in [&mut alices, &mut bobs, &mut carols] {
        let new = wait_for(client, Duration::from_secs(5), |event| event.data["content"] == "from the sidecar").await;
        assert_eq!(new.kind, "message.new");
        full = new.data;
    }
    let compact =
        wait_for(&mut carols_compact, Duration::from_secs(5), |event| event.data["content"] == "from the sidecar")
            .await;
    assert_eq!(full["is_read"], false, "{full}");
    assert_eq!(compact.data, harness::pruned(&full), "compacted on the node it reached");

    // Bad input gets the envelope on every process.
    let empty = cluster.api(reqwest::Method::POST, &path, &carol, json!({"content": ""})).await;
    assert_eq!(empty["code"], 400, "{empty}");
    let id = bobs.send("message.send", json!({"chat_id": 999_999, "content": "nowhere"})).await;
    let refused = bobs.reply(&id).await;
    assert_eq!((refused.kind.as_str(), &refused.data["code"]), ("error", &json!(20001)), "{refused:?}");
    let no_api = cluster.http.get(format!("{}/api/users/me", cluster.first.base())).send().await.unwrap();
    assert_eq!(no_api.status(), 404, "a gateway node serves no REST API");
    let body: Value = no_api.json().await.unwrap();
    assert_eq!(body["code"], 404, "{body}");
    // A call rings across nodes (the rest of calls: `calls_connect_across_nodes`).
    let offer = json!({"to_user_id": bob.id, "call_type": "audio", "sdp": "v=0"});
    let id = alices.send("call.offer", offer).await;
    let ringing = alices.reply(&id).await;
    assert_eq!(ringing.kind, "call.ringing", "{ringing:?}");
    let call_id = ringing.data["call_id"].clone();
    wait_for(&mut bobs, Duration::from_secs(5), |event| event.kind == "call.offer" && event.data["call_id"] == call_id)
        .await;
    alices.send("call.end", json!({"call_id": call_id, "reason": "user_hangup"})).await;
    wait_for(&mut bobs, Duration::from_secs(5), |event| event.kind == "call.end").await;
    let health: Value = reqwest::get(format!("{}/health", cluster.first.base())).await.unwrap().json().await.unwrap();
    assert_eq!(health["data"]["services"]["redis"], "healthy", "{health}");

    assert_eq!(seqs(&sync_all(&mut carols, chat).await), vec![1, 2, 3], "one contiguous seq across processes");

    // A logout on the sidecar denies the token on the gateways too.
    let logout = cluster.api(reqwest::Method::POST, "/api/auth/logout", &carol, json!({})).await;
    assert_eq!(logout["code"], 200, "{logout}");
    let refused = Instant::now();
    let refusal = loop {
        match harness::connect_url(&cluster.second.ws(), Some(&carol.token), None).await {
            Ok(_) => assert!(refused.elapsed() < Duration::from_secs(5), "the revoked token is refused on every node"),
            Err(error) => break error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = match refusal {
        tokio_tungstenite::tungstenite::Error::Http(response) => response.status(),
        other => panic!("refused for another reason: {other}"),
    };
    assert_eq!(status, 401);
}

/// The next event of `kind` on `client` for call `call_id`.
async fn call_event(client: &mut Client, kind: &str, call_id: &Value) -> Event {
    wait_for(client, Duration::from_secs(5), |event| event.kind == kind && event.data["call_id"] == *call_id).await
}

/// Seed 000 and seed 001 clients on different gateway nodes of a cluster:
/// their frames cross Redis in the canonical form and are re-shaped on the
/// node that holds each client (seed 001's `receiver_id` included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialect_clients_on_different_nodes_see_each_other() {
    let cluster = Cluster::start();
    let sidecar = cluster.sidecar.base();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = cluster.http.post(format!("{sidecar}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // A dater, registered through /api and logged in through /v1 (one account).
    let dater = cluster.register("13900000031", "dater").await;
    let login = post("/v1/auth/login", None, json!({"phone": "13900000031", "password": "password123"})).await;
    let dater_token = login["data"]["access_token"].as_str().unwrap_or_else(|| panic!("{login}")).to_owned();
    // A simple-chat user, by email.
    let body = json!({"username": "chatter", "email": "chatter@example.com", "password": "secret123"});
    let joined = post("/api/v1/register", None, body).await;
    let chatter_id = joined["data"]["user_id"].as_str().unwrap_or_else(|| panic!("{joined}")).to_owned();
    let login = post("/api/v1/login", None, json!({"email": "chatter@example.com", "password": "secret123"})).await;
    let chatter_token = login["data"]["token"].as_str().unwrap().to_owned();

    let mut dating = crate::dating::Socket::connect(&cluster.first.base(), &dater_token).await;
    dating.expect("auth_success").await;
    let mut simple = crate::simple::Socket::connect(&cluster.second.base(), &chatter_token).await;
    simple.expect("connected").await;

    // Seed 001 → seed 000 across nodes: the private chat is made by the send.
    let body = json!({"content": "from node 2", "receiver_id": dater.id.to_string()});
    let sent = post("/api/v1/chat/message", Some(&chatter_token), body).await;
    let chat: i64 = sent["data"]["chat_id"].as_str().unwrap_or_else(|| panic!("{sent}")).parse().unwrap();
    let arrived = dating.expect("new_message").await;
    let data = &arrived["data"];
    assert_eq!((data["conversation_id"].as_i64(), data["content"].as_str()), (Some(chat), Some("from node 2")));

    // Seed 000 → seed 001 across nodes, with seed 001's receiver_id.
    let frame = json!({"type": "message", "data": {"conversation_id": chat, "content": "from node 1",
        "client_message_id": "n1"}, "timestamp": 1});
    dating.send(frame).await;
    let pushed = simple.expect_message("from node 1").await;
    let sender = dater.id.to_string();
    let names = (pushed["data"]["receiver_id"].as_str(), pushed["data"]["sender_id"].as_str());
    assert_eq!(names, (Some(chatter_id.as_str()), Some(sender.as_str())));

    // Typing and read across nodes, each in its own shape.
    simple.send(json!({"type": "typing", "data": {"chat_id": chat.to_string()}})).await;
    assert_eq!(dating.expect("user_typing").await["data"]["conversation_id"], chat);
    let first = data["message_id"].as_i64().unwrap();
    let read =
        json!({"type": "read", "data": {"conversation_id": chat, "last_read_message_id": first}, "timestamp": 1});
    dating.send(read).await;
    assert_eq!(simple.expect("read").await["data"]["message_id"], first.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_connect_across_nodes() {
    let mut cluster = Cluster::start();
    let alice = cluster.register("13900000021", "alice").await;
    let bob = cluster.register("13900000022", "bob").await;
    let carol = cluster.register("13900000023", "carol").await;
    let chat = cluster.chat(&alice, "private", &[&bob]).await;
    cluster.chat(&carol, "private", &[&alice]).await;
    // Alice calls from node 1; Bob has his phone on node 1 and his laptop on node 2.
    let mut alices = cluster.first.connect(&alice).await;
    let mut phone = cluster.first.connect(&bob).await;
    let mut laptop = cluster.second.connect(&bob).await;
    let mut carols = cluster.second.connect(&carol).await;

    let id = alices.send("call.offer", json!({"to_user_id": bob.id, "call_type": "video", "sdp": "v=0 offer"})).await;
    let ringing = alices.reply(&id).await;
    assert_eq!(ringing.kind, "call.ringing", "{ringing:?}");
    let call_id = ringing.data["call_id"].clone();
    for device in [&mut phone, &mut laptop] {
        let offer = call_event(device, "call.offer", &call_id).await;
        assert_eq!(
            (offer.data["from_user_id"].as_i64(), offer.data["sdp"].as_str()),
            (Some(alice.id), Some("v=0 offer"))
        );
    }
    // The node-2 device answers; the node-1 device hears it was answered elsewhere.
    laptop.send("call.answer", json!({"call_id": call_id, "sdp": "v=0 answer"})).await;
    assert_eq!(call_event(&mut alices, "call.answer", &call_id).await.data["sdp"], "v=0 answer");
    assert_eq!(call_event(&mut phone, "call.end", &call_id).await.data["reason"], "answered_elsewhere");
    // A second answer, from the other node, is refused: one device is in the call.
    let id = phone.send("call.answer", json!({"call_id": call_id, "sdp": "v=0 late"})).await;
    assert_eq!(phone.reply(&id).await.data["code"], 409);

    // ICE flows both ways between the two nodes.
    alices.send("call.ice", json!({"call_id": call_id, "candidate": "candidate:from-alice"})).await;
    assert_eq!(call_event(&mut laptop, "call.ice", &call_id).await.data["candidate"], "candidate:from-alice");
    laptop.send("call.ice", json!({"call_id": call_id, "candidate": {"candidate": "candidate:from-bob"}})).await;
    let ice = call_event(&mut alices, "call.ice", &call_id).await;
    assert_eq!(ice.data["candidate"]["candidate"], "candidate:from-bob");

    // Alice is in a call on node 1: Carol, calling from node 2, hears busy.
    let id = carols.send("call.offer", json!({"to_user_id": alice.id, "call_type": "audio", "sdp": "v=0"})).await;
    let busy_call = carols.reply(&id).await.data["call_id"].clone();
    assert_eq!(call_event(&mut carols, "call.end", &busy_call).await.data["reason"], "busy");

    // Alice hangs up: both parties hear it, and the call is recorded.
    alices.send("call.end", json!({"call_id": call_id, "reason": "user_hangup"})).await;
    let ended = call_event(&mut laptop, "call.end", &call_id).await;
    assert_eq!(ended.data["reason"], "user_hangup");
    assert!(ended.data["duration"].is_u64(), "answered calls say how long: {ended:?}");
    call_event(&mut alices, "call.end", &call_id).await;
    let history = cluster.api(reqwest::Method::GET, &format!("/api/chats/{chat}/messages"), &alice, Value::Null).await;
    let records: Vec<Value> = history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["type"] == "system")
        .map(|message| serde_json::from_str(message["content"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{history}");
    assert_eq!((records[0]["status"].as_str(), records[0]["call_type"].as_str()), (Some("answered"), Some("video")));

    // A party's node dies mid-call: the other party's call ends `disconnected`.
    let id = alices.send("call.offer", json!({"to_user_id": bob.id, "call_type": "audio", "sdp": "v=0 again"})).await;
    let call_id = alices.reply(&id).await.data["call_id"].clone();
    call_event(&mut laptop, "call.offer", &call_id).await;
    laptop.send("call.answer", json!({"call_id": call_id, "sdp": "v=0"})).await;
    call_event(&mut alices, "call.answer", &call_id).await;
    cluster.second.child.kill().unwrap(); // SIGKILL: no goodbye to Redis
    cluster.second.child.wait().unwrap();
    let killed = Instant::now();
    let ended = wait_for(&mut alices, Duration::from_secs(40), |event| {
        event.kind == "call.end" && event.data["call_id"] == call_id
    })
    .await;
    assert_eq!(ended.data["reason"], "disconnected");
    let noticed = killed.elapsed();
    assert!(noticed <= Duration::from_secs(30), "ended within the presence timeout, took {noticed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_takes_its_users_offline_and_they_resume_on_another() {
    let mut cluster = Cluster::start();
    let alice = cluster.register("13900000011", "alice").await;
    let bob = cluster.register("13900000012", "bob").await;
    let chat = cluster.chat(&alice, "private", &[&bob]).await;
    let mut bobs = cluster.second.connect(&bob).await;
    let mut alices = cluster.first.connect(&alice).await;
    bobs.expect("presence").await;
    let mut acked = HashSet::new();
    for n in 0..20 {
        let ack = send_text(&mut alices, chat, &format!("before {n}")).await;
        assert_eq!(ack.kind, "message.ack", "{ack:?}");
        acked.insert(ack.data["message"]["id"].as_i64().unwrap());
    }

    cluster.first.child.kill().unwrap(); // SIGKILL: no goodbye to Redis
    cluster.first.child.wait().unwrap();
    let killed = Instant::now();
    let offline = wait_for(&mut bobs, Duration::from_secs(35), |event| {
        event.kind == "presence" && event.data["user_id"] == alice.id
    })
    .await;
    let noticed = killed.elapsed();
    assert_eq!(offline.data["is_online"], false);
    assert!(noticed <= Duration::from_secs(30), "offline within 30 s, took {noticed:?}");

    for n in 0..5 {
        let ack = send_text(&mut bobs, chat, &format!("while away {n}")).await;
        assert_eq!(ack.kind, "message.ack", "{ack:?}");
        acked.insert(ack.data["message"]["id"].as_i64().unwrap());
    }
    let mut alices = cluster.second.connect(&alice).await;
    let back = bobs.expect("presence").await;
    assert_eq!(back.data["is_online"], true);
    let messages = sync_all(&mut alices, chat).await;
    assert_eq!(seqs(&messages), (1..=25).collect::<Vec<_>>());
    let stored: HashSet<i64> = messages.iter().map(|message| message["id"].as_i64().unwrap()).collect();
    assert_eq!(stored, acked, "every acknowledged message, nothing else");
}

/// What a client that keeps sending through a Redis outage saw.
#[derive(Default)]
struct Stream {
    /// Acknowledged message ids.
    acked: HashSet<i64>,
    /// Sends refused because the cluster was unavailable (503).
    refused: usize,
    /// The longest wait for any reply, refusals included.
    slowest: Duration,
    /// Times the node asked the client to reconnect and resync (4009).
    resyncs: usize,
}

/// Sends `label`-numbered messages one after another until `stop` says so,
/// reconnecting whenever the node closes the connection, and resending
/// the unanswered message with its `client_message_id`.
async fn stream(
    node_ws: String,
    user: User,
    chat: i64,
    progress: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Stream {
    let mut seen = Stream::default();
    let mut client = harness::connect_url(&node_ws, Some(&user.token), None).await.unwrap();
    let mut n = 0u64;
    while !*stop.borrow() {
        let content = format!("stream {n}");
        let id = client
            .send("message.send", json!({"chat_id": chat, "content": content, "client_message_id": content}))
            .await;
        let started = Instant::now();
        let reply = loop {
            match tokio::time::timeout(Duration::from_secs(10), client.socket.next())
                .await
                .expect("a reply, not a hang")
            {
                Some(Ok(Message::Text(text))) => {
                    let event: Event = serde_json::from_str(text.as_str()).unwrap();
                    if event.reference.as_deref() == Some(id.as_str()) {
                        break Some(event);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    assert_eq!(frame.map(|frame| u16::from(frame.code)), Some(4009), "only resync closes");
                    break None;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        };
        seen.slowest = seen.slowest.max(started.elapsed());
        match reply {
            Some(event) if event.kind == "message.ack" => {
                seen.acked.insert(event.data["message"]["id"].as_i64().unwrap());
                progress.store(seen.acked.len(), Ordering::Relaxed);
                n += 1;
            }
            Some(event) => {
                assert_eq!(event.data["code"], 503, "refused as unavailable: {event:?}");
                seen.refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => {
                seen.resyncs += 1;
                client = reconnect(&node_ws, &user).await;
            }
        }
    }
    let _ = client.socket.close(None).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_redis_mid_stream_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start();
    let alice = cluster.register("13900000021", "alice").await;
    let bob = cluster.register("13900000022", "bob").await;
    let chat = cluster.chat(&alice, "private", &[&bob]).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn(stream(cluster.first.ws(), alice.clone(), chat, progress.clone(), stopped));
    let acked_so_far = || progress.load(Ordering::Relaxed);
    while acked_so_far() < 30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.redis.launch();
    let resynced = Instant::now();
    while cluster.first.metric("switchboard_router_resyncs_total").await < 1.0
        || cluster.second.metric("switchboard_router_resyncs_total").await < 1.0
    {
        assert!(resynced.elapsed() < Duration::from_secs(30), "both nodes resubscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = acked_so_far();
    while acked_so_far() < before + 30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let seen = sender.await.unwrap();
    // The store sequences its own writes: sends are stored and acknowledged
    // through the outage, and only their live delivery to other nodes waits
    // for the resync.
    assert_eq!(seen.refused, 0, "sends went on while Redis was down");
    assert!(seen.slowest < Duration::from_secs(5), "refusals come fast: slowest reply {:?}", seen.slowest);

    // Cross-node delivery works again, and the store has every acked message once.
    let mut bobs = cluster.second.connect(&bob).await;
    let mut alices = cluster.first.connect(&alice).await;
    let ack = send_text(&mut alices, chat, "after the restart").await;
    assert_eq!(ack.kind, "message.ack", "{ack:?}");
    let new = wait_for(&mut bobs, Duration::from_secs(5), |event| event.kind == "message.new").await;
    assert_eq!(new.data["content"], "after the restart");
    let messages = sync_all(&mut bobs, chat).await;
    let count = messages.len() as u64;
    assert_eq!(seqs(&messages), (1..=count).collect::<Vec<_>>(), "contiguous through the restart");
    let stored: HashSet<i64> = messages.iter().map(|message| message["id"].as_i64().unwrap()).collect();
    assert!(seen.acked.is_subset(&stored), "every acknowledged message survived");
    assert_eq!(stored.len(), seen.acked.len() + 1, "and nothing unacknowledged was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_measures_cross_node_fanout() {
    let cluster = Cluster::start();
    let gateways = [cluster.first.base(), cluster.second.base()];
    let common =
        load_tests::Common::new(&cluster.sidecar.base(), None, 1, 20).unwrap().with_gateways(&gateways).unwrap();
    let args = crate::load::small_closed_loop();
    let connections = load_tests::fanout::connections(&common, &args).await.unwrap();
    let measured = load_tests::fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0), "{measured:?}");
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    // Senders are on the first node and everyone else on the second: every
    // counted delivery crossed Redis, and none was lost.
    assert_eq!(measured.delivered, measured.acked * 3, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked * 3, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
    let crossed = cluster.second.metric("switchboard_router_received_total").await;
    assert!(crossed >= measured.acked as f64, "the second node received {crossed} deliveries from Redis");
    assert!(common.with_gateways(&["http://10.0.0.1:8080".to_owned()]).is_err(), "gateways off loopback are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_process_with_redis_joins_a_cluster() {
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let both = Process::start("serve", 1, &redis.url(), dir.path());
    let gateway = Process::start("gateway", 2, &redis.url(), dir.path());
    let http = reqwest::Client::new();
    let alice = harness::register(&http, &both.base(), "13900000031", "alice").await;
    let bob = harness::register(&http, &both.base(), "13900000032", "bob").await;
    let chat = harness::chat(&http, &both.base(), &alice, "private", &[&bob]).await;
    let mut bobs = gateway.connect(&bob).await;
    let mut alices = both.connect(&alice).await;
    let ack = send_text(&mut alices, chat, "from the all-in-one process").await;
    assert_eq!(ack.kind, "message.ack", "{ack:?}");
    let new = wait_for(&mut bobs, Duration::from_secs(5), |event| event.kind == "message.new").await;
    assert_eq!(new.data["content"], "from the all-in-one process");

    // A second live process may not take a node id that is in use.
    let output = Command::new(BIN)
        .args(["gateway", "--listen", "127.0.0.1:0", "--node-id", "2", "--redis-url", &redis.url()])
        .args(["--jwt-secret", SECRET])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("node id 2 is in use"), "{stderr}");
}

/// A single `serve` keeps in memory what sends read, so it must see every
/// write: a second process on its data dir is refused, with the reason,
/// and so is a single process on a cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_process_and_a_cluster_never_share_a_data_dir() {
    let refused = |args: &[&str], dir: &Path| {
        let output = Command::new(BIN)
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let alone = tempfile::tempdir().unwrap();
    let server = Process::launch("serve", 0, None, alone.path(), &[]);
    let stderr = refused(&["serve", "--node-id", "1"], alone.path());
    assert!(stderr.contains("is open in another process"), "{stderr}");
    let redis = PrivateRedis::start();
    let stderr = refused(&["gateway", "--node-id", "1", "--redis-url", &redis.url()], alone.path());
    assert!(stderr.contains("is held by a single-process server"), "{stderr}");
    server.kill();

    let shared = tempfile::tempdir().unwrap();
    let _gateway = Process::start("gateway", 1, &redis.url(), shared.path());
    let stderr = refused(&["serve", "--node-id", "2"], shared.path());
    assert!(stderr.contains("is open in another process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_on_two_processes_get_one_pair_and_keep_the_session() {
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let (one, two) = (
        Process::launch("serve", 1, Some(&url), dir.path(), &[]),
        Process::launch("serve", 2, Some(&url), dir.path(), &[]),
    );
    let http = reqwest::Client::new();
    let body = json!({"phone": "13900000031", "username": "alice", "password": "password123"});
    let registered: Value =
        http.post(format!("{}/api/auth/register", one.base())).json(&body).send().await.unwrap().json().await.unwrap();
    let refresh_token = registered["data"]["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |base: String, token: String| {
        let http = http.clone();
        async move {
            let body = json!({"refresh_token": token});
            let reply = http.post(format!("{base}/api/auth/refresh")).json(&body).send().await.unwrap();
            reply.json::<Value>().await.unwrap()
        }
    };
    // An app refreshing twice at once, each request reaching another process.
    let (first, second) =
        tokio::join!(refresh(one.base(), refresh_token.clone()), refresh(two.base(), refresh_token.clone()));
    assert_eq!((&first["code"], &second["code"]), (&json!(200), &json!(200)), "{first} {second}");
    assert_eq!(first["data"], second["data"], "one pair, whichever process answered");
    // The session lives on: its access token works on both, its refresh token refreshes.
    let access = first["data"]["access_token"].as_str().unwrap();
    for base in [one.base(), two.base()] {
        let me: Value =
            http.get(format!("{base}/api/users/me")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["code"], 200, "{me}");
    }
    let next = first["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(two.base(), next).await["code"], 200);
}
