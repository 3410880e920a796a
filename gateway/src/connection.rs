//! One task per connection: reading, writing and closing under one
//! `select!`. The writer drains its queue with `try_recv` and flushes once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, SinkExt, StreamExt};
use protocol::client::{ClientCommand, ClientFrame};
use protocol::server::Connected;
use protocol::time::{now_millis, to_iso};
use protocol::{Encoding, ServerEvent};
use storage::model::UserId;
use tokio::sync::futures::Notified;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;

use crate::codec;
use crate::commands::{self, Outcome, Run, Session};
use crate::outbound::{self, Inbox};
use crate::registry::Handle;
use crate::upgrade::Options;
use crate::wire::{Reader, Writer};
use crate::{Gateway, close_codes};

type Sink = Writer;
type Stream = Reader;

/// Frames written per flush (a run is not split, so up to one run more),
/// so one busy connection cannot starve its own reads.
const WRITE_BATCH: usize = 64;
/// Frames already received that are handled as one batch at most.
const READ_BATCH: usize = 32;
/// Steps (batches of sends, replies) waiting to be written at most before
/// the connection stops reading: a client pipelining its sends keeps up to
/// this many batches in the store's queue.
const MAX_STEPS: usize = 8;
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

/// Handles frames that arrived together: each run of commands goes to
/// [`commands::handle_many`], which adds what they come to to the
/// session's steps; frames that must wait for sends not yet written are
/// added to `waiting`. Nothing is written here, so a client that stops
/// reading cannot hold the connection in the middle of a reply: the writer
/// watches the kick and shutdown. Answers whether to read on: not after
/// the client's close frame, nor once the connection is to close.
async fn on_frames(gateway: &Gateway, session: &mut Session, frames: &[Message], waiting: &mut Vec<Message>) -> bool {
    // Control frames end a run of commands: handle each run, then the control frame.
    let mut rest = frames;
    while !rest.is_empty() {
        let commands = rest.iter().take_while(|frame| matches!(frame, Message::Text(_) | Message::Binary(_))).count();
        if commands > 0 {
            // Boxed: command handling nests the pipeline's and the store's
            // futures, and inline they would make every idle connection's
            // task as large as the busiest command.
            match Box::pin(commands::handle_many(gateway, session, &rest[..commands])).await {
                Run::All => rest = &rest[commands..],
                Run::Stop => return false,
                Run::From(index) => {
                    waiting.extend_from_slice(&rest[index..]);
                    return true;
                }
            }
            continue;
        }
        match &rest[0] {
            // Replies to the commands before it still go out.
            Message::Close(_) => return false,
            // Pings: tungstenite queued the pong for the writer.
            _ => rest = &rest[1..],
        }
    }
    true
}

/// Waits registered once per connection for a kick and for shutdown:
/// re-creating them on every wake-up would take the shutdown token's
/// shared lock twice per frame, for every connection.
struct Alarms<'p, 'f> {
    kicked: Pin<&'p mut Notified<'f>>,
    stopping: Pin<&'p mut WaitForCancellationFuture<'f>>,
}

/// Adds the frames of `first` (or of the oldest queued run) and of the
/// runs queued behind it to `frames`, up to a batch (a run is not split).
/// Answers when the oldest of them was queued, if any was taken.
fn take_queued(
    handle: &Handle,
    queue: &mut Inbox,
    first: Option<outbound::Run>,
    frames: &mut Vec<Message>,
) -> Option<std::time::Instant> {
    let before = frames.len();
    let mut next = first.or_else(|| queue.try_recv());
    let oldest = next.as_ref().and_then(|run| run.first()).map(codec::SharedMessages::queued_at);
    while let Some(run) = next {
        frames.extend(run.iter().filter_map(|frame| frame.get(handle.encoding)));
        next = if frames.len() - before < WRITE_BATCH { queue.try_recv() } else { None };
    }
    oldest
}

/// Writes `frames` and the runs queued for the connection behind them
/// (`first`, then what else is queued, up to a batch), flushing once. With
/// `wait`, an empty queue gets one turn of the scheduler to fill first. A
/// client that stops reading blocks the write; the kick (slow consumer,
/// shutdown) still gets through. Answers whether to go on.
async fn write_with_queued(
    alarms: &mut Alarms<'_, '_>,
    (handle, packed): (&Handle, bool),
    (sink, queue): (&mut Sink, &mut Inbox),
    mut frames: Vec<Message>,
    (first, wait): (Option<outbound::Run>, bool),
) -> bool {
    if wait && queue.is_empty() {
        tokio::task::yield_now().await;
    }
    let oldest = take_queued(handle, queue, first, &mut frames);
    if packed {
        frames = codec::pack(frames);
    }
    let written = write_replies(alarms, handle, sink, frames).await;
    if written && let Some(queued_at) = oldest.filter(|_| crate::meters::sample_delivery()) {
        crate::meters::DELIVERY_SECONDS.record(queued_at.elapsed());
    }
    written
}

/// `replies` written with one flush, under the same watch as queued
/// frames. Answers whether to go on.
async fn write_replies(alarms: &mut Alarms<'_, '_>, handle: &Handle, sink: &mut Sink, replies: Vec<Message>) -> bool {
    crate::meters::FRAMES_OUT.increment(replies.len() as u64);
    let write = async |sink: &mut Sink| sink.write(replies).await.is_ok();
    guarded(alarms, handle, sink, write).await
}

/// Writes what a step came to, with the events queued by then, then
/// closes when it ends the connection. Answers whether to go on.
async fn answer(
    alarms: &mut Alarms<'_, '_>,
    (handle, encoding, options): (&Handle, Encoding, Options),
    (sink, queue): (&mut Sink, &mut Inbox),
    outcome: Outcome,
) -> bool {
    let Options { echo, batch: packed } = options;
    let (replies, close_with) = match outcome {
        Outcome::Reply(replies) => (replies, None),
        Outcome::Close(code, reason) => (Vec::new(), Some((code, reason))),
        Outcome::Closing(replies, code, reason) => (replies, Some((code, reason))),
    };
    let mut frames: Vec<Message> = replies.iter().filter_map(|reply| codec::encode_reply(reply, encoding)).collect();
    // Events queued for the connection leave in the same write as its
    // replies. A batch's acks come when its messages are published, so
    // with echo on, the sender's own `message.new` is queued within one
    // turn of the scheduler: the write waits that turn for it. Without
    // echo it does not wait: a sender waiting for its acks would queue
    // them behind every connection its batch's fan-out has just woken;
    // what is already queued (a chat partner's message) still joins.
    if !frames.is_empty() && close_with.is_none() {
        return write_with_queued(alarms, (handle, packed), (sink, queue), frames, (None, echo)).await;
    }
    if packed {
        frames = codec::pack(frames);
    }
    if !frames.is_empty() && !write_replies(alarms, handle, sink, frames).await {
        return false;
    }
    match close_with {
        None => true,
        Some((code, reason)) => {
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
    (mut sink, mut stream): (Sink, Stream),
    encoding: Encoding,
    claims: Option<protocol::Claims>,
    waiting: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Option<Admitted> {
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
pub(crate) async fn serve(gateway: Gateway, (sink, stream, claims): Admitted, encoding: Encoding, options: Options) {
    let user_id = claims.sub;
    let id = gateway.inner.next_connection.fetch_add(1, Ordering::Relaxed);
    // A debug span: an enabled one keeps an entry with its formatted
    // fields in the subscriber's registry for the connection's life (about
    // 1.3 KiB of an idle connection's 6.8) and is entered and left on every
    // poll. Logs above debug inside a connection name its user and
    // connection themselves.
    let span = tracing::debug_span!("ws", user_id, connection = id, ?encoding, options.echo, options.batch);
    run(gateway, sink, stream, (encoding, options), claims, id).instrument(span).await;
}

async fn run(
    gateway: Gateway,
    mut sink: Sink,
    mut stream: Stream,
    (encoding, options): (Encoding, Options),
    claims: protocol::Claims,
    id: u64,
) {
    let user_id = claims.sub;
    let (outbound, mut queue) = outbound::queue(gateway.inner.config.outbound_queue);
    let handle = Arc::new(Handle::new(id, claims, encoding, outbound, gateway.clock_ms()));
    // Registered before `connect` goes out: from then on, deliveries from
    // any node find this connection.
    Box::pin(arrive(&gateway, handle.clone())).await;
    let connect = ServerEvent::Connect(Connected {
        status: "connected",
        user_id,
        session_id: id.to_string(),
        heartbeat_interval: gateway.inner.config.heartbeat_interval.as_secs(),
        timestamp: to_iso(now_millis()),
    });
    let mut session = Session::new(&gateway, user_id, id, (encoding, options.echo));
    let kicked = handle.kick.notified();
    let stopping = gateway.inner.shutdown.cancelled();
    tokio::pin!(kicked, stopping);
    let mut alarms = Alarms { kicked, stopping };
    // Every encoding has a first frame (`connect`, seed 000's `auth_success`, ...).
    let greeting = codec::encode(&connect, None, encoding).unwrap_or_else(|| Message::Text("{}".into()));
    if sink.send(greeting).await.is_ok() {
        let mut reading = true;
        // Frames read after a held command (see `Session::holding`).
        let mut waiting = Vec::new();
        loop {
            tokio::select! {
                incoming = stream.next(), if reading && !session.holding() && session.pending() < MAX_STEPS => {
                    let mut frames = Vec::new();
                    let mut ended = read_outcome(incoming, &mut frames, &mut sink).await;
                    // Frames already read from the socket are handled together.
                    while !ended && frames.len() < READ_BATCH {
                        let Some(incoming) = stream.next().now_or_never() else { break };
                        ended = read_outcome(incoming, &mut frames, &mut sink).await;
                    }
                    if !frames.is_empty() {
                        handle.last_seen.store(gateway.clock_ms(), Ordering::Relaxed);
                        let commands = frames.iter().filter(|frame| matches!(frame, Message::Text(_) | Message::Binary(_)));
                        crate::meters::FRAMES_IN.increment(commands.count() as u64);
                        ended |= !on_frames(&gateway, &mut session, &frames, &mut waiting).await;
                        // A pong, or the reply to the client's close: tungstenite
                        // hands the last one over at its next read or flush.
                        if frames.iter().any(|frame| matches!(frame, Message::Ping(_) | Message::Close(_))) {
                            let _ = SinkExt::flush(&mut stream).await;
                        }
                        if sink.control_pending() && !write_replies(&mut alarms, &handle, &mut sink, Vec::new()).await {
                            break;
                        }
                    }
                    reading = !ended;
                }
                outcome = session.next_outcome() => {
                    if !answer(&mut alarms, (&handle, encoding, options), (&mut sink, &mut queue), outcome).await {
                        break;
                    }
                    // The sends a held command waited for are written: it
                    // runs now, then the frames read after it.
                    if session.holding() && !session.sending() {
                        let frames = std::mem::take(&mut waiting);
                        let goes_on = commands::run_held(&gateway, &mut session).await
                            && on_frames(&gateway, &mut session, &frames, &mut waiting).await;
                        reading &= goes_on;
                    }
                }
                Some(run) = queue.recv() => {
                    // Runs from one fan-out turn are queued back to back:
                    // one turn of the scheduler lets the rest arrive, so
                    // they leave in one write instead of one syscall each.
                    let frames = Vec::with_capacity(run.len());
                    let written = write_with_queued(
                        &mut alarms,
                        (&handle, options.batch),
                        (&mut sink, &mut queue),
                        frames,
                        (Some(run), true),
                    );
                    if !written.await {
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
            // The client is done (or is being closed): its last replies are out.
            if !reading && session.pending() == 0 {
                break;
            }
        }
    }
    // Sends already queued are written whatever happened to the socket:
    // their messages reach the other members.
    session.finish_sends().await;
    Box::pin(depart(&gateway, user_id, id)).await;
}

/// Registers a connection with this node and the presence registry, and
/// announces its user online when it is their first device.
async fn arrive(gateway: &Gateway, handle: Arc<Handle>) {
    let (user_id, connection) = (handle.user_id, handle.id);
    let first_here = gateway.inner.registry.insert(handle);
    metrics::gauge!("switchboard_ws_connections").increment(1);
    let registry = &gateway.inner.registry;
    let here = || registry.holds(user_id);
    let first_device = match gateway.inner.services.presence().sync(user_id, &here).await {
        Ok(change) => change == Some(true),
        Err(error) => {
            tracing::warn!(%error, user_id, connection, "presence not registered; announcing from this node's view");
            first_here
        }
    };
    tracing::debug!(first_device, "connected");
    count_devices(gateway, user_id).await;
    if first_device {
        gateway.inner.services.users.announce_presence(user_id, true).await;
    }
}

/// Removes connection `id` of `user_id` from this node and the presence
/// registry, ends its call, and announces its user offline when it was
/// their last device.
async fn depart(gateway: &Gateway, user_id: UserId, id: u64) {
    let last_here = gateway.inner.registry.remove(user_id, id);
    metrics::gauge!("switchboard_ws_connections").decrement(1);
    let registry = &gateway.inner.registry;
    let here = || registry.holds(user_id);
    let last_device = match gateway.inner.services.presence().sync(user_id, &here).await {
        Ok(change) => change == Some(false),
        Err(error) => {
            tracing::warn!(%error, user_id, connection = id, "presence not deregistered; announcing from this node's view");
            last_here
        }
    };
    tracing::debug!(last_device, "disconnected");
    if !last_device {
        count_devices(gateway, user_id).await;
    }
    crate::calls::device_left(gateway, user_id, id, last_device).await;
    if last_device {
        gateway.inner.services.users.announce_presence(user_id, false).await;
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
