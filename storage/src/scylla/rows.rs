//! Rows as the driver reads and writes them, and their conversion to the
//! model. Columns are matched by name. Every non-key column may be null in
//! CQL (an `UPDATE` can create a row with only some cells), so they are
//! read as options; a row missing what its first write always sets is
//! treated as absent.

use scylla::{DeserializeRow, SerializeRow};

use crate::model::{
    Chat, ChatKind, Contact, FileKind, FileMeta, Member, MemberRole, Message, MessageKind, NewMessage, Notification,
    Reaction, User,
};

fn text(value: Option<String>) -> String {
    value.unwrap_or_default()
}

fn count(value: Option<i64>) -> u64 {
    value.map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct UserRow {
    id: i64,
    phone: Option<String>,
    username: Option<String>,
    nickname: Option<String>,
    bio: Option<String>,
    avatar: Option<String>,
    language: Option<String>,
    theme: Option<String>,
    is_disabled: Option<bool>,
    last_seen: Option<i64>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    email: Option<String>,
    external_id: Option<String>,
    gender: Option<String>,
    birthday: Option<String>,
    preferences: Option<String>,
    group_invites: Option<String>,
}

impl UserRow {
    /// `None` for a row missing what its insert always sets.
    pub(crate) fn into_user(self) -> Option<User> {
        let created_at = self.created_at?;
        Some(User {
            id: self.id,
            phone: text(self.phone),
            email: self.email,
            external_id: self.external_id,
            username: self.username,
            nickname: text(self.nickname),
            bio: text(self.bio),
            avatar: text(self.avatar),
            language: text(self.language),
            theme: text(self.theme),
            gender: text(self.gender),
            birthday: text(self.birthday),
            preferences: text(self.preferences),
            group_invites: self
                .group_invites
                .as_deref()
                .and_then(crate::model::GroupInvites::parse)
                .unwrap_or_default(),
            is_disabled: self.is_disabled.unwrap_or(false),
            // 0 is "never": the conditional raise needs a value to compare.
            last_seen: self.last_seen.filter(|&at| at > 0),
            created_at,
            updated_at: self.updated_at.unwrap_or(created_at),
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct ContactRow {
    user_id: i64,
    contact_id: i64,
    id: Option<i64>,
    nickname: Option<String>,
    is_blocked: Option<bool>,
    is_muted: Option<bool>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

impl ContactRow {
    pub(crate) fn into_contact(self) -> Option<Contact> {
        let created_at = self.created_at?;
        Some(Contact {
            id: self.id?,
            user_id: self.user_id,
            contact_id: self.contact_id,
            nickname: text(self.nickname),
            is_blocked: self.is_blocked.unwrap_or(false),
            is_muted: self.is_muted.unwrap_or(false),
            created_at,
            updated_at: self.updated_at.unwrap_or(created_at),
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct ChatRow {
    id: i64,
    kind: Option<String>,
    name: Option<String>,
    description: Option<String>,
    avatar: Option<String>,
    created_by: Option<i64>,
    is_active: Option<bool>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

impl ChatRow {
    /// The chat, with the parts kept elsewhere: its last seq, member count,
    /// and when its newest message was written (activity moves `updated_at`).
    pub(crate) fn into_chat(self, last_seq: u64, members_count: u64, active_at: Option<i64>) -> Option<Chat> {
        let created_at = self.created_at?;
        Some(Chat {
            id: self.id,
            kind: ChatKind::parse(self.kind.as_deref()?)?,
            name: text(self.name),
            description: text(self.description),
            avatar: text(self.avatar),
            created_by: self.created_by?,
            is_active: self.is_active.unwrap_or(true),
            last_seq,
            members_count,
            created_at,
            updated_at: self.updated_at.unwrap_or(created_at).max(active_at.unwrap_or(created_at)),
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct MemberRow {
    chat_id: i64,
    user_id: i64,
    role: Option<String>,
    is_pinned: Option<bool>,
    is_muted: Option<bool>,
    last_read_seq: Option<i64>,
    joined_at: Option<i64>,
}

impl MemberRow {
    pub(crate) fn into_member(self) -> Option<Member> {
        Some(Member {
            chat_id: self.chat_id,
            user_id: self.user_id,
            role: MemberRole::parse(self.role.as_deref()?)?,
            is_pinned: self.is_pinned.unwrap_or(false),
            is_muted: self.is_muted.unwrap_or(false),
            last_read_seq: count(self.last_read_seq),
            joined_at: self.joined_at?,
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct MessageRow {
    chat_id: i64,
    #[allow(dead_code, reason = "read with the row; the seq says the same")]
    bucket: i64,
    seq: i64,
    id: Option<i64>,
    sender_id: Option<i64>,
    client_message_id: Option<String>,
    kind: Option<String>,
    content: Option<String>,
    file_name: Option<String>,
    file_size: Option<i64>,
    file_url: Option<String>,
    thumbnail: Option<String>,
    reply_to_id: Option<i64>,
    forward_from: Option<i64>,
    ttl: Option<i64>,
    expires_at: Option<i64>,
    send_at: Option<i64>,
    is_silent: Option<bool>,
    is_edited: Option<bool>,
    is_deleted: Option<bool>,
    is_pinned: Option<bool>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    deleted_at: Option<i64>,
    media: Option<String>,
}

impl MessageRow {
    pub(crate) fn into_message(self) -> Option<Message> {
        let created_at = self.created_at?;
        Some(Message {
            id: self.id?,
            chat_id: self.chat_id,
            seq: u64::try_from(self.seq).ok()?,
            sender_id: self.sender_id?,
            client_message_id: self.client_message_id,
            kind: MessageKind::parse(self.kind.as_deref()?)?,
            content: text(self.content),
            file_name: text(self.file_name),
            file_size: count(self.file_size),
            file_url: text(self.file_url),
            thumbnail: text(self.thumbnail),
            reply_to_id: self.reply_to_id,
            forward_from: self.forward_from,
            ttl: count(self.ttl),
            expires_at: self.expires_at,
            send_at: self.send_at,
            is_silent: self.is_silent.unwrap_or(false),
            is_edited: self.is_edited.unwrap_or(false),
            is_deleted: self.is_deleted.unwrap_or(false),
            is_pinned: self.is_pinned.unwrap_or(false),
            created_at,
            updated_at: self.updated_at.unwrap_or(created_at),
            deleted_at: self.deleted_at,
            media: text(self.media),
        })
    }
}

/// The bound values of `insert_message`.
#[allow(clippy::struct_excessive_bools, reason = "seed 002's message shape: each flag is a column")]
#[derive(Debug, SerializeRow)]
pub(crate) struct MessageInsert {
    pub(crate) chat_id: i64,
    pub(crate) bucket: i64,
    pub(crate) seq: i64,
    pub(crate) id: i64,
    pub(crate) sender_id: i64,
    pub(crate) client_message_id: Option<String>,
    pub(crate) kind: &'static str,
    pub(crate) content: String,
    pub(crate) file_name: String,
    pub(crate) file_size: i64,
    pub(crate) file_url: String,
    pub(crate) thumbnail: String,
    pub(crate) reply_to_id: Option<i64>,
    pub(crate) forward_from: Option<i64>,
    pub(crate) ttl: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) send_at: Option<i64>,
    pub(crate) is_silent: bool,
    pub(crate) is_edited: bool,
    pub(crate) is_deleted: bool,
    pub(crate) is_pinned: bool,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) media: String,
}

/// A held message, in `scheduled_by_id`; also the bound values of
/// `insert_scheduled`.
#[derive(Debug, DeserializeRow, SerializeRow)]
pub(crate) struct ScheduledRow {
    pub(crate) id: i64,
    pub(crate) chat_id: Option<i64>,
    pub(crate) sender_id: Option<i64>,
    pub(crate) client_message_id: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) content: Option<String>,
    pub(crate) file_name: Option<String>,
    pub(crate) file_size: Option<i64>,
    pub(crate) file_url: Option<String>,
    pub(crate) thumbnail: Option<String>,
    pub(crate) reply_to_id: Option<i64>,
    pub(crate) forward_from: Option<i64>,
    pub(crate) ttl: Option<i64>,
    pub(crate) send_at: Option<i64>,
    pub(crate) is_silent: Option<bool>,
    pub(crate) created_at: Option<i64>,
    pub(crate) media: Option<String>,
}

impl MessageInsert {
    pub(crate) fn of(id: i64, new: &NewMessage, bucket: i64, seq: u64, expires_at: Option<i64>) -> Self {
        Self {
            chat_id: new.chat_id,
            bucket,
            seq: seq as i64,
            id,
            sender_id: new.sender_id,
            client_message_id: new.client_message_id.clone(),
            kind: new.kind.as_str(),
            content: new.content.clone(),
            file_name: new.file_name.clone(),
            file_size: new.file_size as i64,
            file_url: new.file_url.clone(),
            thumbnail: new.thumbnail.clone(),
            reply_to_id: new.reply_to_id,
            forward_from: new.forward_from,
            ttl: new.ttl as i64,
            expires_at,
            send_at: new.send_at,
            is_silent: new.is_silent,
            is_edited: false,
            is_deleted: false,
            is_pinned: false,
            created_at: new.created_at,
            updated_at: new.created_at,
            media: new.media.clone(),
        }
    }
}

impl ScheduledRow {
    pub(crate) fn new(id: i64, new: &NewMessage, send_at: i64) -> Self {
        Self {
            id,
            chat_id: Some(new.chat_id),
            sender_id: Some(new.sender_id),
            client_message_id: new.client_message_id.clone(),
            kind: Some(new.kind.as_str().to_owned()),
            content: Some(new.content.clone()),
            file_name: Some(new.file_name.clone()),
            file_size: Some(i64::try_from(new.file_size).unwrap_or(i64::MAX)),
            file_url: Some(new.file_url.clone()),
            thumbnail: Some(new.thumbnail.clone()),
            reply_to_id: new.reply_to_id,
            forward_from: new.forward_from,
            ttl: Some(i64::try_from(new.ttl).unwrap_or(i64::MAX)),
            send_at: Some(send_at),
            is_silent: Some(new.is_silent),
            created_at: Some(new.created_at),
            media: Some(new.media.clone()),
        }
    }

    /// The held message in the shape of a message: seq 0 until released.
    pub(crate) fn into_message(self) -> Option<Message> {
        let created_at = self.created_at?;
        Some(Message {
            id: self.id,
            chat_id: self.chat_id?,
            seq: 0,
            sender_id: self.sender_id?,
            client_message_id: self.client_message_id,
            kind: MessageKind::parse(self.kind.as_deref()?)?,
            content: text(self.content),
            file_name: text(self.file_name),
            file_size: count(self.file_size),
            file_url: text(self.file_url),
            thumbnail: text(self.thumbnail),
            reply_to_id: self.reply_to_id,
            forward_from: self.forward_from,
            ttl: count(self.ttl),
            expires_at: None,
            send_at: self.send_at,
            is_silent: self.is_silent.unwrap_or(false),
            is_edited: false,
            is_deleted: false,
            is_pinned: false,
            created_at,
            updated_at: created_at,
            deleted_at: None,
            media: text(self.media),
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct ReactionRow {
    message_id: i64,
    user_id: i64,
    emoji: String,
    created_at: Option<i64>,
}

impl ReactionRow {
    pub(crate) fn into_reaction(self) -> Reaction {
        Reaction {
            message_id: self.message_id,
            user_id: self.user_id,
            emoji: self.emoji,
            created_at: self.created_at.unwrap_or(0),
        }
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct FileRow {
    id: i64,
    owner_id: Option<i64>,
    name: Option<String>,
    size: Option<i64>,
    mime: Option<String>,
    kind: Option<String>,
    sha256: Option<String>,
    thumbnail_sha256: Option<String>,
    created_at: Option<i64>,
}

impl FileRow {
    pub(crate) fn into_file(self) -> Option<FileMeta> {
        Some(FileMeta {
            id: self.id,
            owner_id: self.owner_id?,
            name: text(self.name),
            size: count(self.size),
            mime: text(self.mime),
            kind: FileKind::parse(self.kind.as_deref()?)?,
            sha256: self.sha256?,
            thumbnail_sha256: self.thumbnail_sha256,
            created_at: self.created_at?,
        })
    }
}

#[derive(Debug, DeserializeRow)]
pub(crate) struct NotificationRow {
    user_id: i64,
    id: i64,
    kind: Option<String>,
    content: Option<String>,
    is_read: Option<bool>,
    related_resource_type: Option<String>,
    related_resource_id: Option<String>,
    created_at: Option<i64>,
    title: Option<String>,
    data: Option<String>,
}

impl NotificationRow {
    pub(crate) fn into_notification(self) -> Option<Notification> {
        Some(Notification {
            id: self.id,
            user_id: self.user_id,
            kind: text(self.kind),
            title: text(self.title),
            content: text(self.content),
            data: self.data,
            is_read: self.is_read.unwrap_or(false),
            related_resource_type: self.related_resource_type,
            related_resource_id: self.related_resource_id,
            created_at: self.created_at?,
        })
    }
}
