//! One rule book: every use case that both REST and the WebSocket gateway
//! expose answers the same seed 002 code for the same failure, because
//! both are adapters over one service layer and map its one error enum.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Client, Server, User, start};

/// The code of a REST answer and of a WebSocket command's `error` reply.
struct Pair {
    rest: Value,
    ws: Value,
}

impl Pair {
    fn assert(&self, code: u64, case: &str) {
        assert_eq!(self.rest["code"], code, "REST, {case}: {}", self.rest);
        assert_eq!(self.ws["code"], code, "WebSocket, {case}: {}", self.ws);
    }
}

async fn both(
    server: &Server,
    user: &User,
    client: &mut Client,
    rest: (Method, &str, Value),
    ws: (&str, Value),
) -> Pair {
    let (method, path, body) = rest;
    let rest = server.api(method, path, &user.token, body).await;
    let id = client.send(ws.0, ws.1).await;
    let reply = client.reply(&id).await;
    assert_eq!(reply.kind, "error", "{} answered {reply:?}", ws.0);
    Pair { rest, ws: reply.data }
}

#[tokio::test]
async fn rest_and_websocket_give_the_same_code_for_the_same_failure() {
    let server = start().await;
    let (alice, bob, private) = server.pair("private").await;
    let eve = server.register("13800000003", "eve").await;
    let group = server.chat(&bob, "group", &[]).await;
    let mut alices = server.connect(&alice).await;
    let mut eves = server.connect(&eve).await;

    let send = |chat: i64, body: Value| (Method::POST, format!("/api/chats/{chat}/messages"), body);
    let ws_send = |chat: i64, body: Value| {
        let mut data = body;
        data["chat_id"] = json!(chat);
        ("message.send", data)
    };

    // Sending into a chat one is not in: 20002.
    let (m, p, b) = send(private, json!({"content": "let me in"}));
    both(&server, &eve, &mut eves, (m, &p, b), ws_send(private, json!({"content": "let me in"})))
        .await
        .assert(20002, "send to a chat you are not in");

    // Sending into a chat that does not exist: 20001.
    let (m, p, b) = send(987_654, json!({"content": "anyone?"}));
    both(&server, &eve, &mut eves, (m, &p, b), ws_send(987_654, json!({"content": "anyone?"})))
        .await
        .assert(20001, "send to a missing chat");

    // A message with no body, or of a type only the server sends: 400.
    let (m, p, b) = send(private, json!({"content": "   "}));
    both(&server, &alice, &mut alices, (m, &p, b), ws_send(private, json!({"content": "   "})))
        .await
        .assert(400, "an empty message");
    let (m, p, b) = send(private, json!({"content": "x", "type": "system"}));
    both(&server, &alice, &mut alices, (m, &p, b), ws_send(private, json!({"content": "x", "type": "system"})))
        .await
        .assert(400, "a system message from a client");

    // Replying to a message that does not exist: 20003.
    let (m, p, b) = send(private, json!({"content": "re", "reply_to_id": 424_242}));
    both(&server, &alice, &mut alices, (m, &p, b), ws_send(private, json!({"content": "re", "reply_to_id": 424_242})))
        .await
        .assert(20003, "a reply to a missing message");

    // Reading a message that does not exist: 20003.
    both(
        &server,
        &alice,
        &mut alices,
        (Method::POST, "/api/messages/424242/read", json!({})),
        ("message.read", json!({"chat_id": private, "message_id": 424_242})),
    )
    .await
    .assert(20003, "read a missing message");

    // Reading a message of a chat one is not in reads the same as a missing one.
    let bobs_note =
        server.api(Method::POST, &format!("/api/chats/{group}/messages"), &bob.token, json!({"content": "mine"})).await;
    let note = bobs_note["data"]["id"].as_i64().unwrap();
    both(
        &server,
        &alice,
        &mut alices,
        (Method::POST, &format!("/api/messages/{note}/read"), json!({})),
        ("message.read", json!({"chat_id": private, "message_id": note})),
    )
    .await
    .assert(20003, "read a message of another chat");

    // History (REST) and sync (WebSocket) of a chat one is not in: 20002;
    // of a chat that does not exist: 20001.
    both(
        &server,
        &eve,
        &mut eves,
        (Method::GET, &format!("/api/chats/{private}/messages?after_seq=0"), Value::Null),
        ("sync", json!({"chat_id": private, "after_seq": 0})),
    )
    .await
    .assert(20002, "history of a chat you are not in");
    both(
        &server,
        &eve,
        &mut eves,
        (Method::GET, "/api/chats/987654/messages?after_seq=0", Value::Null),
        ("sync", json!({"chat_id": 987_654, "after_seq": 0})),
    )
    .await
    .assert(20001, "history of a missing chat");

    // A recipient who blocked the sender: 20005 on both.
    let added = server.api(Method::POST, "/api/contacts", &bob.token, json!({"phone": "13800000001"})).await;
    assert_eq!(added["code"], 200, "{added}");
    let blocked =
        server.api(Method::PUT, &format!("/api/contacts/{}", alice.id), &bob.token, json!({"is_blocked": true})).await;
    assert_eq!(blocked["code"], 200, "{blocked}");
    let (m, p, b) = send(private, json!({"content": "hello?"}));
    both(&server, &alice, &mut alices, (m, &p, b), ws_send(private, json!({"content": "hello?"})))
        .await
        .assert(20005, "send to a user who blocked you");
}

#[tokio::test]
async fn a_retried_send_answers_the_original_as_it_is_now_on_both_transports() {
    let server = start().await;
    let (alice, bob, chat) = server.pair("private").await;
    let mut alices = server.connect(&alice).await;
    let body = json!({"chat_id": chat, "content": "read me", "client_message_id": "once"});
    let id = alices.send("message.send", body.clone()).await;
    let first = alices.reply(&id).await;
    assert_eq!(first.data["message"]["is_read"], false);
    let message_id = first.data["message"]["id"].as_i64().unwrap();
    let read = server.api(Method::POST, &format!("/api/messages/{message_id}/read"), &bob.token, json!({})).await;
    assert_eq!(read["code"], 200, "{read}");

    let id = alices.send("message.send", body.clone()).await;
    let again = alices.reply(&id).await;
    assert_eq!(
        (again.data["duplicate"].as_bool(), again.data["message"]["id"].as_i64()),
        (Some(true), Some(message_id))
    );
    assert_eq!(again.data["message"]["is_read"], true, "the retry's view is the message as it is now");

    let rest = server.api(Method::POST, &format!("/api/chats/{chat}/messages"), &alice.token, body).await;
    assert_eq!(rest["data"]["id"], message_id);
    assert_eq!(rest["data"], again.data["message"], "REST and WebSocket answer a retry with one view");
}
