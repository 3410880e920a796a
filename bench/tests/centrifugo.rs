//! The Centrifugo v6 peer, driven by the load generator's native JSON
//! client protocol. Building it takes `go install` a few minutes on a fresh
//! machine, so these tests are ignored by default; run them with
//! `cargo test -p bench --test centrifugo -- --ignored` (the binary is
//! cached under `target/bench-cache/` after the first run).

use std::path::Path;

use bench::compare::{self, System};
use futures_util::{SinkExt, StreamExt};
use load_tests::dialect::{Dialect, Inbound};
use load_tests::{Common, api, chat, fanout};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-for-centrifugo-jwts";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The messages of the next text frame (Centrifugo packs several into one).
async fn next_messages(socket: &mut Socket) -> Vec<String> {
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await;
    match next {
        Ok(Some(Ok(Message::Text(text)))) => text.split('\n').map(str::to_owned).collect(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads until a message that `accept`s, and answers it.
async fn until(socket: &mut Socket, accept: impl Fn(&str) -> bool) -> String {
    for _ in 0..20 {
        if let Some(found) = next_messages(socket).await.into_iter().find(|message| accept(message)) {
            return found;
        }
    }
    panic!("no matching message in 20 frames");
}

async fn connect(url: &str, token: &str) -> Socket {
    let ws = format!("{}/connection/websocket", url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    let hello = format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#);
    socket.send(Message::Text(hello.into())).await.unwrap();
    socket
}

/// Fan-out and chat traffic through the generator: every owed delivery
/// arrives exactly once, and every publish is acked by its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds Centrifugo with go install on first use: cargo test -p bench --test centrifugo -- --ignored"]
async fn the_peer_fans_out_and_chats_with_every_delivery_accounted_for() {
    let server = compare::start(System::Centrifugo, Path::new("unused"), SECRET).await.unwrap();
    let common = Common::new(server.url(), server.pid(), 1, 10).unwrap();
    let args = fanout::Args {
        group_size: 5,
        groups: 2,
        rate: None,
        window: Some(8),
        duration_secs: 1,
        warmup_secs: 0,
        dialect: Dialect::Centrifugo,
        peer_secret: SECRET.to_owned(),
    };
    let connections = fanout::connections(&common, &args).await.unwrap();
    let measured = fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0), "{measured:?}");
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    assert_eq!(measured.delivered, measured.acked * 4, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!(accounting.expected, measured.acked * 4, "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");

    let pairs = chat::connections(&common, Dialect::Centrifugo, SECRET, 3).await.unwrap();
    let window = load_tests::traffic::Load::Window(1);
    let second = std::time::Duration::from_secs(1);
    let measured = chat::measure(&common, Dialect::Centrifugo, window, second, second, pairs).await.unwrap();
    assert!(measured.acked > 0 && measured.delivered == measured.acked, "{measured:?}");
    assert!(measured.accounting.is_clean() && measured.errors == 0, "{measured:?}");
    server.stop().await;
}

/// A forged token is refused at connect; a user who has not subscribed to a
/// chat's channel cannot publish into it; a subscriber's publish is acked
/// and reaches the other subscriber as a push the generator reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds Centrifugo with go install on first use: cargo test -p bench --test centrifugo -- --ignored"]
async fn the_peer_refuses_forged_tokens_and_publishes_outside_subscriptions() {
    let server = compare::start(System::Centrifugo, Path::new("unused"), SECRET).await.unwrap();
    let users = api::jwt_users(SECRET, 2).unwrap();
    let d = Dialect::Centrifugo;

    let forged = api::jwt_users("another secret entirely", 1).unwrap();
    let mut socket = connect(server.url(), &forged[0].token).await;
    match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert!(frame.reason.contains("invalid token"), "{frame:?}"),
        other => panic!("a forged token must be refused with a close frame, got {other:?}"),
    }

    let mut ann = connect(server.url(), &users[0].token).await;
    until(&mut ann, |m| m.starts_with(r#"{"id":1,"connect":"#)).await;
    // Publishing before subscribing: refused, and the generator counts it an error.
    ann.send(Message::Text(d.send_frame(7, users[0].id, 1, 5, 42).into())).await.unwrap();
    let refused = until(&mut ann, |m| m.starts_with(r#"{"id":5,"#)).await;
    assert_eq!(d.classify(&refused, users[0].id), Inbound::Error, "{refused}");

    let mut ben = connect(server.url(), &users[1].token).await;
    until(&mut ben, |m| m.starts_with(r#"{"id":1,"connect":"#)).await;
    for socket in [&mut ann, &mut ben] {
        socket.send(Message::Text(r#"{"id":2,"subscribe":{"channel":"chat:7"}}"#.into())).await.unwrap();
        until(socket, |m| m.starts_with(r#"{"id":2,"subscribe":"#)).await;
    }
    ann.send(Message::Text(d.send_frame(7, users[0].id, 1, 6, 42).into())).await.unwrap();
    let ack = until(&mut ann, |m| m.starts_with(r#"{"id":6,"#)).await;
    assert_eq!(d.classify(&ack, users[0].id), Inbound::Ack { n: Some(6) }, "{ack}");
    let push = until(&mut ben, |m| m.starts_with(r#"{"push":"#)).await;
    assert_eq!(d.classify(&push, users[1].id), Inbound::Delivery { sent_at_micros: 42, sender: users[0].id, n: 6 });
    server.stop().await;
}
