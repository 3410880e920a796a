//! Every seed at once: a client of each seed signs in its own way, and
//! those whose documents chat or post do so and hear each other live, all
//! on one running server. Each client speaks only its own document.

use reqwest::Method;
use serde_json::json;

use crate::harness::{self, User};
use crate::{couple, dating, simple, smellpin};

#[tokio::test]
async fn a_client_of_every_seed_signs_in_chats_or_posts_and_hears_the_others_on_one_server() {
    let server = harness::start_with_flags(&["--server-api-key", couple::KEY], |_| {}).await;

    // Seed 002: phone and password; the canonical socket.
    let messenger = server.register("13700000001", "messenger").await;
    let mut messenger_live = server.connect(&messenger).await;
    // Seed 000: an SMS code, then registration; its own socket.
    let dater = dating::register(&server, "13700000002").await;
    let mut dater_live = dating::Socket::connect(&server.base, &dater.token).await;
    dater_live.expect("auth_success").await;
    // Seed 001: email and password; its own socket.
    let chatter = simple::join(&server, "chatter", "chatter@example.com").await;
    let mut chatter_live = simple::Socket::connect(&server.base, &chatter.token).await;
    chatter_live.expect("connected").await;
    // Seed 003: an SMS code is the whole sign-in (it has no chat and no socket).
    let pinner = smellpin::sign_in(&server, "13700000003").await;
    let profile = smellpin::call(&server, Method::GET, "/users/profile", Some(&pinner.token), None).await;
    assert_eq!(profile.body["data"]["id"], pinner.id.as_str());
    // Seed 004: WeChat users made by the couple backend; `/ws` is theirs too.
    let ann = couple::wechat_user(&server, "openid-every-ann", "安安").await;
    let ben = couple::wechat_user(&server, "openid-every-ben", "贝贝").await;
    let mut ann_live = server.connect(&ann).await;
    let mut ben_live = server.connect(&ben).await;

    // One group of everyone who chats, opened by the messenger.
    let chatter_id: i64 = chatter.id.parse().unwrap();
    let members = [
        &User { id: dater.id, token: dater.token.clone() },
        &User { id: chatter_id, token: chatter.token.clone() },
        &ann,
    ];
    let group = server.chat(&messenger, "group", &members).await;

    // Seed 002 speaks; seeds 000, 001 and 004 hear it, each in its own frames.
    let id = messenger_live.send("message.send", json!({"chat_id": group, "content": "hello, every seed"})).await;
    let sent = messenger_live.reply(&id).await.data["message"]["id"].clone();
    assert!(sent.is_i64(), "sent");
    assert_eq!(dater_live.expect_message(&sent).await["data"]["content"], "hello, every seed");
    chatter_live.expect_message("hello, every seed").await;
    let heard = ann_live.expect("message.new").await;
    assert_eq!(heard.data["content"], "hello, every seed");

    // Seed 000 answers over its socket; seed 001 over its REST; the messenger hears both.
    dater_live
        .send(json!({"type": "message", "data": {"conversation_id": group, "content": "from 000", "client_message_id": "every-1"}, "timestamp": 0}))
        .await;
    dater_live.expect("message_ack").await;
    let body = json!({"group_id": group.to_string(), "content": "from 001"});
    let posted = simple::call(&server, Method::POST, "/chat/message", Some(&chatter.token), Some(body)).await;
    assert_eq!(posted.body["code"], 200, "{}", posted.body);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = messenger_live.expect("message.new").await;
        if event.data["sender_id"] != messenger.id {
            heard.push(event.data["content"].as_str().unwrap().to_owned());
        }
    }
    heard.sort();
    assert_eq!(heard, ["from 000", "from 001"]);
    chatter_live.expect_message("from 000").await;

    // Seed 004 pairs and posts on its board; the partner hears it live.
    couple::bind(&server, &ann, &ben).await;
    let post = json!({"message": "from 004", "nickname": "安"});
    let posted = couple::call(&server, Method::POST, "/sweet-messages", Some(&ann.token), Some(post)).await;
    assert_eq!(posted.body["code"], 201, "{}", posted.body);
    couple::expect_post(&mut ben_live, "from 004").await;
}
