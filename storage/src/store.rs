use async_trait::async_trait;

use crate::StoreError;
use crate::model::{
    Appended, Chat, ChatId, ChatSummary, ChatUpdate, Contact, ContactUpdate, Couple, DeviceSeen, FileId, FileMeta,
    InvitationClaim, Joining, Member, MemberRole, Message, MessageId, MessageQuery, Millis, NewChat, NewFile,
    NewMessage, NewNotification, NewUser, Notification, PairInvitation, Reaction, ReceiptMark, RefreshRotation,
    RefreshToken, SendContext, Seq, User, UserId, UserUpdate,
};

/// The result type of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A batch of appends queued in the store: resolves to each message's
/// outcome once the batch is written (the outer error: none was).
pub type QueuedAppend =
    std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Vec<StoreResult<Appended>>>> + Send>>;

/// What a store with a writer thread of its own calls with a queued
/// batch's outcomes on that thread, as soon as the batch is durable and
/// before its [`QueuedAppend`] answers: batches in the order they were
/// written, whether or not anyone still awaits them. It runs outside any
/// async runtime and holds the writer up while it runs.
pub type Written = Box<dyn FnOnce(&StoreResult<Vec<StoreResult<Appended>>>) + Send>;

/// Users, their credentials, refresh tokens and the access-token denylist.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    // ---- users and credentials ----

    /// Registers a user, with their password hash if any.
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Several users at once, in no particular order; missing ids are skipped.
    async fn users(&self, ids: &[UserId]) -> StoreResult<Vec<User>>;
    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<User>>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// The user with this email, compared as [`crate::model::email_key`] makes it.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The user an app backend knows by `external_id`.
    async fn user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>>;
    /// Links `external_id` to the user (replacing any id they had).
    /// [`StoreError::ExternalIdTaken`] when another user has it.
    async fn set_external_id(&self, id: UserId, external_id: &str) -> StoreResult<()>;
    /// The key-value fields an app backend keeps on the user (`vip_level`,
    /// `balance`, ...); empty when it set none.
    async fn profile_fields(&self, id: UserId) -> StoreResult<serde_json::Map<String, serde_json::Value>>;
    /// Replaces the user's profile fields.
    async fn set_profile_fields(
        &self,
        id: UserId,
        fields: serde_json::Map<String, serde_json::Value>,
        at: Millis,
    ) -> StoreResult<()>;
    async fn update_user(&self, id: UserId, update: UserUpdate) -> StoreResult<Option<User>>;
    async fn set_last_seen(&self, id: UserId, at: Millis) -> StoreResult<()>;
    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>>;
    async fn set_password_hash(&self, id: UserId, hash: String, at: Millis) -> StoreResult<()>;
    /// Records that the user signed in from `device` (its platform and
    /// time kept up to date); answers whether the device is new to them.
    async fn record_device(&self, device: DeviceSeen) -> StoreResult<bool>;

    // ---- refresh tokens ----

    async fn insert_refresh_token(&self, token: RefreshToken) -> StoreResult<()>;
    /// Spends the token with `presented_hash` and stores `next` in its
    /// family, atomically. A token presented twice revokes its family,
    /// unless a rotation spent it at or after `grace_since` (and nothing
    /// revoked it): that is [`RefreshRotation::Recent`], and nothing changes
    /// (an honest client's concurrent refreshes, whichever process each reaches).
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: String,
        next_expires_at: Millis,
        now: Millis,
        grace_since: Millis,
    ) -> StoreResult<RefreshRotation>;
    /// Revokes one token (logout). Answers whether it existed.
    async fn revoke_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<bool>;
    /// The refresh token with `token_hash` if it may still be used at
    /// `now`: not spent by a rotation, not revoked, not expired.
    async fn live_refresh_token(&self, token_hash: &str, now: Millis) -> StoreResult<Option<RefreshToken>>;
    async fn revoke_refresh_family(&self, family_id: &str, now: Millis) -> StoreResult<u64>;

    /// Denies an access token (by JWT id) until it expires anyway.
    async fn revoke_access_token(&self, jti: &str, expires_at: Millis, now: Millis) -> StoreResult<()>;
    /// Every access token still denied at `now`: `(jti, expires_at)`.
    async fn revoked_access_tokens(&self, now: Millis) -> StoreResult<Vec<(String, Millis)>>;
}

/// Contact lists, blocks, and who may hear of whom (presence, calls).
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    // ---- contacts ----

    async fn add_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        nickname: String,
        at: Millis,
    ) -> StoreResult<Contact>;
    async fn contacts(&self, user_id: UserId) -> StoreResult<Vec<Contact>>;
    async fn contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<Option<Contact>>;
    async fn update_contact(
        &self,
        user_id: UserId,
        contact_id: UserId,
        update: ContactUpdate,
    ) -> StoreResult<Option<Contact>>;
    async fn delete_contact(&self, user_id: UserId, contact_id: UserId) -> StoreResult<bool>;
    /// Whether `blocker` has blocked `blocked`.
    async fn is_blocked(&self, blocker: UserId, blocked: UserId) -> StoreResult<bool>;
    /// The users among `among` who have blocked `sender` (one query for a
    /// whole chat's members).
    async fn blockers_of(&self, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>>;

    /// Who hears of `user_id`'s presence: users who have them as an
    /// unblocked contact, and their private-chat peers.
    async fn presence_audience(&self, user_id: UserId) -> StoreResult<Vec<UserId>>;

    /// Whether `a` and `b` are members of at least one common chat.
    async fn share_a_chat(&self, a: UserId, b: UserId) -> StoreResult<bool>;

    /// Those of `subjects` whose presence `viewer` may know: `viewer`
    /// themselves, and each who has not blocked `viewer` and is a mutual
    /// contact or shares a chat with them. A backend that can answer in
    /// one query overrides this; the default asks about each in turn.
    async fn presence_visible(&self, viewer: UserId, subjects: &[UserId]) -> StoreResult<Vec<UserId>> {
        let mut visible = Vec::with_capacity(subjects.len());
        for &subject in subjects {
            let seen = subject == viewer
                || (!self.is_blocked(subject, viewer).await?
                    && ((self.contact(viewer, subject).await?.is_some()
                        && self.contact(subject, viewer).await?.is_some())
                        || self.share_a_chat(viewer, subject).await?));
            if seen {
                visible.push(subject);
            }
        }
        Ok(visible)
    }
}

/// Chats and their members.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    // ---- chats and members ----

    /// Creates a chat with its creator as owner. A private chat between two
    /// users who already have one answers the existing chat and `false`.
    async fn create_chat(&self, chat: NewChat) -> StoreResult<(Chat, bool)>;
    async fn chat(&self, id: ChatId) -> StoreResult<Option<Chat>>;
    async fn private_chat_between(&self, a: UserId, b: UserId) -> StoreResult<Option<Chat>>;
    async fn update_chat(&self, id: ChatId, update: ChatUpdate) -> StoreResult<Option<Chat>>;
    /// The user's chats, pinned first, then by latest activity.
    async fn chats_of_user(
        &self,
        user_id: UserId,
        limit: u32,
        offset: u32,
        now: Millis,
    ) -> StoreResult<Vec<ChatSummary>>;
    async fn count_chats_of_user(&self, user_id: UserId) -> StoreResult<u64>;
    /// Adds members (existing ones are left as they are); answers the new
    /// ones. `joining` is checked for the new ones before any is added:
    /// [`StoreError::NotAccepted`] names one who does not accept `by`,
    /// [`StoreError::ChatFull`] says the cap would be passed. The
    /// embedded store checks and adds in one write; ScyllaDB checks, then
    /// adds (two adds racing on two nodes may pass the cap by the smaller).
    async fn add_members(
        &self,
        chat_id: ChatId,
        users: &[UserId],
        role: MemberRole,
        at: Millis,
        joining: Joining,
    ) -> StoreResult<Vec<Member>>;
    async fn remove_member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<bool>;
    async fn set_member_role(&self, chat_id: ChatId, user_id: UserId, role: MemberRole) -> StoreResult<bool>;
    async fn set_member_flags(
        &self,
        chat_id: ChatId,
        user_id: UserId,
        is_pinned: Option<bool>,
        is_muted: Option<bool>,
    ) -> StoreResult<Option<Member>>;
    async fn member(&self, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>>;
    async fn members(&self, chat_id: ChatId) -> StoreResult<Vec<Member>>;
}

/// Messages: appends, history, edits, scheduled messages, reactions and read markers.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    // ---- messages ----

    /// Appends `messages` in their order, as [`Store::append_message`] would
    /// one after another; each has its own outcome. A backend that can
    /// write them in one trip overrides this. The outer error means none
    /// was written.
    async fn append_messages(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<Appended>>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.append_message(message).await);
        }
        Ok(outcomes)
    }

    /// [`MessageStore::append_messages`] in two steps: this answers once
    /// the batch is queued behind every write queued before it, and the
    /// future it gives answers when the batch is written. A caller that
    /// queues batch after batch keeps their order without waiting for each
    /// to be written. A backend with no write queue writes the batch here.
    /// A backend with a writer thread calls `written` on it (see
    /// [`Written`]); one without never calls it, and the caller learns the
    /// outcomes from the future alone.
    async fn queue_messages(&self, messages: Vec<NewMessage>, written: Option<Written>) -> StoreResult<QueuedAppend> {
        drop(written);
        let outcomes = self.append_messages(messages).await;
        Ok(Box::pin(std::future::ready(outcomes)))
    }

    /// Appends a message with the next seq of its chat: the store is the
    /// one owner of seqs and of duplicates. A `(sender, client_message_id)`
    /// seen before answers the original instead, without taking a seq.
    async fn append_message(&self, message: NewMessage) -> StoreResult<Appended>;
    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>>;
    /// Those of `ids` that exist, in no particular order: one read.
    async fn messages_by_id(&self, ids: &[MessageId]) -> StoreResult<Vec<Message>>;
    async fn messages(&self, chat_id: ChatId, query: MessageQuery) -> StoreResult<Vec<Message>>;
    /// The newest visible message of the chat.
    async fn latest_message(&self, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>>;
    async fn edit_message(&self, id: MessageId, content: String, at: Millis) -> StoreResult<Option<Message>>;
    /// Deletes a message: it keeps its seq slot but loses its content.
    async fn delete_message(&self, id: MessageId, at: Millis) -> StoreResult<Option<Message>>;
    async fn set_message_pinned(&self, id: MessageId, pinned: bool, at: Millis) -> StoreResult<Option<Message>>;
    async fn pinned_messages(&self, chat_id: ChatId, now: Millis) -> StoreResult<Vec<Message>>;
    // ---- scheduled messages ----

    /// Holds a message with a future `send_at` without giving it a seq. A
    /// `(sender, client_message_id)` already sent or scheduled answers the
    /// original. The answer's `seq` is 0 until it is released.
    async fn schedule_message(&self, message: NewMessage) -> StoreResult<Appended>;
    async fn scheduled_message(&self, id: MessageId) -> StoreResult<Option<Message>>;
    /// Scheduled messages whose time has come, earliest first.
    async fn due_scheduled(&self, now: Millis, limit: u32) -> StoreResult<Vec<Message>>;
    /// Moves a scheduled message into its chat, keeping its id, with the
    /// chat's next seq; `None` if it was released or cancelled already.
    async fn release_scheduled(&self, id: MessageId, now: Millis) -> StoreResult<Option<Message>>;
    /// Drops a scheduled message before its time; answers it if it existed.
    async fn cancel_scheduled(&self, id: MessageId) -> StoreResult<Option<Message>>;
    // ---- reactions ----

    /// Adds a reaction; answers `false` if it was already there.
    async fn add_reaction(
        &self,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
        at: Millis,
    ) -> StoreResult<bool>;
    async fn remove_reaction(&self, message_id: MessageId, user_id: UserId, emoji: &str) -> StoreResult<bool>;
    async fn reactions(&self, message_ids: &[MessageId]) -> StoreResult<Vec<Reaction>>;
    // ---- read markers ----

    /// Moves the member's read marker to `seq` (clamped to the chat's last
    /// seq); it never goes backwards. Answers the marker now in force. An
    /// advance is kept with its time `at` (see [`ReceiptMark`]).
    async fn mark_read(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq>;
    /// Moves the member's delivered marker up to `seq` (never back, never
    /// past the chat's last seq); answers the marker. An advance is kept
    /// with its time, like a read's.
    async fn mark_delivered(&self, chat_id: ChatId, user_id: UserId, seq: Seq, at: Millis) -> StoreResult<Seq>;
    /// What dates the messages `from..=to` of a chat: each member's
    /// advances within that range, and their first advance of each kind
    /// past it.
    async fn receipts(&self, chat_id: ChatId, from: Seq, to: Seq) -> StoreResult<Vec<ReceiptMark>>;
    /// Visible messages from others after the member's read marker.
    async fn unread_count(&self, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64>;
}

/// Uploaded files' metadata and who may read them.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    // ---- files ----

    async fn insert_file(&self, file: NewFile) -> StoreResult<FileMeta>;
    async fn file(&self, id: FileId) -> StoreResult<Option<FileMeta>>;
    /// Deletes the metadata; answers how many live files still share the
    /// content hash, so the caller knows whether the bytes may go.
    async fn delete_file(&self, id: FileId) -> StoreResult<Option<u64>>;
    /// How many live files have the content hash `sha256`.
    async fn files_sharing(&self, sha256: &str) -> StoreResult<u64>;

    /// Whether `user_id` may read the file: they own it, or it was sent
    /// (as `file_url`) in a chat they are a member of.
    async fn file_visible_to(&self, file_id: FileId, file_url: &str, user_id: UserId) -> StoreResult<bool>;
}

/// Notifications kept for users.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    // ---- notifications ----

    async fn insert_notification(&self, notification: NewNotification) -> StoreResult<Notification>;
    /// The user's notifications, newest first, older than the id `before` when given.
    async fn notifications(&self, user_id: UserId, limit: u32, before: Option<i64>) -> StoreResult<Vec<Notification>>;
    /// Marks one of the user's notifications read; answers whether the user has it.
    async fn mark_notification_read(&self, user_id: UserId, id: i64) -> StoreResult<bool>;
    /// Marks every notification of the user read; answers how many were unread.
    async fn mark_all_notifications_read(&self, user_id: UserId) -> StoreResult<u64>;
    async fn unread_notification_count(&self, user_id: UserId) -> StoreResult<u64>;
    /// Deletes one of the user's notifications; answers whether the user had it.
    async fn delete_notification(&self, user_id: UserId, id: i64) -> StoreResult<bool>;
    /// Forgets every notification past its `expires_at`; answers how many
    /// went (a store whose rows expire by themselves answers 0).
    async fn prune_notifications(&self, now: Millis) -> StoreResult<u64>;
}

/// Pairs of users (seed 004's couples) and the invitation codes that pair them.
#[async_trait]
pub trait PairStore: Send + Sync + 'static {
    /// Stores a new invitation; a code already in use is [`StoreError::CodeTaken`].
    async fn create_invitation(&self, invitation: PairInvitation) -> StoreResult<()>;
    /// How many of `inviter`'s invitations are unused and unexpired at `now`.
    async fn live_invitations(&self, inviter: UserId, now: Millis) -> StoreResult<u64>;
    /// Uses `code` for `claimer` once: only the first claim of a live code
    /// gets [`InvitationClaim::Claimed`].
    async fn claim_invitation(&self, code: &str, claimer: UserId, now: Millis) -> StoreResult<InvitationClaim>;
    /// The invitation with `code`, used or not (`None` when unknown).
    async fn invitation(&self, code: &str) -> StoreResult<Option<PairInvitation>>;
    /// Binds `couple.user_id` and `couple.partner_id`; either already
    /// having a partner is [`StoreError::AlreadyPaired`] and binds nobody.
    async fn bind_pair(&self, couple: Couple) -> StoreResult<()>;
    /// `user`'s pair, seen from their side (`None` when unbound).
    async fn pair_of(&self, user: UserId) -> StoreResult<Option<Couple>>;
    /// Unbinds `user` and their partner; answers the pair that was (from
    /// `user`'s side), or `None` when they had none.
    async fn unbind_pair(&self, user: UserId) -> StoreResult<Option<Couple>>;
}

/// Everything Switchboard keeps. A write resolves only once it is durable:
/// a caller that saw `Ok` may tell a client "stored" and the data survives
/// a crash of the process.
///
/// Lookups of a missing row answer `Ok(None)` (or `false`); domain rule
/// breaks answer the matching [`StoreError`] variant.
///
/// Split by domain: each part is a trait of its own, and `Store` is all of
/// them plus what spans domains.
#[async_trait]
pub trait Store:
    AccountStore
    + ContactStore
    + ChatStore
    + MessageStore
    + FileStore
    + NotificationStore
    + PairStore
    + Send
    + Sync
    + 'static
{
    // ---- health and lifecycle ----

    /// Answers `Ok` when the backend can serve reads and writes.
    async fn health(&self) -> StoreResult<()>;

    /// Finishes every write already submitted, makes it durable and stops
    /// taking new work. Later calls answer [`StoreError::Closed`].
    async fn shutdown(&self) -> StoreResult<()>;
    /// What a send by `sender` into `chat_id` must know before it appends,
    /// read together (`None` when there is no such chat): the chat, its
    /// members, which of the other members block the sender, and the
    /// sender's profile. A backend that can answer in one round trip
    /// overrides this; the default asks for each part in turn.
    async fn send_context(&self, chat_id: ChatId, sender: UserId) -> StoreResult<Option<SendContext>> {
        let Some(chat) = self.chat(chat_id).await? else { return Ok(None) };
        let members = self.members(chat_id).await?;
        let others: Vec<UserId> = members.iter().map(|m| m.user_id).filter(|&user| user != sender).collect();
        let blockers = self.blockers_of(sender, &others).await?;
        let sender = self.user(sender).await?.map(std::sync::Arc::new);
        Ok(Some(SendContext { chat: chat.into(), members: members.into(), blockers, sender }))
    }
}
