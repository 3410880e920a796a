//! The events the use cases publish, each built in exactly one place so
//! that every transport (and every dialect mapping them) sees one shape.

use std::sync::Arc;

use protocol::ServerEvent;
use protocol::server::{
    ChatUpdated, MemberRemoved, MembersAdded, MessageDeleted, MessageEdited, MessagePinned, MessageStatus,
    PresenceChanged, TypingState,
};
use protocol::time::{Millis, now_millis, to_iso};
use protocol::views::MessageView;
use storage::model::{ChatId, Message, MessageId, Seq, UserId};

pub use protocol::server::Receipt;

/// `message.new`: the message as every member sees it on arrival.
pub fn message_new(view: &Arc<MessageView>) -> ServerEvent {
    ServerEvent::MessageNew(Arc::clone(view))
}

/// `message.status`: `user_id` has received (or read up to) `message_id`.
pub fn message_status(
    chat_id: ChatId,
    message_id: MessageId,
    seq: Seq,
    user_id: UserId,
    status: Receipt,
) -> ServerEvent {
    ServerEvent::MessageStatus(MessageStatus { chat_id, message_id, seq, user_id, status })
}

/// `message.edit`.
pub fn message_edit(edited: &Message) -> ServerEvent {
    ServerEvent::MessageEdit(MessageEdited {
        id: edited.id,
        chat_id: edited.chat_id,
        seq: edited.seq,
        content: edited.content.clone(),
        updated_at: to_iso(edited.updated_at),
    })
}

/// `message.delete`.
pub fn message_delete(deleted: &Message) -> ServerEvent {
    ServerEvent::MessageDelete(MessageDeleted {
        id: deleted.id,
        chat_id: deleted.chat_id,
        seq: deleted.seq,
        deleted_at: to_iso(deleted.deleted_at.unwrap_or(deleted.updated_at)),
    })
}

/// `message.pin`.
pub fn message_pin(id: MessageId, chat_id: ChatId, is_pinned: bool, by: UserId) -> ServerEvent {
    ServerEvent::MessagePin(MessagePinned { id, chat_id, is_pinned, by })
}

/// `chat.member_added`.
pub fn member_added(chat_id: ChatId, user_ids: &[UserId], by: UserId) -> ServerEvent {
    ServerEvent::ChatMemberAdded(MembersAdded { chat_id, user_ids: user_ids.to_vec(), by })
}

/// `chat.member_removed`.
pub fn member_removed(chat_id: ChatId, user_id: UserId, by: UserId) -> ServerEvent {
    ServerEvent::ChatMemberRemoved(MemberRemoved { chat_id, user_id, by })
}

/// `chat.updated` after a rename or a new description or avatar.
pub fn chat_edited(chat_id: ChatId, name: &str, description: &str, avatar: &str, by: UserId) -> ServerEvent {
    ServerEvent::ChatUpdated(ChatUpdated::Edited {
        chat_id,
        name: name.to_owned(),
        description: description.to_owned(),
        avatar: avatar.to_owned(),
        by,
    })
}

/// `chat.updated` after a member's role changed.
pub fn role_changed(chat_id: ChatId, user_id: UserId, role: &str, by: UserId) -> ServerEvent {
    ServerEvent::ChatUpdated(ChatUpdated::Role { chat_id, user_id, role: role.to_owned(), by })
}

/// `typing`.
pub fn typing(chat_id: ChatId, user_id: UserId, is_typing: bool) -> ServerEvent {
    ServerEvent::Typing(TypingState { chat_id, user_id, is_typing, timestamp: to_iso(now_millis()) })
}

/// `presence`: `user_id` came online, or went offline at `at`.
pub fn presence(user_id: UserId, online: bool, at: Millis) -> ServerEvent {
    ServerEvent::Presence(PresenceChanged {
        user_id,
        is_online: online,
        last_seen: (!online).then(|| to_iso(at)),
        timestamp: to_iso(at),
    })
}
