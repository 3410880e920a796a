use serde_json::json;

use crate::harness::{assert_error, start};

#[tokio::test]
async fn sending_stores_sequences_and_publishes() {
    let mut server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let eve = server.register("13800000003", "eve").await;
    let chat = server.group(&alice, &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");

    let body = json!({"content": "hello", "type": "text", "client_message_id": "c-1"});
    let (status, sent) = server.post(&path, Some(&alice.token), body.clone()).await;
    assert_eq!(status, 200, "{sent}");
    let message = &sent["data"];
    assert_eq!(
        (message["seq"].as_u64(), message["content"].as_str(), message["type"].as_str()),
        (Some(1), Some("hello"), Some("text"))
    );
    assert_eq!(message["sender"]["username"], "alice");
    assert!(message["created_at"].as_str().unwrap().ends_with('Z'));
    let event = server.event("message.new").await;
    assert_eq!(event.event.data["id"], message["id"]);
    let mut recipients = event.recipients.clone();
    recipients.sort_unstable();
    assert_eq!(recipients, vec![alice.id, bob.id]);

    let (_, again) = server.post(&path, Some(&alice.token), body).await;
    assert_eq!(
        (again["data"]["id"].clone(), again["data"]["seq"].as_u64()),
        (message["id"].clone(), Some(1)),
        "a retry is the original"
    );
    assert_eq!(server.send(&bob, chat, "hi").await["seq"], 2);

    assert_error(&server.post(&path, Some(&eve.token), json!({"content": "let me in"})).await, 403, 20002);
    assert_error(
        &server.post("/api/chats/999999/messages", Some(&alice.token), json!({"content": "x"})).await,
        404,
        20001,
    );
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": ""})).await, 400, 400);
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "x", "type": "hologram"})).await, 400, 400);
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "x", "type": "system"})).await, 400, 400);
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "x".repeat(4097)})).await, 400, 400);
    assert_error(
        &server.post(&path, Some(&alice.token), json!({"content": "x", "send_at": "tomorrow"})).await,
        400,
        400,
    );
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "x", "reply_to_id": 42})).await, 404, 20003);
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "x", "ttl": -1})).await, 400, 400);
}

#[tokio::test]
async fn history_pages_searches_and_filters() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let eve = server.register("13800000003", "eve").await;
    let chat = server.group(&alice, &[&bob]).await;
    let mut ids = Vec::new();
    for n in 1..=12 {
        ids.push(server.send(&alice, chat, &format!("message {n} 你好世界")).await["id"].as_i64().unwrap());
    }
    let path = format!("/api/chats/{chat}/messages");
    let seqs = |reply: &serde_json::Value| {
        reply["data"]["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>()
    };

    let (status, latest) = server.get(&format!("{path}?limit=5"), &bob.token).await;
    assert_eq!(status, 200);
    assert_eq!(seqs(&latest), vec![8, 9, 10, 11, 12]);
    assert_eq!(latest["data"]["has_more"], true);
    let (_, older) = server.get(&format!("{path}?limit=5&before={}", ids[7]), &bob.token).await;
    assert_eq!(seqs(&older), vec![3, 4, 5, 6, 7]);
    let (_, oldest) = server.get(&format!("{path}?limit=5&before={}", ids[2]), &bob.token).await;
    assert_eq!((seqs(&oldest), oldest["data"]["has_more"].as_bool()), (vec![1, 2], Some(false)));
    let (_, newer) = server.get(&format!("{path}?limit=3&after={}", ids[8]), &bob.token).await;
    assert_eq!((seqs(&newer), newer["data"]["has_more"].as_bool()), (vec![10, 11, 12], Some(false)));
    let (_, by_seq) = server.get(&format!("{path}?limit=2&after_seq=3"), &bob.token).await;
    assert_eq!(seqs(&by_seq), vec![4, 5]);
    let (_, found) = server.get(&format!("{path}?search=message%2011"), &bob.token).await;
    assert_eq!(seqs(&found), vec![11]);
    let (_, cjk) = server.get(&format!("{path}?search=%E4%BD%A0%E5%A5%BD&limit=100"), &bob.token).await;
    assert_eq!(cjk["data"]["total"], 12);
    let (_, images) = server.get(&format!("{path}?type=image"), &bob.token).await;
    assert!(seqs(&images).is_empty());

    // Read state from the viewer's side.
    let (_, mine) = server.get(&format!("{path}?limit=1"), &alice.token).await;
    assert_eq!(mine["data"]["messages"][0]["is_read"], false);
    assert_eq!(server.post(&format!("/api/messages/{}/read", ids[11]), Some(&bob.token), json!({})).await.0, 200);
    let (_, mine) = server.get(&format!("{path}?limit=1"), &alice.token).await;
    assert_eq!(mine["data"]["messages"][0]["is_read"], true, "bob read it");

    assert_error(&server.get(&format!("{path}?limit=1000"), &bob.token).await, 400, 400);
    assert_error(&server.get(&format!("{path}?type=hologram"), &bob.token).await, 400, 400);
    assert_error(&server.get(&format!("{path}?before=abc"), &bob.token).await, 400, 400);
    assert_error(&server.get(&path, &eve.token).await, 403, 20002);
}

#[tokio::test]
async fn edit_delete_read_and_pin_publish_events() {
    let mut server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let eve = server.register("13800000003", "eve").await;
    let chat = server.group(&alice, &[&bob]).await;
    let message = server.send(&alice, chat, "tpyo").await;
    let id = message["id"].as_i64().unwrap();
    server.drain_events();

    let path = format!("/api/messages/{id}");
    let (status, edited) = server.put(&path, &alice.token, json!({"content": "typo"})).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!((edited["data"]["content"].as_str(), edited["data"]["is_edited"].as_bool()), (Some("typo"), Some(true)));
    let event = server.event("message.edit").await;
    assert_eq!((event.event.data["id"].as_i64(), event.event.data["content"].as_str()), (Some(id), Some("typo")));
    assert_error(&server.put(&path, &bob.token, json!({"content": "mine now"})).await, 403, 20004);
    assert_error(&server.put(&path, &eve.token, json!({"content": "x"})).await, 404, 20003);
    assert_error(&server.put(&path, &alice.token, json!({"content": ""})).await, 400, 400);
    assert_error(&server.put("/api/messages/999999", &alice.token, json!({"content": "x"})).await, 404, 20003);

    assert_eq!(server.post(&format!("{path}/read"), Some(&bob.token), json!({})).await.0, 200);
    let status = server.event("message.status").await;
    assert_eq!(
        (status.event.data["status"].as_str(), status.event.data["user_id"].as_i64()),
        (Some("read"), Some(bob.id))
    );
    assert_error(&server.post(&format!("{path}/read"), Some(&eve.token), json!({})).await, 404, 20003);

    assert_error(&server.post(&format!("{path}/pin"), Some(&bob.token), json!({})).await, 403, 20004);
    assert_eq!(server.post(&format!("{path}/pin"), Some(&alice.token), json!({})).await.0, 200);
    let pinned = server.event("message.pin").await;
    assert_eq!(pinned.event.data["is_pinned"], true);
    assert_eq!(server.delete(&format!("{path}/pin"), &alice.token).await.0, 200);
    assert_eq!(server.event("message.pin").await.event.data["is_pinned"], false);

    assert_error(&server.delete(&path, &bob.token).await, 403, 20004);
    assert_eq!(server.delete(&path, &alice.token).await.0, 200);
    let deleted = server.event("message.delete").await;
    assert_eq!(deleted.event.data["id"].as_i64(), Some(id));
    let (_, history) = server.get(&format!("/api/chats/{chat}/messages"), &bob.token).await;
    let slot = &history["data"]["messages"][0];
    assert_eq!(
        (slot["is_deleted"].as_bool(), slot["content"].as_str()),
        (Some(true), Some("")),
        "the slot stays, the content goes"
    );
    assert_error(&server.put(&path, &alice.token, json!({"content": "back"})).await, 403, 20004);
}

#[tokio::test]
async fn blocked_senders_are_refused_in_private_chats() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let (_, chat) =
        server.post("/api/chats", Some(&alice.token), json!({"type": "private", "members": [bob.id]})).await;
    let chat = chat["data"]["id"].as_i64().unwrap();
    server.post("/api/contacts", Some(&bob.token), json!({"phone": alice.phone})).await;
    server.put(&format!("/api/contacts/{}", alice.id), &bob.token, json!({"is_blocked": true})).await;
    let path = format!("/api/chats/{chat}/messages");
    assert_error(&server.post(&path, Some(&alice.token), json!({"content": "hello?"})).await, 403, 20005);
    assert_eq!(server.post(&path, Some(&bob.token), json!({"content": "I may"})).await.0, 200);
}

#[tokio::test]
async fn scheduled_and_self_destructing_messages() {
    let mut server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let chat = server.group(&alice, &[&bob]).await;
    let path = format!("/api/chats/{chat}/messages");
    server.drain_events();

    let send_at = protocol::time::to_iso(protocol::time::now_millis() + 1_500);
    let (status, held) =
        server.post(&path, Some(&alice.token), json!({"content": "see you soon", "send_at": send_at})).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["data"]["seq"], 0, "no seq until it is sent");
    let (_, history) = server.get(&path, &bob.token).await;
    assert!(history["data"]["messages"].as_array().unwrap().is_empty(), "invisible before its time");
    let delivered = server.event("message.new").await;
    assert_eq!(
        (delivered.event.data["id"].clone(), delivered.event.data["seq"].as_u64()),
        (held["data"]["id"].clone(), Some(1))
    );
    let (_, history) = server.get(&path, &bob.token).await;
    assert_eq!(history["data"]["messages"][0]["content"], "see you soon");

    let (_, cancelled) = server
        .post(
            &path,
            Some(&alice.token),
            json!({"content": "never", "send_at": protocol::time::to_iso(protocol::time::now_millis() + 60_000)}),
        )
        .await;
    assert_eq!(server.delete(&format!("/api/messages/{}", cancelled["data"]["id"]), &alice.token).await.0, 200);

    let (status, fleeting) =
        server.post(&path, Some(&alice.token), json!({"content": "gone in a second", "ttl": 1})).await;
    assert_eq!(status, 200);
    assert!(fleeting["data"]["expires_at"].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (_, history) = server.get(&path, &bob.token).await;
    let contents: Vec<&str> =
        history["data"]["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, vec!["see you soon"], "expired and cancelled messages are not in history");
}
