//! Stored rows to seed 002's JSON shapes.

use protocol::time::to_iso;
use protocol::views::{MessageView, ReactionView, SenderView, UserPrivate, UserPublic};
use storage::model::{Message, Reaction, User};

/// What others may see of a user. `online` is the presence registry's
/// answer; the store knows only `last_seen`.
pub fn user_public(user: &User, online: bool) -> UserPublic {
    UserPublic {
        id: user.id,
        username: user.username.clone().unwrap_or_default(),
        nickname: user.nickname.clone(),
        avatar: user.avatar.clone(),
        online,
        last_seen: user.last_seen.map(to_iso),
    }
}

/// The caller's own profile.
pub fn user_private(user: &User, online: bool) -> UserPrivate {
    UserPrivate {
        id: user.id,
        phone: user.phone.clone(),
        email: user.email.clone(),
        username: user.username.clone().unwrap_or_default(),
        nickname: user.nickname.clone(),
        bio: user.bio.clone(),
        avatar: user.avatar.clone(),
        online,
        last_seen: user.last_seen.map(to_iso),
        language: user.language.clone(),
        theme: user.theme.clone(),
        group_invites: user.group_invites.as_str().to_owned(),
        created_at: to_iso(user.created_at),
        updated_at: to_iso(user.updated_at),
    }
}

/// The `sender` object of a message.
pub fn sender(user: &User) -> SenderView {
    SenderView {
        id: user.id,
        username: user.username.clone().unwrap_or_default(),
        nickname: user.nickname.clone(),
        avatar: user.avatar.clone(),
    }
}

fn media_field(media: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<u32> {
    media.get(name).and_then(serde_json::Value::as_u64).and_then(|value| u32::try_from(value).ok())
}

/// A message as clients see it. `is_read` is from the viewer's side (see
/// the REST handlers); `sender` is `None` if the user no longer exists.
pub fn message(message: &Message, sender_user: Option<&User>, is_read: bool, reactions: &[Reaction]) -> MessageView {
    let media: serde_json::Map<String, serde_json::Value> = if message.media.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(&message.media).unwrap_or_default()
    };
    let created_at = to_iso(message.created_at);
    // A message never edited was updated when it was created: one formatting.
    let updated_at =
        if message.updated_at == message.created_at { created_at.clone() } else { to_iso(message.updated_at) };
    MessageView {
        id: message.id,
        chat_id: message.chat_id,
        seq: message.seq,
        sender_id: message.sender_id,
        client_message_id: message.client_message_id.clone(),
        content: message.content.clone(),
        kind: message.kind.as_str().to_owned(),
        file_name: message.file_name.clone(),
        file_size: message.file_size,
        file_url: message.file_url.clone(),
        thumbnail: message.thumbnail.clone(),
        is_read,
        is_edited: message.is_edited,
        is_deleted: message.is_deleted,
        is_pinned: message.is_pinned,
        reply_to_id: message.reply_to_id,
        forward_from: message.forward_from,
        ttl: message.ttl,
        expires_at: message.expires_at.map(to_iso),
        send_at: message.send_at.map(to_iso),
        is_silent: message.is_silent,
        created_at,
        updated_at,
        sender: sender_user.map(sender),
        reactions: reactions
            .iter()
            .filter(|reaction| reaction.message_id == message.id)
            .map(|reaction| ReactionView { user_id: reaction.user_id, emoji: reaction.emoji.clone() })
            .collect(),
        width: media_field(&media, "width"),
        height: media_field(&media, "height"),
        duration: media_field(&media, "duration"),
        extra: media.get("extra").cloned(),
    }
}

/// `messages` as `viewer` sees them, given the chat's `members`: senders
/// and reactions filled in; `is_read` means "read by me" for others'
/// messages and "read by someone else" for the viewer's own.
pub async fn messages_seen_by(
    store: &dyn storage::Store,
    members: &[storage::model::Member],
    viewer: storage::model::UserId,
    messages: &[Message],
) -> Result<Vec<MessageView>, storage::StoreError> {
    let my_marker = members.iter().find(|m| m.user_id == viewer).map_or(0, |m| m.last_read_seq);
    let others_marker = members.iter().filter(|m| m.user_id != viewer).map(|m| m.last_read_seq).max().unwrap_or(0);
    let mut sender_ids: Vec<i64> = messages.iter().map(|m| m.sender_id).collect();
    sender_ids.sort_unstable();
    sender_ids.dedup();
    let senders = store.users(&sender_ids).await?;
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    let reactions = store.reactions(&ids).await?;
    Ok(messages
        .iter()
        .map(|m| {
            let is_read = if m.sender_id == viewer { others_marker >= m.seq } else { my_marker >= m.seq };
            message(m, senders.iter().find(|user| user.id == m.sender_id), is_read, &reactions)
        })
        .collect())
}
