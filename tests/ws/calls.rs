use std::time::Duration;

use serde_json::json;

use crate::harness::{Client, Server, User, start, start_with};

struct Pair {
    alice: User,
    bob: User,
    chat: i64,
}

async fn pair(server: &Server) -> Pair {
    let (alice, bob, chat) = server.pair("private").await;
    Pair { alice, bob, chat }
}

async fn online(server: &Server, user: &User) -> Client {
    server.connect(user).await
}

/// The call records left in the private chat.
async fn records(server: &Server, pair: &Pair) -> Vec<serde_json::Value> {
    let history = server
        .api(reqwest::Method::GET, &format!("/api/chats/{}/messages", pair.chat), &pair.alice.token, json!({}))
        .await;
    history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "system")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_call_rings_every_device_and_connects_one() {
    let server = start().await;
    let p = pair(&server).await;
    let mut caller = online(&server, &p.alice).await;
    let mut phone = online(&server, &p.bob).await;
    let mut laptop = online(&server, &p.bob).await;

    let id = caller.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "video", "sdp": "v=0 offer"})).await;
    let ringing = caller.reply(&id).await;
    assert_eq!(ringing.kind, "call.ringing");
    let call_id = ringing.data["call_id"].as_str().unwrap().to_owned();
    for device in [&mut phone, &mut laptop] {
        let offer = device.expect("call.offer").await;
        assert_eq!(
            (offer.data["call_id"].as_str(), offer.data["from_user_id"].as_i64()),
            (Some(call_id.as_str()), Some(p.alice.id))
        );
        assert_eq!((offer.data["call_type"].as_str(), offer.data["sdp"].as_str()), (Some("video"), Some("v=0 offer")));
    }
    // ICE before the answer reaches the ringing devices, in order.
    for n in 1..=3 {
        caller.send("call.ice", json!({"call_id": call_id, "candidate": format!("candidate:{n}")})).await;
    }
    for n in 1..=3 {
        assert_eq!(phone.expect("call.ice").await.data["candidate"], format!("candidate:{n}"));
    }

    phone.send("call.answer", json!({"call_id": call_id, "sdp": "v=0 answer"})).await;
    let answer = caller.expect("call.answer").await;
    assert_eq!(
        (answer.data["sdp"].as_str(), answer.data["from_user_id"].as_i64()),
        (Some("v=0 answer"), Some(p.bob.id))
    );
    assert_eq!(laptop.expect("call.end").await.data["reason"], "answered_elsewhere");
    let id = laptop.send("call.answer", json!({"call_id": call_id, "sdp": "late"})).await;
    assert_eq!(laptop.reply(&id).await.data["code"], 409);
    let id = laptop.send("call.ice", json!({"call_id": call_id, "candidate": "x"})).await;
    assert_eq!(laptop.reply(&id).await.data["code"], 403, "only the answering device is in the call");

    phone.send("call.ice", json!({"call_id": call_id, "candidate": {"candidate": "candidate:9", "sdpMid": "0"}})).await;
    assert_eq!(caller.expect("call.ice").await.data["candidate"]["sdpMid"], "0");
    caller.send("call.ice", json!({"call_id": call_id, "candidate": "candidate:4"})).await;
    assert_eq!(phone.expect("call.ice").await.data["candidate"], "candidate:4");
    laptop.quiet("call.ice", Duration::from_millis(200)).await;

    caller.send("call.end", json!({"call_id": call_id, "reason": "user_hangup"})).await;
    let ended = phone.expect("call.end").await;
    assert_eq!(ended.data["reason"], "user_hangup");
    assert!(ended.data["duration"].is_u64());
    assert_eq!(caller.expect("call.end").await.data["reason"], "user_hangup");
    let records = records(&server, &p).await;
    assert_eq!(records.last().unwrap()["status"], "answered");
    assert_eq!(records.last().unwrap()["call_type"], "video");
}

#[tokio::test]
async fn rejected_busy_and_strangers() {
    let server = start().await;
    let p = pair(&server).await;
    let carol = server.register("13800000003", "carol").await;
    let mallory = server.register("13800000004", "mallory").await;
    server.chat(&carol, "private", &[&p.bob]).await;
    let mut alice = online(&server, &p.alice).await;
    let mut bob = online(&server, &p.bob).await;
    let mut carols = online(&server, &carol).await;
    let mut mallorys = online(&server, &mallory).await;

    let id = alice.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    let call_id = alice.reply(&id).await.data["call_id"].as_str().unwrap().to_owned();
    bob.expect("call.offer").await;

    // Bob is ringing: carol's call finds him busy.
    let id = carols.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(carols.reply(&id).await.kind, "call.ringing");
    assert_eq!(carols.expect("call.end").await.data["reason"], "busy");

    // A stranger can neither join nor end it, and nothing is relayed.
    for (kind, data) in [
        ("call.answer", json!({"call_id": call_id, "sdp": "x"})),
        ("call.ice", json!({"call_id": call_id, "candidate": "x"})),
        ("call.end", json!({"call_id": call_id, "reason": "user_hangup"})),
    ] {
        let id = mallorys.send(kind, data).await;
        assert_eq!(mallorys.reply(&id).await.data["code"], 403, "{kind}");
    }
    alice.quiet("call.answer", Duration::from_millis(200)).await;
    // Mallory shares no chat with bob and is not a contact.
    let id = mallorys.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(mallorys.reply(&id).await.data["code"], 403);

    bob.send("call.end", json!({"call_id": call_id, "reason": "rejected"})).await;
    assert_eq!(alice.expect("call.end").await.data["reason"], "rejected");
    assert_eq!(records(&server, &p).await.last().unwrap()["status"], "rejected");

    // Malformed signalling gets an error and is never relayed.
    for data in [
        json!({"to_user_id": p.bob.id, "call_type": "hologram", "sdp": "o"}),
        json!({"to_user_id": p.bob.id, "call_type": "audio"}),
        json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o", "call_id": "bad id!"}),
        json!({"to_user_id": p.alice.id, "call_type": "audio", "sdp": "o"}),
    ] {
        let id = alice.send("call.offer", data).await;
        assert_eq!(alice.reply(&id).await.data["code"], 400);
    }
    bob.quiet("call.offer", Duration::from_millis(200)).await;

    // Blocked callers cannot call.
    server.api(reqwest::Method::POST, "/api/contacts", &p.bob.token, json!({"phone": "13800000001"})).await;
    server
        .api(reqwest::Method::PUT, &format!("/api/contacts/{}", p.alice.id), &p.bob.token, json!({"is_blocked": true}))
        .await;
    let id = alice.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(alice.reply(&id).await.data["code"], 20005);
}

#[tokio::test]
async fn unanswered_calls_time_out_and_are_recorded_as_missed() {
    let server = start_with(|config| {
        config.ring_timeout = Duration::from_millis(500);
        config.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let p = pair(&server).await;
    let mut alice = online(&server, &p.alice).await;
    let mut bob = online(&server, &p.bob).await;
    let id = alice
        .send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "video", "sdp": "o", "call_id": "my-call-1"}))
        .await;
    assert_eq!(alice.reply(&id).await.data["call_id"], "my-call-1", "a client-chosen id is kept");
    bob.expect("call.offer").await;
    assert_eq!(alice.expect("call.end").await.data["reason"], "timeout");
    assert_eq!(bob.expect("call.end").await.data["reason"], "timeout");
    assert_eq!(records(&server, &p).await.last().unwrap()["status"], "missed");
}

#[tokio::test]
async fn a_party_dropping_ends_the_call() {
    let server = start().await;
    let p = pair(&server).await;
    let mut alice = online(&server, &p.alice).await;
    let mut bob = online(&server, &p.bob).await;
    let id = alice.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    let call_id = alice.reply(&id).await.data["call_id"].as_str().unwrap().to_owned();
    bob.expect("call.offer").await;
    bob.send("call.answer", json!({"call_id": call_id, "sdp": "a"})).await;
    alice.expect("call.answer").await;
    drop(bob);
    let ended = alice.expect("call.end").await;
    assert_eq!(ended.data["reason"], "disconnected");
    assert!(ended.data["duration"].is_u64());
    // Both are free again.
    let mut bob = online(&server, &p.bob).await;
    let id = alice.send("call.offer", json!({"to_user_id": p.bob.id, "call_type": "audio", "sdp": "o"})).await;
    assert_eq!(alice.reply(&id).await.kind, "call.ringing");
    bob.expect("call.offer").await;
}
