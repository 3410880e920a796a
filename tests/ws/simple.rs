//! A seed 001 (simple chat) client, written from its document: the paths,
//! fields and codes of sections 1 to 4, string ids, and the WebSocket at
//! `/api/v1/ws` with the frames the README defines for it. Nothing here
//! uses the engine's types.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::{self, Server, WAIT};

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

pub(crate) async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = server.http.request(method, format!("{}/api/v1{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    Answer { status, body: response.json().await.unwrap() }
}

/// A simple-chat user with a token.
#[derive(Debug, Clone)]
pub(crate) struct Chatter {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// 1.1 then 1.2.
pub(crate) async fn join(server: &Server, username: &str, email: &str) -> Chatter {
    let body = json!({"username": username, "email": email, "password": "secret123"});
    let registered = call(server, Method::POST, "/register", None, Some(body)).await;
    assert_eq!(registered.body["code"], 200, "{}", registered.body);
    let id = registered.body["data"]["user_id"].as_str().expect("ids are strings").to_owned();
    let login =
        call(server, Method::POST, "/login", None, Some(json!({"email": email, "password": "secret123"}))).await;
    assert_eq!(login.body["code"], 200, "{}", login.body);
    assert_eq!(login.body["data"]["user"]["user_id"], id.as_str());
    Chatter { id, token: login.body["data"]["token"].as_str().unwrap().to_owned() }
}

pub(crate) struct Socket {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Socket {
    /// 3.1: `GET /api/v1/ws` with a Bearer token.
    pub(crate) async fn connect(base: &str, token: &str) -> Self {
        let url = format!("{}/api/v1/ws", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Self { socket }
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind} in time"))
                .expect("connection ended")
                .expect("read failed");
            if let Message::Text(text) = frame {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == kind {
                    return frame;
                }
            }
        }
    }

    /// The pushed `message` with this content, skipping others.
    pub(crate) async fn expect_message(&mut self, content: &str) -> Value {
        loop {
            let frame = self.expect("message").await;
            if frame["data"]["content"] == content {
                return frame;
            }
        }
    }

    async fn quiet(&mut self, kind: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_ne!(frame["type"], kind, "unexpected {frame}");
        }
    }
}

#[tokio::test]
async fn accounts_and_profile_work_as_written_and_refuse_bad_input() {
    let server = harness::start().await;
    let ann = join(&server, "ann", "Ann@Example.com").await;
    // Bad registrations: each an error in the document's shape.
    let cases = [
        (json!({"username": "bob", "password": "secret123"}), 400),
        (json!({"username": "bob", "email": "not-an-email", "password": "secret123"}), 400),
        (json!({"username": "bob", "email": "bob@example.com", "password": "123"}), 400),
        (json!({"username": "b", "email": "bob@example.com", "password": "secret123"}), 400),
        (json!({"username": "bob", "email": "ANN@example.com", "password": "secret123"}), 409),
        (json!({"username": "ann", "email": "ann2@example.com", "password": "secret123"}), 409),
    ];
    for (body, status) in cases {
        let refused = call(&server, Method::POST, "/register", None, Some(body.clone())).await;
        assert_eq!(
            (refused.status, refused.body["code"].as_u64()),
            (status, Some(u64::from(status))),
            "{body}: {}",
            refused.body
        );
        assert!(refused.body["message"].is_string() && refused.body["error"].is_string(), "{}", refused.body);
    }
    // With the optional phone, and the phone then works for the other contracts' logins too.
    let body = json!({"username": "cat", "email": "cat@example.com", "password": "secret123", "phone": "13700000001"});
    let cat = call(&server, Method::POST, "/register", None, Some(body)).await;
    assert_eq!(
        (cat.body["data"]["phone"].as_str(), cat.body["data"]["email"].as_str()),
        (Some("13700000001"), Some("cat@example.com"))
    );
    let by_phone: Value = server
        .http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"phone": "13700000001", "password": "secret123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_phone["code"], 200, "one account, every contract: {by_phone}");

    // 1.2: a wrong password and an unknown address read the same.
    let wrong =
        call(&server, Method::POST, "/login", None, Some(json!({"email": "ann@example.com", "password": "nope-nope"})))
            .await;
    let unknown =
        call(&server, Method::POST, "/login", None, Some(json!({"email": "zed@example.com", "password": "nope-nope"})))
            .await;
    assert_eq!((wrong.status, wrong.body["code"].as_u64()), (401, Some(401)), "{}", wrong.body);
    assert_eq!(wrong.body["error"], unknown.body["error"]);
    let missing = call(&server, Method::POST, "/login", None, Some(json!({"email": "ann@example.com"}))).await;
    assert_eq!(missing.body["code"], 400);

    // 2.1 and 2.2.
    let profile = call(&server, Method::GET, "/user/profile", Some(&ann.token), None).await;
    let data = &profile.body["data"];
    assert_eq!(
        (data["user_id"].as_str(), data["email"].as_str(), data["username"].as_str()),
        (Some(ann.id.as_str()), Some("ann@example.com"), Some("ann"))
    );
    assert!(data["created_at"].is_string() && data["updated_at"].is_string() && data["phone"].is_string());
    let changed = call(
        &server,
        Method::PUT,
        "/user/profile",
        Some(&ann.token),
        Some(json!({"username": "ann_b", "avatar": "/a.png"})),
    )
    .await;
    assert_eq!(
        (changed.body["data"]["username"].as_str(), changed.body["data"]["avatar"].as_str()),
        (Some("ann_b"), Some("/a.png")),
        "{}",
        changed.body
    );
    let phone =
        call(&server, Method::PUT, "/user/profile", Some(&ann.token), Some(json!({"phone": "13900000000"}))).await;
    assert_eq!(phone.status, 400, "{}", phone.body);
    let bad_name =
        call(&server, Method::PUT, "/user/profile", Some(&ann.token), Some(json!({"username": "a b"}))).await;
    assert_eq!(bad_name.status, 400);
    let anonymous = call(&server, Method::GET, "/user/profile", None, None).await;
    assert_eq!((anonymous.status, anonymous.body["code"].as_u64()), (401, Some(401)));
    let nowhere = call(&server, Method::GET, "/friends", Some(&ann.token), None).await;
    assert_eq!((nowhere.status, nowhere.body["code"].as_u64()), (404, Some(404)));
    let doc: Value =
        server.http.get(format!("{}/api/v1/openapi.json", server.base)).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/chat/messages"].is_object(), "{doc}");
}

/// Ann, Bob and Cy, with Ann's and Bob's sockets connected.
async fn trio(server: &Server) -> (Chatter, Chatter, Chatter, Socket, Socket) {
    let ann = join(server, "ann", "ann@example.com").await;
    let bob = join(server, "bob", "bob@example.com").await;
    let cy = join(server, "cyd", "cy@example.com").await;
    let mut anns = Socket::connect(&server.base, &ann.token).await;
    assert_eq!(anns.expect("connected").await["data"]["user_id"], ann.id.as_str());
    let mut bobs = Socket::connect(&server.base, &bob.token).await;
    bobs.expect("connected").await;
    (ann, bob, cy, anns, bobs)
}

#[tokio::test]
async fn messages_to_a_person_flow_live_with_read_state() {
    let server = harness::start().await;
    let (ann, bob, cy, mut anns, mut bobs) = trio(&server).await;

    // 3.2 to a person: their private chat is found or made.
    let sent = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"type": "text", "content": "hi bob", "receiver_id": bob.id})),
    )
    .await;
    assert_eq!(sent.body["code"], 200, "{}", sent.body);
    let message = &sent.body["data"];
    assert_eq!(
        (message["sender_id"].as_str(), message["receiver_id"].as_str(), message["group_id"].as_str()),
        (Some(ann.id.as_str()), Some(bob.id.as_str()), Some(""))
    );
    assert!(message["message_id"].is_string() && message["created_at"].is_string());
    let pushed = bobs.expect_message("hi bob").await;
    assert_eq!(
        (pushed["data"]["message_id"].as_str(), pushed["data"]["receiver_id"].as_str()),
        (message["message_id"].as_str(), Some(bob.id.as_str()))
    );
    let chat_id = pushed["data"]["chat_id"].as_str().unwrap().to_owned();
    // The same person again: the same chat.
    call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&bob.token),
        Some(json!({"content": "hi ann", "receiver_id": ann.id})),
    )
    .await;
    assert_eq!(anns.expect_message("hi ann").await["data"]["chat_id"], chat_id.as_str());

    // Typing and read over the WebSocket.
    bobs.send(json!({"type": "typing", "data": {"chat_id": chat_id}})).await;
    assert_eq!(anns.expect("typing").await["data"]["user_id"], bob.id.as_str());
    bobs.send(json!({"type": "read", "data": {"chat_id": chat_id, "message_id": message["message_id"]}})).await;
    let read = anns.expect("read").await;
    assert_eq!(
        (read["data"]["user_id"].as_str(), read["data"]["message_id"].as_str()),
        (Some(bob.id.as_str()), message["message_id"].as_str())
    );

    // 3.3: read_by and the real total.
    let path = format!("/chat/messages?receiver_id={}", bob.id);
    let history = call(&server, Method::GET, &path, Some(&ann.token), None).await;
    assert_eq!(history.body["data"]["total"], 2, "{}", history.body);
    let messages = history.body["data"]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["read_by"][0]["user_id"], bob.id.as_str(), "bob read it");
    assert!(messages[0]["read_by"][0]["read_at"].is_string(), "and when: {}", messages[0]);
    assert_eq!(messages[1]["read_by"], json!([]), "ann has not read bob's reply");
    let paged = call(&server, Method::GET, &format!("{path}&limit=1&offset=0"), Some(&ann.token), None).await;
    assert_eq!(paged.body["data"]["messages"].as_array().unwrap().len(), 1);
    let nobody =
        call(&server, Method::GET, &format!("/chat/messages?receiver_id={}", cy.id), Some(&ann.token), None).await;
    assert_eq!(
        (nobody.body["data"]["total"].as_u64(), nobody.body["data"]["messages"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn groups_take_members_and_their_messages_flow_live() {
    let server = harness::start().await;
    let (ann, bob, cy, mut anns, _bobs) = trio(&server).await;

    // 4.1 with the member_ids addition, then the members addition.
    let group = call(
        &server,
        Method::POST,
        "/group",
        Some(&ann.token),
        Some(json!({"name": "trio", "description": "three of us", "member_ids": [bob.id]})),
    )
    .await;
    assert_eq!(group.body["code"], 200, "{}", group.body);
    let group_id = group.body["data"]["group_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (group.body["data"]["creator_id"].as_str(), group.body["data"]["name"].as_str()),
        (Some(ann.id.as_str()), Some("trio"))
    );
    let by_bob = call(
        &server,
        Method::POST,
        &format!("/group/{group_id}/members"),
        Some(&bob.token),
        Some(json!({"user_ids": [cy.id]})),
    )
    .await;
    assert_eq!(by_bob.status, 403, "only the owner or admins add members: {}", by_bob.body);
    let added = call(
        &server,
        Method::POST,
        &format!("/group/{group_id}/members"),
        Some(&ann.token),
        Some(json!({"user_ids": [cy.id]})),
    )
    .await;
    assert_eq!(added.body["data"]["added"], json!([cy.id]), "{}", added.body);
    let mut cys = Socket::connect(&server.base, &cy.token).await;
    cys.expect("connected").await;
    call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&bob.token),
        Some(json!({"content": "hello trio", "group_id": group_id})),
    )
    .await;
    for socket in [&mut anns, &mut cys] {
        let pushed = socket.expect_message("hello trio").await;
        assert_eq!(
            (pushed["data"]["group_id"].as_str(), pushed["data"]["receiver_id"].as_str()),
            (Some(group_id.as_str()), Some(""))
        );
    }
}

#[tokio::test]
async fn messages_and_groups_refuse_bad_input() {
    let server = harness::start().await;
    let (ann, bob, cy, mut anns, _bobs) = trio(&server).await;

    let bobs_chat = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"content": "hi", "receiver_id": bob.id})),
    )
    .await;
    let chat_id = bobs_chat.body["data"]["chat_id"].as_str().unwrap().to_owned();
    let group =
        call(&server, Method::POST, "/group", Some(&ann.token), Some(json!({"name": "trio", "member_ids": [bob.id]})))
            .await;
    let group_id = group.body["data"]["group_id"].as_str().unwrap().to_owned();
    // Bad input on each messaging endpoint.
    let both = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"content": "x", "receiver_id": bob.id, "group_id": group_id})),
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.body);
    let neither = call(&server, Method::POST, "/chat/message", Some(&ann.token), Some(json!({"content": "x"}))).await;
    assert_eq!(neither.status, 400);
    let empty = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"content": " ", "group_id": group_id})),
    )
    .await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    let unknown_type = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"type": "sticker", "content": "x", "group_id": group_id})),
    )
    .await;
    assert_eq!(unknown_type.status, 400);
    let outsider = join(&server, "dee", "dee@example.com").await;
    let not_member = call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&outsider.token),
        Some(json!({"content": "let me in", "group_id": group_id})),
    )
    .await;
    assert_eq!((not_member.status, not_member.body["code"].as_u64()), (403, Some(403)), "{}", not_member.body);
    let peek =
        call(&server, Method::GET, &format!("/chat/messages?group_id={group_id}"), Some(&outsider.token), None).await;
    assert_eq!(peek.status, 403);
    let no_target = call(&server, Method::GET, "/chat/messages", Some(&ann.token), None).await;
    assert_eq!(no_target.status, 400);
    let bad_id = call(&server, Method::GET, "/chat/messages?group_id=abc", Some(&ann.token), None).await;
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    let too_many =
        call(&server, Method::GET, &format!("/chat/messages?group_id={group_id}&limit=500"), Some(&ann.token), None)
            .await;
    assert_eq!(too_many.status, 400);
    let no_name = call(&server, Method::POST, "/group", Some(&ann.token), Some(json!({"name": " "}))).await;
    assert_eq!(no_name.status, 400);
    let no_group =
        call(&server, Method::POST, "/group/999999/members", Some(&ann.token), Some(json!({"user_ids": [cy.id]})))
            .await;
    assert_eq!(no_group.status, 404, "{}", no_group.body);
    let bad_path =
        call(&server, Method::POST, "/group/abc/members", Some(&ann.token), Some(json!({"user_ids": [cy.id]}))).await;
    assert_eq!(bad_path.status, 400);
    // Bad frames: an error frame, and the connection stays.
    anns.send(json!({"type": "typing", "data": {}})).await;
    let error = anns.expect("error").await;
    assert_eq!((error["code"].as_u64(), error["error"].is_string()), (Some(400), true), "{error}");
    anns.send(json!({"type": "read", "data": {"chat_id": chat_id, "message_id": "999999"}})).await;
    assert_eq!(anns.expect("error").await["code"], 404);
    anns.send(json!({"type": "ping"})).await;
    anns.expect("pong").await;
    anns.quiet("message", Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_simple_chat_user_and_a_messenger_user_share_a_group_live() {
    let server = harness::start().await;
    let ann = join(&server, "ann", "ann@example.com").await;
    let messenger = server.register("13800000021", "messenger").await;
    let group = call(
        &server,
        Method::POST,
        "/group",
        Some(&ann.token),
        Some(json!({"name": "mixed", "member_ids": [messenger.id.to_string()]})),
    )
    .await;
    let group_id = group.body["data"]["group_id"].as_str().unwrap().to_owned();
    let chat: i64 = group_id.parse().unwrap();
    let mut simple = Socket::connect(&server.base, &ann.token).await;
    simple.expect("connected").await;
    let mut canonical = server.connect(&messenger).await;

    // Seed 001 → seed 002.
    call(
        &server,
        Method::POST,
        "/chat/message",
        Some(&ann.token),
        Some(json!({"content": "from 001", "group_id": group_id})),
    )
    .await;
    let arrived = canonical.expect("message.new").await;
    assert_eq!((arrived.data["content"].as_str(), arrived.data["chat_id"].as_i64()), (Some("from 001"), Some(chat)));
    let from_simple = arrived.data["id"].as_i64().unwrap();
    // Seed 002 → seed 001.
    canonical.send("message.send", json!({"chat_id": chat, "content": "from 002"})).await;
    let pushed = simple.expect_message("from 002").await;
    assert_eq!(
        (pushed["data"]["group_id"].as_str(), pushed["data"]["sender_id"].as_str()),
        (Some(group_id.as_str()), Some(messenger.id.to_string().as_str()))
    );

    // Typing and read state, each in its own shape.
    canonical.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    assert_eq!(simple.expect("typing").await["data"]["user_id"], messenger.id.to_string());
    simple.send(json!({"type": "typing", "data": {"group_id": group_id}})).await;
    assert_eq!(canonical.expect("typing").await.data["chat_id"], chat);
    canonical.send("message.read", json!({"chat_id": chat, "message_id": from_simple})).await;
    assert_eq!(simple.expect("read").await["data"]["message_id"], from_simple.to_string());

    // A delete on seed 002 reaches seed 001 as `delete`.
    let to_delete = pushed["data"]["message_id"].as_str().unwrap().to_owned();
    let deleted =
        server.api(Method::DELETE, &format!("/api/messages/{to_delete}"), &messenger.token, json!(null)).await;
    assert_eq!(deleted["code"], 200, "{deleted}");
    assert_eq!(simple.expect("delete").await["data"]["message_id"], to_delete.as_str());

    // One log: the same ids in the same order through both contracts, with the read state.
    let history =
        call(&server, Method::GET, &format!("/chat/messages?group_id={group_id}"), Some(&ann.token), None).await;
    let ids: Vec<String> = history.body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    let canonical_history =
        server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &messenger.token, json!(null)).await;
    let canonical_ids: Vec<String> = canonical_history["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap().to_string())
        .collect();
    assert_eq!(ids, canonical_ids);
    assert_eq!(history.body["data"]["messages"][0]["read_by"][0]["user_id"], messenger.id.to_string());
}
