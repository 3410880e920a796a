use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use metrics::Counter;
use protocol::time::now_millis;
use protocol::{Frame, ServerEvent};
use storage::model::{Appended, ChatId, ChatKind, FileId, Member, Message, MessageKind, Millis, NewMessage, UserId};
use storage::{Store, StoreError};

use protocol::views::MessageView;
use storage::model::SendContext;

use router::{Delivery, DeviceRef, Devices, PublishNow, Router};

use crate::Hooks;
use crate::error::{ServiceError, ServiceResult};
use crate::scheduler::Retries;
use crate::{events, views};

/// Limits on what a client may send, with defaults a messenger can live by.
#[derive(Debug, Clone)]
pub struct SendLimits {
    /// Longest `content`, in characters.
    pub max_content_chars: usize,
    /// Longest `client_message_id`, in bytes.
    pub max_client_id_bytes: usize,
    /// Longest `ttl`, in seconds.
    pub max_ttl_secs: u64,
    /// How far ahead `send_at` may be, in milliseconds.
    pub max_schedule_ahead_ms: Millis,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            max_content_chars: 4_096,
            max_client_id_bytes: 128,
            max_ttl_secs: 30 * 24 * 3600,
            max_schedule_ahead_ms: 365 * 24 * 3600 * 1000,
        }
    }
}

/// What a send did.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    /// The message as `message.new` carried it (sender included), the
    /// same view the event holds.
    pub view: Arc<MessageView>,
    /// The `message.new` frame of `view`, when this send published one: an
    /// ack in JSON takes the view's bytes from it
    /// ([`protocol::frame::encode_reply`]).
    pub announced: Option<Frame>,
    /// The sender had sent this `client_message_id` before: this is the
    /// original, and nothing was delivered again.
    pub duplicate: bool,
    /// Held for its `send_at`: no seq yet, delivered when due.
    pub scheduled: bool,
    /// Who the message's chat is for, as dialects name it.
    pub audience: protocol::dialect::Audience,
}

/// Turns the wire command into what the pipeline sends, checking the
/// fields that need parsing; the pipeline checks the rest.
pub fn new_message(
    command: protocol::commands::SendMessage,
    chat_id: ChatId,
    sender_id: UserId,
) -> ServiceResult<NewMessage> {
    let kind = MessageKind::parse(&command.kind)
        .ok_or_else(|| ServiceError::Invalid(format!("unknown message type {:?}", command.kind)))?;
    let send_at = match command.send_at.as_deref() {
        Some(text) => Some(
            protocol::time::from_iso(text)
                .ok_or_else(|| ServiceError::Invalid("send_at must be an ISO 8601 time".into()))?,
        ),
        None => None,
    };
    let media = media(&command)?;
    let file_url = match command.file_id {
        Some(id) if command.file_url.is_empty() || internal_file(&command.file_url)? == Some(id) => file_path(id),
        Some(_) => return Err(ServiceError::Invalid("give file_id or file_url, not two different files".into())),
        None => command.file_url,
    };
    Ok(NewMessage {
        media,
        chat_id,
        sender_id,
        client_message_id: command.client_message_id,
        kind,
        content: command.content,
        file_name: command.file_name,
        file_size: command.file_size,
        file_url,
        thumbnail: command.thumbnail,
        reply_to_id: command.reply_to_id,
        forward_from: command.forward_from,
        ttl: command.ttl,
        send_at,
        is_silent: command.is_silent,
        created_at: 0,
    })
}

/// Where an uploaded file is read: one URL per file, whichever contract uploaded it.
pub fn file_path(id: FileId) -> String {
    format!("/api/files/{id}")
}

/// The uploaded file a URL names (`/api/files/{id}`, its thumbnail, or the
/// same behind a scheme and host), if it names one; a URL into
/// `/api/files/` that names no file is refused.
pub fn internal_file(url: &str) -> ServiceResult<Option<FileId>> {
    let Some((_, rest)) = url.split_once("/api/files/") else { return Ok(None) };
    let id = rest.split(['/', '?', '#']).next().unwrap_or_default();
    id.parse::<FileId>().map(Some).map_err(|_| ServiceError::Invalid("file_url names no uploaded file".into()))
}

/// `switchboard_messages_sent_total` by outcome. Handles looked up once:
/// `metrics::counter!` searches the recorder's registry on every call.
static SENT_NEW: LazyLock<Counter> = LazyLock::new(|| sent_total("new"));
static SENT_DUPLICATE: LazyLock<Counter> = LazyLock::new(|| sent_total("duplicate"));
static SENT_SCHEDULED: LazyLock<Counter> = LazyLock::new(|| sent_total("scheduled"));

fn sent_total(outcome: &'static str) -> Counter {
    metrics::counter!("switchboard_messages_sent_total", "outcome" => outcome)
}

/// Longest `file_name`, in characters.
const MAX_FILE_NAME_CHARS: usize = 255;
/// Longest `file_url` or `thumbnail`, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// Longest media object (`width`, `height`, `duration`, `extra`), in bytes of JSON.
const MAX_MEDIA_BYTES: usize = 4 * 1024;

/// The media fields of a send as the JSON object a message keeps, or
/// empty when there are none.
fn media(command: &protocol::commands::SendMessage) -> ServiceResult<String> {
    if command.extra.as_ref().is_some_and(|extra| !extra.is_object()) {
        return Err(ServiceError::Invalid("extra must be a JSON object".into()));
    }
    let mut media = serde_json::Map::new();
    for (name, value) in [("width", command.width), ("height", command.height), ("duration", command.duration)] {
        if let Some(value) = value {
            media.insert(name.into(), value.into());
        }
    }
    if let Some(extra) = &command.extra {
        media.insert("extra".into(), extra.clone());
    }
    if media.is_empty() {
        return Ok(String::new());
    }
    let text = serde_json::Value::Object(media).to_string();
    if text.len() > MAX_MEDIA_BYTES {
        return Err(ServiceError::Invalid(format!("media fields may be at most {MAX_MEDIA_BYTES} bytes of JSON")));
    }
    Ok(text)
}

/// Validate, persist, publish: the one way a message enters the system.
/// The store dedupes and sequences inside its write. Cheap to clone.
#[derive(Clone)]
pub struct SendPipeline {
    store: Arc<dyn Store>,
    router: Arc<dyn Router>,
    limits: Arc<SendLimits>,
    /// `message.created` for webhooks, with who was offline (the presence
    /// registry says); nothing is asked when no webhook listens.
    hooks: Hooks,
    presence: Option<Arc<dyn router::PresenceRegistry>>,
    /// Messages this process has sent (node stats read the rate).
    sent: Arc<AtomicU64>,
    /// The router's way to publish from the store's writer thread, if it
    /// has one: `message.new` then leaves right after the commit.
    publish_now: Option<Arc<dyn PublishNow>>,
}

impl std::fmt::Debug for SendPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendPipeline").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// A batch of sends queued in the store (see [`SendPipeline::queue_many`]).
#[must_use = "the sends are published only once their outcomes are taken"]
pub struct QueuedSends {
    pipeline: SendPipeline,
    /// Each request's outcome, where already known (refused before the store).
    outcomes: Vec<Option<Result<Sent, ServiceError>>>,
    /// Where each queued message's outcome goes, with its context.
    slots: Vec<(usize, Arc<SendContext>)>,
    queued: Option<storage::QueuedAppend>,
    origin: Option<DeviceRef>,
    /// Each queued message's view, by slot, if the store's writer published
    /// its `message.new` already (see [`SendPipeline::publish_written`]).
    published: Published,
}

/// The views of a batch's messages whose `message.new` the store's writer
/// published, by slot.
type Published = Arc<Mutex<Vec<Option<(Arc<MessageView>, Frame)>>>>;

impl std::fmt::Debug for QueuedSends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedSends").field("requests", &self.outcomes.len()).finish_non_exhaustive()
    }
}

impl QueuedSends {
    /// Each request's outcome, in order, once the batch is written; the
    /// new messages are published before this answers.
    pub async fn outcomes(self) -> Vec<Result<Sent, ServiceError>> {
        let Self { pipeline, mut outcomes, slots, queued, origin, published } = self;
        if let Some(queued) = queued {
            match queued.await {
                Ok(appended) => {
                    let mut published = std::mem::take(&mut *published.lock().unwrap_or_else(PoisonError::into_inner));
                    for (slot, ((index, context), appended)) in slots.into_iter().zip(appended).enumerate() {
                        let view = published.get_mut(slot).and_then(Option::take);
                        outcomes[index] = Some(match appended {
                            Ok(appended) => pipeline.finish(appended, &context, origin, view).await,
                            Err(error) => Err(error.into()),
                        });
                    }
                }
                Err(error) => fail_batch(&mut outcomes, &slots, &error),
            }
        }
        // A backend answering fewer outcomes than requests would be a bug: say so, never panic.
        let unanswered = || Err(ServiceError::Internal(StoreError::Worker("the store left a send unanswered".into())));
        outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(unanswered)).collect()
    }
}

impl SendPipeline {
    pub fn new(store: Arc<dyn Store>, router: Arc<dyn Router>, limits: SendLimits) -> Self {
        Self {
            store,
            limits: Arc::new(limits),
            hooks: Hooks::default(),
            presence: None,
            sent: Arc::new(AtomicU64::new(0)),
            publish_now: router.publisher_now(),
            router,
        }
    }

    /// The same pipeline, telling `hooks` of each new message and who of
    /// its recipients `presence` found offline.
    #[must_use]
    pub fn with_hooks(mut self, hooks: Hooks, presence: Arc<dyn router::PresenceRegistry>) -> Self {
        self.hooks = hooks;
        self.presence = Some(presence);
        self
    }

    /// How many messages this process has sent so far.
    pub fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> &SendLimits {
        &self.limits
    }

    fn check_shape(&self, request: &NewMessage, now: Millis) -> Result<(), ServiceError> {
        let limits = &self.limits;
        if request.kind == MessageKind::System {
            return Err(ServiceError::Invalid("system messages are sent by the server only".into()));
        }
        if request.content.chars().count() > limits.max_content_chars {
            return Err(ServiceError::Invalid(format!(
                "content is longer than {} characters",
                limits.max_content_chars
            )));
        }
        let has_body = !request.content.trim().is_empty() || !request.file_url.is_empty();
        if !has_body && request.forward_from.is_none() {
            return Err(ServiceError::Invalid("a message needs content or a file_url".into()));
        }
        if request.client_message_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > limits.max_client_id_bytes) {
            return Err(ServiceError::Invalid(format!(
                "client_message_id must be 1 to {} bytes",
                limits.max_client_id_bytes
            )));
        }
        if request.file_name.chars().count() > MAX_FILE_NAME_CHARS {
            return Err(ServiceError::Invalid(format!("file_name is longer than {MAX_FILE_NAME_CHARS} characters")));
        }
        for (field, value) in [("file_url", &request.file_url), ("thumbnail", &request.thumbnail)] {
            if value.len() > MAX_URL_BYTES {
                return Err(ServiceError::Invalid(format!("{field} is longer than {MAX_URL_BYTES} bytes")));
            }
        }
        if request.ttl > limits.max_ttl_secs {
            return Err(ServiceError::Invalid(format!("ttl may be at most {} seconds", limits.max_ttl_secs)));
        }
        if request.send_at.is_some_and(|at| at > now + limits.max_schedule_ahead_ms) {
            return Err(ServiceError::Invalid("send_at is too far in the future".into()));
        }
        Ok(())
    }

    /// Sends `request` as its sender: the message is durable when this
    /// answers, and every member's devices have been handed `message.new`
    /// (unless it was a duplicate or is scheduled for later). The pipeline
    /// sets `seq` and `created_at` itself; what the caller put there is ignored.
    pub async fn send(&self, request: NewMessage) -> Result<Sent, ServiceError> {
        self.send_from(request, None).await
    }

    /// [`send`](Self::send), leaving out the sending device `origin` (if
    /// given) from those handed `message.new`.
    async fn send_from(&self, request: NewMessage, origin: Option<DeviceRef>) -> Result<Sent, ServiceError> {
        let now = now_millis();
        self.check_shape(&request, now)?;
        let context = self.store.send_context(request.chat_id, request.sender_id).await?;
        let context = context.ok_or(ServiceError::ChatNotFound(request.chat_id))?;
        let new = self.prepare(request, now, &context).await?;
        let appended = if new.send_at.is_some() {
            self.store.schedule_message(new).await?
        } else {
            self.store.append_message(new).await?
        };
        self.finish(appended, &context, origin, None).await
    }

    /// Sends several requests of one connection in their order, as [`send`]
    /// would one after another, but with one store trip for the whole
    /// batch: a client that pipelines its sends gets them committed
    /// together. Answers each request's outcome, in order. `origin`, when
    /// given, is the sending device: it is not handed `message.new`.
    ///
    /// [`send`]: Self::send
    pub async fn send_many(
        &self,
        requests: Vec<NewMessage>,
        origin: Option<DeviceRef>,
    ) -> Vec<Result<Sent, ServiceError>> {
        self.queue_many(requests, origin).await.outcomes().await
    }

    /// [`send_many`] in two steps: this answers once the batch is checked
    /// and queued in the store behind every batch queued before it; the
    /// [`QueuedSends`] it gives answers the outcomes once written and
    /// published. A connection that queues batch after batch keeps its
    /// sends in order (seqs, `message.new`) as long as it takes their
    /// outcomes in the same order, without waiting for each commit before
    /// reading its next frames.
    ///
    /// [`send_many`]: Self::send_many
    pub async fn queue_many(&self, requests: Vec<NewMessage>, origin: Option<DeviceRef>) -> QueuedSends {
        // Scheduled messages take another path in the store: keep it simple and exact.
        if requests.iter().any(|request| request.send_at.is_some()) {
            let outcomes = self.send_each(requests, origin).await.into_iter().map(Some).collect();
            let (slots, published) = (Vec::new(), Arc::default());
            return QueuedSends { pipeline: self.clone(), outcomes, slots, queued: None, origin, published };
        }
        let now = now_millis();
        let mut outcomes: Vec<Option<Result<Sent, ServiceError>>> = requests.iter().map(|_| None).collect();
        // Read once per (chat, sender) in the batch.
        let mut contexts: Vec<(ChatId, UserId, Arc<SendContext>)> = Vec::new();
        let (mut batch, mut slots) = (Vec::new(), Vec::new());
        for (index, request) in requests.into_iter().enumerate() {
            let prepared = async {
                self.check_shape(&request, now)?;
                let key = (request.chat_id, request.sender_id);
                let known = contexts.iter().find(|(chat, sender, _)| (*chat, *sender) == key);
                let context = if let Some((_, _, context)) = known {
                    context.clone()
                } else {
                    let context = self.store.send_context(request.chat_id, request.sender_id).await?;
                    let context = Arc::new(context.ok_or(ServiceError::ChatNotFound(request.chat_id))?);
                    contexts.push((key.0, key.1, context.clone()));
                    context
                };
                let new = self.prepare(request, now, &context).await?;
                Ok::<_, ServiceError>((new, context))
            };
            match prepared.await {
                Ok((new, context)) => {
                    batch.push(new);
                    slots.push((index, context));
                }
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }
        let published = Arc::default();
        let queued = if batch.is_empty() {
            None
        } else {
            let written = self.publish_written(&slots, origin, &published);
            match self.store.queue_messages(batch, written).await {
                Ok(queued) => Some(queued),
                Err(error) => {
                    fail_batch(&mut outcomes, &slots, &error);
                    slots.clear();
                    None
                }
            }
        };
        QueuedSends { pipeline: self.clone(), outcomes, slots, queued, origin, published }
    }

    /// What the store's writer runs right after committing a batch of
    /// `slots`, when the router can publish from its thread: each new
    /// message's `message.new`, in commit order, without waiting for the
    /// sender's task to hear of the commit. The views go to `published`
    /// for the acks; what is not there is published by [`Self::finish`].
    ///
    /// Only for a sending device that takes its messages from their acks
    /// (`origin`): one that is sent its own `message.new` gets it after
    /// the ack (in the same frame with `batch=1`), which a publish from the
    /// writer would race.
    fn publish_written(
        &self,
        slots: &[(usize, Arc<SendContext>)],
        origin: Option<DeviceRef>,
        published: &Published,
    ) -> Option<storage::Written> {
        let router = self.publish_now.clone()?;
        let origin = origin?;
        let contexts: Vec<Arc<SendContext>> = slots.iter().map(|(_, context)| context.clone()).collect();
        let published = published.clone();
        Some(Box::new(move |written| {
            let Ok(appended) = written else { return };
            let views = appended
                .iter()
                .zip(&contexts)
                .map(|(appended, context)| {
                    // Duplicates are not delivered again; this path schedules nothing.
                    let Ok(Appended::New(message)) = appended else { return None };
                    let view = new_view(message, context);
                    let delivery = new_delivery(&view, context, Some(origin));
                    let frame = delivery.frame.clone();
                    router.publish_now(delivery);
                    Some((view, frame))
                })
                .collect();
            *published.lock().unwrap_or_else(PoisonError::into_inner) = views;
        }))
    }

    /// [`send_from`](Self::send_from) for each request in turn.
    async fn send_each(&self, requests: Vec<NewMessage>, origin: Option<DeviceRef>) -> Vec<ServiceResult<Sent>> {
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(self.send_from(request, origin).await);
        }
        outcomes
    }

    /// The checks that need the store (membership, blocks, the replied-to
    /// and forwarded messages); answers what to append.
    async fn prepare(&self, mut request: NewMessage, now: Millis, context: &SendContext) -> ServiceResult<NewMessage> {
        let SendContext { chat, members, blockers, .. } = context;
        if !members.iter().any(|member| member.user_id == request.sender_id) {
            return Err(ServiceError::not_member());
        }
        if chat.kind == ChatKind::Private && !blockers.is_empty() {
            return Err(ServiceError::Blocked);
        }
        if !chat.is_active {
            return Err(ServiceError::Forbidden("this chat is closed: its history stays readable".into()));
        }
        if let Some(reply_to) = request.reply_to_id {
            let original = self.store.message(reply_to).await?.filter(|original| original.is_visible_at(now));
            if original.is_none_or(|original| original.chat_id != chat.id) {
                return Err(ServiceError::MessageNotFound(reply_to));
            }
        }
        if let Some(forwarded) = request.forward_from {
            // Deleted and expired messages are gone: nothing to forward.
            let original = self.store.message(forwarded).await?.filter(|original| original.is_visible_at(now));
            let Some(original) = original else { return Err(ServiceError::MessageNotFound(forwarded)) };
            if self.store.member(original.chat_id, request.sender_id).await?.is_none() {
                // Forwarding what one cannot read would leak it.
                return Err(ServiceError::MessageNotFound(forwarded));
            }
            // A message that expires keeps its end in the copy (the
            // forwarder's own ttl may end it sooner).
            if let Some(expires_at) = original.expires_at {
                let left = u64::try_from((expires_at - now).max(1_000) / 1_000).unwrap_or(1);
                request.ttl = if request.ttl == 0 { left } else { request.ttl.min(left) };
            }
            request.kind = original.kind;
            request.content = original.content;
            request.file_name = original.file_name;
            request.file_size = original.file_size;
            request.file_url = original.file_url;
            request.thumbnail = original.thumbnail;
        }
        self.attach(&mut request).await?;
        let scheduled = request.send_at.is_some_and(|at| at > now);
        Ok(NewMessage { send_at: request.send_at.filter(|_| scheduled), created_at: now, ..request })
    }

    /// A message naming an uploaded file carries that file as its record
    /// says (its one URL, name, size and thumbnail), and only if the sender
    /// may read it: their own upload, or one in a chat of theirs. Anything
    /// else reads as no such file.
    async fn attach(&self, request: &mut NewMessage) -> ServiceResult<()> {
        if let Some(thumbnail) = internal_file(&request.thumbnail)?
            && internal_file(&request.file_url)? != Some(thumbnail)
        {
            return Err(ServiceError::Invalid("thumbnail must be the thumbnail of the message's file".into()));
        }
        let Some(id) = internal_file(&request.file_url)? else { return Ok(()) };
        let file = self.store.file(id).await?.ok_or(ServiceError::FileNotFound(id))?;
        let url = file_path(id);
        if file.owner_id != request.sender_id && !self.store.file_visible_to(id, &url, request.sender_id).await? {
            return Err(ServiceError::FileNotFound(id));
        }
        request.thumbnail = if file.thumbnail_sha256.is_some() { format!("{url}/thumbnail") } else { String::new() };
        request.file_url = url;
        request.file_name = file.name;
        request.file_size = file.size;
        Ok(())
    }

    /// After the store answered: the view, and `message.new` to the members
    /// who have not blocked the sender (unless a duplicate or scheduled).
    /// A duplicate's view is read again, as the sender sees it now: the
    /// original may have been read or reacted to since.
    /// `published` is the message's view when its `message.new` has left already.
    async fn finish(
        &self,
        appended: Appended,
        context: &SendContext,
        origin: Option<DeviceRef>,
        published: Option<(Arc<MessageView>, Frame)>,
    ) -> ServiceResult<Sent> {
        let duplicate = matches!(appended, Appended::Duplicate(_));
        let message = appended.into_message();
        let scheduled = message.seq == 0;
        let sent = if duplicate {
            &SENT_DUPLICATE
        } else if scheduled {
            &SENT_SCHEDULED
        } else {
            &SENT_NEW
        };
        sent.increment(1);
        let (view, announced) = if duplicate && !scheduled {
            // The context's read markers may be behind: read them now.
            let members = self.store.members(message.chat_id).await?;
            let seen = views::messages_seen_by(
                self.store.as_ref(),
                &members,
                message.sender_id,
                std::slice::from_ref(&message),
            )
            .await?;
            (seen.into_iter().next().map_or_else(|| new_view(&message, context), Arc::new), None)
        } else if let Some((view, frame)) = published {
            self.announced(&view, context);
            (view, Some(frame))
        } else {
            let view = new_view(&message, context);
            let frame =
                if duplicate || scheduled { None } else { Some(self.publish_new(&view, context, origin).await) };
            (view, frame)
        };
        let audience = audience(&context.chat, &context.members);
        Ok(Sent { message, view, announced, duplicate, scheduled, audience })
    }

    /// `message.new` to every member of the context's chat (the sender's
    /// other devices included) except those who have blocked the sender,
    /// and except the sending device `origin` when given.
    /// Answers the event's frame.
    async fn publish_new(&self, view: &Arc<MessageView>, context: &SendContext, origin: Option<DeviceRef>) -> Frame {
        self.announced(view, context);
        let delivery = new_delivery(view, context, origin);
        let frame = delivery.frame.clone();
        if let Err(error) = self.router.publish(delivery).await {
            // The store has it; clients recover it with sync.
            tracing::warn!(%error, "message.new not published");
        }
        frame
    }

    /// Counts a new message whose `message.new` is published, and tells
    /// the webhooks of it.
    fn announced(&self, view: &Arc<MessageView>, context: &SendContext) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self.hooks.enabled() {
            self.tell_hooks(view, &recipients(context));
        }
    }

    /// `message.created` with the recipients (the sender aside) who had no
    /// live device: asked of the presence registry off the send's path.
    fn tell_hooks(&self, view: &Arc<MessageView>, recipients: &[UserId]) {
        let others: Vec<UserId> = recipients.iter().copied().filter(|&user| user != view.sender_id).collect();
        let (hooks, presence, view) = (self.hooks.clone(), self.presence.clone(), Arc::clone(view));
        tokio::spawn(async move {
            let online = match &presence {
                Some(presence) => presence.online(&others).await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "presence unavailable; every recipient counted offline");
                    vec![false; others.len()]
                }),
                None => vec![false; others.len()],
            };
            let offline: Vec<UserId> =
                others.iter().zip(online).filter(|(_, online)| !online).map(|(&user, _)| user).collect();
            let data = serde_json::json!({
                "chat_id": view.chat_id,
                "message": view,
                "recipient_ids": others,
                "offline_user_ids": offline,
            });
            hooks.emit(crate::hooks::types::MESSAGE_CREATED, data);
        });
    }

    /// Appends a `system` message (call records and the like), which
    /// clients may not send themselves, and announces it.
    pub async fn post_system(
        &self,
        chat_id: ChatId,
        sender_id: UserId,
        content: String,
    ) -> Result<Message, ServiceError> {
        self.post_system_with(chat_id, sender_id, content, String::new()).await
    }

    /// [`post_system`](Self::post_system) with media fields (`{"extra": ...}`
    /// as JSON text, or empty); sender 0 is "no sender" (an app backend's notice).
    pub async fn post_system_with(
        &self,
        chat_id: ChatId,
        sender_id: UserId,
        content: String,
        media: String,
    ) -> Result<Message, ServiceError> {
        let mut new = NewMessage::text(chat_id, sender_id, content, now_millis());
        new.kind = MessageKind::System;
        new.media = media;
        let message = self.store.append_message(new).await?.into_message();
        self.announce_new(&message).await?;
        Ok(message)
    }

    /// Publishes `message.new` for a stored message to every member of its
    /// chat (the sender's other devices included), except members who have
    /// blocked the sender.
    pub async fn announce_new(&self, message: &Message) -> Result<(), ServiceError> {
        // A chat deleted meanwhile has no one left to tell.
        if let Some(context) = self.store.send_context(message.chat_id, message.sender_id).await? {
            let view = new_view(message, &context);
            self.publish_new(&view, &context, None).await;
        }
        Ok(())
    }

    /// Publishes `event` to every member of `chat_id` and to `also` (for
    /// example a member who was just removed).
    pub async fn publish_to_chat(
        &self,
        chat_id: ChatId,
        event: ServerEvent,
        also: &[UserId],
    ) -> Result<(), ServiceError> {
        let members = self.store.members(chat_id).await?;
        self.publish_to_members(&members, event, also).await;
        Ok(())
    }

    /// [`publish_to_chat`](Self::publish_to_chat) when the chat's members
    /// are already at hand.
    pub async fn publish_to_members(&self, members: &[Member], event: ServerEvent, also: &[UserId]) {
        let mut recipients: Vec<UserId> = members.iter().map(|m| m.user_id).collect();
        for &user in also {
            if !recipients.contains(&user) {
                recipients.push(user);
            }
        }
        self.publish(recipients, event).await;
    }

    async fn publish(&self, recipients: Vec<UserId>, event: ServerEvent) {
        let kind = event.kind();
        if let Err(error) = self.router.publish(Delivery::new(recipients, event)).await {
            // The store has it; clients recover it with sync.
            tracing::warn!(%error, kind, "event not published");
        }
    }

    /// Releases every scheduled message due at `now`, announcing each;
    /// answers how many were released. A message whose release fails is
    /// logged, counted and left to `retries` (tried again later, less
    /// often each time); the others go on. Fails only when the due
    /// messages cannot be read at all.
    pub async fn release_due(&self, now: Millis, retries: &mut Retries) -> Result<usize, ServiceError> {
        /// Due messages read at a time, besides those known to be waiting.
        const PAGE: usize = 100;
        let mut released = 0;
        let mut tried = std::collections::HashSet::new();
        loop {
            // Messages that failed (now, or before and not yet due for a
            // retry) stay at the head of the due list: read past them.
            let limit = PAGE + tried.len() + retries.len();
            let due = self.store.due_scheduled(now, u32::try_from(limit).unwrap_or(u32::MAX)).await?;
            let page: Vec<Message> =
                due.into_iter().filter(|held| !tried.contains(&held.id) && retries.due(held.id, now)).collect();
            if page.is_empty() {
                return Ok(released);
            }
            for held in page {
                tried.insert(held.id);
                match self.release_one(&held).await {
                    Ok(sent) => {
                        retries.done(held.id);
                        released += usize::from(sent);
                    }
                    Err(error) => {
                        let failures = retries.failed(held.id, now);
                        metrics::counter!("switchboard_scheduled_failures_total").increment(1);
                        tracing::warn!(%error, message_id = held.id, chat_id = held.chat_id, failures, "scheduled message not released; tried again later");
                    }
                }
            }
        }
    }

    /// Releases one due message: answers whether it was sent (a sender
    /// who left before its time sends nothing).
    async fn release_one(&self, held: &Message) -> Result<bool, ServiceError> {
        if self.store.member(held.chat_id, held.sender_id).await?.is_none() {
            self.store.cancel_scheduled(held.id).await?;
            return Ok(false);
        }
        let Some(message) = self.store.release_scheduled(held.id, now_millis()).await? else { return Ok(false) };
        self.announce_new(&message).await?;
        Ok(true)
    }
}

/// A message of the context's chat as `message.new` carries it: unread,
/// with no reactions yet.
fn new_view(message: &Message, context: &SendContext) -> Arc<MessageView> {
    Arc::new(views::message(message, context.sender.as_deref(), false, &[]))
}

/// Who gets a message of the context's chat: its members, except those
/// who have blocked the sender.
fn recipients(context: &SendContext) -> Vec<UserId> {
    context.members.iter().map(|member| member.user_id).filter(|user| !context.blockers.contains(user)).collect()
}

/// `message.new` of `view` to the [`recipients`], every device but `origin`.
fn new_delivery(view: &Arc<MessageView>, context: &SendContext, origin: Option<DeviceRef>) -> Delivery {
    let audience = audience(&context.chat, &context.members);
    let mut delivery = Delivery::about(recipients(context), events::message_new(view), audience);
    if let Some(origin) = origin {
        delivery.devices = Devices::AllBut(origin);
    }
    delivery
}

/// What dialects need to know of a chat's events: a private chat's two
/// members (seed 001 names the chat by the other person).
pub fn audience(chat: &storage::model::Chat, members: &[Member]) -> protocol::dialect::Audience {
    let private_pair = match (chat.kind, members) {
        (ChatKind::Private, [a, b]) => Some([a.user_id, b.user_id]),
        _ => None,
    };
    protocol::dialect::Audience { private_pair }
}

/// Fails every queued send of a batch the store refused as a whole with
/// the same meaning (a `StoreError` is not `Clone`), logged once.
fn fail_batch(
    outcomes: &mut [Option<Result<Sent, ServiceError>>],
    slots: &[(usize, Arc<SendContext>)],
    error: &StoreError,
) {
    let closed = matches!(error, StoreError::Closed);
    if !closed {
        tracing::error!(%error, "store refused a batch of sends");
    }
    let detail = error.to_string();
    for (index, _) in slots {
        outcomes[*index] = Some(Err(if closed {
            ServiceError::Unavailable("the store is shutting down; retry".into())
        } else {
            ServiceError::Internal(StoreError::Worker(detail.clone()))
        }));
    }
}
