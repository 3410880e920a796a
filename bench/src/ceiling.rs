//! The ceiling: a bare tokio-tungstenite broadcast server with no auth, no
//! storage and no sequencing. A client joins a room with `/ws?room=N`;
//! every text frame it sends goes to the rest of the room, shared (never
//! re-encoded), and the sender gets `a` back. It is the physical reference
//! for what this machine can deliver, against which the engine is judged,
//! so it is given every habit of the gateway's that makes delivery cheap:
//! - reads through a 4 KiB buffer, as the gateway does, and fans out the
//!   frames that arrived together as one batch (the gateway handles a
//!   connection's received frames in batches too);
//! - a writer gives the scheduler one turn before it drains its queue, then
//!   writes everything queued with one flush: one syscall for a burst;
//! - the binary runs on mimalloc, as the engine does.
//!
//! And it never cheats: a frame for a member whose queue is full waits
//! for room (the sender's reads stall, which is back-pressure, not loss),
//! and the sender's ack is queued only once every other member's queue
//! holds the frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Batches queued for one connection; a full queue makes senders wait.
const OUTBOUND_QUEUE: usize = 1024;
/// Frames already received that are fanned out as one batch at most.
const READ_BATCH: usize = 64;
/// The read buffer (the gateway's).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Frames that travel together: a sender's frames read at once, shared by
/// every member's queue.
type Batch = Arc<[Message]>;
/// One member of a room: its connection id and outbound queue.
type Member = (u64, mpsc::Sender<Batch>);
/// Each room's members, replaced whole on a join or leave, so a fan-out
/// takes the list without holding the map's lock across its waits.
type Rooms = Arc<DashMap<i64, Arc<Vec<Member>>>>;

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
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let Ok(socket) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    let Some(room) = room else { return };
    let (queue, outbound) = mpsc::channel(OUTBOUND_QUEUE);
    rooms
        .entry(room)
        .and_modify(|members| {
            let mut more = members.as_ref().clone();
            more.push((id, queue.clone()));
            *members = Arc::new(more);
        })
        .or_insert_with(|| Arc::new(vec![(id, queue.clone())]));
    let (sink, inbound) = socket.split();
    let writer = tokio::spawn(write(sink, outbound));
    read(inbound, id, room, &rooms, &queue).await;
    rooms.remove_if_mut(&room, |_, members| {
        *members = Arc::new(members.iter().filter(|(member, _)| *member != id).cloned().collect());
        members.is_empty()
    });
    drop(queue);
    // The writer ends once the last sender of its queue is gone and the
    // queue is written out, or when the socket fails.
    let _ = writer.await;
}

/// Fans the text frames out to the rest of the room, each batch of those
/// that arrived together at once, then acks each.
async fn read(
    inbound: SplitStream<WebSocketStream<TcpStream>>,
    id: u64,
    room: i64,
    rooms: &Rooms,
    own: &mpsc::Sender<Batch>,
) {
    let mut inbound = inbound.ready_chunks(READ_BATCH);
    while let Some(frames) = inbound.next().await {
        let mut texts = Vec::with_capacity(frames.len());
        let mut closed = false;
        for frame in frames {
            match frame {
                Ok(Message::Text(text)) => texts.push(Message::Text(text)),
                Ok(Message::Close(_)) | Err(_) => closed = true,
                Ok(_) => {}
            }
        }
        if !texts.is_empty() {
            let acks: Batch = vec![Message::text("a"); texts.len()].into();
            let batch: Batch = texts.into();
            let members = rooms.get(&room).map(|members| members.clone());
            for (member, queue) in members.iter().flat_map(|members| members.iter()) {
                if *member != id {
                    // Waits while the member's queue is full; fails only
                    // when the member is gone.
                    let _ = queue.send(batch.clone()).await;
                }
            }
            if own.send(acks).await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
    }
}

/// Writes the queue out: after one turn of the scheduler, everything
/// queued by then in one flush.
async fn write(mut sink: SplitSink<WebSocketStream<TcpStream>, Message>, mut outbound: mpsc::Receiver<Batch>) {
    while let Some(first) = outbound.recv().await {
        if outbound.is_empty() {
            tokio::task::yield_now().await;
        }
        let mut ok = feed(&mut sink, &first).await;
        while ok && let Ok(batch) = outbound.try_recv() {
            ok = feed(&mut sink, &batch).await;
        }
        if !ok || sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

async fn feed(sink: &mut SplitSink<WebSocketStream<TcpStream>, Message>, batch: &Batch) -> bool {
    for frame in batch.iter() {
        if sink.feed(frame.clone()).await.is_err() {
            return false;
        }
    }
    true
}
