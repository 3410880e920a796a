//! The events the use cases publish, each built in exactly one place so
//! that every transport (and every dialect mapping them) sees one shape.

use protocol::time::{Millis, now_millis, to_iso};
use protocol::views::MessageView;
use protocol::{Event, kinds};
use serde_json::json;
use storage::model::{ChatId, Message, MessageId, Seq, UserId};

/// A receipt's kind, as `message.status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Delivered,
    Read,
}

impl Receipt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// `message.new`: the message as every member sees it on arrival.
pub fn message_new(view: &MessageView) -> Event {
    Event::new(kinds::MESSAGE_NEW, view)
}

/// `message.status`: `user_id` has received (or read up to) `message_id`.
pub fn message_status(chat_id: ChatId, message_id: MessageId, seq: Seq, user_id: UserId, receipt: Receipt) -> Event {
    Event::new(
        kinds::MESSAGE_STATUS,
        json!({"chat_id": chat_id, "message_id": message_id, "seq": seq, "user_id": user_id, "status": receipt.as_str()}),
    )
}

/// `message.edit`.
pub fn message_edit(edited: &Message) -> Event {
    Event::new(
        kinds::MESSAGE_EDIT,
        json!({"id": edited.id, "chat_id": edited.chat_id, "seq": edited.seq, "content": edited.content,
               "updated_at": to_iso(edited.updated_at)}),
    )
}

/// `message.delete`.
pub fn message_delete(deleted: &Message) -> Event {
    let deleted_at = deleted.deleted_at.unwrap_or(deleted.updated_at);
    Event::new(
        kinds::MESSAGE_DELETE,
        json!({"id": deleted.id, "chat_id": deleted.chat_id, "seq": deleted.seq, "deleted_at": to_iso(deleted_at)}),
    )
}

/// `message.pin`.
pub fn message_pin(id: MessageId, chat_id: ChatId, pinned: bool, by: UserId) -> Event {
    Event::new(kinds::MESSAGE_PIN, json!({"id": id, "chat_id": chat_id, "is_pinned": pinned, "by": by}))
}

/// `chat.member_added`.
pub fn member_added(chat_id: ChatId, user_ids: &[UserId], by: UserId) -> Event {
    Event::new(kinds::CHAT_MEMBER_ADDED, json!({"chat_id": chat_id, "user_ids": user_ids, "by": by}))
}

/// `chat.member_removed`.
pub fn member_removed(chat_id: ChatId, user_id: UserId, by: UserId) -> Event {
    Event::new(kinds::CHAT_MEMBER_REMOVED, json!({"chat_id": chat_id, "user_id": user_id, "by": by}))
}

/// `chat.updated` after a rename or a new description or avatar.
pub fn chat_edited(chat_id: ChatId, name: &str, description: &str, avatar: &str, by: UserId) -> Event {
    Event::new(
        kinds::CHAT_UPDATED,
        json!({"chat_id": chat_id, "name": name, "description": description, "avatar": avatar, "by": by}),
    )
}

/// `chat.updated` after a member's role changed.
pub fn role_changed(chat_id: ChatId, user_id: UserId, role: &str, by: UserId) -> Event {
    Event::new(kinds::CHAT_UPDATED, json!({"chat_id": chat_id, "user_id": user_id, "role": role, "by": by}))
}

/// `typing`.
pub fn typing(chat_id: ChatId, user_id: UserId, is_typing: bool) -> Event {
    Event::new(
        kinds::TYPING,
        json!({"chat_id": chat_id, "user_id": user_id, "is_typing": is_typing, "timestamp": to_iso(now_millis())}),
    )
}

/// `presence`: `user_id` came online, or went offline at `at`.
pub fn presence(user_id: UserId, online: bool, at: Millis) -> Event {
    Event::new(
        kinds::PRESENCE,
        json!({"user_id": user_id, "is_online": online, "last_seen": (!online).then(|| to_iso(at)), "timestamp": to_iso(at)}),
    )
}
