use std::sync::Arc;
use std::time::Duration;

use protocol::ServerEvent;
use protocol::server::CallRinging;
use router::Delivery;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::{start, start_with};

#[tokio::test]
async fn typing_is_relayed_throttled_and_expires() {
    let server = start_with(|config| {
        config.typing_expiry = Duration::from_millis(800);
        config.typing_throttle = Duration::from_millis(400);
    })
    .await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut typist = server.connect(&alice).await;
    let mut watcher = server.connect(&bob).await;

    typist.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    let typing = watcher.expect("typing").await;
    assert_eq!((typing.data["user_id"].as_i64(), typing.data["is_typing"].as_bool()), (Some(alice.id), Some(true)));
    // Refreshes inside the throttle window are not repeated to others.
    typist.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    watcher.quiet("typing", Duration::from_millis(200)).await;
    // No refresh: it ends by itself.
    let ended = watcher.expect("typing").await;
    assert_eq!(ended.data["is_typing"], false);

    typist.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    assert_eq!(watcher.expect("typing").await.data["is_typing"], true);
    typist.send("typing", json!({"chat_id": chat, "is_typing": false})).await;
    assert_eq!(watcher.expect("typing").await.data["is_typing"], false);

    let id = typist.send("typing", json!({"chat_id": 999_999, "is_typing": true})).await;
    assert_eq!(typist.reply(&id).await.data["code"], 20001);
    let id = typist.send("typing", json!({"chat_id": chat})).await;
    assert_eq!(typist.reply(&id).await.data["code"], 400);
}

#[tokio::test]
async fn presence_follows_the_first_and_last_device() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let stranger = server.register("13800000003", "eve").await;
    server.chat(&alice, "private", &[&bob]).await;
    let mut watcher = server.connect(&bob).await;

    let phone = server.connect(&alice).await;
    let online = watcher.expect("presence").await;
    assert_eq!((online.data["user_id"].as_i64(), online.data["is_online"].as_bool()), (Some(alice.id), Some(true)));
    let laptop = server.connect(&alice).await;
    watcher.quiet("presence", Duration::from_millis(300)).await;
    drop(phone);
    watcher.quiet("presence", Duration::from_millis(300)).await;
    drop(laptop);
    let offline = watcher.expect("presence").await;
    assert_eq!(offline.data["is_online"], false);
    assert!(offline.data["last_seen"].is_string());

    let id = watcher.send("presence.query", json!({"user_ids": [alice.id, stranger.id]})).await;
    let state = watcher.reply(&id).await;
    let users = state.data["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "only users whose presence bob may see: {users:?}");
    assert_eq!((users[0]["user_id"].as_i64(), users[0]["is_online"].as_bool()), (Some(alice.id), Some(false)));
}

#[tokio::test]
async fn rest_user_views_report_a_live_connection_as_online() {
    let server = start().await;
    let (alice, bob, _) = server.pair("private").await;
    let eve = server.register("13800000003", "eve").await;
    let get = |user: &crate::harness::User, path: String| {
        let token = user.token.clone();
        let server = &server;
        async move { server.api(reqwest::Method::GET, &path, &token, serde_json::Value::Null).await }
    };
    assert_eq!(get(&alice, format!("/api/users/{}", bob.id)).await["data"]["online"], false);

    let mut bobs = server.connect(&bob).await;
    // Bob's private-chat peer sees him online; so does Bob himself.
    let seen = get(&alice, format!("/api/users/{}", bob.id)).await;
    assert_eq!(seen["data"]["online"], true, "{seen}");
    assert_eq!(get(&bob, "/api/users/me".into()).await["data"]["online"], true);
    // A stranger, who would not be told of Bob's presence, is not told here either.
    assert_eq!(get(&eve, format!("/api/users/{}", bob.id)).await["data"]["online"], false);
    // Bob's contacts list shows Alice's presence once she is connected.
    let added = server.api(reqwest::Method::POST, "/api/contacts", &bob.token, json!({"phone": "13800000001"})).await;
    assert_eq!(added["data"]["contact"]["online"], false, "{added}");
    let alices = server.connect(&alice).await;
    bobs.expect("presence").await;
    let contacts = get(&bob, "/api/contacts".into()).await;
    assert_eq!(contacts["data"]["contacts"][0]["contact"]["online"], true, "{contacts}");

    drop(alices);
    drop(bobs);
    // Offline once the connection is gone (the server notices the close).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if get(&alice, format!("/api/users/{}", bob.id)).await["data"]["online"] == false {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob still online 5 s after he left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slow_consumer_is_closed_and_others_are_unaffected() {
    let server = start_with(|config| config.outbound_queue = 8).await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let mut stalled = server.connect(&bob).await;
    let mut healthy = server.connect(&alice).await;

    // Flood bob with 64 KiB events he never reads, until his socket
    // buffers and his queue are full.
    let payload = "x".repeat(64 * 1024);
    for n in 0..2_000 {
        let event = ServerEvent::CallRinging(CallRinging { call_id: format!("{n}:{payload}") });
        server.router.publish(Delivery::new(vec![bob.id], event)).await.unwrap();
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let event = ServerEvent::CallRinging(CallRinging { call_id: "to alice".into() });
    server.router.publish(Delivery::new(vec![alice.id], event)).await.unwrap();
    assert_eq!(healthy.expect("call.ringing").await.data["call_id"], "to alice", "alice is unaffected");
    let code = stalled.closed(Duration::from_secs(30)).await;
    assert!(code.is_none() || code == Some(CloseCode::from(4008)), "closed as slow: {code:?}");
    let _ = Arc::clone(&server.router);
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect(&alice).await;
    drop(server);
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(CloseCode::Away));
}
