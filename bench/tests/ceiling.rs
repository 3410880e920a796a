//! The ceiling server with the load generator's own dialect over real
//! sockets, and its refusal of a connection without a room.

use load_tests::dialect::Dialect;
use load_tests::{Common, fanout};
use tokio_tungstenite::tungstenite::Error as WsError;

async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bench::ceiling::run(listener, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_reaches_the_rest_of_its_room_and_is_acked() {
    let (url, _stop) = start().await;
    let common = Common::new(&url, None, 1, 10).unwrap();
    let args = fanout::Args {
        group_size: 5,
        groups: 2,
        rate: None,
        window: Some(4),
        duration_secs: 1,
        warmup_secs: 0,
        dialect: Dialect::Ceiling,
        socketio_secret: "s".to_owned(),
    };
    let connections = fanout::connections(&common, &args).await.unwrap();
    let measured = fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    // Rooms are separate: each message reaches exactly the 4 others of its group.
    assert_eq!(measured.delivered, measured.acked * 4, "{measured:?}");
}

#[tokio::test]
async fn a_connection_without_a_room_is_refused() {
    let (url, _stop) = start().await;
    let ws = url.replacen("http", "ws", 1);
    for path in ["/ws", "/ws?room=abc", "/ws?other=1"] {
        match tokio_tungstenite::connect_async(format!("{ws}{path}")).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 400, "{path}"),
            other => panic!("{path}: expected a 400 refusal, got {:?}", other.map(|_| ())),
        }
    }
}
