//! What a connection does with each client frame: decoded once into a
//! typed command, run through the service layer, answered with typed
//! events. Replies carry the command's `id` as `ref`; events for others go
//! through the router.

use protocol::client::{ClientCommand, ClientFrame, FrameError};
use protocol::server::{MessageAck, Pong, PresenceEntry, PresenceStates, ReadOk, SyncBatch};
use protocol::time::{now_millis, to_iso};
use protocol::{ErrorCode, ServerEvent};
use service::ServiceError;
use storage::model::{NewMessage, UserId};
use tokio_tungstenite::tungstenite::Message;

use crate::budget::Budget;
use crate::codec;
use crate::{Gateway, close_codes};

/// Consecutive bad frames (malformed, unknown, too large) before closing.
const BAD_FRAMES_BEFORE_CLOSE: u32 = 20;
/// Consecutive rate-limited commands before closing.
const THROTTLED_BEFORE_CLOSE: u32 = 100;

/// An event for the connection itself, answering the command `reference`
/// (or none, for an event the command caused).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) event: ServerEvent,
    pub(crate) reference: Option<String>,
    /// For an ack, the `message.new` frame of the same view, whose bytes
    /// the ack reuses ([`protocol::frame::encode_reply`]).
    pub(crate) announced: Option<protocol::Frame>,
}

impl Reply {
    pub(crate) fn to(reference: Option<&str>, event: ServerEvent) -> Self {
        Self { event, reference: reference.map(str::to_owned), announced: None }
    }
}

/// What the connection should do after a frame.
pub(crate) enum Outcome {
    /// Send these to the client.
    Reply(Vec<Reply>),
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Send these, then close with this code and reason.
    Closing(Vec<Reply>, u16, &'static str),
}

/// Per-connection command state.
pub(crate) struct Session {
    user_id: UserId,
    /// How the connection's frames read (a dialect's, or canonical).
    encoding: protocol::Encoding,
    connection: u64,
    /// Commands this connection, and its user, may still send.
    budget: Budget,
    bad_frames: u32,
    throttled: u32,
    /// Whether this connection gets `message.new` for its own sends too.
    echo: bool,
    /// What its frames came to and is not written yet, oldest first.
    steps: std::collections::VecDeque<Step>,
    /// A command read after sends not yet written: it runs once they are
    /// (the frames read after it wait with it, in the connection).
    held: Option<ClientFrame>,
}

impl Session {
    pub(crate) fn new(
        gateway: &Gateway,
        user_id: UserId,
        connection: u64,
        (encoding, echo): (protocol::Encoding, bool),
    ) -> Self {
        let budget = gateway.inner.budgets.connection(user_id, gateway.inner.config.commands_per_second);
        Self {
            user_id,
            encoding,
            connection,
            budget,
            bad_frames: 0,
            throttled: 0,
            echo,
            steps: std::collections::VecDeque::new(),
            held: None,
        }
    }

    fn take_token(&mut self) -> bool {
        self.budget.take()
    }
}

/// A failed command: seed 002's code and what went wrong.
pub(crate) type Failure = (ErrorCode, String);
/// A command's replies, or its failure.
pub(crate) type Handled = Result<Vec<Reply>, Failure>;

/// The one mapping of the service layer's error to an `error` event: the
/// same seed 002 code REST answers for the same failure.
pub(crate) fn failure(error: &ServiceError) -> Failure {
    (error.code(), error.detail())
}

fn error(reference: Option<&str>, code: ErrorCode, message: String) -> Reply {
    Reply::to(reference, ServerEvent::error(code, message))
}

/// A bad frame: an `error`, or a close once they keep coming.
fn bad_frame(session: &mut Session, reference: Option<&str>, code: ErrorCode, message: String) -> Outcome {
    session.bad_frames += 1;
    metrics::counter!("switchboard_ws_bad_frames_total").increment(1);
    if session.bad_frames >= BAD_FRAMES_BEFORE_CLOSE {
        return Outcome::Close(close_codes::BAD_FRAMES, "too many bad frames");
    }
    Outcome::Reply(vec![error(reference, code, message)])
}

/// What [`handle_many`] did with a run of frames.
pub(crate) enum Run {
    /// Every frame is handled or queued.
    All,
    /// The connection is to close: read no more.
    Stop,
    /// The frames from this index on wait: the one before it, a command
    /// other than a send, is held until the sends before it are written
    /// (see [`Session::held`]).
    From(usize),
}

/// Handles frames that arrived together, in order, adding what each comes
/// to to the session's steps. Consecutive `message.send`s are queued in
/// the store as one batch (one store trip) without waiting for the
/// batches before them to be written, so a client that pipelines its
/// sends is held neither to one commit per send nor to one batch at a
/// time. Any other command runs only once the sends before it are written
/// (a `sync` right after sends sees them): until then it is held, with the
/// frames after it, and the connection goes on writing.
pub(crate) async fn handle_many(gateway: &Gateway, session: &mut Session, frames: &[Message]) -> Run {
    let mut sends: Vec<(Option<String>, NewMessage)> = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let ClientFrame { id, command } = match admit(gateway, session, frame) {
            Ok(frame) => frame,
            Err(refused) => {
                queue_sends(gateway, session, &mut sends).await;
                if !session.push(refused) {
                    return Run::Stop;
                }
                continue;
            }
        };
        if let ClientCommand::Send(send) = command {
            match send_request(gateway, session, *send) {
                Ok(new) => sends.push((id, new)),
                Err(failed) => {
                    queue_sends(gateway, session, &mut sends).await;
                    let refused = conclude(session, id.as_deref(), Err(failed));
                    if !session.push(refused) {
                        return Run::Stop;
                    }
                }
            }
            continue;
        }
        queue_sends(gateway, session, &mut sends).await;
        if session.sending() {
            session.held = Some(ClientFrame { id, command });
            return Run::From(index + 1);
        }
        let outcome = handle(gateway, session, id.as_deref(), command).await;
        if !session.push(outcome) {
            return Run::Stop;
        }
    }
    queue_sends(gateway, session, &mut sends).await;
    Run::All
}

/// Runs the held command, now that the sends before it are written.
/// Answers whether the connection goes on.
pub(crate) async fn run_held(gateway: &Gateway, session: &mut Session) -> bool {
    let Some(ClientFrame { id, command }) = session.held.take() else { return true };
    // Boxed: inline, any command's future would be part of every idle
    // connection's task (see `connection::run`).
    let outcome = Box::pin(handle(gateway, session, id.as_deref(), command)).await;
    session.push(outcome)
}

/// Queues `sends` in the store as one batch, behind the session's earlier
/// ones; their acks are a step of the session.
async fn queue_sends(gateway: &Gateway, session: &mut Session, sends: &mut Vec<(Option<String>, NewMessage)>) {
    if sends.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let (ids, requests): (Vec<Option<String>>, Vec<NewMessage>) = sends.drain(..).unzip();
    // A connection that asked for no echo has the message in its ack.
    let origin = router::DeviceRef { node: gateway.inner.config.node_id, connection: session.connection };
    let queued = gateway.inner.services.messages.queue_many(requests, (!session.echo).then_some(origin)).await;
    session.steps.push_back(Step::Sending(Sending { ids, started, outcomes: Box::pin(queued.outcomes()) }));
}

/// What a frame, or a batch of sends, comes to, in the order the frames
/// came: their replies go out in this order.
pub(crate) enum Step {
    Ready(Outcome),
    Sending(Sending),
}

/// A batch of sends queued in the store: their acks once written.
pub(crate) struct Sending {
    /// Each send's `id`, in order.
    ids: Vec<Option<String>>,
    started: std::time::Instant,
    outcomes: std::pin::Pin<Box<dyn Future<Output = Vec<service::ServiceResult<service::Sent>>> + Send>>,
}

impl Session {
    /// Adds a step; answers whether the connection goes on after it.
    fn push(&mut self, outcome: Outcome) -> bool {
        let goes_on = matches!(outcome, Outcome::Reply(_));
        self.steps.push_back(Step::Ready(outcome));
        goes_on
    }

    /// Steps not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.steps.len()
    }

    /// Whether a batch of sends is queued and not yet written.
    pub(crate) fn sending(&self) -> bool {
        self.steps.iter().any(|step| matches!(step, Step::Sending(_)))
    }

    /// Whether a command waits for the sends before it.
    pub(crate) fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The oldest step's outcomes, once it has them (a batch of sends, once
    /// written and published). Cancel-safe: a batch not yet written stays
    /// the oldest step.
    pub(crate) async fn next_outcome(&mut self) -> Outcome {
        let Some(oldest) = self.steps.front_mut() else { return std::future::pending().await };
        if let Step::Sending(sending) = oldest {
            let results = sending.outcomes.as_mut().await;
            let (ids, started) = (std::mem::take(&mut sending.ids), sending.started);
            self.steps.pop_front();
            return self.acks(&ids, started, results);
        }
        match self.steps.pop_front() {
            Some(Step::Ready(outcome)) => outcome,
            Some(Step::Sending(_)) | None => Outcome::Reply(Vec::new()),
        }
    }

    /// Waits for every queued batch of sends (the connection is ending):
    /// what was written is published even though nobody reads the acks.
    pub(crate) async fn finish_sends(&mut self) {
        for step in self.steps.drain(..) {
            if let Step::Sending(sending) = step {
                sending.outcomes.await;
            }
        }
    }

    /// A written batch's acks and errors, each to its send's `id`, as one outcome.
    fn acks(
        &mut self,
        ids: &[Option<String>],
        started: std::time::Instant,
        results: Vec<service::ServiceResult<service::Sent>>,
    ) -> Outcome {
        let elapsed = started.elapsed().as_secs_f64();
        let mut replies = Vec::with_capacity(results.len());
        for (id, result) in ids.iter().zip(results) {
            let handled = result.map(|sent| vec![ack(id.as_deref(), sent)]).map_err(|error| failure(&error));
            if handled.is_ok() {
                crate::meters::ACK_SECONDS.record(elapsed);
            }
            match conclude(self, id.as_deref(), handled) {
                Outcome::Reply(events) => replies.extend(events),
                // Too many bad frames: the replies before it still go out.
                Outcome::Close(code, reason) => return Outcome::Closing(replies, code, reason),
                Outcome::Closing(last, code, reason) => {
                    replies.extend(last);
                    return Outcome::Closing(replies, code, reason);
                }
            }
        }
        Outcome::Reply(replies)
    }
}

/// Size, decoding and the rate limit: the command to run, or what to
/// answer a frame refused before it runs.
fn admit(gateway: &Gateway, session: &mut Session, frame: &Message) -> Result<ClientFrame, Outcome> {
    if frame.len() > gateway.inner.config.max_frame_bytes {
        let limit = gateway.inner.config.max_frame_bytes;
        let message = format!("frames may be at most {limit} bytes");
        return Err(bad_frame(session, None, ErrorCode::PayloadTooLarge, message));
    }
    let decoded = match codec::decode_as(frame, session.encoding) {
        Ok(decoded) => decoded,
        Err(refused) => return Err(refuse(session, &refused)),
    };
    if !session.take_token() {
        session.throttled += 1;
        metrics::counter!("switchboard_ws_throttled_total").increment(1);
        if session.throttled >= THROTTLED_BEFORE_CLOSE {
            return Err(Outcome::Close(close_codes::TOO_FAST, "too many commands"));
        }
        let slow_down = error(decoded.id.as_deref(), ErrorCode::TooManyRequests, "too many commands; slow down".into());
        return Err(Outcome::Reply(vec![slow_down]));
    }
    session.throttled = 0;
    crate::meters::COMMANDS.increment(decoded.command.kind(), 1);
    Ok(decoded)
}

/// A frame that did not decode: unknown types and bad data are answered
/// to their `id` when it could be read.
fn refuse(session: &mut Session, refused: &FrameError) -> Outcome {
    bad_frame(session, refused.id(), ErrorCode::BadRequest, refused.to_string())
}

/// Runs an admitted command (`message.send` is not one of them here:
/// [`handle_many`] sends those in batches).
async fn handle(gateway: &Gateway, session: &mut Session, reference: Option<&str>, command: ClientCommand) -> Outcome {
    let services = &gateway.inner.services;
    let user = session.user_id;
    let device = session.connection;
    let outcome = match command {
        ClientCommand::Ping => {
            Ok(vec![Reply::to(reference, ServerEvent::Pong(Pong { timestamp: to_iso(now_millis()) }))])
        }
        ClientCommand::Auth(_) => Err((ErrorCode::BadRequest, "already authenticated".to_owned())),
        ClientCommand::Sync(sync) => services
            .messages
            .sync(user, sync.chat_id, sync.after_seq, sync.limit)
            .await
            .map(|page| {
                let batch = SyncBatch { chat_id: page.chat_id, messages: page.messages, has_more: page.has_more };
                vec![Reply::to(reference, ServerEvent::SyncBatch(batch))]
            })
            .map_err(|error| failure(&error)),
        ClientCommand::Read(read) => services
            .messages
            .read(user, Some(read.chat_id), read.message_id)
            .await
            .map(|marker| {
                let ok = ReadOk { chat_id: marker.chat_id, last_read_seq: marker.last_read_seq };
                vec![Reply::to(reference, ServerEvent::MessageReadOk(ok))]
            })
            .map_err(|error| failure(&error)),
        ClientCommand::Delivered(delivered) => services
            .messages
            .delivered(user, delivered.chat_id, &delivered.message_ids)
            .await
            .map(|()| Vec::new())
            .map_err(|error| failure(&error)),
        ClientCommand::Typing(typing) => crate::typing::command(gateway, user, &typing).await,
        ClientCommand::PresenceQuery(query) => presence_query(gateway, user, reference, &query.user_ids).await,
        ClientCommand::ReactionAdd(reaction) => react(gateway, user, device, reference, &reaction, true).await,
        ClientCommand::ReactionRemove(reaction) => react(gateway, user, device, reference, &reaction, false).await,
        ClientCommand::CallOffer(offer) => crate::calls::offer(gateway, user, device, reference, offer).await,
        ClientCommand::CallAnswer(answer) => crate::calls::answer(gateway, user, device, &answer).await,
        ClientCommand::CallIce(ice) => crate::calls::ice(gateway, user, device, ice).await,
        ClientCommand::CallEnd(end) => crate::calls::end(gateway, user, device, &end).await,
        // Sends are batched by `handle_many`; a new command type lands here
        // until it is wired.
        other => Err((ErrorCode::BadRequest, format!("{} is not accepted here", other.kind()))),
    };
    conclude(session, reference, outcome)
}

/// A command's result as what the connection does next.
fn conclude(session: &mut Session, reference: Option<&str>, handled: Handled) -> Outcome {
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

/// A `message.send` command as what the pipeline sends.
fn send_request(
    gateway: &Gateway,
    session: &Session,
    command: protocol::commands::SendMessage,
) -> Result<NewMessage, Failure> {
    let chat_id = command.chat_id.ok_or((ErrorCode::BadRequest, "chat_id is required".to_owned()))?;
    gateway.inner.services.messages.request(command, chat_id, session.user_id).map_err(|error| failure(&error))
}

fn ack(reference: Option<&str>, sent: service::Sent) -> Reply {
    let ack =
        MessageAck { client_message_id: sent.message.client_message_id, message: sent.view, duplicate: sent.duplicate };
    Reply { announced: sent.announced, ..Reply::to(reference, ServerEvent::MessageAck(Box::new(ack))) }
}

/// `reaction.add` / `reaction.remove`: the event is this device's reply;
/// the user's other devices and the other members get it through the router.
async fn react(
    gateway: &Gateway,
    user: UserId,
    device: u64,
    reference: Option<&str>,
    reaction: &protocol::client::Reaction,
    add: bool,
) -> Handled {
    let reactions = &gateway.inner.services.reactions;
    let origin = Some(router::DeviceRef { node: gateway.inner.config.node_id, connection: device });
    let changed = if add {
        reactions.add(user, reaction.message_id, &reaction.emoji, origin).await
    } else {
        reactions.remove(user, reaction.message_id, &reaction.emoji, origin).await
    };
    changed
        .map(|event| vec![Reply::to(reference, ServerEvent::MessageReaction(event))])
        .map_err(|error| failure(&error))
}

/// The presence of the asked users the caller may see (the same rule as
/// the `presence` events: they would be told of it).
async fn presence_query(gateway: &Gateway, user: UserId, reference: Option<&str>, user_ids: &[i64]) -> Handled {
    let states = gateway.inner.services.users.presence(user, user_ids).await.map_err(|error| failure(&error))?;
    let users = states
        .into_iter()
        .map(|state| PresenceEntry {
            user_id: state.user_id,
            is_online: state.is_online,
            last_seen: state.last_seen.map(to_iso),
        })
        .collect();
    Ok(vec![Reply::to(reference, ServerEvent::PresenceState(PresenceStates { users }))])
}

/// Announces the presence changes the registry found on its own: the users
/// of a node that died, or users registered again after a Redis outage.
pub(crate) async fn announce_found_presence(
    gateway: Gateway,
    mut found: tokio::sync::mpsc::Receiver<Vec<router::PresenceChange>>,
) {
    while let Some(changes) = found.recv().await {
        for change in changes {
            if !change.online {
                // Gone from every node (theirs died): their call is over.
                crate::calls::user_gone(&gateway, change.user_id).await;
            }
            gateway.inner.services.users.announce_presence(change.user_id, change.online).await;
        }
    }
}
