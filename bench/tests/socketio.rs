//! The Socket.IO 4 peer on Node, driven by the load generator's native
//! Engine.IO v4 / Socket.IO framing. `scripts/test.sh` makes sure node and
//! npm are there; the peer's `socket.io` package is installed on first use.

use std::path::Path;

use bench::compare::{self, System};
use futures_util::{SinkExt, StreamExt};
use load_tests::dialect::Dialect;
use load_tests::{Common, api, fanout};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(socket: &mut Socket) -> String {
    match socket.next().await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn node_missing() -> bool {
    let missing = std::process::Command::new("node").arg("--version").output().is_err();
    if missing {
        println!("SKIPPED: node is not installed (scripts/test.sh installs it)");
    }
    missing
}

/// Both shapes of the peer, two workers under node:cluster (rooms span
/// workers through the cluster adapter) and one process: every delivery
/// arrives, and stopping the peer leaves no worker behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_fans_out_with_acks_through_native_framing() {
    if node_missing() {
        return;
    }
    for system in [System::SocketIo, System::SocketIoSingle] {
        let server = compare::start(system, Path::new("unused"), SECRET).await.unwrap();
        let common = Common::new(server.url(), server.pid(), 1, 10).unwrap();
        let args = fanout::Args {
            group_size: 4,
            groups: 2,
            rate: None,
            window: Some(4),
            duration_secs: 1,
            warmup_secs: 0,
            dialect: Dialect::SocketIo,
            peer_secret: SECRET.to_owned(),
        };
        let connections = fanout::connections(&common, &args).await.unwrap();
        let measured = fanout::measure(&common, &args, connections).await.unwrap();
        let address = server.url().trim_start_matches("http://").to_owned();
        server.stop().await;
        assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0), "{system:?}");
        assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
        assert_eq!(measured.delivered, measured.acked * 3, "{measured:?}");
        let accounting = measured.accounting;
        assert_eq!(
            (accounting.expected, accounting.received),
            (measured.acked * 3, measured.delivered),
            "{measured:?}"
        );
        assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
        let mut gone = false;
        for _ in 0..40 {
            if tokio::net::TcpStream::connect(&address).await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(gone, "{system:?}: something still listens on {address} after the stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_refuses_bad_tokens_and_sends_outside_joined_rooms() {
    if node_missing() {
        return;
    }
    let server = compare::start(System::SocketIo, Path::new("unused"), SECRET).await.unwrap();
    let url = Dialect::SocketIo.ws_url(server.url(), "", 0);
    let open = || async {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let Some(Ok(Message::Text(greeting))) = socket.next().await else { panic!("no OPEN packet") };
        assert!(greeting.starts_with("0{"), "{greeting}");
        socket
    };

    // A forged token: CONNECT_ERROR.
    let mut socket = open().await;
    socket.send(Message::text(r#"40{"token":"1.0000"}"#)).await.unwrap();
    let refused = next_text(&mut socket).await;
    assert!(refused.starts_with("44") && refused.contains("unauthorized"), "{refused}");

    // A good token, but a send into a chat it never joined: an error ack.
    let user = api::signed_users(SECRET, 1).remove(0);
    let mut socket = open().await;
    socket.send(Message::text(format!(r#"40{{"token":"{}"}}"#, user.token))).await.unwrap();
    assert!(next_text(&mut socket).await.starts_with("40{"));
    socket.send(Message::text(r#"421["message.send",{"chat_id":9,"content":"x"}]"#)).await.unwrap();
    let ack = next_text(&mut socket).await;
    assert!(ack.starts_with("431[") && ack.contains("not a member"), "{ack}");
    socket.send(Message::text(r#"422["message.send",{"chat_id":"nine"}]"#)).await.unwrap();
    let ack = next_text(&mut socket).await;
    assert!(ack.starts_with("432[") && ack.contains("bad message"), "{ack}");
    server.stop().await;
}
