//! Every frame the server sends, typed: [`ServerEvent`]. A frame on the
//! wire is the envelope `{type, ref?, data, timestamp}` with the event's
//! payload as `data`, serialised straight from these types (no
//! intermediate JSON value).

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::kinds;
use crate::views::MessageView;

/// The kind of a receipt in `message.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Receipt {
    Delivered,
    Read,
}

/// `connect`: the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connected {
    pub status: &'static str,
    pub user_id: i64,
    pub session_id: String,
    /// Seconds between the client's pings.
    pub heartbeat_interval: u64,
    pub timestamp: String,
}

/// `error`: a command failed (seed 002's code and what went wrong).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorData {
    pub code: u32,
    pub message: String,
}

/// `message.ack`: the sender's message is durable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageAck {
    pub client_message_id: Option<String>,
    /// The view the message's `message.new` carries, shared with it.
    pub message: Arc<MessageView>,
    /// A retry of a `client_message_id` already stored: this is the original.
    pub duplicate: bool,
}

/// `message.edit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEdited {
    pub id: i64,
    pub chat_id: i64,
    pub seq: u64,
    pub content: String,
    pub updated_at: String,
}

/// `message.delete`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageDeleted {
    pub id: i64,
    pub chat_id: i64,
    pub seq: u64,
    pub deleted_at: String,
}

/// `message.pin`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagePinned {
    pub id: i64,
    pub chat_id: i64,
    pub is_pinned: bool,
    pub by: i64,
}

/// `message.status`: `user_id` received (or read up to) the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageStatus {
    pub chat_id: i64,
    pub message_id: i64,
    pub seq: u64,
    pub user_id: i64,
    pub status: Receipt,
}

/// `message.read.ok`: the reader's marker after a `message.read`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadOk {
    pub chat_id: i64,
    pub last_read_seq: u64,
}

/// `sync.batch`: what the client missed, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncBatch {
    pub chat_id: i64,
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

/// `chat.updated`: a group renamed or re-described, or a member's role changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChatUpdated {
    Edited { chat_id: i64, name: String, description: String, avatar: String, by: i64 },
    Role { chat_id: i64, user_id: i64, role: String, by: i64 },
}

/// `chat.member_added`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembersAdded {
    pub chat_id: i64,
    pub user_ids: Vec<i64>,
    pub by: i64,
}

/// `chat.member_removed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRemoved {
    pub chat_id: i64,
    pub user_id: i64,
    pub by: i64,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypingState {
    pub chat_id: i64,
    pub user_id: i64,
    pub is_typing: bool,
    pub timestamp: String,
}

/// `presence`: a user's first device came online or their last one left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceChanged {
    pub user_id: i64,
    pub is_online: bool,
    pub last_seen: Option<String>,
    pub timestamp: String,
}

/// One user of `presence.state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceEntry {
    pub user_id: i64,
    pub is_online: bool,
    pub last_seen: Option<String>,
}

/// `presence.state`: the answer to `presence.query`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceStates {
    pub users: Vec<PresenceEntry>,
}

/// `call.ringing`: the caller's offer went out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRinging {
    pub call_id: String,
}

/// `call.offer` to the callee's devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallOffered {
    pub call_id: String,
    pub from_user_id: i64,
    pub to_user_id: i64,
    pub call_type: String,
    pub sdp: String,
    pub timestamp: String,
}

/// `call.answer` to the caller's device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallAnswered {
    pub call_id: String,
    pub from_user_id: i64,
    pub to_user_id: i64,
    pub sdp: String,
    pub timestamp: String,
}

/// `call.ice`, relayed to the other party.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallIceRelayed {
    pub call_id: String,
    pub from_user_id: i64,
    pub to_user_id: i64,
    /// The peer's candidate as it sent it (a string or an object): opaque
    /// to the server.
    pub candidate: serde_json::Value,
    pub timestamp: String,
}

/// `call.end`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEnded {
    pub call_id: String,
    pub reason: String,
    /// Seconds, once the call was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    pub timestamp: String,
}

/// `notification.new`: stored for the user and pushed live.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationPush {
    pub id: i64,
    /// Free text chosen by the app backend: `match` and `system` are the
    /// two seed 000 has frames for.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub created_at: String,
}

/// `notification.read`: one notification (or, with no id, all of them)
/// was read on one of the user's devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRead {
    /// `None` when every notification was marked read.
    pub notification_id: Option<i64>,
    pub unread_count: u64,
}

/// Whether a reaction came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactionAction {
    Add,
    Remove,
}

/// `message.reaction`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageReaction {
    pub message_id: i64,
    pub chat_id: i64,
    pub user_id: i64,
    pub emoji: String,
    pub action: ReactionAction,
}

/// `custom`: an app backend's transient event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomEvent {
    pub event: String,
    pub data: serde_json::Value,
}

/// `disconnect` (internal): close the recipients' connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disconnect {
    pub code: u16,
    pub reason: String,
}

/// `pong`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pong {
    pub timestamp: String,
}

/// Every frame the server sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    Connect(Connected),
    Error(ErrorData),
    Pong(Pong),
    /// Shared with the sender's `message.ack`: a message's view is built once.
    MessageNew(Arc<MessageView>),
    MessageAck(Box<MessageAck>),
    MessageEdit(MessageEdited),
    MessageDelete(MessageDeleted),
    MessagePin(MessagePinned),
    MessageStatus(MessageStatus),
    MessageReadOk(ReadOk),
    SyncBatch(SyncBatch),
    ChatUpdated(ChatUpdated),
    ChatMemberAdded(MembersAdded),
    ChatMemberRemoved(MemberRemoved),
    Typing(TypingState),
    Presence(PresenceChanged),
    PresenceState(PresenceStates),
    CallRinging(CallRinging),
    CallOffer(CallOffered),
    CallAnswer(CallAnswered),
    CallIce(CallIceRelayed),
    CallEnd(CallEnded),
    Notification(NotificationPush),
    NotificationRead(NotificationRead),
    MessageReaction(MessageReaction),
    Custom(CustomEvent),
    Disconnect(Disconnect),
}

impl ServerEvent {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => kinds::CONNECT,
            Self::Error(_) => kinds::ERROR,
            Self::Pong(_) => kinds::PONG,
            Self::MessageNew(_) => kinds::MESSAGE_NEW,
            Self::MessageAck(_) => kinds::MESSAGE_ACK,
            Self::MessageEdit(_) => kinds::MESSAGE_EDIT,
            Self::MessageDelete(_) => kinds::MESSAGE_DELETE,
            Self::MessagePin(_) => kinds::MESSAGE_PIN,
            Self::MessageStatus(_) => kinds::MESSAGE_STATUS,
            Self::MessageReadOk(_) => kinds::MESSAGE_READ_OK,
            Self::SyncBatch(_) => kinds::SYNC_BATCH,
            Self::ChatUpdated(_) => kinds::CHAT_UPDATED,
            Self::ChatMemberAdded(_) => kinds::CHAT_MEMBER_ADDED,
            Self::ChatMemberRemoved(_) => kinds::CHAT_MEMBER_REMOVED,
            Self::Typing(_) => kinds::TYPING,
            Self::Presence(_) => kinds::PRESENCE,
            Self::PresenceState(_) => kinds::PRESENCE_STATE,
            Self::CallRinging(_) => kinds::CALL_RINGING,
            Self::CallOffer(_) => kinds::CALL_OFFER,
            Self::CallAnswer(_) => kinds::CALL_ANSWER,
            Self::CallIce(_) => kinds::CALL_ICE,
            Self::CallEnd(_) => kinds::CALL_END,
            Self::Notification(_) => kinds::NOTIFICATION_NEW,
            Self::NotificationRead(_) => kinds::NOTIFICATION_READ,
            Self::MessageReaction(_) => kinds::MESSAGE_REACTION,
            Self::Custom(_) => kinds::CUSTOM,
            Self::Disconnect(_) => kinds::DISCONNECT,
        }
    }

    /// An `error` with seed 002's `code`.
    pub fn error(code: crate::ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorData { code: code.code(), message: message.into() })
    }
}

/// The event's payload: the envelope's `data`.
pub(crate) struct Data<'a>(pub(crate) &'a ServerEvent);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ServerEvent::Connect(data) => data.serialize(serializer),
            ServerEvent::Error(data) => data.serialize(serializer),
            ServerEvent::Pong(data) => data.serialize(serializer),
            ServerEvent::MessageNew(data) => data.serialize(serializer),
            ServerEvent::MessageAck(data) => data.serialize(serializer),
            ServerEvent::MessageEdit(data) => data.serialize(serializer),
            ServerEvent::MessageDelete(data) => data.serialize(serializer),
            ServerEvent::MessagePin(data) => data.serialize(serializer),
            ServerEvent::MessageStatus(data) => data.serialize(serializer),
            ServerEvent::MessageReadOk(data) => data.serialize(serializer),
            ServerEvent::SyncBatch(data) => data.serialize(serializer),
            ServerEvent::ChatUpdated(data) => data.serialize(serializer),
            ServerEvent::ChatMemberAdded(data) => data.serialize(serializer),
            ServerEvent::ChatMemberRemoved(data) => data.serialize(serializer),
            ServerEvent::Typing(data) => data.serialize(serializer),
            ServerEvent::Presence(data) => data.serialize(serializer),
            ServerEvent::PresenceState(data) => data.serialize(serializer),
            ServerEvent::CallRinging(data) => data.serialize(serializer),
            ServerEvent::CallOffer(data) => data.serialize(serializer),
            ServerEvent::CallAnswer(data) => data.serialize(serializer),
            ServerEvent::CallIce(data) => data.serialize(serializer),
            ServerEvent::CallEnd(data) => data.serialize(serializer),
            ServerEvent::Notification(data) => data.serialize(serializer),
            ServerEvent::NotificationRead(data) => data.serialize(serializer),
            ServerEvent::MessageReaction(data) => data.serialize(serializer),
            ServerEvent::Custom(data) => data.serialize(serializer),
            ServerEvent::Disconnect(data) => data.serialize(serializer),
        }
    }
}
