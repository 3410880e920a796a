//! The ceiling server with the load generator's own dialect over real
//! sockets, its refusal of a connection without a room, and its
//! back-pressure on a sender to a member that stops reading.

use futures_util::{SinkExt, StreamExt};
use load_tests::dialect::Dialect;
use load_tests::{Common, fanout};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

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
        peer_secret: "s".to_owned(),
    };
    let connections = fanout::connections(&common, &args).await.unwrap();
    let measured = fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    // Rooms are separate: each message reaches exactly the 4 others of its group.
    assert_eq!(measured.delivered, measured.acked * 4, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked * 4, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
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

/// A member that stops reading holds the sender back instead of losing
/// frames: 20 MiB to a member that reads nothing for a second all arrive,
/// in order, and every send is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_slows_the_sender_and_loses_nothing() {
    const FRAMES: usize = 20_000;
    let (url, _stop) = start().await;
    let room = format!("{}/ws?room=7", url.replacen("http", "ws", 1));
    let (sender, _) = tokio_tungstenite::connect_async(&room).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::connect_async(&room).await.unwrap();
    let (mut sink, mut acks) = sender.split();
    // Both are in the room once a probe gets through.
    let mut probes = 0;
    loop {
        sink.send(Message::text("probe")).await.unwrap();
        probes += 1;
        let heard = tokio::time::timeout(std::time::Duration::from_millis(100), slow.next()).await;
        if matches!(heard, Ok(Some(Ok(Message::Text(ref text)))) if text.as_str() == "probe") {
            break;
        }
    }
    let counting = tokio::spawn(async move {
        let mut acked = 0;
        while acked < probes + FRAMES {
            match acks.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "a" => acked += 1,
                other => panic!("expected an ack, got {other:?}"),
            }
        }
        acked - probes
    });
    let payload = "x".repeat(1024);
    let sending = tokio::spawn(async move {
        for n in 0..FRAMES {
            sink.send(Message::text(format!("{n}:{payload}"))).await.unwrap();
        }
        sink
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut next = 0;
    while next < FRAMES {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), slow.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = frame else { panic!("frames lost: only {next} of {FRAMES} came") };
        if text.as_str() == "probe" {
            continue;
        }
        let (n, rest) = text.as_str().split_once(':').unwrap();
        assert_eq!((n.parse::<usize>().unwrap(), rest.len()), (next, 1024), "in order, whole");
        next += 1;
    }
    let _sink = sending.await.unwrap();
    assert_eq!(counting.await.unwrap(), FRAMES);
}

/// The chat shape: rooms of two, both members sending with one send in
/// flight; each message reaches the one other member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_chat_both_ways_and_every_message_is_accounted_for() {
    let (url, _stop) = start().await;
    let common = Common::new(&url, None, 1, 10).unwrap();
    let connections = load_tests::chat::connections(&common, Dialect::Ceiling, "s", 5).await.unwrap();
    assert_eq!(connections.iter().filter(|c| c.sends).count(), 10, "everyone sends");
    let second = std::time::Duration::from_secs(1);
    let load = load_tests::traffic::Load::Window(1);
    let measured =
        load_tests::chat::measure(&common, Dialect::Ceiling, load, second, second, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
}
