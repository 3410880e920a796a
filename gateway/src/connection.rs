//! One task per connection: reading, writing and closing under one
//! `select!`. The writer drains its queue with `try_recv` and flushes once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use protocol::client::{ClientCommand, ClientFrame};
use protocol::server::Connected;
use protocol::time::{now_millis, to_iso};
use protocol::{Encoding, ServerEvent};
use storage::model::UserId;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;

use crate::codec;
use crate::commands::{self, Outcome, Session};
use crate::registry::Handle;
use crate::{Gateway, close_codes};

type Socket = WebSocketStream<TokioIo<Upgraded>>;
type Sink = SplitSink<Socket, Message>;
type Stream = SplitStream<Socket>;

/// Frames written per flush at most, so one busy connection cannot starve
/// its own reads.
const WRITE_BATCH: usize = 64;
/// Frames already received that are handled as one batch at most.
const READ_BATCH: usize = 32;
/// How long a close frame may take to write before the socket is dropped.
const CLOSE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends a close frame; a socket too full to take it within
/// [`CLOSE_WRITE_TIMEOUT`] is simply dropped by the caller.
async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    metrics::counter!("switchboard_ws_closed_total", "code" => code.to_string()).increment(1);
}

/// Waits for `{"type":"auth","data":{"token":...}}`.
async fn authenticate(
    gateway: &Gateway,
    stream: &mut Stream,
    sink: &mut Sink,
    encoding: Encoding,
) -> Option<protocol::Claims> {
    let first = tokio::time::timeout(gateway.inner.config.auth_timeout, stream.next()).await;
    let Ok(Some(Ok(frame))) = first else {
        if first.is_err() {
            close(sink, close_codes::AUTH_TIMEOUT, "no auth frame in time").await;
        }
        return None;
    };
    let token = match codec::decode_as(&frame, encoding) {
        Ok(ClientFrame { command: ClientCommand::Auth(auth), .. }) => Some(auth.token),
        _ => None,
    };
    if let Some(Ok(claims)) = token.map(|token| gateway.inner.tokens.verify(&token)) {
        return Some(claims);
    }
    metrics::counter!("switchboard_ws_auth_failures_total").increment(1);
    close(sink, close_codes::AUTH_FAILED, "authentication failed").await;
    None
}

/// What a run of frames from the client comes to: replies to write, and
/// whether the connection ends after them (and with which close).
struct Handled {
    replies: Vec<Message>,
    end: Option<End>,
}

enum End {
    /// The client closed: the replies go out, then the connection ends.
    ByClient,
    /// The server closes with this code and reason after the replies.
    Close(u16, &'static str),
}

/// Handles frames that arrived together: commands in order (consecutive
/// sends as one batch); answers what to write. Nothing is written here,
/// so a client that stops reading cannot hold the connection in the
/// middle of a reply: the writer watches the kick and shutdown.
async fn on_frames(gateway: &Gateway, session: &mut Session, encoding: Encoding, frames: &[Message]) -> Handled {
    let mut replies = Vec::new();
    // Control frames end a run of commands: handle each run, then the control frame.
    let mut rest = frames;
    while !rest.is_empty() {
        let commands = rest.iter().take_while(|frame| matches!(frame, Message::Text(_) | Message::Binary(_))).count();
        if commands > 0 {
            metrics::counter!("switchboard_ws_frames_in_total").increment(commands as u64);
            // Boxed: command handling nests the pipeline's and the store's
            // futures, and inline they would make every idle connection's
            // task as large as the busiest command.
            let outcomes = Box::pin(commands::handle_many(gateway, session, &rest[..commands])).await;
            for outcome in outcomes {
                match outcome {
                    Outcome::Reply(events) => replies.extend(
                        events
                            .iter()
                            .filter_map(|reply| codec::encode(&reply.event, reply.reference.as_deref(), encoding)),
                    ),
                    Outcome::Close(code, reason) => return Handled { replies, end: Some(End::Close(code, reason)) },
                }
            }
            rest = &rest[commands..];
            continue;
        }
        match &rest[0] {
            // Replies to the commands before it still go out.
            Message::Close(_) => return Handled { replies, end: Some(End::ByClient) },
            // Pings: tungstenite queued the pong, the flush sends it.
            _ => rest = &rest[1..],
        }
    }
    Handled { replies, end: None }
}

/// Waits registered once per connection for a kick and for shutdown:
/// re-creating them on every wake-up would take the shutdown token's
/// shared lock twice per frame, for every connection.
struct Alarms<'p, 'f> {
    kicked: Pin<&'p mut Notified<'f>>,
    stopping: Pin<&'p mut WaitForCancellationFuture<'f>>,
}

/// Writes `first` and whatever else is queued (up to a batch), flushing
/// once. A client that stops reading blocks the write; the kick (slow
/// consumer, shutdown) still gets through. Answers whether to go on.
async fn write_queued(
    alarms: &mut Alarms<'_, '_>,
    handle: &Handle,
    sink: &mut Sink,
    queue: &mut mpsc::Receiver<Message>,
    first: Message,
) -> bool {
    let write = async |sink: &mut Sink| {
        // A fan-out of a batch of messages queues them back to back: giving
        // the scheduler one turn lets the rest arrive, so they leave in one
        // write instead of one syscall each.
        if queue.is_empty() {
            tokio::task::yield_now().await;
        }
        let mut batch = 1;
        let mut ok = sink.feed(first).await.is_ok();
        while ok && batch < WRITE_BATCH {
            let Ok(frame) = queue.try_recv() else { break };
            ok = sink.feed(frame).await.is_ok();
            batch += 1;
        }
        metrics::counter!("switchboard_ws_frames_out_total").increment(batch as u64);
        ok && sink.flush().await.is_ok()
    };
    guarded(alarms, handle, sink, write).await
}

/// `replies` written with one flush, under the same watch as queued
/// frames. Answers whether to go on.
async fn write_replies(alarms: &mut Alarms<'_, '_>, handle: &Handle, sink: &mut Sink, replies: Vec<Message>) -> bool {
    let write = async |sink: &mut Sink| {
        for reply in replies {
            if sink.feed(reply).await.is_err() {
                return false;
            }
        }
        sink.flush().await.is_ok()
    };
    guarded(alarms, handle, sink, write).await
}

/// Writes what a run of frames came to, then closes when it ended the
/// connection. Answers whether to go on.
async fn answer(alarms: &mut Alarms<'_, '_>, handle: &Handle, sink: &mut Sink, handled: Handled) -> bool {
    if !write_replies(alarms, handle, sink, handled.replies).await {
        return false;
    }
    match handled.end {
        None => true,
        Some(End::ByClient) => false,
        Some(End::Close(code, reason)) => {
            close(sink, code, reason).await;
            false
        }
    }
}

/// Runs `write` unless the connection is kicked (slow consumer, heartbeat
/// timeout, a session ending) or the node stops first: a client that stops
/// reading blocks the write, and the kick still gets through. When the
/// write did not finish, the close goes out if the socket takes it.
async fn guarded(
    alarms: &mut Alarms<'_, '_>,
    handle: &Handle,
    sink: &mut Sink,
    write: impl AsyncFnOnce(&mut Sink) -> bool,
) -> bool {
    let written = tokio::select! {
        ok = write(&mut *sink) => ok,
        () = alarms.kicked.as_mut() => false,
        () = alarms.stopping.as_mut() => false,
    };
    if !written {
        let code = match handle.close_code.load(Ordering::Acquire) {
            0 => close_codes::GOING_AWAY,
            code => code,
        };
        close(sink, code, reason_of(handle, code)).await;
    }
    written
}

/// The reason someone gave for closing, or the code's usual one.
fn reason_of(handle: &Handle, code: u16) -> &str {
    handle.close_reason.get().map_or_else(|| reason(code), String::as_str)
}

fn reason(code: u16) -> &'static str {
    match code {
        close_codes::SLOW_CONSUMER => "slow consumer: reconnect and sync",
        close_codes::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close_codes::RESYNC => "missed events: reconnect and sync",
        close_codes::GOING_AWAY => "server shutting down",
        _ => "closed by the server",
    }
}

/// A socket let in: its halves and its user's claims.
pub(crate) type Admitted = (Sink, Stream, protocol::Claims);

/// Lets an upgraded socket in: its token (from the upgrade, or its `auth`
/// frame) and an account that is not disabled. `waiting` is its place
/// among connections still to authenticate, given back once it has.
///
/// A connection's task lives as long as the connection and is as large as
/// its biggest state, so what runs once (this, arrival and departure) is
/// boxed by its caller and gone once done: an idle connection's task holds
/// only its read and write loop.
pub(crate) async fn admit(
    gateway: &Gateway,
    socket: Socket,
    encoding: Encoding,
    claims: Option<protocol::Claims>,
    waiting: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Option<Admitted> {
    let (mut sink, mut stream) = socket.split();
    let claims = match claims {
        Some(claims) => claims,
        None => authenticate(gateway, &mut stream, &mut sink, encoding).await?,
    };
    drop(waiting);
    let user_id = claims.sub;
    // A disabled account's tokens may still be unexpired: it does not get in.
    match gateway.inner.services.store().user(user_id).await {
        Ok(Some(user)) if !user.is_disabled => {}
        Ok(_) => {
            metrics::counter!("switchboard_ws_refused_total", "reason" => "disabled").increment(1);
            close(&mut sink, close_codes::AUTH_FAILED, "account disabled").await;
            return None;
        }
        // The store cannot say: let them in rather than lock everyone out.
        Err(error) => tracing::warn!(%error, user_id, "account state unknown; connection allowed"),
    }
    Some((sink, stream, claims))
}

/// Serves a socket [`admit`] let in until it ends. With `echo` false, the
/// connection is not sent `message.new` for its own sends (their
/// `message.ack` carries the message).
pub(crate) async fn serve(gateway: Gateway, (sink, stream, claims): Admitted, encoding: Encoding, echo: bool) {
    let user_id = claims.sub;
    let id = gateway.inner.next_connection.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("ws", user_id, connection = id, ?encoding, echo);
    run(gateway, sink, stream, (encoding, echo), claims, id).instrument(span).await;
}

async fn run(
    gateway: Gateway,
    mut sink: Sink,
    mut stream: Stream,
    (encoding, echo): (Encoding, bool),
    claims: protocol::Claims,
    id: u64,
) {
    let user_id = claims.sub;
    let (outbound, mut queue) = mpsc::channel(gateway.inner.config.outbound_queue);
    let handle = Arc::new(Handle {
        id,
        user_id,
        claims,
        encoding,
        outbound,
        last_seen: AtomicI64::new(gateway.clock_ms()),
        close_code: AtomicU16::new(0),
        kick: Notify::new(),
        close_reason: std::sync::OnceLock::new(),
    });
    let first_here = gateway.inner.registry.insert(handle.clone());
    metrics::gauge!("switchboard_ws_connections").increment(1);
    // Registered before `connect` goes out: from then on, deliveries from
    // any node find this connection.
    let registry = &gateway.inner.registry;
    let here = || registry.holds(user_id);
    let first_device = match Box::pin(gateway.inner.services.presence().sync(user_id, &here)).await {
        Ok(change) => change == Some(true),
        Err(error) => {
            tracing::warn!(%error, "presence not registered; announcing from this node's view");
            first_here
        }
    };
    tracing::debug!(first_device, "connected");
    Box::pin(count_devices(&gateway, user_id)).await;
    if first_device {
        Box::pin(gateway.inner.services.users.announce_presence(user_id, true)).await;
    }
    let connect = ServerEvent::Connect(Connected {
        status: "connected",
        user_id,
        session_id: id.to_string(),
        heartbeat_interval: gateway.inner.config.heartbeat_interval.as_secs(),
        timestamp: to_iso(now_millis()),
    });
    let mut session = Session::new(&gateway, user_id, id, (encoding, echo));
    let kicked = handle.kick.notified();
    let stopping = gateway.inner.shutdown.cancelled();
    tokio::pin!(kicked, stopping);
    let mut alarms = Alarms { kicked, stopping };
    // Every encoding has a first frame (`connect`, seed 000's `auth_success`, ...).
    let greeting = codec::encode(&connect, None, encoding).unwrap_or_else(|| Message::Text("{}".into()));
    if sink.send(greeting).await.is_ok() {
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    let mut frames = Vec::new();
                    let mut ended = read_outcome(incoming, &mut frames, &mut sink).await;
                    // Frames already read from the socket are handled together.
                    while !ended && frames.len() < READ_BATCH {
                        let Some(incoming) = stream.next().now_or_never() else { break };
                        ended = read_outcome(incoming, &mut frames, &mut sink).await;
                    }
                    if !frames.is_empty() {
                        handle.last_seen.store(gateway.clock_ms(), Ordering::Relaxed);
                        let handled = on_frames(&gateway, &mut session, encoding, &frames).await;
                        if !answer(&mut alarms, &handle, &mut sink, handled).await {
                            break;
                        }
                    }
                    if ended {
                        break;
                    }
                }
                Some(frame) = queue.recv() => {
                    if !write_queued(&mut alarms, &handle, &mut sink, &mut queue, frame).await {
                        break;
                    }
                }
                () = alarms.kicked.as_mut() => {
                    let code = handle.close_code.load(Ordering::Acquire);
                    close(&mut sink, code, reason_of(&handle, code)).await;
                    break;
                }
                () = alarms.stopping.as_mut() => {
                    close(&mut sink, close_codes::GOING_AWAY, reason(close_codes::GOING_AWAY)).await;
                    break;
                }
            }
        }
    }
    let last_here = gateway.inner.registry.remove(user_id, id);
    metrics::gauge!("switchboard_ws_connections").decrement(1);
    let last_device = match Box::pin(gateway.inner.services.presence().sync(user_id, &here)).await {
        Ok(change) => change == Some(false),
        Err(error) => {
            tracing::warn!(%error, "presence not deregistered; announcing from this node's view");
            last_here
        }
    };
    tracing::debug!(last_device, "disconnected");
    if !last_device {
        Box::pin(count_devices(&gateway, user_id)).await;
    }
    Box::pin(crate::calls::device_left(&gateway, user_id, id, last_device)).await;
    if last_device {
        Box::pin(gateway.inner.services.users.announce_presence(user_id, false)).await;
    }
}

/// Tells the presence registry how many devices the user has here now.
async fn count_devices(gateway: &Gateway, user_id: UserId) {
    let count = u32::try_from(gateway.inner.registry.devices(user_id).len()).unwrap_or(u32::MAX);
    if let Err(error) = gateway.inner.services.presence().set_devices(user_id, count).await {
        tracing::debug!(%error, "device count not recorded");
    }
}

/// Adds a read frame to `frames`; answers whether the stream ended (closed,
/// or failed: a frame over the hard limit is closed with 1009).
async fn read_outcome(
    incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    frames: &mut Vec<Message>,
    sink: &mut Sink,
) -> bool {
    match incoming {
        Some(Ok(frame)) => {
            frames.push(frame);
            false
        }
        Some(Err(error)) => {
            tracing::debug!(%error, "read failed");
            if matches!(error, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                close(sink, close_codes::TOO_BIG, "frame too large").await;
            }
            true
        }
        None => true,
    }
}
