//! Signed webhooks against a real HTTP receiver the test runs: signatures
//! verify, `message.created` names exactly the offline recipients, failed
//! deliveries retry with the same event id until one succeeds, pending
//! deliveries survive a SIGKILL, and in a cluster each event is delivered
//! once, not once per node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::cluster::{PrivateRedis, Process};
use crate::harness;

const SECRET: &str = "webhook-secret-0123456789";
const KEY: &str = "backend-key-0123456789";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: String,
    json: Value,
}

/// A webhook receiver: records every POST, and fails the first `fail_first`
/// tries of each event (all of them while `fail_all`).
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Delivery>>>,
    fail_first: Arc<Mutex<usize>>,
    fail_all: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    /// Serves on a free port; answers its URL.
    async fn start(&self) -> String {
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let receiver = receiver.clone();
                async move {
                    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let id = json["id"].as_str().unwrap_or_default().to_owned();
                    let mut seen = receiver.seen.lock().unwrap();
                    let tries = seen.iter().filter(|d| d.json["id"] == id.as_str()).count();
                    seen.push(Delivery { headers, body, json });
                    let fail = receiver.fail_all.load(std::sync::atomic::Ordering::SeqCst)
                        || tries < *receiver.fail_first.lock().unwrap();
                    if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks")
    }

    fn of_type(&self, kind: &str) -> Vec<Delivery> {
        self.seen.lock().unwrap().iter().filter(|d| d.json["type"] == kind).cloned().collect()
    }

    /// Waits until `enough` says the deliveries of `kind` are complete.
    async fn wait(&self, kind: &str, within: Duration, enough: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.of_type(kind);
            if enough(&seen) {
                return seen;
            }
            assert!(tokio::time::Instant::now() < deadline, "{kind} deliveries in time: {seen:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What a receiver does: recompute the signature over "{timestamp}.{body}"
/// and refuse stale timestamps (replays).
fn verifies(delivery: &Delivery) -> bool {
    let header = |name: &str| delivery.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let timestamp = header("switchboard-timestamp");
    let Ok(sent_at) = timestamp.parse::<i64>() else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - sent_at).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", delivery.body).as_bytes());
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    header("switchboard-signature") == expected
}

#[tokio::test]
async fn deliveries_are_signed_retried_with_one_id_and_name_the_offline_recipients() {
    let receiver = Receiver::default();
    *receiver.fail_first.lock().unwrap() = 2;
    let url = receiver.start().await;
    let flags = ["--webhook-url", &url, "--webhook-secret", SECRET, "--webhook-retry-base-ms", "100"];
    let server = harness::start_with_flags(&flags, |_| {}).await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let carol = server.register("13800000003", "carol").await;
    let chat = server.chat(&alice, "group", &[&bob, &carol]).await;
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    let id = alice_ws.send("message.send", json!({"chat_id": chat, "content": "who is here?"})).await;
    let message_id = alice_ws.reply(&id).await.data["message"]["id"].clone();
    // Two 500s, then a 200: three tries of one event, then no more.
    let tries = receiver.wait("message.created", Duration::from_secs(10), |seen| seen.len() >= 3).await;
    let event_id = tries[0].json["id"].clone();
    assert!(tries.iter().all(|t| t.json["id"] == event_id), "one id on every try: {tries:?}");
    assert!(tries.iter().all(|t| t.body == tries[0].body), "the same body on every try");
    assert!(tries.iter().all(verifies), "every try is signed");
    let data = &tries[0].json["data"];
    assert_eq!(data["message"]["id"], message_id);
    assert_eq!(data["chat_id"], chat);
    let mut recipients: Vec<i64> = data["recipient_ids"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, vec![bob.id, carol.id], "everyone but the sender");
    assert_eq!(data["offline_user_ids"], json!([carol.id]), "exactly who had no live device");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.of_type("message.created").len(), 3, "delivered once it succeeded");
    // Other events: the users coming online, a read.
    receiver.wait("user.online", Duration::from_secs(5), |seen| seen.len() >= 2).await;
    bob_ws.send("message.read", json!({"chat_id": chat, "message_id": message_id})).await;
    let read = receiver.wait("message.read", Duration::from_secs(5), |seen| !seen.is_empty()).await;
    assert_eq!(read[0].json["data"]["user_id"], bob.id);
    // A forged signature or a stale timestamp does not verify.
    let mut forged = read[0].clone();
    forged.body = forged.body.replace("message.read", "message.red");
    assert!(!verifies(&forged));
    let mut stale = read[0].clone();
    stale.headers.insert("switchboard-timestamp", "1000".parse().unwrap());
    assert!(!verifies(&stale));
}

#[tokio::test]
async fn bad_webhook_flags_stop_the_server_from_starting() {
    use clap::Parser;
    for flags in [
        vec!["--webhook-url", "http://127.0.0.1:9/hooks"],
        vec!["--webhook-url", "http://127.0.0.1:9/hooks", "--webhook-secret", "short"],
        vec!["--webhook-url", "ftp://example.com/x", "--webhook-secret", SECRET],
        vec!["--webhook-url", "not a url", "--webhook-secret", SECRET],
    ] {
        let mut args = vec!["switchboard", "serve", "--jwt-secret", "test secret of at least 32 bytes!!"];
        args.extend(flags.iter().copied());
        let cli = switchboard::cli::Cli::parse_from(args);
        let (_, args) = cli.command.expect("serve").into_parts();
        let refused = switchboard::webhook_config(&args);
        assert!(refused.is_err(), "{flags:?} must be refused");
    }
}

/// A notification through the server API of `base`; answers its id.
async fn notify(base: &str, user_id: i64, title: &str) -> i64 {
    let body = json!({"user_ids": [user_id], "type": "system", "title": title, "body": "b"});
    let reply: Value = reqwest::Client::new()
        .post(format!("{base}/api/server/notifications"))
        .header("authorization", format!("apikey {KEY}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["data"]["notifications"][0]["notification_id"].as_i64().unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test]
async fn pending_deliveries_survive_a_sigkill() {
    let receiver = Receiver::default();
    receiver.fail_all.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let flags =
        ["--webhook-url", &url, "--webhook-secret", SECRET, "--webhook-retry-base-ms", "100", "--server-api-key", KEY];
    let process = Process::launch("serve", 0, None, dir.path(), &flags);
    let user = harness::register(&reqwest::Client::new(), &process.base(), "13800000001", "alice").await;
    let notification = notify(&process.base(), user.id, "kept across a crash").await;
    // Tried and refused: it waits in the outbox.
    let tried = receiver.wait("notification.created", Duration::from_secs(10), |seen| !seen.is_empty()).await;
    let event_id = tried[0].json["id"].clone();
    assert_eq!(tried[0].json["data"]["notification"]["id"], notification);
    process.kill();
    receiver.fail_all.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = receiver.of_type("notification.created").len();
    let restarted = Process::launch("serve", 0, None, dir.path(), &flags);
    let after = receiver
        .wait("notification.created", Duration::from_secs(10), |seen| {
            seen.len() > before && seen.last().is_some_and(|d| d.json["id"] == event_id)
        })
        .await;
    assert!(after.iter().all(|d| d.json["id"] == event_id), "the same event, retried after the restart");
    assert!(verifies(after.last().unwrap()));
    drop(restarted);
}

#[tokio::test]
async fn in_a_cluster_the_server_api_reaches_both_nodes_and_each_event_is_delivered_once() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--webhook-url", &url, "--webhook-secret", SECRET, "--server-api-key", KEY];
    let first = Process::start_with("gateway", 1, &redis.url(), dir.path(), &flags);
    let second = Process::start_with("gateway", 2, &redis.url(), dir.path(), &flags);
    let sidecar = Process::start_with("sidecar", 3, &redis.url(), dir.path(), &flags);
    let http = reqwest::Client::new();
    let alice = harness::register(&http, &sidecar.base(), "13900000001", "alice").await;
    let mut on_first = first.connect(&alice).await;
    let mut on_second = second.connect(&alice).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(notify(&sidecar.base(), alice.id, &format!("n{n}")).await);
    }
    for client in [&mut on_first, &mut on_second] {
        for id in &ids {
            assert_eq!(client.expect("notification.new").await.data["id"].as_i64(), Some(*id), "on both nodes");
        }
    }
    let status = http
        .post(format!("{}/api/server/disconnect", sidecar.base()))
        .header("authorization", format!("apikey {KEY}"))
        .json(&json!({"user_id": alice.id, "reason": "bye"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    for client in [&mut on_first, &mut on_second] {
        let closed = client.closed(Duration::from_secs(5)).await;
        assert_eq!(closed.map(u16::from), Some(4001), "closed on both nodes");
    }
    // Three deliverers share one outbox: every event arrives exactly once.
    let seen = receiver.wait("notification.created", Duration::from_secs(10), |seen| seen.len() >= 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen_now = receiver.of_type("notification.created");
    assert_eq!(seen_now.len(), 5, "once each, not once per node: {seen:?}");
    let mut event_ids: Vec<&str> = seen_now.iter().map(|d| d.json["id"].as_str().unwrap()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 5);
    assert!(seen_now.iter().all(verifies));
}
