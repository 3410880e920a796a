use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::{start, start_with};

#[tokio::test]
async fn connect_event_first_then_ping_pong() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect_with(Some(&alice.token), None).await.unwrap();
    let connect = client.next().await;
    assert_eq!(connect.kind, "connect");
    assert_eq!(connect.data["status"], "connected");
    assert_eq!(connect.data["user_id"], alice.id);
    assert_eq!(connect.data["heartbeat_interval"], 30);
    assert!(connect.data["session_id"].is_string());
    let id = client.send("ping", json!({})).await;
    let pong = client.reply(&id).await;
    assert_eq!(pong.kind, "pong");
    // WebSocket-level pings are answered too.
    client.send_raw(Message::Ping(b"hi".to_vec().into())).await;
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Pong(payload))) = futures_util::StreamExt::next(&mut client.socket).await {
                return payload;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(pong.as_ref(), b"hi");
}

#[tokio::test]
async fn every_ping_of_a_burst_is_answered() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect(&alice).await;
    // As many as the server handles in one batch: the last one's pong is
    // still inside tungstenite when the batch ends.
    for n in 0..32u8 {
        futures_util::SinkExt::feed(&mut client.socket, Message::Ping(vec![n].into())).await.unwrap();
    }
    futures_util::SinkExt::flush(&mut client.socket).await.unwrap();
    let mut pongs = Vec::new();
    while pongs.len() < 32 {
        let frame =
            tokio::time::timeout(Duration::from_secs(3), futures_util::StreamExt::next(&mut client.socket)).await;
        match frame.expect("a pong within 3 s").expect("connection open").unwrap() {
            Message::Pong(payload) => pongs.push(payload[0]),
            other => panic!("only pongs were asked for: {other:?}"),
        }
    }
    assert_eq!(pongs, (0..32).collect::<Vec<u8>>());
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect(&alice).await;
    // A ping right before the close: its pong and the close reply both come back, in order.
    client.send_raw(Message::Ping(b"last".to_vec().into())).await;
    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "done".into() };
    client.send_raw(Message::Close(Some(close))).await;
    let (mut pongs, mut reply) = (Vec::new(), None);
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = futures_util::StreamExt::next(&mut client.socket).await {
            match frame {
                Ok(Message::Pong(payload)) => pongs.push(payload),
                Ok(Message::Close(frame)) => reply = Some(frame),
                Ok(_) => {}
                Err(error) => panic!("the close handshake failed: {error}"),
            }
        }
    })
    .await
    .expect("the server ends the connection after its reply");
    assert_eq!(pongs, [b"last".to_vec()]);
    let reply = reply.expect("a close frame back").expect("with a code");
    assert_eq!(reply.code, CloseCode::Normal, "the client's code is echoed");
}

#[tokio::test]
async fn tokens_are_checked_before_and_after_the_upgrade() {
    let server = start_with(|config| config.auth_timeout = Duration::from_millis(300)).await;
    let alice = server.register("13800000001", "alice").await;

    let refused = server.connect_with(Some("not-a-token"), None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected HTTP 401, got {:?}", other.map(|_| ())),
    }
    let plain = server.http.get(server.base.clone() + "/ws").send().await.unwrap();
    assert_eq!(plain.status(), 400, "not an upgrade");
    assert!(plain.headers().contains_key("x-request-id"), "every response carries a request id");

    // ?token= works.
    let url = format!("{}?token={}", server.ws, alice.token);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = futures_util::StreamExt::next(&mut socket).await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"connect\""));

    // A first `auth` frame works.
    let mut late = server.connect_with(None, None).await.unwrap();
    late.send("auth", json!({"token": alice.token})).await;
    assert_eq!(late.expect("connect").await.data["user_id"], alice.id);

    let mut wrong = server.connect_with(None, None).await.unwrap();
    wrong.send("auth", json!({"token": "forged"})).await;
    assert_eq!(wrong.closed(Duration::from_secs(5)).await, Some(CloseCode::from(4001)));

    let mut silent = server.connect_with(None, None).await.unwrap();
    assert_eq!(silent.closed(Duration::from_secs(5)).await, Some(CloseCode::from(4002)), "no auth in time");

    // A logged-out token is refused.
    server.api(reqwest::Method::POST, "/api/auth/logout", &alice.token, json!({})).await;
    assert!(server.connect_with(Some(&alice.token), None).await.is_err());
}

#[tokio::test]
async fn bad_frames_get_errors_and_keep_the_connection() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect(&alice).await;

    client.send_raw(Message::Text("{not json".into())).await;
    let error = client.expect("error").await;
    assert_eq!(error.data["code"], 400);

    let id = client.send("teleport", json!({})).await;
    let error = client.reply(&id).await;
    assert_eq!((error.kind.as_str(), error.data["code"].as_u64()), ("error", Some(400)));
    assert!(error.data["message"].as_str().unwrap().contains("teleport"));

    let id = client.send("message.send", json!({"chat_id": "one"})).await;
    assert_eq!(client.reply(&id).await.data["code"], 400);

    let big = json!({"type": "message.send", "id": "big", "data": {"chat_id": 1, "content": "x".repeat(70 * 1024)}});
    client.send_raw(Message::Text(big.to_string().into())).await;
    assert_eq!(client.expect("error").await.data["code"], 413);

    // Still healthy.
    let id = client.send("ping", json!({})).await;
    assert_eq!(client.reply(&id).await.kind, "pong");
}

#[tokio::test]
async fn sustained_abuse_closes_with_a_reason() {
    let server = start_with(|config| config.commands_per_second = 5).await;
    let alice = server.register("13800000001", "alice").await;
    let mut client = server.connect(&alice).await;
    for _ in 0..25 {
        client.send_raw(Message::Text("garbage".into())).await;
    }
    assert_eq!(client.closed(Duration::from_secs(5)).await, Some(CloseCode::from(4400)));

    let mut fast = server.connect(&alice).await;
    for _ in 0..11 {
        fast.send("ping", json!({})).await;
    }
    assert_eq!(fast.expect("error").await.data["code"], 40001, "over the burst");
    for _ in 0..120 {
        fast.send("ping", json!({})).await;
    }
    assert_eq!(fast.closed(Duration::from_secs(5)).await, Some(CloseCode::from(4429)));
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let server = start_with(|config| {
        config.heartbeat_timeout = Duration::from_millis(600);
        config.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let alice = server.register("13800000001", "alice").await;
    let mut quiet = server.connect(&alice).await;
    let mut chatty = server.connect(&alice).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = chatty.send("ping", json!({})).await;
        chatty.reply(&id).await;
    }
    assert_eq!(quiet.closed(Duration::from_secs(5)).await, Some(CloseCode::from(4003)));
    let id = chatty.send("ping", json!({})).await;
    assert_eq!(chatty.reply(&id).await.kind, "pong", "a client that pings stays");
}

#[tokio::test]
async fn msgpack_both_ways() {
    let server = start().await;
    let alice = server.register("13800000001", "alice").await;
    let chat = server.chat(&alice, "group", &[]).await;
    let mut client = server.connect_with(Some(&alice.token), Some("switchboard.msgpack")).await.unwrap();
    assert!(client.binary, "the subprotocol is echoed");
    assert_eq!(client.next().await.kind, "connect");
    let id =
        client.send("message.send", json!({"chat_id": chat, "content": "packed", "client_message_id": "m1"})).await;
    let ack = client.reply(&id).await;
    assert_eq!(ack.kind, "message.ack");
    assert_eq!(ack.data["message"]["content"], "packed");
    assert_eq!(client.expect("message.new").await.data["seq"], 1);
    let json_client = server.connect_with(Some(&alice.token), Some("switchboard.json")).await.unwrap();
    assert!(!json_client.binary);
}

#[tokio::test]
async fn the_connection_limit_refuses_with_503_and_frees_on_close() {
    let server = start_with(|config| config.max_connections = 1).await;
    let alice = server.register("13800000001", "alice").await;
    let first = server.connect(&alice).await;
    match server.connect_with(Some(&alice.token), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
    }
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut again) = server.connect_with(Some(&alice.token), None).await {
            again.expect("connect").await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
