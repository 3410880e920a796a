use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{connect_url, greeted, start};

#[tokio::test]
async fn two_users_chat_both_ways_on_every_device() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut alice_phone = server.connect(&alice).await;
    let mut alice_laptop = server.connect(&alice).await;
    let mut bobs = server.connect(&bob).await;

    let id = alice_phone
        .send("message.send", json!({"chat_id": chat, "content": "hi bob", "client_message_id": "a1"}))
        .await;
    let ack = alice_phone.reply(&id).await;
    assert_eq!(ack.kind, "message.ack");
    assert_eq!(ack.data["client_message_id"], "a1");
    assert_eq!(ack.data["message"]["seq"], 1);
    // Every device of every member, the sending one included (clients
    // match it to the ack by id).
    for client in [&mut bobs, &mut alice_laptop, &mut alice_phone] {
        let new = client.expect("message.new").await;
        assert_eq!((new.data["content"].as_str(), new.data["seq"].as_u64()), (Some("hi bob"), Some(1)));
        assert_eq!(new.data["sender"]["username"], "alice");
    }

    let id = bobs.send("message.send", json!({"chat_id": chat, "content": "hi alice"})).await;
    assert_eq!(bobs.reply(&id).await.data["message"]["seq"], 2);
    assert_eq!(alice_phone.expect("message.new").await.data["content"], "hi alice");
    assert_eq!(alice_laptop.expect("message.new").await.data["seq"], 2);

    let eve = server.register("13800000003", "eve").await;
    let mut eves = server.connect(&eve).await;
    let id = eves.send("message.send", json!({"chat_id": chat, "content": "me too"})).await;
    assert_eq!(eves.reply(&id).await.data["code"], 20002);
    let id = eves.send("message.send", json!({"chat_id": 999_999, "content": "x"})).await;
    assert_eq!(eves.reply(&id).await.data["code"], 20001);
}

/// `?echo=0`: the sending connection gets its message in the ack only;
/// the sender's other devices and the other members still get
/// `message.new`. A value other than 0, 1, false or true is refused
/// before the upgrade.
#[tokio::test]
async fn a_connection_without_echo_gets_its_message_in_the_ack_only() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let quiet_url = format!("{}?echo=0", server.ws);
    let mut alice_phone = greeted(connect_url(&quiet_url, Some(&alice.token), None).await.unwrap()).await;
    let mut alice_laptop = server.connect(&alice).await;
    let mut bobs = server.connect(&bob).await;

    for (n, client_id) in ["q1", "q2"].into_iter().enumerate() {
        let id = alice_phone
            .send("message.send", json!({"chat_id": chat, "content": client_id, "client_message_id": client_id}))
            .await;
        let ack = alice_phone.reply(&id).await;
        assert_eq!(ack.kind, "message.ack", "{ack:?}");
        assert_eq!(
            (ack.data["message"]["content"].as_str(), ack.data["message"]["seq"].as_u64()),
            (Some(client_id), Some(n as u64 + 1))
        );
        for client in [&mut bobs, &mut alice_laptop] {
            assert_eq!(client.expect("message.new").await.data["content"], client_id);
        }
    }
    alice_phone.quiet("message.new", std::time::Duration::from_millis(300)).await;
    // Others' messages still reach it.
    let id = bobs.send("message.send", json!({"chat_id": chat, "content": "to alice"})).await;
    bobs.reply(&id).await;
    assert_eq!(alice_phone.expect("message.new").await.data["content"], "to alice");

    refuses_flag_values(&server, &alice, "echo", &["maybe", "", "00"]).await;
}

/// `?compact=1`: the connection's events leave out every member at its
/// default, its replies included; the same message reaches a full
/// connection with every member. A bad value, or compact with the
/// MessagePack subprotocol, is refused before the upgrade.
#[tokio::test]
async fn a_compact_connection_gets_events_without_their_default_members() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let compact_url = format!("{}?compact=1", server.ws);
    let mut alices = greeted(connect_url(&compact_url, Some(&alice.token), None).await.unwrap()).await;
    let mut bobs = server.connect(&bob).await;
    let mut bobs_compact = connect_url(&format!("{compact_url}&echo=1"), Some(&bob.token), None).await.unwrap();
    let Some(Ok(Message::Text(greeting))) = bobs_compact.socket.next().await else { panic!("no greeting") };
    let greeting: serde_json::Value = serde_json::from_str(greeting.as_str()).unwrap();
    assert_eq!((greeting["type"].as_str(), greeting["data"]["user_id"].as_i64()), (Some("connect"), Some(bob.id)));

    let id = alices.send("message.send", json!({"chat_id": chat, "content": "short", "client_message_id": "k1"})).await;
    let ack = alices.reply(&id).await;
    assert_eq!(ack.kind, "message.ack", "{ack:?}");
    assert_eq!(ack.data.get("duplicate"), None, "false is left out: {:?}", ack.data);
    let full = bobs.expect("message.new").await.data;
    assert_eq!(full["is_read"], false, "a full connection keeps every member: {full}");
    assert_eq!(full["reactions"], json!([]));
    assert_eq!(ack.data["message"], crate::harness::pruned(&full), "the ack's message is the full one, pruned");
    for member in ["is_read", "is_edited", "reply_to_id", "ttl", "file_url", "reactions"] {
        assert_eq!(ack.data["message"].get(member), None, "{member} is left out");
    }
    let raw = loop {
        let Some(Ok(Message::Text(text))) = bobs_compact.socket.next().await else { panic!("no frame") };
        if text.as_str().starts_with(r#"{"type":"message.new""#) {
            break text;
        }
    };
    let compact: serde_json::Value = serde_json::from_str(raw.as_str()).unwrap();
    assert_eq!(compact["data"], crate::harness::pruned(&full));
    assert_eq!(compact["data"]["sender"]["username"], "alice");
    let full_bytes = serde_json::to_string(&json!({"type": "message.new", "data": full})).unwrap().len();
    assert!(raw.len() < full_bytes, "{} compact bytes against {full_bytes}", raw.len());

    // A reply made on the command's way back is compact too.
    let id = alices.send("sync", json!({"chat_id": chat, "after_seq": 0})).await;
    let batch = alices.reply(&id).await;
    assert_eq!(batch.kind, "sync.batch", "{batch:?}");
    assert_eq!(batch.data["messages"], json!([crate::harness::pruned(&full)]));
    assert_eq!(batch.data.get("has_more"), None, "{:?}", batch.data);

    refuses_flag_values(&server, &alice, "compact", &["yes", "", "2"]).await;
    match connect_url(&compact_url, Some(&alice.token), Some("switchboard.msgpack")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["code"], 400, "{body}");
            assert!(body["error"].as_str().unwrap_or_default().contains("compact"), "{body}");
        }
        other => panic!("compact MessagePack was let in: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_retried_send_is_stored_and_delivered_once() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = server.connect(&alice).await;
    let mut receiver = server.connect(&bob).await;
    let body = json!({"chat_id": chat, "content": "once", "client_message_id": "same"});
    let first = sender.send("message.send", body.clone()).await;
    let first = sender.reply(&first).await;
    let again = sender.send("message.send", body).await;
    let again = sender.reply(&again).await;
    assert_eq!(first.data["message"]["id"], again.data["message"]["id"]);
    assert_eq!(again.data["message"]["seq"], 1);
    assert_eq!(again.data["duplicate"], true);
    assert_eq!(receiver.expect("message.new").await.data["content"], "once");
    receiver.quiet("message.new", std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn seq_stays_contiguous_under_concurrent_senders() {
    let server = start().await;
    let users = [
        server.register("13800000001", "user1").await,
        server.register("13800000002", "user2").await,
        server.register("13800000003", "user3").await,
    ];
    let chat = server.chat(&users[0], "group", &[&users[1], &users[2]]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for user in &users {
        let mut client = server.connect(user).await;
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..30 {
                let id = client.send("message.send", json!({"chat_id": chat, "content": format!("{n}")})).await;
                seqs.push(client.reply(&id).await.data["message"]["seq"].as_u64().unwrap());
            }
            seqs
        });
    }
    let mut all = BTreeSet::new();
    while let Some(seqs) = tasks.join_next().await {
        for seq in seqs.unwrap() {
            assert!(all.insert(seq), "seq {seq} twice");
        }
    }
    assert_eq!(all, (1..=90).collect::<BTreeSet<u64>>());
}

#[tokio::test]
async fn sync_recovers_what_was_sent_while_offline() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = server.connect(&alice).await;
    for n in 1..=7 {
        let id = sender.send("message.send", json!({"chat_id": chat, "content": format!("m{n}")})).await;
        sender.reply(&id).await;
    }
    let mut late = server.connect(&bob).await;
    let id = late.send("sync", json!({"chat_id": chat, "after_seq": 2, "limit": 3})).await;
    let batch = late.reply(&id).await;
    assert_eq!(batch.kind, "sync.batch");
    let seqs: Vec<u64> =
        batch.data["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, batch.data["has_more"].as_bool()), (vec![3, 4, 5], Some(true)));
    let id = late.send("sync", json!({"chat_id": chat, "after_seq": 5})).await;
    let rest = late.reply(&id).await;
    assert_eq!(rest.data["messages"].as_array().unwrap().len(), 2);
    assert_eq!(rest.data["has_more"], false);

    let stranger = server.register("13800000003", "eve").await;
    let mut eves = server.connect(&stranger).await;
    let id = eves.send("sync", json!({"chat_id": chat, "after_seq": 0})).await;
    assert_eq!(eves.reply(&id).await.data["code"], 20002);
    let id = eves.send("sync", json!({"after_seq": 0})).await;
    assert_eq!(eves.reply(&id).await.data["code"], 400);
}

#[tokio::test]
async fn read_and_delivered_status_reach_the_sender() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut sender = server.connect(&alice).await;
    let mut reader = server.connect(&bob).await;
    let id = sender.send("message.send", json!({"chat_id": chat, "content": "did you get it?"})).await;
    let message_id = sender.reply(&id).await.data["message"]["id"].as_i64().unwrap();
    reader.expect("message.new").await;

    reader.send("message.delivered", json!({"chat_id": chat, "message_ids": [message_id]})).await;
    let delivered = sender.expect("message.status").await;
    assert_eq!(
        (delivered.data["status"].as_str(), delivered.data["user_id"].as_i64()),
        (Some("delivered"), Some(bob.id))
    );
    let id = reader.send("message.read", json!({"chat_id": chat, "message_id": message_id})).await;
    assert_eq!(reader.reply(&id).await.data["last_read_seq"], 1);
    let read = sender.expect("message.status").await;
    assert_eq!((read.data["status"].as_str(), read.data["message_id"].as_i64()), (Some("read"), Some(message_id)));

    let id = reader.send("message.read", json!({"chat_id": chat, "message_id": 1})).await;
    assert_eq!(reader.reply(&id).await.data["code"], 20003);
}

#[tokio::test]
async fn rest_edits_and_deletes_arrive_as_events() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut watcher = server.connect(&bob).await;
    let sent = server
        .api(reqwest::Method::POST, &format!("/api/chats/{chat}/messages"), &alice.token, json!({"content": "draft"}))
        .await;
    let id = sent["data"]["id"].as_i64().unwrap();
    assert_eq!(watcher.expect("message.new").await.data["id"], id, "REST sends are delivered too");
    server.api(reqwest::Method::PUT, &format!("/api/messages/{id}"), &alice.token, json!({"content": "final"})).await;
    let edit = watcher.expect("message.edit").await;
    assert_eq!((edit.data["id"].as_i64(), edit.data["content"].as_str()), (Some(id), Some("final")));
    server.api(reqwest::Method::DELETE, &format!("/api/messages/{id}"), &alice.token, json!({})).await;
    assert_eq!(watcher.expect("message.delete").await.data["id"], id);
    let carol = server.register("13800000003", "carol").await;
    server
        .api(
            reqwest::Method::POST,
            &format!("/api/chats/{chat}/members"),
            &alice.token,
            json!({"user_ids": [carol.id]}),
        )
        .await;
    assert_eq!(watcher.expect("chat.member_added").await.data["user_ids"][0], carol.id);
}

#[tokio::test]
async fn pipelined_sends_keep_their_order_and_their_own_outcomes() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = start().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = server.connect(&alice).await;
    let mut receiver = server.connect(&bob).await;
    // 30 commands written in one go: the server reads them together and
    // sends runs of message.send as one batch.
    let mut frames = Vec::new();
    for n in 0..30 {
        let data = match n {
            10 => json!({"chat_id": 999_999, "content": "nowhere", "client_message_id": "p10"}),
            15 => serde_json::Value::Null,
            20 => json!({"chat_id": chat, "content": "  ", "client_message_id": "p20"}),
            25 => json!({"chat_id": chat, "content": "3 again", "client_message_id": "p3"}),
            _ => json!({"chat_id": chat, "content": format!("m{n}"), "client_message_id": format!("p{n}")}),
        };
        let kind = if n == 15 { "ping" } else { "message.send" };
        frames.push(json!({"type": kind, "id": format!("f{n}"), "data": data}));
    }
    for frame in &frames {
        sender.socket.feed(Message::Text(frame.to_string().into())).await.unwrap();
    }
    sender.socket.flush().await.unwrap();

    let mut seqs = Vec::new();
    for n in 0..30 {
        let reply = sender.reply(&format!("f{n}")).await;
        match n {
            10 => assert_eq!(reply.data["code"], 20001, "{reply:?}"),
            15 => assert_eq!(reply.kind, "pong"),
            20 => assert_eq!(reply.data["code"], 400, "{reply:?}"),
            25 => {
                assert_eq!(reply.data["duplicate"], true);
                assert_eq!(reply.data["message"]["content"], "m3", "the original answers a retry");
            }
            _ => {
                assert_eq!(reply.kind, "message.ack", "{reply:?}");
                assert_eq!(reply.data["message"]["content"], format!("m{n}"));
                seqs.push(reply.data["message"]["seq"].as_u64().unwrap());
            }
        }
    }
    // Accepted sends got contiguous seqs in the order they were written.
    assert_eq!(seqs, (1..=26).collect::<Vec<u64>>());
    for (expected, n) in (1..=26).zip((0..30).filter(|n| ![10, 15, 20, 25].contains(n))) {
        let new = receiver.expect("message.new").await;
        assert_eq!((new.data["seq"].as_u64(), new.data["content"].as_str()), (Some(expected), Some(&*format!("m{n}"))));
    }
}

/// Asserts that `/ws?{name}=` with each of `bad` is refused before the
/// upgrade with 400, in seed 002's envelope, naming the parameter.
async fn refuses_flag_values(server: &crate::harness::Server, user: &crate::harness::User, name: &str, bad: &[&str]) {
    for bad in bad {
        match connect_url(&format!("{}?{name}={bad}", server.ws), Some(&user.token), None).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{name}={bad}");
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert!(body["error"].as_str().unwrap_or_default().contains(name), "{body}");
            }
            other => panic!("{name}={bad} was let in: {:?}", other.map(|_| ())),
        }
    }
}

/// A server that lets a connection send far above a person's rate, and
/// queues more for a slow reader than a person's client would need: these
/// tests are about order, and a debug-build client on a busy machine reads
/// slowly.
async fn unthrottled() -> crate::harness::Server {
    crate::harness::start_with(|config| {
        config.commands_per_second = 10_000;
        config.commands_per_user_per_second = 10_000;
        config.outbound_queue = 8_192;
    })
    .await
}

/// `user`'s connection for a burst of sends: it takes its messages from
/// their acks (`echo=0`), so that it is not sent every one twice.
async fn bulk_sender(server: &crate::harness::Server, user: &crate::harness::User) -> crate::harness::Client {
    greeted(connect_url(&format!("{}?echo=0", server.ws), Some(&user.token), None).await.unwrap()).await
}

/// The first `count` `message.new` that `receiver` gets, as (content, seq),
/// read in a task of their own so that the receiver never falls behind.
fn collect_new(mut receiver: crate::harness::Client, count: usize) -> tokio::task::JoinHandle<Vec<(String, u64)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < count {
            let new = receiver.expect("message.new").await;
            seen.push((new.data["content"].as_str().unwrap().to_owned(), new.data["seq"].as_u64().unwrap()));
        }
        seen
    })
}

/// `count` sends to `chat` as JSON text frames, each with its own `id` and
/// `client_message_id` (`{prefix}{n}`).
fn sends(chat: i64, prefix: &str, count: usize) -> Vec<tokio_tungstenite::tungstenite::Message> {
    (0..count)
        .map(|n| {
            let frame = json!({"type": "message.send", "id": format!("{prefix}{n}"),
                "data": {"chat_id": chat, "content": format!("{prefix}{n}"), "client_message_id": format!("{prefix}{n}")}});
            tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())
        })
        .collect()
}

#[tokio::test]
async fn pipelined_sends_keep_their_order_and_a_later_command_sees_them() {
    const SENDS: usize = 600;
    use futures_util::SinkExt;
    let server = unthrottled().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = bulk_sender(&server, &alice).await;
    // Another member gets every one, in order.
    let delivered = collect_new(server.connect(&bob).await, SENDS);
    // Far more than one read takes, and than the batches a connection
    // keeps queued, written without waiting for any ack.
    for frame in sends(chat, "p", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    let sync = json!({"type": "sync", "id": "sync", "data": {"chat_id": chat, "after_seq": SENDS - 1}});
    sender.socket.feed(tokio_tungstenite::tungstenite::Message::Text(sync.to_string().into())).await.unwrap();
    sender.socket.flush().await.unwrap();

    // Acks in the order of the sends, with seqs in that order; then the sync,
    // which saw every one of them.
    for n in 0..SENDS {
        let ack = sender.reply(&format!("p{n}")).await;
        assert_eq!(ack.kind, "message.ack", "{ack:?}");
        assert_eq!(ack.data["message"]["content"], format!("p{n}"));
        assert_eq!(ack.data["message"]["seq"].as_u64(), Some(n as u64 + 1), "{ack:?}");
    }
    let synced = sender.reply("sync").await;
    assert_eq!(synced.kind, "sync.batch", "{synced:?}");
    let last: Vec<_> = synced.data["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64()).collect();
    assert_eq!(last, vec![Some(SENDS as u64)], "{synced:?}");
    let expected: Vec<(String, u64)> = (0..SENDS).map(|n| (format!("p{n}"), n as u64 + 1)).collect();
    assert_eq!(delivered.await.unwrap(), expected);
}

/// A send the store kept is delivered even when its sender hung up before
/// hearing of it (README: sends already read when a connection ends are
/// still written and delivered).
#[tokio::test]
async fn sends_stored_after_their_sender_hung_up_are_still_delivered() {
    const SENDS: usize = 600;
    use futures_util::SinkExt;
    let server = unthrottled().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut receiver = server.connect(&bob).await;
    let mut sender = bulk_sender(&server, &alice).await;
    for frame in sends(chat, "h", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    sender.socket.flush().await.unwrap();
    // Gone without reading a single ack: what the server had read of the
    // burst is still queued in the store.
    drop(sender);

    let mut delivered = Vec::new();
    while let Ok(new) = tokio::time::timeout(std::time::Duration::from_secs(2), receiver.expect("message.new")).await {
        delivered.push(new.data["seq"].as_u64().unwrap());
    }
    assert!(!delivered.is_empty(), "the server read part of the burst before the hang-up");
    let last = delivered.len() as u64;
    assert_eq!(delivered, (1..=last).collect::<Vec<u64>>(), "every one, in order");
    let sync = receiver.send("sync", json!({"chat_id": chat, "after_seq": last})).await;
    let synced = receiver.reply(&sync).await;
    assert_eq!(synced.kind, "sync.batch", "{synced:?}");
    assert_eq!(synced.data["messages"], json!([]), "the store kept nothing that was not delivered");
}

/// One group commit publishes a whole run of sends at once: a member who
/// keeps reading gets all of them on the default outbound queue, and is
/// not closed as a slow consumer (4008).
#[tokio::test]
async fn a_burst_of_one_commit_reaches_a_reader_on_the_default_queue() {
    const SENDS: usize = 1_000;
    use futures_util::SinkExt;
    let server = crate::harness::start_with(|config| {
        config.commands_per_second = 10_000;
        config.commands_per_user_per_second = 10_000;
    })
    .await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = bulk_sender(&server, &alice).await;
    let delivered = collect_new(server.connect(&bob).await, SENDS);
    for frame in sends(chat, "b", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    sender.socket.flush().await.unwrap();
    let expected: Vec<(String, u64)> = (0..SENDS).map(|n| (format!("b{n}"), n as u64 + 1)).collect();
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(60), delivered)
        .await
        .expect("every message reaches the reader (a 4008 close would end its stream)");
    assert_eq!(delivered.unwrap(), expected);
}

#[tokio::test]
async fn sends_just_before_a_client_closes_still_reach_the_others() {
    const SENDS: usize = 200;
    use futures_util::{SinkExt, StreamExt};
    let server = unthrottled().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = bulk_sender(&server, &alice).await;
    let delivered = collect_new(server.connect(&bob).await, SENDS);
    for frame in sends(chat, "h", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    // Closes right after them, without waiting for a single ack (a client
    // that closed reads no more data), and waits for the server's close.
    sender.socket.close(None).await.unwrap();
    let expected: Vec<(String, u64)> = (0..SENDS).map(|n| (format!("h{n}"), n as u64 + 1)).collect();
    assert_eq!(delivered.await.unwrap(), expected);
    let closed =
        tokio::time::timeout(crate::harness::WAIT, async { while let Some(Ok(_)) = sender.socket.next().await {} });
    assert!(closed.await.is_ok(), "the server did not end the connection");
}

#[tokio::test]
async fn a_batching_connection_gets_events_that_leave_together_in_one_frame() {
    const SENDS: usize = 300;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = unthrottled().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = bulk_sender(&server, &alice).await;
    let batched = format!("{}?batch=1", server.ws);
    let mut receiver = connect_url(&batched, Some(&bob.token), None).await.unwrap();
    // Its greeting is a frame like any other.
    let Some(Ok(Message::Text(greeting))) = receiver.socket.next().await else { panic!("no greeting") };
    assert_eq!(serde_json::from_str::<serde_json::Value>(greeting.as_str()).unwrap()["type"], "connect");

    for frame in sends(chat, "b", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    sender.socket.flush().await.unwrap();
    let (mut contents, mut frames) = (Vec::new(), 0);
    while contents.len() < SENDS {
        let frame = tokio::time::timeout(crate::harness::WAIT, receiver.socket.next()).await.expect("no frame in time");
        let Some(Ok(Message::Text(text))) = frame else { panic!("not a text frame: {frame:?}") };
        frames += 1;
        for line in text.as_str().split('\n') {
            let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            if event["type"] == "message.new" {
                contents.push(event["data"]["content"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(contents, (0..SENDS).map(|n| format!("b{n}")).collect::<Vec<_>>());
    assert!(frames < SENDS, "{SENDS} events came in {frames} frames: none were packed");

    // Replies to several commands read together are packed too, in order.
    for n in 0..3 {
        let ping = json!({"type": "ping", "id": format!("ping{n}"), "data": {}});
        receiver.socket.feed(Message::Text(ping.to_string().into())).await.unwrap();
    }
    receiver.socket.flush().await.unwrap();
    let mut refs = Vec::new();
    while refs.len() < 3 {
        let Some(Ok(Message::Text(text))) = receiver.socket.next().await else { panic!("no pong") };
        for line in text.as_str().split('\n') {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["type"], "pong", "{event}");
            refs.push(event["ref"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(refs, ["ping0", "ping1", "ping2"]);

    refuses_flag_values(&server, &bob, "batch", &["yes", "", "2"]).await;
}

#[tokio::test]
async fn a_batching_messagepack_connection_gets_values_back_to_back() {
    const SENDS: usize = 200;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = unthrottled().await;
    let (alice, bob, chat) = server.pair("group").await;
    let mut sender = bulk_sender(&server, &alice).await;
    let batched = format!("{}?batch=true", server.ws);
    let mut receiver = connect_url(&batched, Some(&bob.token), Some("switchboard.msgpack")).await.unwrap();
    assert!(receiver.binary);
    for frame in sends(chat, "m", SENDS) {
        sender.socket.feed(frame).await.unwrap();
    }
    sender.socket.flush().await.unwrap();
    let (mut contents, mut frames) = (Vec::new(), 0);
    while contents.len() < SENDS {
        let frame = tokio::time::timeout(crate::harness::WAIT, receiver.socket.next()).await.expect("no frame in time");
        let Some(Ok(Message::Binary(bytes))) = frame else { panic!("not a binary frame: {frame:?}") };
        frames += 1;
        let mut reader = &bytes[..];
        while !reader.is_empty() {
            let event: serde_json::Value = rmp_serde::from_read(&mut reader).unwrap();
            if event["type"] == "message.new" {
                contents.push(event["data"]["content"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(contents, (0..SENDS).map(|n| format!("m{n}")).collect::<Vec<_>>());
    assert!(frames < SENDS, "{SENDS} events came in {frames} frames: none were packed");
}

#[tokio::test]
async fn a_batching_sender_gets_its_ack_and_its_own_message_in_one_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = unthrottled().await;
    let (alice, _bob, chat) = server.pair("group").await;
    // Echo on: the sender is sent its own `message.new` too, which is
    // queued when its send is published, before the ack is written.
    let mut sender = connect_url(&format!("{}?batch=1", server.ws), Some(&alice.token), None).await.unwrap();
    let Some(Ok(Message::Text(_greeting))) = sender.socket.next().await else { panic!("no greeting") };
    for round in 0..3 {
        let [send] = &sends(chat, &format!("r{round}-"), 1)[..] else { unreachable!() };
        sender.socket.send(send.clone()).await.unwrap();
        let frame = tokio::time::timeout(crate::harness::WAIT, sender.socket.next()).await.expect("no frame in time");
        let Some(Ok(Message::Text(text))) = frame else { panic!("not a text frame: {frame:?}") };
        let events: Vec<serde_json::Value> =
            text.as_str().split('\n').map(|line| serde_json::from_str(line).unwrap()).collect();
        let kinds: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["message.ack", "message.new"], "round {round}: {text}");
        assert_eq!(events[0]["ref"], format!("r{round}-0"));
        assert_eq!(events[1]["data"]["content"], format!("r{round}-0"));
    }
    // A bad send is refused in the same envelope, alone: nothing was queued.
    let bad = json!({"type": "message.send", "id": "bad", "data": {"chat_id": chat + 1_000, "content": "x"}});
    sender.socket.send(Message::Text(bad.to_string().into())).await.unwrap();
    let frame = tokio::time::timeout(crate::harness::WAIT, sender.socket.next()).await.expect("no frame in time");
    let Some(Ok(Message::Text(text))) = frame else { panic!("not a text frame: {frame:?}") };
    let error: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["ref"], "bad", "{error}");
}

/// The counters of the send and fan-out paths count what happened: frames
/// (replies as well as events), commands by type, sends by outcome (a retried client id is a
/// duplicate; a refused send is none), acks and deliveries. Other tests of
/// this process count too, so each only has to grow by at least this
/// test's share.
#[tokio::test]
async fn sends_acks_and_deliveries_are_counted_in_metrics() {
    const SERIES: [(&str, f64); 9] = [
        ("switchboard_ws_frames_in_total", 3.0),
        ("switchboard_ws_frames_out_total", 6.0),
        ("switchboard_ws_commands_total{type=\"message.send\"}", 3.0),
        ("switchboard_messages_sent_total{outcome=\"new\"}", 1.0),
        ("switchboard_messages_sent_total{outcome=\"duplicate\"}", 1.0),
        ("switchboard_ws_ack_seconds_count", 2.0),
        ("switchboard_ws_deliveries_total{type=\"message.new\"}", 2.0),
        ("switchboard_ws_fanout_seconds_count", 1.0),
        ("switchboard_ws_bad_frames_total", 1.0),
    ];
    let server = start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut alices = server.connect(&alice).await;
    let mut bobs = server.connect(&bob).await;
    let mut before = Vec::new();
    for (series, _) in SERIES {
        before.push(crate::harness::metric(&server.base, series).await);
    }

    let send = json!({"chat_id": chat, "content": "counted", "client_message_id": "c1"});
    let id = alices.send("message.send", send.clone()).await;
    let first = alices.reply(&id).await;
    assert_eq!(first.kind, "message.ack");
    assert_eq!(bobs.expect("message.new").await.data["content"], "counted");
    let id = alices.send("message.send", send).await;
    let again = alices.reply(&id).await;
    assert_eq!(again.data["message"]["id"], first.data["message"]["id"], "a retry is the same message");
    let id = alices.send("message.send", json!({"chat_id": 999_999, "content": "x"})).await;
    assert_eq!(alices.reply(&id).await.data["code"], 20001);
    alices.send_raw(tokio_tungstenite::tungstenite::Message::text("{not json")).await;
    assert_eq!(alices.expect("error").await.data["code"], 400);

    for ((series, grew), before) in SERIES.into_iter().zip(before) {
        let after = crate::harness::metric(&server.base, series).await;
        assert!(after >= before + grew, "{series}: {before} -> {after}, expected to grow by {grew}");
    }
}

/// The fan-out is timed: queueing a run on its devices, and its last
/// stretch, from a run's queueing on a connection to the end of the write
/// that carried it, one write in 32 per runtime thread. A hundred
/// deliveries, each its own write, take at least one sample whatever this
/// process's other tests wrote before, on up to three runtime threads.
#[tokio::test]
async fn deliveries_are_timed_in_metrics() {
    const SERIES: &str = "switchboard_ws_delivery_seconds_count";
    let server = start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut alices = server.connect(&alice).await;
    let mut bobs = server.connect(&bob).await;
    let before = crate::harness::metric(&server.base, SERIES).await;
    let fanout_before = crate::harness::metric(&server.base, "switchboard_ws_fanout_seconds_sum").await;
    for n in 0..100 {
        let id = alices.send("message.send", json!({"chat_id": chat, "content": format!("timed {n}")})).await;
        assert_eq!(alices.reply(&id).await.kind, "message.ack");
        assert_eq!(bobs.expect("message.new").await.data["content"], format!("timed {n}"));
    }
    let after = crate::harness::metric(&server.base, SERIES).await;
    assert!(after > before, "{SERIES}: {before} -> {after}");
    // The fan-out's own time is read from a clock finer than the
    // millisecond: a hundred runs of microseconds add up to more than 0.
    let fanout_after = crate::harness::metric(&server.base, "switchboard_ws_fanout_seconds_sum").await;
    assert!(fanout_after > fanout_before, "switchboard_ws_fanout_seconds_sum: {fanout_before} -> {fanout_after}");
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    let max = text
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_ws_delivery_seconds{quantile=\"1\"} ")?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no maximum of switchboard_ws_delivery_seconds in:\n{text}"));
    assert!(max.is_finite() && max >= 0.0, "a delivery's age is a duration: {max}");
}
