//! What a connection does with each client frame. Replies carry the
//! command's `id` as `ref`; events for others go through the router.

use std::time::Instant;

use protocol::commands::SendMessage;
use protocol::time::{now_millis, to_iso};
use protocol::{ErrorCode, Event, kinds};
use serde::Deserialize;
use serde_json::json;
use service::ServiceError;
use storage::model::{NewMessage, UserId};
use tokio_tungstenite::tungstenite::Message;

use crate::codec;
use crate::{Gateway, close_codes};

/// Consecutive bad frames (malformed, unknown, too large) before closing.
const BAD_FRAMES_BEFORE_CLOSE: u32 = 20;
/// Consecutive rate-limited commands before closing.
const THROTTLED_BEFORE_CLOSE: u32 = 100;

/// What the connection should do after a frame.
pub(crate) enum Outcome {
    /// Send these to the client.
    Reply(Vec<Event>),
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// Per-connection command state.
pub(crate) struct Session {
    user_id: UserId,
    connection: u64,
    /// Token bucket for commands.
    tokens: f64,
    refilled: Instant,
    rate: f64,
    bad_frames: u32,
    throttled: u32,
}

impl Session {
    pub(crate) fn new(gateway: &Gateway, user_id: UserId, connection: u64) -> Self {
        let rate = f64::from(gateway.inner.config.commands_per_second.max(1));
        Self { user_id, connection, tokens: rate * 2.0, refilled: Instant::now(), rate, bad_frames: 0, throttled: 0 }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn error(reference: Option<String>, code: ErrorCode, message: impl Into<String>) -> Event {
    let mut event = Event::new(kinds::ERROR, json!({"code": code.code(), "message": message.into()}));
    event.reference = reference;
    event
}

fn reply(reference: Option<String>, kind: &str, data: impl serde::Serialize) -> Event {
    let mut event = Event::new(kind, data);
    event.reference = reference;
    event
}

/// A bad frame: an `error`, or a close once they keep coming.
fn bad_frame(session: &mut Session, reference: Option<String>, code: ErrorCode, message: String) -> Outcome {
    session.bad_frames += 1;
    metrics::counter!("switchboard_ws_bad_frames_total").increment(1);
    if session.bad_frames >= BAD_FRAMES_BEFORE_CLOSE {
        return Outcome::Close(close_codes::BAD_FRAMES, "too many bad frames");
    }
    Outcome::Reply(vec![error(reference, code, message)])
}

fn parse<T: for<'de> Deserialize<'de>>(event: &Event) -> Result<T, String> {
    serde_json::from_value(event.data.clone()).map_err(|error| format!("invalid {} data: {error}", event.kind))
}

/// Handles frames that arrived together, in order; consecutive
/// `message.send`s go through the pipeline as one batch (one store trip),
/// so a client that pipelines its sends is not held to one commit each.
pub(crate) async fn handle_many(gateway: &Gateway, session: &mut Session, frames: &[Message]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = frames.iter().map(|_| None).collect();
    let mut sends: Vec<(usize, Event, NewMessage)> = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let event = match admit(gateway, session, frame) {
            Ok(event) => event,
            Err(refused) => {
                outcomes[index] = Some(refused);
                continue;
            }
        };
        if event.kind == kinds::MESSAGE_SEND {
            match send_request(gateway, session, &event) {
                Ok(new) => sends.push((index, event, new)),
                Err(failure) => outcomes[index] = Some(conclude(session, event.id.clone(), Err(failure))),
            }
            continue;
        }
        send_batch(gateway, session, &mut sends, &mut outcomes).await;
        outcomes[index] = Some(handle_event(gateway, session, &event).await);
    }
    send_batch(gateway, session, &mut sends, &mut outcomes).await;
    outcomes.into_iter().map(|outcome| outcome.expect("every frame has an outcome")).collect()
}

async fn send_batch(
    gateway: &Gateway,
    session: &mut Session,
    sends: &mut Vec<(usize, Event, NewMessage)>,
    outcomes: &mut [Option<Outcome>],
) {
    if sends.is_empty() {
        return;
    }
    let started = Instant::now();
    let (slots, requests): (Vec<(usize, Event)>, Vec<NewMessage>) =
        sends.drain(..).map(|(index, event, new)| ((index, event), new)).unzip();
    let results = gateway.inner.services.messages.send_many(requests).await;
    let elapsed = started.elapsed().as_secs_f64();
    for ((index, event), result) in slots.into_iter().zip(results) {
        let handled = result.map(|sent| vec![ack(&event, &sent)]).map_err(|error| failure(&error));
        if handled.is_ok() {
            metrics::histogram!("switchboard_ws_ack_seconds").record(elapsed);
        }
        outcomes[index] = Some(conclude(session, event.id.clone(), handled));
    }
}

/// Size, decoding and the rate limit: the event to run, or what to answer
/// a frame refused before it runs.
fn admit(gateway: &Gateway, session: &mut Session, frame: &Message) -> Result<Event, Outcome> {
    if frame.len() > gateway.inner.config.max_frame_bytes {
        let limit = gateway.inner.config.max_frame_bytes;
        return Err(bad_frame(
            session,
            None,
            ErrorCode::PayloadTooLarge,
            format!("frames may be at most {limit} bytes"),
        ));
    }
    let event = match codec::decode(frame) {
        Ok(event) => event,
        Err(error) => return Err(bad_frame(session, None, ErrorCode::BadRequest, error.to_string())),
    };
    let reference = event.id.clone();
    if !session.take_token() {
        session.throttled += 1;
        metrics::counter!("switchboard_ws_throttled_total").increment(1);
        if session.throttled >= THROTTLED_BEFORE_CLOSE {
            return Err(Outcome::Close(close_codes::TOO_FAST, "too many commands"));
        }
        return Err(Outcome::Reply(vec![error(reference, ErrorCode::TooManyRequests, "too many commands; slow down")]));
    }
    session.throttled = 0;
    metrics::counter!("switchboard_ws_commands_total", "type" => event.kind.clone()).increment(1);
    Ok(event)
}

/// Runs an admitted command (`message.send` is not one of them here:
/// [`handle_many`] sends those in batches).
async fn handle_event(gateway: &Gateway, session: &mut Session, event: &Event) -> Outcome {
    let reference = event.id.clone();
    let outcome = match event.kind.as_str() {
        kinds::PING => Ok(vec![reply(reference.clone(), kinds::PONG, json!({"timestamp": to_iso(now_millis())}))]),
        kinds::AUTH => Err((ErrorCode::BadRequest, "already authenticated".to_owned())),
        kinds::SYNC => sync(gateway, session, event).await,
        kinds::MESSAGE_READ => read(gateway, session, event).await,
        kinds::MESSAGE_DELIVERED => delivered(gateway, session, event).await,
        kinds::TYPING => crate::typing::command(gateway, session.user_id, event).await,
        kinds::PRESENCE_QUERY => presence_query(gateway, session, event).await,
        kinds::CALL_OFFER => crate::calls::offer(gateway, session.user_id, session.connection, event).await,
        kinds::CALL_ANSWER => crate::calls::answer(gateway, session.user_id, session.connection, event),
        kinds::CALL_ICE => crate::calls::ice(gateway, session.user_id, session.connection, event),
        kinds::CALL_END => crate::calls::end(gateway, session.user_id, session.connection, event).await,
        other => {
            let message = format!("unknown command {other:?}");
            return bad_frame(session, reference, ErrorCode::BadRequest, message);
        }
    };
    conclude(session, reference, outcome)
}

/// A command's result as what the connection does next.
fn conclude(session: &mut Session, reference: Option<String>, handled: Handled) -> Outcome {
    match handled {
        Ok(replies) => {
            session.bad_frames = 0;
            Outcome::Reply(replies)
        }
        Err((code, message)) => {
            if code == ErrorCode::BadRequest {
                return bad_frame(session, reference, code, message);
            }
            Outcome::Reply(vec![error(reference, code, message)])
        }
    }
}

type Handled = Result<Vec<Event>, (ErrorCode, String)>;

/// The one mapping of the service layer's error to an `error` event: the
/// same seed 002 code REST answers for the same failure.
pub(crate) fn failure(error: &ServiceError) -> (ErrorCode, String) {
    (error.code(), error.detail())
}

/// A `message.send` command as what the pipeline sends.
fn send_request(gateway: &Gateway, session: &Session, event: &Event) -> Result<NewMessage, (ErrorCode, String)> {
    let command: SendMessage = parse(event).map_err(|message| (ErrorCode::BadRequest, message))?;
    let chat_id = command.chat_id.ok_or((ErrorCode::BadRequest, "chat_id is required".to_owned()))?;
    gateway.inner.services.messages.request(command, chat_id, session.user_id).map_err(|error| failure(&error))
}

fn ack(event: &Event, sent: &service::Sent) -> Event {
    let client_message_id = &sent.message.client_message_id;
    reply(
        event.id.clone(),
        kinds::MESSAGE_ACK,
        json!({"client_message_id": client_message_id, "message": sent.view, "duplicate": sent.duplicate}),
    )
}

#[derive(Deserialize)]
struct SyncRequest {
    chat_id: i64,
    #[serde(default)]
    after_seq: u64,
    #[serde(default)]
    limit: Option<u32>,
}

async fn sync(gateway: &Gateway, session: &Session, event: &Event) -> Handled {
    let request: SyncRequest = parse(event).map_err(|message| (ErrorCode::BadRequest, message))?;
    let page = gateway
        .inner
        .services
        .messages
        .sync(session.user_id, request.chat_id, request.after_seq, request.limit)
        .await
        .map_err(|error| failure(&error))?;
    Ok(vec![reply(
        event.id.clone(),
        kinds::SYNC_BATCH,
        json!({"chat_id": page.chat_id, "messages": page.messages, "has_more": page.has_more}),
    )])
}

#[derive(Deserialize)]
struct ReadRequest {
    chat_id: i64,
    message_id: i64,
}

async fn read(gateway: &Gateway, session: &Session, event: &Event) -> Handled {
    let request: ReadRequest = parse(event).map_err(|message| (ErrorCode::BadRequest, message))?;
    let marker = gateway
        .inner
        .services
        .messages
        .read(session.user_id, Some(request.chat_id), request.message_id)
        .await
        .map_err(|error| failure(&error))?;
    Ok(vec![reply(
        event.id.clone(),
        kinds::MESSAGE_READ_OK,
        json!({"chat_id": marker.chat_id, "last_read_seq": marker.last_read_seq}),
    )])
}

#[derive(Deserialize)]
struct DeliveredRequest {
    chat_id: i64,
    message_ids: Vec<i64>,
}

/// Tells each message's sender it reached one of the caller's devices.
async fn delivered(gateway: &Gateway, session: &Session, event: &Event) -> Handled {
    let request: DeliveredRequest = parse(event).map_err(|message| (ErrorCode::BadRequest, message))?;
    gateway
        .inner
        .services
        .messages
        .delivered(session.user_id, request.chat_id, &request.message_ids)
        .await
        .map_err(|error| failure(&error))?;
    Ok(Vec::new())
}

#[derive(Deserialize)]
struct PresenceQuery {
    user_ids: Vec<i64>,
}

/// The presence of the asked users the caller may see (the same rule as
/// the `presence` events: they would be told of it).
async fn presence_query(gateway: &Gateway, session: &Session, event: &Event) -> Handled {
    let request: PresenceQuery = parse(event).map_err(|message| (ErrorCode::BadRequest, message))?;
    let states = gateway
        .inner
        .services
        .users
        .presence(session.user_id, &request.user_ids)
        .await
        .map_err(|error| failure(&error))?;
    let users: Vec<_> = states
        .iter()
        .map(|state| json!({"user_id": state.user_id, "is_online": state.is_online, "last_seen": state.last_seen.map(to_iso)}))
        .collect();
    Ok(vec![reply(event.id.clone(), kinds::PRESENCE_STATE, json!({"users": users}))])
}

/// Announces the presence changes the registry found on its own: the users
/// of a node that died, or users registered again after a Redis outage.
pub(crate) async fn announce_found_presence(
    gateway: Gateway,
    mut found: tokio::sync::mpsc::Receiver<Vec<router::PresenceChange>>,
) {
    while let Some(changes) = found.recv().await {
        for change in changes {
            gateway.inner.services.users.announce_presence(change.user_id, change.online).await;
        }
    }
}
