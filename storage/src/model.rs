//! The domain model shared by every backend. Times are Unix milliseconds
//! ([`Millis`]); the REST and WebSocket layers format them for the wire.

use serde::{Deserialize, Serialize};

use crate::StoreError;

pub use protocol::time::Millis;

/// A user id.
pub type UserId = i64;
/// A chat id.
pub type ChatId = i64;
/// A message id: globally unique and time-ordered (see [`crate::IdGenerator`]).
pub type MessageId = i64;
/// A file id.
pub type FileId = i64;
/// A per-chat sequence number: contiguous, starting at 1.
pub type Seq = u64;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The name stored in the database and used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the stored or wire name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(
    /// Whether a chat is between two users or a group.
    ChatKind { Private = "private", Group = "group" }
);
text_enum!(
    /// A member's role in a chat.
    MemberRole {
        /// Created the chat; may do everything.
        Owner = "owner",
        /// May manage members.
        Admin = "admin",
        /// May read and write.
        Member = "member",
    }
);
text_enum!(
    /// What a message carries.
    MessageKind {
        Text = "text", Image = "image", Voice = "voice", Video = "video",
        File = "file", Location = "location", System = "system",
        /// A post on a pair's shared board (seed 004's sweet messages).
        Board = "board",
    }
);
text_enum!(
    /// What a member's receipt says of the messages up to its seq.
    ReceiptKind {
        /// They reached one of the member's devices.
        Delivered = "delivered",
        /// The member read them.
        Read = "read",
    }
);
text_enum!(
    /// The class of an uploaded file.
    FileKind { Image = "image", Video = "video", Audio = "audio", Document = "document" }
);

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Empty for an account registered by email alone.
    pub phone: String,
    /// Lower-case; `None` for an account registered by phone.
    pub email: Option<String>,
    /// The app backend's id for this account (a `WeChat` openid, an SSO
    /// subject), unique; `None` for accounts made through a dialect.
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub nickname: String,
    pub bio: String,
    pub avatar: String,
    pub language: String,
    pub theme: String,
    /// `male`, `female`, `other`, or empty when not given.
    pub gender: String,
    /// `YYYY-MM-DD`, or empty when not given.
    pub birthday: String,
    /// The user's own client preferences (a JSON object as text), or empty.
    pub preferences: String,
    /// Who may put this user in a group.
    pub group_invites: GroupInvites,
    pub is_disabled: bool,
    pub last_seen: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What registering a user takes.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Empty when the account has an email instead.
    pub phone: String,
    /// Stored as [`email_key`] makes it: unique, case-insensitive.
    pub email: Option<String>,
    /// Unique; an account may have it instead of a phone or an email.
    pub external_id: Option<String>,
    pub username: Option<String>,
    pub nickname: String,
    /// An argon2id PHC string, or `None` for SMS-code-only accounts.
    pub password_hash: Option<String>,
    pub created_at: Millis,
}

impl NewUser {
    /// A new user's language until they choose one.
    pub const DEFAULT_LANGUAGE: &str = "zh-CN";
    /// A new user's theme until they choose one.
    pub const DEFAULT_THEME: &str = "auto";

    /// Whether the account can be found again: it needs a phone number,
    /// an email or an external id. Checked by every backend before it writes.
    pub fn check_identity(&self) -> Result<(), StoreError> {
        if self.phone.is_empty()
            && self.email.as_deref().is_none_or(str::is_empty)
            && self.external_id.as_deref().is_none_or(str::is_empty)
        {
            return Err(StoreError::Invalid("a user needs a phone number, an email or an external id".into()));
        }
        Ok(())
    }
}

/// An email as it is stored and looked up: trimmed and lower-cased, so
/// `Ann@Example.com` and `ann@example.com` are one account.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A partial update of a user's profile; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub bio: Option<String>,
    pub avatar: Option<String>,
    pub language: Option<String>,
    pub theme: Option<String>,
    pub gender: Option<String>,
    pub birthday: Option<String>,
    pub preferences: Option<String>,
    pub group_invites: Option<GroupInvites>,
    pub is_disabled: Option<bool>,
    pub updated_at: Millis,
}

/// Who may put a user in a group (their setting; blocking always wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupInvites {
    /// Anyone they have not blocked.
    #[default]
    Everyone,
    /// Only people in their contact list.
    Contacts,
    /// Nobody: they join groups only by creating them.
    Nobody,
}

impl GroupInvites {
    /// Whether a user with this setting accepts being put in a group by
    /// someone they hold as a contact (`Some(blocked)`) or not (`None`).
    pub fn accepts(self, contact: Option<bool>) -> bool {
        match (contact, self) {
            (Some(true), _) | (_, Self::Nobody) | (None, Self::Contacts) => false,
            (Some(false), _) | (None, Self::Everyone) => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    /// The setting named `text`; an empty or unknown name (a row older
    /// than the setting) is the default.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "everyone" => Some(Self::Everyone),
            "contacts" => Some(Self::Contacts),
            "nobody" => Some(Self::Nobody),
            _ => None,
        }
    }
}

/// Who adds members, and what the addition is held to in the same write:
/// the chat's size cap, and each new member's consent (no block of `by`,
/// and their [`GroupInvites`] setting).
#[derive(Debug, Clone, Copy, Default)]
pub struct Joining {
    /// The user adding them; `None` for the server itself (the app
    /// backend through the server API), which only the cap binds.
    pub by: Option<UserId>,
    /// The most members the chat may have after the addition.
    pub max_members: Option<u32>,
}

/// One advance of a member's receipt marker: from `at` on, every message
/// of the chat up to `seq` was delivered to (or read by) `user_id`. A
/// message's delivery and read times are the earliest advance that covers
/// its seq: one row per advance, never one per message and member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptMark {
    pub user_id: UserId,
    pub kind: ReceiptKind,
    pub seq: Seq,
    pub at: Millis,
}

/// A device a user signed in from, as a client names it (seed 000's
/// `X-Device-ID` and `X-Platform`, or `device_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeen {
    pub user_id: UserId,
    pub device_id: String,
    /// `ios`, `android`, `web`, ... or empty when the client did not say.
    pub platform: String,
    pub at: Millis,
}

/// A refresh token as stored: only its hash, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub user_id: UserId,
    /// Every rotation of one login shares a family; reuse of a rotated
    /// token revokes the whole family.
    pub family_id: String,
    pub expires_at: Millis,
    pub created_at: Millis,
}

/// What presenting a refresh token for rotation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was valid; it is now spent and its successor stored.
    Rotated {
        /// The token that was presented.
        previous: RefreshToken,
    },
    /// The token had already been used or revoked: the family is revoked.
    Reused { user_id: UserId, family_id: String },
    /// A rotation spent the token within the grace window: nothing was
    /// changed, and the successor that rotation stored stands.
    Recent { user_id: UserId, family_id: String, used_at: Millis },
    /// The token is past its expiry.
    Expired,
    /// No such token.
    Unknown,
}

/// An entry of a user's contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: i64,
    pub user_id: UserId,
    pub contact_id: UserId,
    /// The alias the owner gave this contact.
    pub nickname: String,
    pub is_blocked: bool,
    pub is_muted: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A partial update of a contact; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ContactUpdate {
    pub nickname: Option<String>,
    pub is_blocked: Option<bool>,
    pub is_muted: Option<bool>,
    pub updated_at: Millis,
}

/// A chat: private (two members) or group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub id: ChatId,
    pub kind: ChatKind,
    pub name: String,
    pub description: String,
    pub avatar: String,
    pub created_by: UserId,
    pub is_active: bool,
    /// The highest seq handed out in this chat (0 before the first message).
    pub last_seq: Seq,
    pub members_count: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What creating a chat takes. The creator becomes its owner.
#[derive(Debug, Clone)]
pub struct NewChat {
    pub kind: ChatKind,
    pub name: String,
    pub description: String,
    pub avatar: String,
    pub created_by: UserId,
    /// The other members (the creator is added anyway). A private chat
    /// has exactly one.
    pub members: Vec<UserId>,
    pub created_at: Millis,
    /// The user putting the others in a new group, whose consent
    /// ([`Joining`]) is checked in the same write; `None` when the app
    /// backend does it.
    pub added_by: Option<UserId>,
    /// When the pair's private chat exists already: whether the other
    /// member is taken back too if they had left it (a decision both made,
    /// or the app backend's). The creator always is.
    pub rejoin_others: bool,
}

impl Chat {
    /// Whether members may be added: a private chat keeps its two.
    pub fn check_takes_members(&self) -> Result<(), StoreError> {
        match self.kind {
            ChatKind::Private => Err(StoreError::Invalid("a private chat cannot take more members".into())),
            ChatKind::Group => Ok(()),
        }
    }
}

/// Whether `user_id` may hold `contact_id` in their list: anyone but
/// themselves.
pub fn check_contact(user_id: UserId, contact_id: UserId) -> Result<(), StoreError> {
    if user_id == contact_id {
        return Err(StoreError::Invalid("a user cannot add themselves as a contact".into()));
    }
    Ok(())
}

/// The key that makes a private chat one per pair of users, the same
/// whichever of the two asks.
pub fn private_pair_key(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

impl NewChat {
    /// The members other than the creator, each once, in id order.
    pub fn others(&self) -> Vec<UserId> {
        let mut others: Vec<UserId> = self.members.iter().copied().filter(|&id| id != self.created_by).collect();
        others.sort_unstable();
        others.dedup();
        others
    }

    /// For a private chat, its pair key ([`private_pair_key`]); `None` for
    /// a group. The rule that a private chat has exactly one other member
    /// lives here, for every backend and the service alike.
    pub fn private_key(&self) -> Result<Option<String>, StoreError> {
        match self.kind {
            ChatKind::Private => match self.others()[..] {
                [other] => Ok(Some(private_pair_key(self.created_by, other))),
                _ => Err(StoreError::Invalid("a private chat has exactly one other member".into())),
            },
            ChatKind::Group => Ok(None),
        }
    }

    /// A group named `name` with no description or avatar.
    pub fn group(created_by: UserId, name: impl Into<String>, members: Vec<UserId>, created_at: Millis) -> Self {
        Self {
            kind: ChatKind::Group,
            name: name.into(),
            description: String::new(),
            avatar: String::new(),
            created_by,
            members,
            created_at,
            added_by: Some(created_by),
            rejoin_others: false,
        }
    }
}

/// A partial update of a chat; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ChatUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar: Option<String>,
    /// Closing a chat (`false`) refuses new messages; its history stays readable.
    pub is_active: Option<bool>,
    pub updated_at: Millis,
}

/// What the send pipeline reads before an append ([`crate::Store::send_context`]).
/// A backend may answer it from memory, shared between sends: the chat's
/// `last_seq` and `updated_at`, and the members' read markers, pins and
/// mutes, may then be behind. Nothing a send decides needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendContext {
    pub chat: std::sync::Arc<Chat>,
    pub members: std::sync::Arc<[Member]>,
    /// Members other than the sender who have blocked the sender.
    pub blockers: Vec<UserId>,
    /// The sender's profile (`None` if the account is gone).
    pub sender: Option<std::sync::Arc<User>>,
}

/// A user's membership in a chat, with their own settings and read marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub role: MemberRole,
    pub is_pinned: bool,
    pub is_muted: bool,
    /// The highest seq this member has read; never goes backwards.
    pub last_read_seq: Seq,
    pub joined_at: Millis,
}

/// One row of a user's chat list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub chat: Chat,
    /// The caller's own membership (pinned, muted, role, read marker).
    pub member: Member,
    pub last_message: Option<Message>,
    pub unread_count: u64,
}

/// A stored message.
#[allow(clippy::struct_excessive_bools, reason = "seed 002's message shape: each flag is a wire field")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub seq: Seq,
    pub sender_id: UserId,
    pub client_message_id: Option<String>,
    pub kind: MessageKind,
    pub content: String,
    pub file_name: String,
    pub file_size: u64,
    pub file_url: String,
    pub thumbnail: String,
    pub reply_to_id: Option<MessageId>,
    pub forward_from: Option<MessageId>,
    /// Seconds the message lives after it is sent; 0 for ever.
    pub ttl: u64,
    pub expires_at: Option<Millis>,
    pub send_at: Option<Millis>,
    pub is_silent: bool,
    pub is_edited: bool,
    pub is_deleted: bool,
    pub is_pinned: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
    /// The media fields (`width`, `height`, `duration`, `extra`) as a JSON
    /// object, or empty: kept as the client sent them, never interpreted.
    pub media: String,
}

/// What sending a message takes.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub sender_id: UserId,
    /// The sender's idempotency key: the same key again returns the
    /// original message instead of storing a second one.
    pub client_message_id: Option<String>,
    pub kind: MessageKind,
    pub content: String,
    pub file_name: String,
    pub file_size: u64,
    pub file_url: String,
    pub thumbnail: String,
    pub reply_to_id: Option<MessageId>,
    pub forward_from: Option<MessageId>,
    pub ttl: u64,
    pub send_at: Option<Millis>,
    pub is_silent: bool,
    pub created_at: Millis,
    /// See [`Message::media`].
    pub media: String,
}

impl NewMessage {
    /// A plain text message with every optional field empty.
    pub fn text(chat_id: ChatId, sender_id: UserId, content: impl Into<String>, created_at: Millis) -> Self {
        Self {
            chat_id,
            sender_id,
            client_message_id: None,
            kind: MessageKind::Text,
            content: content.into(),
            file_name: String::new(),
            file_size: 0,
            file_url: String::new(),
            thumbnail: String::new(),
            reply_to_id: None,
            forward_from: None,
            ttl: 0,
            send_at: None,
            is_silent: false,
            created_at,
            media: String::new(),
        }
    }

    /// When a message to be held is due: its `send_at`, which holding one
    /// needs.
    pub fn due_at(&self) -> Result<Millis, StoreError> {
        self.send_at.ok_or_else(|| StoreError::Invalid("a scheduled message needs send_at".into()))
    }

    /// When a message with a `ttl` expires: `ttl` seconds after it is sent.
    pub fn expires_at(&self) -> Option<Millis> {
        (self.ttl > 0).then(|| self.created_at + (self.ttl as i64).saturating_mul(1000))
    }

    /// The message as a store keeps it once written with `id` at `seq`.
    pub fn into_stored(self, id: MessageId, seq: Seq) -> Message {
        let expires_at = self.expires_at();
        Message {
            id,
            chat_id: self.chat_id,
            seq,
            sender_id: self.sender_id,
            client_message_id: self.client_message_id,
            kind: self.kind,
            content: self.content,
            file_name: self.file_name,
            file_size: self.file_size,
            file_url: self.file_url,
            thumbnail: self.thumbnail,
            reply_to_id: self.reply_to_id,
            forward_from: self.forward_from,
            ttl: self.ttl,
            expires_at,
            send_at: self.send_at,
            is_silent: self.is_silent,
            is_edited: false,
            is_deleted: false,
            is_pinned: false,
            created_at: self.created_at,
            updated_at: self.created_at,
            deleted_at: None,
            media: self.media,
        }
    }
}

impl Message {
    /// Whether this message is there to read at `now`: not deleted, not
    /// expired, not held for a later send.
    pub fn is_visible_at(&self, now: Millis) -> bool {
        !self.is_deleted && self.expires_at.is_none_or(|at| at > now) && self.send_at.is_none_or(|at| at <= now)
    }

    /// Whether this message may be edited: a deleted one may not. Checked
    /// by every backend inside the write that edits.
    pub fn check_editable(&self) -> Result<(), StoreError> {
        if self.is_deleted { Err(StoreError::MessageDeleted(self.id)) } else { Ok(()) }
    }

    /// Whether this message may be pinned (`pinned`) or unpinned: a
    /// deleted one may only be unpinned.
    pub fn check_pinnable(&self, pinned: bool) -> Result<(), StoreError> {
        if self.is_deleted && pinned { Err(StoreError::MessageDeleted(self.id)) } else { Ok(()) }
    }

    /// A held scheduled message, to be sent now: its ttl and its place in
    /// the list count from `now`.
    pub fn release(self, now: Millis) -> NewMessage {
        NewMessage {
            chat_id: self.chat_id,
            sender_id: self.sender_id,
            client_message_id: self.client_message_id,
            kind: self.kind,
            content: self.content,
            file_name: self.file_name,
            file_size: self.file_size,
            file_url: self.file_url,
            thumbnail: self.thumbnail,
            reply_to_id: self.reply_to_id,
            forward_from: self.forward_from,
            ttl: self.ttl,
            send_at: self.send_at,
            is_silent: self.is_silent,
            created_at: now,
            media: self.media,
        }
    }
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// A new message, now durable.
    New(Message),
    /// The sender had already sent this `client_message_id`: the original.
    Duplicate(Message),
}

impl Appended {
    /// The message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Self::New(message) | Self::Duplicate(message) => message,
        }
    }

    /// Takes the message out, new or original.
    pub fn into_message(self) -> Message {
        match self {
            Self::New(message) | Self::Duplicate(message) => message,
        }
    }
}

/// Where a page of history starts: a seq or a message id in the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Seq(Seq),
    Id(MessageId),
}

/// A query for a page of a chat's history. Pages always come back in
/// ascending seq order.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    /// Only messages strictly before this point (the newest such page).
    pub before: Option<Cursor>,
    /// Only messages strictly after this point (the oldest such page).
    pub after: Option<Cursor>,
    pub limit: u32,
    /// Skips this many messages from the anchored end of the page.
    pub offset: u32,
    pub kind: Option<MessageKind>,
    /// Full-text search within the chat.
    pub search: Option<String>,
    /// Messages expired (ttl) or scheduled later than this are invisible.
    pub now: Millis,
}

impl MessageQuery {
    /// The latest `limit` messages visible at `now`.
    pub fn latest(limit: u32, now: Millis) -> Self {
        Self { before: None, after: None, limit, offset: 0, kind: None, search: None, now }
    }
}

/// An emoji reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: MessageId,
    pub user_id: UserId,
    pub emoji: String,
    pub created_at: Millis,
}

/// Metadata of an uploaded file; the bytes live in content-addressed
/// storage under the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: FileId,
    pub owner_id: UserId,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub kind: FileKind,
    /// Hex SHA-256 of the content: also its storage key.
    pub sha256: String,
    pub thumbnail_sha256: Option<String>,
    pub created_at: Millis,
}

/// What recording an upload takes.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub owner_id: UserId,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub kind: FileKind,
    pub sha256: String,
    pub thumbnail_sha256: Option<String>,
    pub created_at: Millis,
}

/// A notification in a user's notification centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub user_id: UserId,
    /// Free-form, defined by the app backend (`match`, `system`, `subscription_expiring_soon`, ...).
    pub kind: String,
    pub title: String,
    /// The body.
    pub content: String,
    /// The backend's JSON object for the client, as text; `None` when it sent none.
    pub data: Option<String>,
    pub is_read: bool,
    pub related_resource_type: Option<String>,
    pub related_resource_id: Option<String>,
    pub created_at: Millis,
}

/// What creating a notification takes.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub user_id: UserId,
    pub kind: String,
    pub title: String,
    pub content: String,
    pub data: Option<String>,
    pub related_resource_type: Option<String>,
    pub related_resource_id: Option<String>,
    pub created_at: Millis,
    /// When it may be forgotten: [`crate::NotificationStore::prune_notifications`]
    /// removes it after this (a CQL store lets it expire by TTL).
    pub expires_at: Millis,
}

/// A pair of users bound together (seed 004's couple): each has at most
/// one partner at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Couple {
    /// The pair's id (the same for both of them).
    pub id: i64,
    pub user_id: UserId,
    pub partner_id: UserId,
    /// The pair's private chat (their board is its `board` messages).
    pub chat_id: ChatId,
    pub since: Millis,
}

/// An invitation to pair: a short code, used once, until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInvitation {
    pub code: String,
    pub inviter: UserId,
    pub expires_at: Millis,
    pub created_at: Millis,
}

/// What claiming an invitation code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationClaim {
    /// The code was live and is now used by the claimer; whose it was.
    Claimed(UserId),
    /// No such code.
    Unknown,
    /// The code's time ran out.
    Expired,
    /// Someone used the code already.
    Used,
}
