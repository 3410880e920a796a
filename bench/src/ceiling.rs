//! The ceiling: a bare tokio-tungstenite broadcast server with no auth, no
//! storage and no sequencing. A client joins a room with `/ws?room=N`;
//! every text frame it sends goes to the rest of the room, encoded once
//! and shared, and the sender gets `a` back. It is the physical reference
//! for what this machine can deliver, against which the engine is judged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// Frames queued for one connection; when it is full the frame is dropped
/// for that member, which the load generator sees as a missing delivery.
const OUTBOUND_QUEUE: usize = 1024;

/// Members of each room: connection id and its outbound queue.
type Rooms = Arc<DashMap<i64, Vec<(u64, mpsc::Sender<Message>)>>>;

/// Serves until `shutdown` resolves.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let rooms: Rooms = Arc::default();
    let ids = AtomicU64::new(0);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, rooms.clone()));
    }
}

/// The room in `?room=N`.
fn room_of(request: &Request) -> Option<i64> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("room=")?.parse().ok())
}

async fn serve(stream: TcpStream, id: u64, rooms: Rooms) {
    let _ = stream.set_nodelay(true);
    let mut room = None;
    // The handshake callback's error type is tungstenite's; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        room = room_of(request);
        if room.is_some() {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("?room=<integer> is required".to_owned()));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let Some(room) = room else { return };
    let (queue, mut outbound) = mpsc::channel(OUTBOUND_QUEUE);
    rooms.entry(room).or_default().push((id, queue.clone()));
    let (mut sink, mut inbound) = socket.split();
    loop {
        tokio::select! {
            frame = inbound.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let frame = Message::Text(text);
                    if let Some(members) = rooms.get(&room) {
                        for (member, queue) in members.iter() {
                            if *member != id {
                                // A full or closed queue: that member is gone or too slow.
                                let _ = queue.try_send(frame.clone());
                            }
                        }
                    }
                    if queue.try_send(Message::text("a")).is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            Some(frame) = outbound.recv() => {
                // Drain what is queued and flush once.
                let mut batch = vec![frame];
                while let Ok(frame) = outbound.try_recv() {
                    batch.push(frame);
                }
                let mut failed = false;
                for frame in batch {
                    failed |= sink.feed(frame).await.is_err();
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    rooms.remove_if_mut(&room, |_, members| {
        members.retain(|(member, _)| *member != id);
        members.is_empty()
    });
    let _ = sink.close().await;
}
