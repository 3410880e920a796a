//! The hostile suite, resource limits: clients that hold a connection
//! without finishing a request, and crowds of sockets from one address
//! or without a token, against the real server over real sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::harness::{self, Client};

/// Everything the server writes on `stream` until it closes it; `None`
/// when it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(read)) => seen.extend_from_slice(&buffer[..read]),
        }
    }
}

async fn open(server: &harness::Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = harness::start_with_flags(&["--http-header-timeout-secs", "1"], |_| {}).await;
    // Silent from the start.
    let mut silent = open(&server).await;
    assert!(read_until_closed(&mut silent, Duration::from_secs(5)).await.is_some(), "a silent connection is closed");
    // Headers dripped, never ended.
    let mut dripping = open(&server).await;
    dripping.write_all(b"GET /health HTTP/1.1\r\nHost: switchboard\r\n").await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if dripping.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
    }
    assert!(read_until_closed(&mut dripping, Duration::from_secs(5)).await.is_some(), "a dripping header is cut off");
    // An honest request on a new connection is answered.
    let mut honest = open(&server).await;
    honest.write_all(b"GET /health HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut honest, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_that_stalls_ends_the_request() {
    let server = harness::start_with_flags(&["--http-body-idle-secs", "1"], |_| {}).await;
    let mut stalled = open(&server).await;
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: switchboard\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(br#"{"phone":"#).await.unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(6)).await.expect("the stalled request is ended");
    // Answered in the envelope (the client may be gone, but a proxy is not).
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.contains(r#""code":"#), "{answer}");
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_408() {
    let server = harness::start_with_flags(&["--http-request-timeout-secs", "1"], |_| {}).await;
    let (mut reading, mut writing) = open(&server).await.into_split();
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: switchboard\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n";
    writing.write_all(head.as_bytes()).await.unwrap();
    // A byte every 100 ms never stalls the body, but the whole would take 40 s.
    let dripping = async {
        for _ in 0..400 {
            if writing.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the whole body went through: no request timeout");
    };
    let answered = async {
        let mut buffer = vec![0u8; 4096];
        let read = reading.read(&mut buffer).await.unwrap();
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            () = dripping => unreachable!(),
            answer = answered => answer,
        }
    })
    .await
    .expect("answered while the body was still coming");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":408"#), "{answer}");
}

/// A client of `/ws` whose address, as the trusted proxy in front says, is `ip`.
async fn connect_from(server: &harness::Server, ip: &str, token: Option<&str>) -> Result<Client, WsError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws.as_str().into_client_request().unwrap();
    request.headers_mut().insert("x-forwarded-for", ip.parse().unwrap());
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(harness::Client::wrap(socket))
}

fn refused_with(result: Result<Client, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("refused without an answer: {other}"),
        Ok(_) => panic!("not refused"),
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = harness::start_with(|config| {
        config.max_per_address = 2;
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let alice = server.register("13800000001", "alice").await;
    let first = harness::greeted(connect_from(&server, "203.0.113.7", Some(&alice.token)).await.unwrap()).await;
    let _second = harness::greeted(connect_from(&server, "203.0.113.7", Some(&alice.token)).await.unwrap()).await;
    assert_eq!(refused_with(connect_from(&server, "203.0.113.7", Some(&alice.token)).await), 429);
    // Another address is not held back by it.
    let _elsewhere = harness::greeted(connect_from(&server, "198.51.100.1", Some(&alice.token)).await.unwrap()).await;
    // A place comes back when a connection ends.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(again) = connect_from(&server, "203.0.113.7", Some(&alice.token)).await {
            harness::greeted(again).await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the address's place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn silent_sockets_without_a_token_cannot_crowd_out_the_rest() {
    let server = harness::start_with(|config| config.max_unauthenticated = 1).await;
    let alice = server.register("13800000001", "alice").await;
    let mut waiting = server.connect_with(None, None).await.unwrap();
    assert_eq!(refused_with(server.connect_with(None, None).await), 503, "the budget is spent");
    // A token in the upgrade needs no place.
    let _with_token = server.connect(&alice).await;
    // Once the waiting socket authenticates, its place is free.
    waiting.send("auth", serde_json::json!({"token": alice.token})).await;
    waiting.expect("connect").await;
    let mut next = server.connect_with(None, None).await.expect("the place came back");
    next.send("auth", serde_json::json!({"token": alice.token})).await;
    assert_eq!(next.expect("connect").await.data["user_id"], alice.id);
}

/// How many of `count` pings sent at once on `client` are refused with 429.
async fn refused_pings(client: &mut Client, count: usize) -> usize {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(client.send("ping", serde_json::json!({})).await);
    }
    let mut refused = 0;
    for id in &ids {
        let reply = client.reply(id).await;
        if reply.kind == "error" {
            assert_eq!(reply.data["code"], 40001, "{reply:?}");
            refused += 1;
        } else {
            assert_eq!(reply.kind, "pong");
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sockets_do_not_buy_a_user_more_commands() {
    // Each socket may burst 40, and so may the user over all of them.
    let server = harness::start_with(|config| {
        config.commands_per_second = 20;
        config.commands_per_user_per_second = 20;
    })
    .await;
    let alice = server.register("13800000001", "alice").await;
    let bob = server.register("13800000002", "bob").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(server.connect(&alice).await);
    }
    let mut refused = 0;
    for socket in &mut sockets {
        refused += refused_pings(socket, 20).await;
    }
    // 60 asked, each socket within its own burst: about 40 (plus what the
    // test's time refills) allowed.
    assert!(refused >= 12, "only {refused} of 60 refused: each socket had a budget of its own");
    // Another user is not held back by Alice's spending.
    let mut bobs = server.connect(&bob).await;
    assert_eq!(refused_pings(&mut bobs, 20).await, 0);
}

/// Whether `viewer` sees `subject` online through REST.
async fn online(server: &harness::Server, viewer: &harness::User, subject: &harness::User) -> bool {
    let profile = server
        .api(reqwest::Method::GET, &format!("/api/users/{}", subject.id), &viewer.token, serde_json::Value::Null)
        .await;
    profile["data"]["online"].as_bool().unwrap_or_else(|| panic!("{profile}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_in_the_middle_of_its_replies_is_still_kicked() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = harness::start_with(|config| {
        config.heartbeat_timeout = Duration::from_secs(1);
        config.sweep_interval = Duration::from_millis(100);
        config.commands_per_second = 1_000_000;
    })
    .await;
    let (alice, bob, chat) = server.pair("group").await;
    // Forty long messages: every sync of the chat answers about 160 KB.
    let mut sender = server.connect(&alice).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let content = format!("{n:04}{}", "x".repeat(3_996));
        ids.push(sender.send("message.send", serde_json::json!({"chat_id": chat, "content": content})).await);
    }
    for id in &ids {
        assert_eq!(sender.reply(id).await.kind, "message.ack");
    }
    // Bob's client reads into a 4 KiB buffer, asks for 30 MB of replies
    // and never reads them: the server's write blocks.
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = server.ws.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", bob.token).parse().unwrap());
    let (mut stuck, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    for n in 0..200 {
        let frame =
            serde_json::json!({"type": "sync", "id": format!("s{n}"), "data": {"chat_id": chat, "after_seq": 0}});
        stuck.send(Message::Text(frame.to_string().into())).await.unwrap();
    }
    assert!(online(&server, &alice, &bob).await, "Bob is connected");
    // He is silent from now on: the heartbeat timeout must end the
    // connection even though its task is in the middle of a write.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while online(&server, &alice, &bob).await {
        assert!(tokio::time::Instant::now() < deadline, "the stuck connection was never let go");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stuck);
}
