//! A seed 000 (dating app) client, written from its document: the paths,
//! fields, codes and frames of sections 1, 2, 5 and 7, spoken over real
//! HTTP and WebSocket connections. Nothing here uses the engine's types.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{self, Server, WAIT};

/// A 4 × 3 PNG.
pub(crate) const PNG_4X3: [u8; 73] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x03, 0x08, 0x02, 0x00, 0x00, 0x00, 0x3b, 0x96, 0x39, 0x91, 0x00, 0x00, 0x00, 0x10, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00, 0x47, 0x0c, 0x38, 0x39, 0x00, 0xf5, 0x31, 0x0b, 0xf5,
    0x35, 0x7b, 0xfb, 0x82, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// An HTTP status and a seed 000 body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// A dating-app user with a session.
#[derive(Debug, Clone)]
pub(crate) struct Dater {
    pub(crate) id: i64,
    pub(crate) token: String,
    pub(crate) refresh_token: String,
}

/// A REST call under `/v1` with the section 1.1 headers.
pub(crate) async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = server
        .http
        .request(method, format!("{}/v1{path}", server.base))
        .header("X-Request-ID", "req_test_1")
        .header("X-Device-ID", "device_test")
        .header("X-Platform", "ios");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    Answer { status, body }
}

/// Section 2.1 then 2.2: a code, then registration with it.
pub(crate) async fn register(server: &Server, phone: &str) -> Dater {
    let sent =
        call(server, Method::POST, "/auth/sms-code/send", None, Some(json!({"phone": phone, "type": "register"})))
            .await;
    assert_eq!(sent.body["code"], 200, "{}", sent.body);
    assert_eq!(sent.body["data"]["expire_seconds"], 300);
    assert_eq!(sent.body["data"]["send_interval"], 60);
    // The server runs with --dev, which shows the code instead of texting it.
    let code = sent.body["data"]["debug_code"].as_str().unwrap().to_owned();
    let body = json!({"phone": phone, "code": code, "password": "Abc123!@#"});
    let registered = call(server, Method::POST, "/auth/register", None, Some(body)).await;
    assert_eq!(registered.body["code"], 200, "{}", registered.body);
    let data = &registered.body["data"];
    Dater {
        id: data["user_id"].as_i64().unwrap(),
        token: data["access_token"].as_str().unwrap().into(),
        refresh_token: data["refresh_token"].as_str().unwrap().into(),
    }
}

/// Section 7: a WebSocket client.
pub(crate) struct Socket {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Socket {
    /// `wss://…/v1?token=`.
    pub(crate) async fn connect(base: &str, token: &str) -> Self {
        let url = format!("{}/v1?token={token}", base.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await.unwrap();
        Self { socket }
    }

    /// `/v1` with no token: the first frame must be `auth`.
    pub(crate) async fn connect_bare(base: &str) -> Self {
        let url = format!("{}/v1", base.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await.unwrap();
        Self { socket }
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next()).await.expect("no frame within 5 s");
            match frame.expect("connection ended").expect("read failed") {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert!(frame["timestamp"].is_i64(), "every frame carries a millisecond timestamp: {frame}");
                    return frame;
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame =
                tokio::time::timeout_at(deadline, self.next()).await.unwrap_or_else(|_| panic!("no {kind} in time"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads until the server closes; answers the close code.
    pub(crate) async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.expect("not closed in time") {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The `new_message` of message `id`, skipping others.
    pub(crate) async fn expect_message(&mut self, id: &Value) -> Value {
        loop {
            let frame = self.expect("new_message").await;
            if &frame["data"]["message_id"] == id {
                return frame;
            }
        }
    }

    /// The next `message_status` of `status`, skipping others.
    pub(crate) async fn expect_status(&mut self, status: &str) -> Value {
        loop {
            let frame = self.expect("message_status").await;
            if frame["data"]["status"] == status {
                return frame;
            }
        }
    }

    /// Asserts no frame of `kind` arrives within `within`.
    pub(crate) async fn quiet(&mut self, kind: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_ne!(frame["type"], kind, "unexpected {frame}");
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[tokio::test]
async fn section_two_auth_works_as_written_and_refuses_bad_input_with_its_codes() {
    let server = harness::start().await;
    // 2.1: a bad phone, a missing type.
    let bad =
        call(&server, Method::POST, "/auth/sms-code/send", None, Some(json!({"phone": "12", "type": "login"}))).await;
    assert_eq!((bad.status, bad.body["code"].as_u64()), (400, Some(40001)), "{}", bad.body);
    assert_eq!(bad.body["request_id"], "req_test_1", "the request id is echoed");
    assert!(bad.body["timestamp"].is_i64());
    let missing = call(&server, Method::POST, "/auth/sms-code/send", None, Some(json!({"phone": "13800138000"}))).await;
    assert_eq!(missing.body["code"], 40002, "{}", missing.body);
    assert_eq!(missing.body["data"]["errors"][0]["field"], "type");

    let dater = register(&server, "13800138000").await;
    // 2.1 again for the taken number: 40901.
    let taken = call(
        &server,
        Method::POST,
        "/auth/sms-code/send",
        None,
        Some(json!({"phone": "13800138000", "type": "register"})),
    )
    .await;
    // A register code for a taken number answers like any other (it reaches
    // the phone's owner): the answer does not say the number is registered.
    assert_eq!((taken.status, taken.body["code"].as_u64()), (200, Some(200)), "{}", taken.body);
    // 2.1 twice within send_interval: 42901.
    let code = json!({"phone": "13700137000", "type": "login"});
    let first = call(&server, Method::POST, "/auth/sms-code/send", None, Some(code.clone())).await;
    assert_eq!(first.body["code"], 200, "{}", first.body);
    let soon = call(&server, Method::POST, "/auth/sms-code/send", None, Some(code)).await;
    assert_eq!((soon.status, soon.body["code"].as_u64()), (429, Some(42901)), "{}", soon.body);
    // 2.2 without the code: a missing parameter.
    let no_code = json!({"phone": "13900139000", "password": "Abc123!@#"});
    let refused = call(&server, Method::POST, "/auth/register", None, Some(no_code)).await;
    assert_eq!(refused.body["code"], 40002, "{}", refused.body);
    let wrong_code = json!({"phone": "13900139000", "code": "000000", "password": "Abc123!@#"});
    let refused = call(&server, Method::POST, "/auth/register", None, Some(wrong_code)).await;
    assert_eq!(refused.body["code"], 40001, "{}", refused.body);

    // 2.3: the user as written, and is_new_device from device_info.
    let login = json!({"phone": "13800138000", "password": "Abc123!@#",
        "device_info": {"device_id": "device_xxx", "device_type": "ios", "device_model": "iPhone14,2"}});
    let first = call(&server, Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert_eq!(first.body["code"], 200, "{}", first.body);
    let data = &first.body["data"];
    assert_eq!(data["user_id"], dater.id);
    assert_eq!(data["expires_in"], 86_400);
    assert_eq!(data["is_new_device"], true);
    assert_eq!(data["user"]["id"], dater.id);
    assert_eq!(data["user"]["phone"], "138****8000");
    assert_eq!(data["user"]["status"], 1);
    assert!(data["user"]["nickname"].is_string() && data["user"]["avatar_url"].is_string());
    let again = call(&server, Method::POST, "/auth/login", None, Some(login)).await;
    assert_eq!(again.body["data"]["is_new_device"], false, "the same device again");
    // Without device_info, X-Device-ID names the device: the one registered from.
    let plain = json!({"phone": "13800138000", "password": "Abc123!@#"});
    let by_header = call(&server, Method::POST, "/auth/login", None, Some(plain.clone())).await;
    assert_eq!(by_header.body["data"]["is_new_device"], false, "{}", by_header.body);
    let long = server
        .http
        .post(format!("{}/v1/auth/login", server.base))
        .header("X-Device-ID", "d".repeat(200))
        .json(&plain)
        .send()
        .await
        .unwrap();
    let long: Value = long.json().await.unwrap();
    assert_eq!(long["code"], 40001, "{long}");
    let wrong = json!({"phone": "13800138000", "password": "wrong-password"});
    let wrong = call(&server, Method::POST, "/auth/login", None, Some(wrong)).await;
    assert_eq!(wrong.body["code"], 40001, "{}", wrong.body);

    // 2.4: a rotated pair; the old refresh token is then refused (40103).
    let refreshed =
        call(&server, Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": dater.refresh_token}))).await;
    assert_eq!(refreshed.body["code"], 200, "{}", refreshed.body);
    assert!(refreshed.body["data"]["access_token"].is_string() && refreshed.body["data"]["refresh_token"].is_string());
    let bogus = call(&server, Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": "nope"}))).await;
    assert_eq!((bogus.status, bogus.body["code"].as_u64()), (401, Some(40103)), "{}", bogus.body);

    // 1.3: no token, a bad token; an unknown path.
    let anonymous = call(&server, Method::GET, "/conversations", None, None).await;
    assert_eq!((anonymous.status, anonymous.body["code"].as_u64()), (401, Some(40101)), "{}", anonymous.body);
    let forged = call(&server, Method::GET, "/conversations", Some("not-a-token"), None).await;
    assert_eq!(forged.body["code"], 40103, "{}", forged.body);
    let nowhere = call(&server, Method::GET, "/matching/daily", Some(&dater.token), None).await;
    assert_eq!((nowhere.status, nowhere.body["code"].as_u64()), (404, Some(40401)), "matching is the app backend's");
    // The OpenAPI document of the mount.
    let doc: Value =
        server.http.get(format!("{}/v1/openapi.json", server.base)).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/conversations/{conversation_id}/messages"].is_object(), "{doc}");
}

/// Two daters and the conversation their match opened (made here through
/// the canonical API with a dating token: one account, every contract).
async fn matched(server: &Server) -> (Dater, Dater, i64) {
    let her = register(server, "13800138001").await;
    let him = register(server, "13800138002").await;
    let chat =
        server.api(Method::POST, "/api/chats", &her.token, json!({"type": "private", "members": [him.id]})).await;
    let conversation = chat["data"]["id"].as_i64().unwrap_or_else(|| panic!("{chat}"));
    (her, him, conversation)
}

/// Her, him, the conversation their match opened, and each one's socket.
struct Scene {
    server: Server,
    her: Dater,
    him: Dater,
    conversation: i64,
    hers: Socket,
    his: Socket,
}

impl Scene {
    async fn start() -> Self {
        let server = harness::start().await;
        let (her, him, conversation) = matched(&server).await;
        let mut hers = Socket::connect(&server.base, &her.token).await;
        hers.expect("auth_success").await;
        let mut his = Socket::connect(&server.base, &him.token).await;
        his.expect("auth_success").await;
        Self { server, her, him, conversation, hers, his }
    }

    fn messages(&self) -> String {
        format!("/conversations/{}/messages", self.conversation)
    }

    /// Sends over REST as `who`; answers the message.
    async fn send(&self, who: &Dater, body: Value) -> Value {
        let sent = call(&self.server, Method::POST, &self.messages(), Some(&who.token), Some(body)).await;
        assert_eq!(sent.body["code"], 200, "{}", sent.body);
        sent.body["data"].clone()
    }
}

/// 5.5: `reader` has read `conversation` up to `message_id`.
async fn read_up_to(server: &Server, reader: &Dater, conversation: i64, message_id: i64) {
    let body = json!({"last_read_message_id": message_id});
    let path = format!("/conversations/{conversation}/read");
    let read = call(server, Method::PUT, &path, Some(&reader.token), Some(body)).await;
    assert_eq!(read.body["code"], 200, "{}", read.body);
}

/// 5.4: an upload of `file` as `kind`.
async fn upload(server: &Server, token: &str, kind: &str) -> Value {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(PNG_4X3.to_vec()).file_name("photo.png"))
        .text("type", kind.to_owned());
    let request = server.http.post(format!("{}/v1/messages/upload", server.base)).bearer_auth(token).multipart(form);
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn section_seven_frames_and_section_five_sends_flow_live() {
    let server = harness::start().await;
    let (her, him, conversation) = matched(&server).await;

    // 7.1: the token in the URL, or an `auth` frame.
    let mut hers = Socket::connect(&server.base, &her.token).await;
    let welcome = hers.expect("auth_success").await;
    assert_eq!(welcome["data"]["user_id"], her.id);
    let mut his = Socket::connect_bare(&server.base).await;
    his.send(json!({"type": "auth", "data": {"token": him.token}, "timestamp": now_ms()})).await;
    assert_eq!(his.expect("auth_success").await["data"]["user_id"], him.id);

    // 7.4: ping / pong with a millisecond timestamp.
    his.send(json!({"type": "ping", "timestamp": now_ms()})).await;
    let pong = his.expect("pong").await;
    assert!(pong["timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    // 7.2: `message` is acked; the other side gets `new_message`.
    hers.send(json!({"type": "message", "data": {"conversation_id": conversation, "content": "你好！",
        "client_message_id": "client_msg_001"}, "timestamp": now_ms()}))
        .await;
    let ack = hers.expect("message_ack").await;
    let first_id = ack["data"]["message_id"].as_i64().unwrap();
    assert_eq!(
        (ack["data"]["client_message_id"].as_str(), ack["data"]["seq"].as_u64()),
        (Some("client_msg_001"), Some(1))
    );
    assert_eq!(hers.expect("new_message").await["data"]["message_id"], first_id, "her own devices get it too");
    let pushed = his.expect("new_message").await;
    let data = &pushed["data"];
    assert_eq!((data["message_id"].as_i64(), data["conversation_id"].as_i64()), (Some(first_id), Some(conversation)));
    assert_eq!(
        (data["sender_id"].as_i64(), data["type"].as_str(), data["content"].as_str()),
        (Some(her.id), Some("text"), Some("你好！"))
    );
    assert!(data["sent_at"].is_string());

    // Typing: the peer gets `user_typing`.
    his.send(json!({"type": "typing", "data": {"conversation_id": conversation}, "timestamp": now_ms()})).await;
    let typing = hers.expect("user_typing").await;
    assert_eq!(
        (typing["data"]["user_id"].as_i64(), typing["data"]["conversation_id"].as_i64()),
        (Some(him.id), Some(conversation))
    );

    // 5.3 over REST, retried with the same client_message_id: the original.
    let body = json!({"type": "text", "content": "周末有空一起吃饭吗？", "client_message_id": "client_msg_002", "extra": {"mood": "hopeful"}});
    let path = format!("/conversations/{conversation}/messages");
    let sent = call(&server, Method::POST, &path, Some(&him.token), Some(body.clone())).await;
    assert_eq!(sent.body["code"], 200, "{}", sent.body);
    let second = &sent.body["data"];
    assert_eq!(
        (second["status"].as_str(), second["is_me"].as_bool(), second["seq"].as_u64()),
        (Some("sent"), Some(true), Some(2))
    );
    assert_eq!(second["extra"]["mood"], "hopeful");
    let retry = call(&server, Method::POST, &path, Some(&him.token), Some(body)).await;
    assert_eq!(retry.body["data"]["message_id"], second["message_id"], "a retry answers the original");
    assert_eq!(hers.expect("new_message").await["data"]["message_id"], second["message_id"]);
    hers.quiet("new_message", Duration::from_millis(300)).await;

    // His device says it has her first message (a frame this engine adds):
    // her history shows it delivered, with the time.
    his.send(json!({"type": "delivered", "data": {"conversation_id": conversation, "message_ids": [first_id]}, "timestamp": now_ms()}))
        .await;
    assert_eq!(hers.expect_status("delivered").await["data"]["message_id"], first_id);
    let mine = call(&server, Method::GET, &path, Some(&her.token), None).await;
    let first_item = &mine.body["data"]["items"][0];
    assert_eq!((first_item["status"].as_str(), first_item["delivered_at"].is_string()), (Some("delivered"), true));

    // 5.5: his read reaches her as `message_status` read.
    read_up_to(&server, &him, conversation, first_id).await;
    let status = hers.expect("message_status").await;
    assert_eq!((status["data"]["status"].as_str(), status["data"]["user_id"].as_i64()), (Some("read"), Some(him.id)));
}

#[tokio::test]
async fn section_five_media_conversations_history_and_recall() {
    let Scene { server, her, him, conversation, mut hers, mut his } = Scene::start().await;
    let scene_path = format!("/conversations/{conversation}/messages");
    let path = scene_path.as_str();
    let first = call(&server, Method::POST, path, Some(&her.token), Some(json!({"content": "你好！"}))).await;
    let first_id = first.body["data"]["message_id"].as_i64().unwrap();
    let sent =
        call(&server, Method::POST, path, Some(&him.token), Some(json!({"content": "周末有空一起吃饭吗？"}))).await;
    let second = sent.body["data"].clone();

    // 5.4 then 5.3 with media: the size comes from the file.
    let upload = upload(&server, &her.token, "image").await;
    assert_eq!(upload["code"], 200, "{upload}");
    let media = &upload["data"];
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64(), media["size"].as_u64()),
        (Some(4), Some(3), Some(73))
    );
    let image = json!({"type": "image", "media_url": media["url"], "width": 4, "height": 3, "client_message_id": "client_msg_003"});
    let sent = call(&server, Method::POST, path, Some(&her.token), Some(image)).await;
    assert_eq!(sent.body["data"]["media_url"], media["url"], "{}", sent.body);
    let pushed = his.expect_message(&sent.body["data"]["message_id"]).await;
    assert_eq!((pushed["data"]["width"].as_u64(), pushed["data"]["height"].as_u64()), (Some(4), Some(3)));

    // 5.5: his read reaches her as `message_status` read.
    read_up_to(&server, &him, conversation, first_id).await;
    let status = hers.expect_status("read").await;
    assert_eq!((status["data"]["status"].as_str(), status["data"]["user_id"].as_i64()), (Some("read"), Some(him.id)));

    // 5.1: the conversation with the peer's real presence and unread counts.
    let list = call(&server, Method::GET, "/conversations", Some(&her.token), None).await;
    assert_eq!(list.body["code"], 200, "{}", list.body);
    let item = &list.body["data"]["items"][0];
    assert_eq!(
        (item["conversation_id"].as_i64(), item["user"]["user_id"].as_i64()),
        (Some(conversation), Some(him.id))
    );
    assert_eq!(item["user"]["is_online"], true, "he is connected");
    assert_eq!((item["unread_count"].as_u64(), list.body["data"]["total_unread"].as_u64()), (Some(1), Some(1)));
    assert_eq!(item["last_message"]["is_me"], true);
    let pagination = &list.body["data"]["pagination"];
    assert_eq!((pagination["total"].as_u64(), pagination["has_next"].as_bool()), (Some(1), Some(false)));
    let bad_page = call(&server, Method::GET, "/conversations?page_size=101", Some(&her.token), None).await;
    assert_eq!(bad_page.body["code"], 40001, "page_size is at most 100");
    let far = call(&server, Method::GET, "/conversations?page=4294967295&page_size=100", Some(&her.token), None).await;
    assert_eq!((far.body["code"].as_u64(), far.body["data"]["items"].as_array().map(Vec::len)), (Some(200), Some(0)));
    let negative = call(&server, Method::GET, "/conversations?page=-1", Some(&her.token), None).await;
    assert_eq!(negative.body["code"], 40001, "{}", negative.body);

    // 5.2: history before an id, with read state from her side.
    let third = sent.body["data"]["message_id"].as_i64().unwrap();
    let history =
        call(&server, Method::GET, &format!("{path}?before_id={third}&page_size=1"), Some(&her.token), None).await;
    let items = history.body["data"]["items"].as_array().unwrap();
    assert_eq!((items.len(), history.body["data"]["has_more"].as_bool()), (1, Some(true)), "{}", history.body);
    assert_eq!(
        (items[0]["message_id"].as_i64(), items[0]["status"].as_str()),
        (second["message_id"].as_i64(), Some("delivered"))
    );
    let history = call(&server, Method::GET, path, Some(&her.token), None).await;
    let items = history.body["data"]["items"].as_array().unwrap();
    assert_eq!(
        (items[0]["status"].as_str(), items[0]["is_me"].as_bool()),
        (Some("read"), Some(true)),
        "he read her first"
    );
    assert!(items[0]["read_at"].is_string(), "with the time he read it: {}", items[0]);
    assert_eq!(items[2]["status"], "sent", "her image is not read yet");

    // 5.6: recall within 2 minutes, by the sender only.
    let recall = format!("/messages/{third}/recall");
    let not_his = call(&server, Method::PUT, &recall, Some(&him.token), None).await;
    assert_eq!((not_his.status, not_his.body["code"].as_u64()), (403, Some(40301)), "{}", not_his.body);
    let recalled = call(&server, Method::PUT, &recall, Some(&her.token), None).await;
    assert_eq!(recalled.body["code"], 200, "{}", recalled.body);
    for socket in [&mut hers, &mut his] {
        let status = socket.expect_status("recalled").await;
        assert_eq!(status["data"]["message_id"], third);
    }
    let history = call(&server, Method::GET, path, Some(&him.token), None).await;
    let recalled_item = &history.body["data"]["items"][2];
    assert_eq!(
        (recalled_item["is_recalled"].as_bool(), recalled_item["content"].as_str()),
        (Some(true), Some("")),
        "{recalled_item}"
    );
    assert!(recalled_item.get("media_url").is_none(), "a recalled message keeps no media");
}

#[tokio::test]
async fn section_five_and_seven_refuse_bad_input_with_their_codes() {
    let scene = Scene::start().await;
    let Scene { server, her, conversation, .. } = &scene;
    let mut hers = Socket::connect(&server.base, &her.token).await;
    hers.expect("auth_success").await;
    let path = scene.messages();
    let third = scene.send(her, json!({"content": "mine"})).await["message_id"].as_i64().unwrap();
    let not_his = call(server, Method::PUT, &format!("/messages/{third}/recall"), Some(&scene.him.token), None).await;
    assert_eq!((not_his.status, not_his.body["code"].as_u64()), (403, Some(40301)), "{}", not_his.body);
    // Bad input on each messaging endpoint.
    let outsider = register(server, "13800138003").await;
    let peek = call(server, Method::GET, &path, Some(&outsider.token), None).await;
    assert_eq!((peek.status, peek.body["code"].as_u64()), (403, Some(40301)), "{}", peek.body);
    let nan = call(server, Method::GET, "/conversations/abc/messages", Some(&her.token), None).await;
    assert_eq!(nan.body["code"], 40001, "{}", nan.body);
    let empty = call(server, Method::POST, &path, Some(&her.token), Some(json!({"type": "text", "content": ""}))).await;
    assert_eq!(empty.body["code"], 40001, "{}", empty.body);
    let unknown =
        call(server, Method::POST, &path, Some(&her.token), Some(json!({"type": "hologram", "content": "x"}))).await;
    assert_eq!(unknown.body["code"], 40001, "{}", unknown.body);
    let no_marker =
        call(server, Method::PUT, &format!("/conversations/{conversation}/read"), Some(&her.token), Some(json!({})))
            .await;
    assert_eq!(no_marker.body["code"], 40002, "{}", no_marker.body);
    let gone = call(server, Method::PUT, "/messages/999999/recall", Some(&her.token), None).await;
    assert_eq!((gone.status, gone.body["code"].as_u64()), (404, Some(40401)), "{}", gone.body);
    let refused = upload(server, &her.token, "document").await;
    assert_eq!(refused["code"], 40001, "only image, voice and video: {refused}");

    // Bad frames: an error frame with 1.3's codes, and the connection stays.
    hers.send(json!({"type": "message", "data": {"content": "where to?"}, "timestamp": now_ms()})).await;
    assert_eq!(hers.expect("error").await["data"]["code"], 40001);
    hers.send(json!({"type": "message", "data": {"conversation_id": 999_999, "content": "x"}, "timestamp": now_ms()}))
        .await;
    assert_eq!(hers.expect("error").await["data"]["code"], 40401);
    hers.send(json!({"type": "dance", "timestamp": now_ms()})).await;
    assert_eq!(hers.expect("error").await["data"]["code"], 40001);
    hers.send(json!({"type": "ping", "timestamp": now_ms()})).await;
    hers.expect("pong").await;
}

#[tokio::test]
async fn a_bad_token_is_refused_before_the_upgrade_in_seed_000s_shape() {
    let server = harness::start().await;
    let url = format!("{}/v1?token=forged", server.base.replacen("http", "ws", 1));
    let refused = tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else { panic!("{refused:?}") };
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["code"], 40103, "{body}");
}

#[tokio::test]
async fn a_dating_user_and_a_messenger_user_share_one_chat_live() {
    let server = harness::start().await;
    let dater = register(&server, "13800138004").await;
    let messenger = server.register("13800138005", "messenger").await;
    // The messenger opens the chat; the dater's token works on /api too.
    let chat = server.chat(&messenger, "private", &[&harness::User { id: dater.id, token: dater.token.clone() }]).await;
    let mut dating = Socket::connect(&server.base, &dater.token).await;
    dating.expect("auth_success").await;
    let mut canonical = server.connect(&messenger).await;

    // Seed 000 → seed 002.
    dating
        .send(json!({"type": "message", "data": {"conversation_id": chat, "content": "hi from 000",
        "client_message_id": "d-1"}, "timestamp": now_ms()}))
        .await;
    let from_dater = dating.expect("message_ack").await["data"]["message_id"].as_i64().unwrap();
    let arrived = canonical.expect("message.new").await;
    assert_eq!(
        (arrived.data["id"].as_i64(), arrived.data["content"].as_str()),
        (Some(from_dater), Some("hi from 000"))
    );
    assert_eq!(arrived.data["sender_id"], dater.id);

    // Seed 002 → seed 000.
    let id = canonical
        .send("message.send", json!({"chat_id": chat, "content": "hi from 002", "client_message_id": "m-1"}))
        .await;
    let from_messenger = canonical.reply(&id).await.data["message"]["id"].as_i64().unwrap();
    let arrived = loop {
        let frame = dating.expect("new_message").await;
        if frame["data"]["sender_id"] == messenger.id {
            break frame;
        }
    };
    assert_eq!(
        (arrived["data"]["message_id"].as_i64(), arrived["data"]["content"].as_str()),
        (Some(from_messenger), Some("hi from 002"))
    );

    // Typing both ways, each in its own shape.
    canonical.send("typing", json!({"chat_id": chat, "is_typing": true})).await;
    assert_eq!(dating.expect("user_typing").await["data"]["user_id"], messenger.id);
    dating.send(json!({"type": "typing", "data": {"conversation_id": chat}, "timestamp": now_ms()})).await;
    let typing = canonical.expect("typing").await;
    assert_eq!((typing.data["user_id"].as_i64(), typing.data["is_typing"].as_bool()), (Some(dater.id), Some(true)));

    // Delivery state: the messenger's device acknowledges the dater's message.
    canonical.send("message.delivered", json!({"chat_id": chat, "message_ids": [from_dater]})).await;
    let delivered = dating.expect_status("delivered").await;
    assert_eq!(delivered["data"]["message_id"], from_dater);
    let path = format!("/conversations/{chat}/messages");
    let before_read = call(&server, Method::GET, &path, Some(&dater.token), None).await;
    let first = &before_read.body["data"]["items"][0];
    assert_eq!((first["status"].as_str(), first["delivered_at"].is_string()), (Some("delivered"), true), "{first}");

    // Read state: the messenger reads the dater's message.
    canonical.send("message.read", json!({"chat_id": chat, "message_id": from_dater})).await;
    let read = dating.expect_status("read").await;
    assert_eq!(
        (read["data"]["message_id"].as_i64(), read["data"]["user_id"].as_i64()),
        (Some(from_dater), Some(messenger.id))
    );

    // Recall from seed 000 is a delete to seed 002.
    let recalled =
        call(&server, Method::PUT, &format!("/messages/{from_dater}/recall"), Some(&dater.token), None).await;
    assert_eq!(recalled.body["code"], 200, "{}", recalled.body);
    let deleted = canonical.expect("message.delete").await;
    assert_eq!(deleted.data["id"], from_dater);

    // History is one log, read through either contract.
    let canonical_history =
        server.api(Method::GET, &format!("/api/chats/{chat}/messages"), &messenger.token, json!(null)).await;
    let canonical_ids: Vec<i64> =
        canonical_history["data"]["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    let dating_history =
        call(&server, Method::GET, &format!("/conversations/{chat}/messages"), Some(&dater.token), None).await;
    let items = dating_history.body["data"]["items"].as_array().unwrap();
    let dating_ids: Vec<i64> = items.iter().map(|m| m["message_id"].as_i64().unwrap()).collect();
    assert_eq!(canonical_ids, vec![from_dater, from_messenger]);
    assert_eq!(dating_ids, canonical_ids, "the same log");
    assert_eq!((items[0]["status"].as_str(), items[0]["is_recalled"].as_bool()), (Some("read"), Some(true)));
    assert_eq!(canonical_history["data"]["messages"][0]["is_deleted"], true);
}

#[tokio::test]
async fn dialects_are_served_only_when_chosen() {
    let server = harness::start_with_flags(&["--dialects", "002,001"], |_| {}).await;
    let body = json!({"phone": "13800138000", "type": "login"});
    let off = server.http.post(format!("{}/v1/auth/sms-code/send", server.base)).json(&body).send().await.unwrap();
    assert_eq!(off.status().as_u16(), 404, "seed 000 is not mounted");
    let url = format!("{}/v1?token=x", server.base.replacen("http", "ws", 1));
    assert!(tokio_tungstenite::connect_async(url).await.is_err(), "nor its WebSocket");
    let on = server.http.get(format!("{}/api/v1/openapi.json", server.base)).send().await.unwrap();
    assert_eq!(on.status().as_u16(), 200, "seed 001 is");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--dialects", "002,007"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a served seed"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A voice message: 5.4 takes `voice` and the duration the client gives;
/// the message keeps it.
#[tokio::test]
async fn a_voice_message_keeps_its_duration() {
    let scene = Scene::start().await;
    let Scene { server, her, .. } = &scene;
    // A WAV header and a little silence.
    let mut wav = b"RIFF\x2c\x01\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x08\x01\x00\x00".to_vec();
    wav.extend_from_slice(&[0; 264]);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(wav).file_name("note.wav"))
        .text("type", "voice")
        .text("duration", "15");
    let request =
        server.http.post(format!("{}/v1/messages/upload", server.base)).bearer_auth(&her.token).multipart(form);
    let uploaded: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(uploaded["code"], 200, "{uploaded}");
    assert_eq!((uploaded["data"]["duration"].as_u64(), uploaded["data"]["width"].as_u64()), (Some(15), Some(0)));
    let voice =
        json!({"type": "voice", "media_url": uploaded["data"]["url"], "duration": 15, "client_message_id": "v1"});
    let sent = scene.send(her, voice).await;
    assert_eq!((sent["type"].as_str(), sent["duration"].as_u64()), (Some("voice"), Some(15)), "{sent}");
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(PNG_4X3.to_vec()).file_name("x.png"))
        .text("type", "image")
        .text("duration", "long");
    let request =
        server.http.post(format!("{}/v1/messages/upload", server.base)).bearer_auth(&her.token).multipart(form);
    let refused: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(refused["code"], 40001, "{refused}");
}

/// Bad frames of every kind a dating client sends: each an `error` with
/// section 1.3's code, or a close for a bad `auth`.
#[tokio::test]
async fn every_section_seven_frame_refuses_bad_data() {
    let scene = Scene::start().await;
    let Scene { server, her, conversation, .. } = &scene;
    let mut hers = Socket::connect(&server.base, &her.token).await;
    hers.expect("auth_success").await;
    let frames = [
        (json!({"type": "typing", "data": {}}), 40001),
        (json!({"type": "typing", "data": {"conversation_id": 999_999}}), 40401),
        (json!({"type": "read", "data": {"conversation_id": conversation}}), 40001),
        (json!({"type": "read", "data": {"conversation_id": conversation, "last_read_message_id": 999_999}}), 40401),
        (json!({"type": "delivered", "data": {"conversation_id": conversation, "message_ids": "all"}}), 40001),
        (json!({"type": "auth", "data": {"token": "again"}}), 40001),
    ];
    for (frame, code) in frames {
        hers.send(frame.clone()).await;
        let error = hers.expect("error").await;
        assert_eq!(error["data"]["code"], code, "{frame}: {error}");
    }
    hers.send(json!({"type": "ping", "timestamp": now_ms()})).await;
    hers.expect("pong").await;
    // A bad token in the `auth` frame closes with 4001.
    let mut stranger = Socket::connect_bare(&server.base).await;
    stranger.send(json!({"type": "auth", "data": {"token": "forged"}, "timestamp": now_ms()})).await;
    assert_eq!(stranger.closed().await, Some(4001));
}
