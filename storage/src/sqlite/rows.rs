//! Column lists and row mappers. Each `*_COLUMNS` constant and its mapper
//! change together: the mappers read by position.

use rusqlite::Row;
use rusqlite::types::Type;

use crate::model::{
    Chat, ChatKind, Contact, FileKind, FileMeta, Member, MemberRole, Message, MessageKind, Notification, Reaction, User,
};

fn text_enum<T>(row: &Row<'_>, index: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, format!("unknown value {text:?}").into())
    })
}

pub(crate) const USER_COLUMNS: &str = "id, phone, username, nickname, bio, avatar, language, theme, is_disabled, last_seen, created_at, updated_at, email, external_id, gender, birthday, preferences, group_invites";

/// The phone column of an account that has only an email (see migration 003).
pub(crate) fn phone_placeholder(email: &str) -> String {
    format!("@{email}")
}

pub(crate) fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        phone: row.get::<_, String>(1).map(|phone| if phone.starts_with('@') { String::new() } else { phone })?,
        email: row.get(12)?,
        external_id: row.get(13)?,
        username: row.get(2)?,
        nickname: row.get(3)?,
        bio: row.get(4)?,
        avatar: row.get(5)?,
        language: row.get(6)?,
        theme: row.get(7)?,
        gender: row.get(14)?,
        birthday: row.get(15)?,
        preferences: row.get(16)?,
        group_invites: crate::model::GroupInvites::parse(&row.get::<_, String>(17)?).unwrap_or_default(),
        is_disabled: row.get(8)?,
        last_seen: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

pub(crate) const CONTACT_COLUMNS: &str =
    "id, user_id, contact_id, nickname, is_blocked, is_muted, created_at, updated_at";

pub(crate) fn contact(row: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: row.get(0)?,
        user_id: row.get(1)?,
        contact_id: row.get(2)?,
        nickname: row.get(3)?,
        is_blocked: row.get(4)?,
        is_muted: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

/// Selects a chat with its member count; append `WHERE ...`. Its last seq
/// is its messages' highest (the `(chat_id, seq)` index's last entry), and
/// it was last updated by its own edit or its last message, whichever came
/// later (`last_activity`, which lists may order by): an append does not
/// rewrite its chat's row.
pub(crate) const CHAT_SELECT: &str = concat!(
    "SELECT c.id, c.kind, c.name, c.description, c.avatar, c.created_by, c.is_active, ",
    last_seq_of!("c.id"),
    ", (SELECT COUNT(*) FROM members mc WHERE mc.chat_id = c.id), c.created_at, \
     MAX(c.updated_at, COALESCE((SELECT ms.created_at FROM messages ms WHERE ms.chat_id = c.id \
     ORDER BY ms.seq DESC LIMIT 1), 0)) AS last_activity FROM chats c"
);
/// How many columns [`CHAT_SELECT`] yields, for selects that join more.
pub(crate) const CHAT_WIDTH: usize = 11;

pub(crate) fn chat(row: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        id: row.get(0)?,
        kind: text_enum(row, 1, ChatKind::parse)?,
        name: row.get(2)?,
        description: row.get(3)?,
        avatar: row.get(4)?,
        created_by: row.get(5)?,
        is_active: row.get(6)?,
        last_seq: row.get::<_, i64>(7)? as u64,
        members_count: row.get::<_, i64>(8)? as u64,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub(crate) const MEMBER_COLUMNS: &str = "chat_id, user_id, role, is_pinned, is_muted, last_read_seq, joined_at";

/// Maps a member whose columns start at `at`.
pub(crate) fn member_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Member> {
    Ok(Member {
        chat_id: row.get(at)?,
        user_id: row.get(at + 1)?,
        role: text_enum(row, at + 2, MemberRole::parse)?,
        is_pinned: row.get(at + 3)?,
        is_muted: row.get(at + 4)?,
        last_read_seq: row.get::<_, i64>(at + 5)? as u64,
        joined_at: row.get(at + 6)?,
    })
}

pub(crate) fn member(row: &Row<'_>) -> rusqlite::Result<Member> {
    member_at(row, 0)
}

pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.chat_id, m.seq, m.sender_id, m.client_message_id, m.kind, \
     m.content, m.file_name, m.file_size, m.file_url, m.thumbnail, m.reply_to_id, m.forward_from, m.ttl, \
     m.expires_at, m.send_at, m.is_silent, m.is_edited, m.is_deleted, m.is_pinned, m.created_at, \
     m.updated_at, m.deleted_at, m.media";

/// Visible at `?now` (named parameter `:now`): not expired, not scheduled later.
pub(crate) const MESSAGE_VISIBLE: &str =
    "(m.expires_at IS NULL OR m.expires_at > :now) AND (m.send_at IS NULL OR m.send_at <= :now)";

pub(crate) fn message(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get(0)?,
        chat_id: row.get(1)?,
        seq: row.get::<_, i64>(2)? as u64,
        sender_id: row.get(3)?,
        client_message_id: row.get(4)?,
        kind: text_enum(row, 5, MessageKind::parse)?,
        content: row.get(6)?,
        file_name: row.get(7)?,
        file_size: row.get::<_, i64>(8)? as u64,
        file_url: row.get(9)?,
        thumbnail: row.get(10)?,
        reply_to_id: row.get(11)?,
        forward_from: row.get(12)?,
        ttl: row.get::<_, i64>(13)? as u64,
        expires_at: row.get(14)?,
        send_at: row.get(15)?,
        is_silent: row.get(16)?,
        is_edited: row.get(17)?,
        is_deleted: row.get(18)?,
        is_pinned: row.get(19)?,
        created_at: row.get(20)?,
        updated_at: row.get(21)?,
        deleted_at: row.get(22)?,
        media: row.get(23)?,
    })
}

pub(crate) fn reaction(row: &Row<'_>) -> rusqlite::Result<Reaction> {
    Ok(Reaction { message_id: row.get(0)?, user_id: row.get(1)?, emoji: row.get(2)?, created_at: row.get(3)? })
}

pub(crate) const FILE_COLUMNS: &str = "id, owner_id, name, size, mime, kind, sha256, thumbnail_sha256, created_at";

pub(crate) fn file(row: &Row<'_>) -> rusqlite::Result<FileMeta> {
    Ok(FileMeta {
        id: row.get(0)?,
        owner_id: row.get(1)?,
        name: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        mime: row.get(4)?,
        kind: text_enum(row, 5, FileKind::parse)?,
        sha256: row.get(6)?,
        thumbnail_sha256: row.get(7)?,
        created_at: row.get(8)?,
    })
}

pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, user_id, kind, content, is_read, related_resource_type, related_resource_id, created_at, title, data";

pub(crate) fn notification(row: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: row.get(0)?,
        user_id: row.get(1)?,
        kind: row.get(2)?,
        title: row.get(8)?,
        content: row.get(3)?,
        data: row.get(9)?,
        is_read: row.get(4)?,
        related_resource_type: row.get(5)?,
        related_resource_id: row.get(6)?,
        created_at: row.get(7)?,
    })
}
