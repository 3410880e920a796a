//! Messages after they are sent: history and sync, edit, delete, pin,
//! read and delivery receipts. Sending itself is the pipeline's.

use protocol::commands::SendMessage;
use protocol::time::now_millis;
use protocol::views::MessageView;
use storage::model::{
    ChatId, ChatKind, Cursor, Member, MemberRole, Message, MessageId, MessageKind, MessageQuery, Millis, NewMessage,
    ReceiptKind, ReceiptMark, Seq, UserId,
};

use crate::events::{self, Receipt};
use crate::{Deps, QueuedSends, Sent, ServiceError, ServiceResult, views};

/// Most messages one history page or sync answers.
pub(crate) const PAGE_MAX: u32 = 100;
/// Most message ids one delivery receipt names.
pub(crate) const DELIVERED_MAX: usize = 100;

/// Which page of a chat's history (every field optional but `limit`).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// 1 to [`PAGE_MAX`].
    pub limit: u32,
    pub offset: u32,
    /// Only messages before this one (by id or seq).
    pub before: Option<Cursor>,
    /// Only messages after this one (by id or seq).
    pub after: Option<Cursor>,
    /// Full-text search, at most 100 characters.
    pub search: Option<String>,
    /// A message type (`text`, `image`, ...).
    pub kind: Option<String>,
    /// Answer who received and read each message, and when (the
    /// dialects' per-message state): one more store read.
    pub receipts: bool,
}

/// A page of messages in ascending seq order, as the caller sees them.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub chat_id: ChatId,
    pub messages: Vec<MessageView>,
    /// Whether more messages lie beyond this page in its direction.
    pub has_more: bool,
    /// One per message, in the same order, when the query asked for them;
    /// empty otherwise.
    pub receipts: Vec<MessageReceipts>,
}

/// Where one member stands with one message: delivered to one of their
/// devices, read, and since when (a time is unknown for an advance made
/// before times were kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberReceipt {
    pub user_id: UserId,
    pub delivered: bool,
    pub delivered_at: Option<Millis>,
    pub read: bool,
    pub read_at: Option<Millis>,
}

/// Every member but its sender who has received or read a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReceipts {
    pub message_id: MessageId,
    pub receipts: Vec<MemberReceipt>,
}

/// The caller's read marker after a `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarker {
    pub chat_id: ChatId,
    pub last_read_seq: Seq,
}

/// Message use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Messages {
    deps: Deps,
}

impl Messages {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// The wire command as what the pipeline sends, for `sender` into `chat_id`.
    pub fn request(&self, command: SendMessage, chat_id: ChatId, sender: UserId) -> ServiceResult<NewMessage> {
        crate::new_message(command, chat_id, sender)
    }

    /// Sends one message: durable when this answers, and `message.new`
    /// handed to every member's devices.
    pub async fn send(&self, sender: UserId, chat_id: ChatId, command: SendMessage) -> ServiceResult<Sent> {
        let request = self.request(command, chat_id, sender)?;
        self.deps.pipeline.send(request).await
    }

    /// Sends several messages of one client in order, with one store trip.
    /// `origin`, when given, is the sending device, which is not sent
    /// `message.new` (its ack carries the message).
    pub async fn send_many(
        &self,
        requests: Vec<NewMessage>,
        origin: Option<router::DeviceRef>,
    ) -> Vec<ServiceResult<Sent>> {
        self.deps.pipeline.send_many(requests, origin).await
    }

    /// [`send_many`](Self::send_many) in two steps (see
    /// [`SendPipeline::queue_many`](crate::SendPipeline::queue_many)):
    /// answers once the batch is queued behind the caller's earlier ones.
    pub async fn queue_many(&self, requests: Vec<NewMessage>, origin: Option<router::DeviceRef>) -> QueuedSends {
        self.deps.pipeline.queue_many(requests, origin).await
    }

    /// A page of `chat_id`'s history as `caller` sees it.
    pub async fn history(&self, caller: UserId, chat_id: ChatId, query: HistoryQuery) -> ServiceResult<MessagePage> {
        if !(1..=PAGE_MAX).contains(&query.limit) {
            return Err(ServiceError::Invalid(format!("limit must be 1 to {PAGE_MAX}")));
        }
        let kind = match query.kind.as_deref() {
            Some(text) => Some(
                MessageKind::parse(text)
                    .ok_or_else(|| ServiceError::Invalid(format!("unknown message type {text:?}")))?,
            ),
            None => None,
        };
        if query.search.as_ref().is_some_and(|search| search.chars().count() > 100) {
            return Err(ServiceError::Invalid("search must be at most 100 characters".into()));
        }
        let members = self.members_for(caller, chat_id).await?;
        let store_query = MessageQuery {
            before: query.before,
            after: query.after,
            // One more than asked tells whether there is more.
            limit: query.limit + 1,
            offset: query.offset,
            kind,
            search: query.search.filter(|search| !search.trim().is_empty()),
            now: now_millis(),
        };
        let ascending = query.after.is_some() && query.before.is_none();
        let mut page = self.deps.store.messages(chat_id, store_query).await?;
        let has_more = page.len() > query.limit as usize;
        if has_more {
            // Drop the extra from the far end of the page's direction.
            if ascending {
                page.pop();
            } else {
                page.remove(0);
            }
        }
        let messages = views::messages_seen_by(self.deps.store.as_ref(), &members, caller, &page).await?;
        let receipts = if query.receipts { self.receipts(chat_id, &members, &messages).await? } else { Vec::new() };
        Ok(MessagePage { chat_id, messages, has_more, receipts })
    }

    /// What `caller` missed in `chat_id` after `after_seq`, oldest first:
    /// the same history read from a seq, at most `limit` (default and cap
    /// [`PAGE_MAX`]).
    pub async fn sync(
        &self,
        caller: UserId,
        chat_id: ChatId,
        after_seq: Seq,
        limit: Option<u32>,
    ) -> ServiceResult<MessagePage> {
        let limit = limit.unwrap_or(PAGE_MAX).clamp(1, PAGE_MAX);
        let query = HistoryQuery { limit, after: Some(Cursor::Seq(after_seq)), ..HistoryQuery::default() };
        self.history(caller, chat_id, query).await
    }

    /// The chat's members, if `caller` is one: 20001 / 20002 otherwise.
    async fn members_for(&self, caller: UserId, chat_id: ChatId) -> ServiceResult<Vec<Member>> {
        // The member list answers membership and feeds the read markers.
        let members = self.deps.store.members(chat_id).await?;
        if !members.iter().any(|member| member.user_id == caller) {
            crate::chats::membership(&self.deps, chat_id, caller).await?;
        }
        Ok(members)
    }

    /// A message `caller` may see, with their membership: 20003 if it does
    /// not exist or is in a chat the caller is not in (no existence leak).
    async fn visible(&self, id: MessageId, caller: UserId) -> ServiceResult<(Message, Member)> {
        let now = now_millis();
        // An expired message is gone for every purpose, whatever the store still holds.
        let message = self.deps.store.message(id).await?.filter(|message| message.expires_at.is_none_or(|at| at > now));
        let message = message.ok_or(ServiceError::MessageNotFound(id))?;
        let member = self.deps.store.member(message.chat_id, caller).await?.ok_or(ServiceError::MessageNotFound(id))?;
        Ok((message, member))
    }

    /// The sender edits the text of a message that is not deleted.
    pub async fn edit(&self, caller: UserId, id: MessageId, content: String) -> ServiceResult<MessageView> {
        self.own(caller, id, "edit").await?;
        let max = self.deps.config.send.max_content_chars;
        if content.trim().is_empty() || content.chars().count() > max {
            return Err(ServiceError::Invalid(format!("content must be 1 to {max} characters")));
        }
        let edited =
            self.deps.store.edit_message(id, content, now_millis()).await?.ok_or(ServiceError::MessageNotFound(id))?;
        let members = self.deps.store.members(edited.chat_id).await?;
        self.deps.pipeline.publish_to_members(&members, events::message_edit(&edited), &[]).await;
        let seen =
            views::messages_seen_by(self.deps.store.as_ref(), &members, caller, std::slice::from_ref(&edited)).await?;
        seen.into_iter().next().ok_or(ServiceError::MessageNotFound(id))
    }

    /// The sender deletes a message (its slot stays, its content goes); a
    /// scheduled message of the caller's is cancelled instead.
    pub async fn delete(&self, caller: UserId, id: MessageId) -> ServiceResult<()> {
        let store = &self.deps.store;
        if let Some(held) = store.scheduled_message(id).await?
            && held.sender_id == caller
        {
            store.cancel_scheduled(id).await?;
            return Ok(());
        }
        let message = self.own(caller, id, "delete").await?;
        self.withdraw(message).await
    }

    /// A message `caller` may see and sent: 20004 when someone else sent
    /// it, or when it is a `system` message (the server's, whoever it names).
    async fn own(&self, caller: UserId, id: MessageId, verb: &str) -> ServiceResult<Message> {
        let (message, _) = self.visible(id, caller).await?;
        if message.kind == MessageKind::System {
            return Err(ServiceError::MessageForbidden(format!("nobody may {verb} a system message")));
        }
        if message.sender_id != caller {
            return Err(ServiceError::MessageForbidden(format!("only the sender may {verb} a message")));
        }
        Ok(message)
    }

    /// Deletes a sent message (its slot stays, its content goes) and tells
    /// every member with `message.delete`.
    async fn withdraw(&self, message: Message) -> ServiceResult<()> {
        let id = message.id;
        let deleted =
            self.deps.store.delete_message(id, now_millis()).await?.ok_or(ServiceError::MessageNotFound(id))?;
        self.deps.pipeline.publish_to_chat(deleted.chat_id, events::message_delete(&deleted), &[]).await
    }

    /// The sender recalls a message within the recall window: it stays in
    /// history as deleted, without its content, and every member gets
    /// `message.delete` live (seed 000 shows it as `recalled`).
    pub async fn recall(&self, caller: UserId, id: MessageId) -> ServiceResult<()> {
        let message = self.own(caller, id, "recall").await?;
        if message.is_deleted {
            return Err(ServiceError::MessageForbidden(format!("message {id} is already recalled")));
        }
        let window = self.deps.config.recall_window_ms;
        if now_millis() - message.created_at > window {
            return Err(ServiceError::MessageForbidden(format!(
                "a message may be recalled within {} seconds of sending",
                window / 1000
            )));
        }
        self.withdraw(message).await
    }

    /// Pins or unpins a message: anyone in a private chat, a group's owner
    /// and admins in a group; never a deleted message.
    pub async fn set_pinned(&self, caller: UserId, id: MessageId, pinned: bool) -> ServiceResult<()> {
        let (message, member) = self.visible(id, caller).await?;
        let chat = self.deps.store.chat(message.chat_id).await?;
        let may_pin = chat.is_some_and(|chat| chat.kind == ChatKind::Private) || member.role != MemberRole::Member;
        if !may_pin {
            return Err(ServiceError::MessageForbidden("only a group's owner or admins may pin messages".into()));
        }
        self.deps.store.set_message_pinned(id, pinned, now_millis()).await?;
        let event = events::message_pin(id, message.chat_id, pinned, caller);
        self.deps.pipeline.publish_to_chat(message.chat_id, event, &[]).await
    }

    /// Moves the caller's read marker up to `message_id`; the chat's
    /// members get `message.status` `read` when it moved. With `chat_id`
    /// (the WebSocket command names it) the caller's membership of that
    /// chat is checked first, and the message must be in it.
    pub async fn read(
        &self,
        caller: UserId,
        chat_id: Option<ChatId>,
        message_id: MessageId,
    ) -> ServiceResult<ReadMarker> {
        if let Some(chat_id) = chat_id {
            crate::chats::membership(&self.deps, chat_id, caller).await?;
        }
        let (message, member) = self.visible(message_id, caller).await?;
        if chat_id.is_some_and(|chat_id| chat_id != message.chat_id) {
            return Err(ServiceError::MessageNotFound(message_id));
        }
        let marker = self.deps.store.mark_read(message.chat_id, caller, message.seq, now_millis()).await?;
        if marker > member.last_read_seq {
            let event = events::message_status(message.chat_id, message.id, marker, caller, Receipt::Read);
            self.deps.pipeline.publish_to_chat(message.chat_id, event, &[]).await?;
            if self.deps.hooks.enabled() {
                let data = serde_json::json!({
                    "chat_id": message.chat_id,
                    "user_id": caller,
                    "message_id": message.id,
                    "last_read_seq": marker,
                });
                self.deps.hooks.emit(crate::hooks::types::MESSAGE_READ, data);
            }
        }
        Ok(ReadMarker { chat_id: message.chat_id, last_read_seq: marker })
    }

    /// Tells each message's sender it reached one of the caller's devices,
    /// and moves the caller's delivered marker up to the newest of them.
    /// Ids of other chats, unknown ids and the caller's own are skipped.
    pub async fn delivered(&self, caller: UserId, chat_id: ChatId, message_ids: &[MessageId]) -> ServiceResult<()> {
        if message_ids.len() > DELIVERED_MAX {
            return Err(ServiceError::Invalid(format!("at most {DELIVERED_MAX} message_ids at once")));
        }
        crate::chats::membership(&self.deps, chat_id, caller).await?;
        let mut ids = message_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // One read for the lot.
        let mut delivered = self.deps.store.messages_by_id(&ids).await?;
        delivered.retain(|m| m.chat_id == chat_id && m.sender_id != caller);
        delivered.sort_unstable_by_key(|m| m.seq);
        // Stored before any sender hears of it: a history read right after
        // the `message.status` already shows it.
        if let Some(newest) = delivered.iter().map(|message| message.seq).max() {
            self.deps.store.mark_delivered(chat_id, caller, newest, now_millis()).await?;
        }
        for message in delivered {
            let status = events::message_status(chat_id, message.id, message.seq, caller, Receipt::Delivered);
            let delivery = router::Delivery::new(vec![message.sender_id], status);
            if let Err(error) = self.deps.router.publish(delivery).await {
                tracing::warn!(%error, "delivered status not published");
            }
        }
        Ok(())
    }

    /// Who has received and read each of `messages` (a page of `chat_id`
    /// with its `members`), and when: derived from the members' receipt
    /// markers and the advances they made, one store read per page.
    async fn receipts(
        &self,
        chat_id: ChatId,
        members: &[Member],
        messages: &[MessageView],
    ) -> ServiceResult<Vec<MessageReceipts>> {
        let seqs = messages.iter().map(|message| message.seq).filter(|&seq| seq > 0);
        let marks = match (seqs.clone().min(), seqs.max()) {
            (Some(from), Some(to)) => self.deps.store.receipts(chat_id, from, to).await?,
            _ => Vec::new(),
        };
        Ok(messages.iter().map(|message| receipts_of(message, members, &marks)).collect())
    }
}

/// The earliest advance of `user`'s `kind` marker that covers `seq`.
fn earliest(marks: &[ReceiptMark], user: UserId, kind: ReceiptKind, seq: Seq) -> Option<Millis> {
    marks.iter().filter(|mark| mark.user_id == user && mark.kind == kind && mark.seq >= seq).map(|mark| mark.at).min()
}

/// One message's receipts: a read implies delivery, and a read marker past
/// the message counts as read even without a kept advance.
fn receipts_of(message: &MessageView, members: &[Member], marks: &[ReceiptMark]) -> MessageReceipts {
    let receipts = members
        .iter()
        .filter(|member| member.user_id != message.sender_id && message.seq > 0)
        .filter_map(|member| {
            let read_at = earliest(marks, member.user_id, ReceiptKind::Read, message.seq);
            let read = member.last_read_seq >= message.seq || read_at.is_some();
            let delivered_at = match (earliest(marks, member.user_id, ReceiptKind::Delivered, message.seq), read_at) {
                (Some(delivered), Some(read)) => Some(delivered.min(read)),
                (delivered, read) => delivered.or(read),
            };
            let delivered = read || delivered_at.is_some();
            delivered.then_some(MemberReceipt { user_id: member.user_id, delivered, delivered_at, read, read_at })
        })
        .collect();
    MessageReceipts { message_id: message.id, receipts }
}
