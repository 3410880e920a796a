//! The JSON shapes of seed 002's resources, as REST bodies and event data
//! carry them. Times are ISO 8601 strings.

use serde::{Deserialize, Serialize};

/// A user as anyone may see them (never the phone number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPublic {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub avatar: String,
    pub online: bool,
    pub last_seen: Option<String>,
}

/// The caller's own profile (`GET /api/users/me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPrivate {
    pub id: i64,
    pub phone: String,
    /// The account's email, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub username: String,
    pub nickname: String,
    pub bio: String,
    pub avatar: String,
    pub online: bool,
    pub last_seen: Option<String>,
    pub language: String,
    pub theme: String,
    /// Who may put this user in a group: `everyone`, `contacts` or `nobody`.
    pub group_invites: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The `sender` object embedded in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderView {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub avatar: String,
}

/// One emoji reaction on a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactionView {
    pub user_id: i64,
    pub emoji: String,
}

/// A message, as `GET /api/chats/{id}/messages` lists it and `message.new`
/// carries it (seed 002's fields plus `seq` and `client_message_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools, reason = "seed 002's message shape: each flag is a wire field")]
pub struct MessageView {
    pub id: i64,
    pub chat_id: i64,
    pub seq: u64,
    pub sender_id: i64,
    pub client_message_id: Option<String>,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub file_name: String,
    pub file_size: u64,
    pub file_url: String,
    pub thumbnail: String,
    pub is_read: bool,
    pub is_edited: bool,
    pub is_deleted: bool,
    pub is_pinned: bool,
    pub reply_to_id: Option<i64>,
    pub forward_from: Option<i64>,
    pub ttl: u64,
    pub expires_at: Option<String>,
    pub send_at: Option<String>,
    pub is_silent: bool,
    pub created_at: String,
    pub updated_at: String,
    pub sender: Option<SenderView>,
    pub reactions: Vec<ReactionView>,
    /// Media fields, present only when the sender gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

/// The `last_message` summary of a chat-list row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastMessageView {
    pub id: i64,
    pub seq: u64,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sender_id: i64,
    pub created_at: String,
}

/// A chat member as `GET /api/chats/{id}` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub avatar: String,
    pub role: String,
    pub joined_at: String,
}

/// A chat, from the caller's side (`is_pinned`/`is_muted` are theirs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub avatar: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub is_active: bool,
    pub is_pinned: bool,
    pub is_muted: bool,
    pub members_count: u64,
    pub last_seq: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<LastMessageView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
}

/// A contact-list entry with the contact's public profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactView {
    pub id: i64,
    pub user_id: i64,
    pub contact_id: i64,
    pub nickname: String,
    pub is_blocked: bool,
    pub is_muted: bool,
    pub created_at: String,
    pub contact: Option<UserPublic>,
}
