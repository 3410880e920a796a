//! Every statement [`ScyllaStore`](super::ScyllaStore) runs, prepared once
//! when it opens. A statement is marked idempotent when running it twice
//! leaves the same data as running it once (plain upserts and deletes), so
//! the driver may retry it after a timeout; lightweight transactions and
//! writes that depend on what they read are never marked.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::future::try_join_all;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::StoreError;

macro_rules! user_columns {
    () => {
        "id, phone, username, nickname, bio, avatar, language, theme, is_disabled, last_seen, created_at, updated_at, \
         email, external_id, gender, birthday, preferences, group_invites"
    };
}
macro_rules! contact_columns {
    () => {
        "user_id, contact_id, id, nickname, is_blocked, is_muted, created_at, updated_at"
    };
}
macro_rules! member_columns {
    () => {
        "chat_id, user_id, role, is_pinned, is_muted, last_read_seq, joined_at"
    };
}
macro_rules! message_columns {
    () => {
        "chat_id, bucket, seq, id, sender_id, client_message_id, kind, content, file_name, file_size, file_url, \
         thumbnail, reply_to_id, forward_from, ttl, expires_at, send_at, is_silent, is_edited, is_deleted, \
         is_pinned, created_at, updated_at, deleted_at, media"
    };
}
macro_rules! scheduled_columns {
    () => {
        "id, chat_id, sender_id, client_message_id, kind, content, file_name, file_size, file_url, thumbnail, \
         reply_to_id, forward_from, ttl, send_at, is_silent, created_at, media"
    };
}

/// Declares [`Statements`]: `name: idempotent => "CQL";`.
macro_rules! statements {
    ($($name:ident: $idempotent:literal => $cql:expr;)+) => {
        /// The prepared statements, one field per statement.
        #[derive(Debug)]
        pub(crate) struct Statements {
            $(pub(crate) $name: PreparedStatement,)+
            /// Each statement's name by its prepared id, for metrics and errors.
            names: HashMap<Bytes, &'static str>,
        }

        impl Statements {
            /// Every statement's name, CQL and whether it is idempotent.
            pub(crate) const ALL: &[(&str, &str, bool)] = &[$((stringify!($name), $cql, $idempotent)),+];

            /// Prepares them all at once (one round trip's wait, not one each).
            pub(crate) async fn prepare(session: &Session) -> Result<Self, StoreError> {
                let all = Self::ALL.iter().map(|&(name, cql, idempotent)| prepare(session, name, cql, idempotent));
                let mut prepared = try_join_all(all).await?.into_iter();
                let mut next = || prepared.next().ok_or_else(|| StoreError::Scylla("a statement went missing".into()));
                let mut statements = Self { $($name: next()?,)+ names: HashMap::new() };
                $(statements.names.insert(statements.$name.get_id().clone(), stringify!($name));)+
                Ok(statements)
            }
        }
    };
}

impl Statements {
    /// The statement's name (`"?"` for one this store did not prepare).
    pub(crate) fn name_of(&self, statement: &PreparedStatement) -> &'static str {
        self.names.get(statement.get_id()).copied().unwrap_or("?")
    }
}

async fn prepare(session: &Session, name: &str, cql: &str, idempotent: bool) -> Result<PreparedStatement, StoreError> {
    let mut statement =
        session.prepare(cql).await.map_err(|error| StoreError::Scylla(format!("preparing {name} ({cql}): {error}")))?;
    statement.set_is_idempotent(idempotent);
    Ok(statement)
}

statements! {
    health: true => "SELECT id FROM chats WHERE id = ?";

    // ---- users ----
    insert_user: true => "INSERT INTO users (id, phone, username, nickname, bio, avatar, language, theme, \
         is_disabled, last_seen, password_hash, created_at, updated_at, email, external_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    claim_external_id: false =>
        "INSERT INTO users_by_external_id (external_id, user_id) VALUES (?, ?) IF NOT EXISTS";
    release_external_id: false => "DELETE FROM users_by_external_id WHERE external_id = ? IF user_id = ?";
    user_by_external_id: true => "SELECT user_id FROM users_by_external_id WHERE external_id = ?";
    set_external_id: true => "UPDATE users SET external_id = ? WHERE id = ?";
    select_profile_fields: true => "SELECT fields FROM profile_fields WHERE user_id = ?";
    upsert_profile_fields: true => "INSERT INTO profile_fields (user_id, fields, updated_at) VALUES (?, ?, ?)";
    claim_email: false => "INSERT INTO users_by_email (email, user_id) VALUES (?, ?) IF NOT EXISTS";
    release_email: false => "DELETE FROM users_by_email WHERE email = ? IF user_id = ?";
    user_by_email: true => "SELECT user_id FROM users_by_email WHERE email = ?";
    insert_receipt: true => "INSERT INTO receipts (chat_id, user_id, kind, seq, at) VALUES (?, ?, ?, ?, ?)";
    claim_receipt: false =>
        "INSERT INTO receipts (chat_id, user_id, kind, seq, at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    top_receipt: true =>
        "SELECT seq FROM receipts WHERE chat_id = ? AND user_id = ? AND kind = ? ORDER BY seq DESC LIMIT 1";
    receipts_within: true =>
        "SELECT seq, at FROM receipts WHERE chat_id = ? AND user_id = ? AND kind = ? AND seq >= ? AND seq <= ?";
    receipt_after: true =>
        "SELECT seq, at FROM receipts WHERE chat_id = ? AND user_id = ? AND kind = ? AND seq > ? LIMIT 1";
    claim_device: false => "INSERT INTO user_devices (user_id, device_id, platform, first_seen, last_seen) \
         VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    touch_device: true => "UPDATE user_devices SET last_seen = ? WHERE user_id = ? AND device_id = ?";
    touch_device_platform: true =>
        "UPDATE user_devices SET last_seen = ?, platform = ? WHERE user_id = ? AND device_id = ?";
    claim_phone: false => "INSERT INTO users_by_phone (phone, user_id) VALUES (?, ?) IF NOT EXISTS";
    release_phone: false => "DELETE FROM users_by_phone WHERE phone = ? IF user_id = ?";
    claim_username: false => "INSERT INTO users_by_username (username, user_id) VALUES (?, ?) IF NOT EXISTS";
    release_username: false => "DELETE FROM users_by_username WHERE username = ? IF user_id = ?";
    select_user: true => concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?");
    user_by_phone: true => "SELECT user_id FROM users_by_phone WHERE phone = ?";
    user_by_username: true => "SELECT user_id FROM users_by_username WHERE username = ?";
    update_user: true => "UPDATE users SET username = ?, nickname = ?, bio = ?, avatar = ?, language = ?, theme = ?, \
         is_disabled = ?, updated_at = ?, gender = ?, birthday = ?, preferences = ?, group_invites = ? WHERE id = ?";
    // Only ever later (a new user's last_seen is 0, "never").
    set_last_seen: false => "UPDATE users SET last_seen = ? WHERE id = ? IF last_seen < ?";
    select_password: true => "SELECT password_hash, created_at FROM users WHERE id = ?";
    set_password: false => "UPDATE users SET password_hash = ? WHERE id = ? IF EXISTS";

    // ---- refresh and access tokens ----
    insert_refresh: true => "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) \
         VALUES (?, ?, ?, ?, ?)";
    insert_family_member: true => "INSERT INTO refresh_families (family_id, token_hash) VALUES (?, ?)";
    select_refresh: true => "SELECT token_hash, user_id, family_id, expires_at, created_at, used_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = ?";
    spend_refresh: false =>
        "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? IF used_at = null AND revoked_at = null";
    revoke_refresh: false => "UPDATE refresh_tokens SET revoked_at = ? WHERE token_hash = ? IF revoked_at = null";
    family_tokens: true => "SELECT token_hash FROM refresh_families WHERE family_id = ?";
    deny_access: true => "INSERT INTO revoked_access_tokens (shard, jti, expires_at) VALUES (?, ?, ?) USING TTL ?";
    denied_access: true => "SELECT jti, expires_at FROM revoked_access_tokens WHERE shard = ?";

    // ---- contacts ----
    insert_contact: false => concat!("INSERT INTO contacts (", contact_columns!(), ") \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS");
    insert_contact_reverse: true =>
        "INSERT INTO contacts_by_contact (contact_id, user_id, is_blocked) VALUES (?, ?, ?)";
    select_contacts: true => concat!("SELECT ", contact_columns!(), " FROM contacts WHERE user_id = ?");
    select_contact: true =>
        concat!("SELECT ", contact_columns!(), " FROM contacts WHERE user_id = ? AND contact_id = ?");
    update_contact: true => "UPDATE contacts SET nickname = ?, is_blocked = ?, is_muted = ?, updated_at = ? \
         WHERE user_id = ? AND contact_id = ?";
    delete_contact: true => "DELETE FROM contacts WHERE user_id = ? AND contact_id = ?";
    delete_contact_reverse: true => "DELETE FROM contacts_by_contact WHERE contact_id = ? AND user_id = ?";
    contact_holders: true => "SELECT user_id, is_blocked FROM contacts_by_contact WHERE contact_id = ?";

    // ---- chats and members ----
    insert_chat: true => "INSERT INTO chats (id, kind, name, description, avatar, created_by, is_active, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    delete_chat: true => "DELETE FROM chats WHERE id = ?";
    select_chat: true => "SELECT id, kind, name, description, avatar, created_by, is_active, created_at, updated_at \
         FROM chats WHERE id = ?";
    update_chat: true =>
        "UPDATE chats SET name = ?, description = ?, avatar = ?, updated_at = ?, is_active = ? WHERE id = ?";

    // ---- pairs ----
    insert_invitation: false => "INSERT INTO pair_invitations (code, inviter, expires_at, created_at) \
         VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?";
    insert_invitation_of_inviter: true => "INSERT INTO pair_invitations_by_inviter (inviter, code, expires_at) \
         VALUES (?, ?, ?) USING TTL ?";
    invitations_of_inviter: true => "SELECT code, expires_at FROM pair_invitations_by_inviter WHERE inviter = ?";
    select_invitation: true =>
        "SELECT code, inviter, expires_at, used_by, created_at FROM pair_invitations WHERE code = ?";
    use_invitation: false => "UPDATE pair_invitations SET used_by = ? WHERE code = ? IF used_by = null";
    claim_pair: false => "INSERT INTO pairs (user_id, partner_id, pair_id, chat_id, since) VALUES (?, ?, ?, ?, ?) \
         IF NOT EXISTS";
    release_pair: false => "DELETE FROM pairs WHERE user_id = ? IF pair_id = ?";
    select_pair: true => "SELECT user_id, partner_id, pair_id, chat_id, since FROM pairs WHERE user_id = ?";
    // A floor under the chat's top seq, raised once per bucket (see
    // `ScyllaStore::top`); its row also says the chat exists.
    select_last_seq: true => "SELECT last_seq FROM chat_seqs WHERE chat_id = ?";
    init_last_seq: true => "INSERT INTO chat_seqs (chat_id, last_seq) VALUES (?, ?)";
    raise_last_seq: false => "UPDATE chat_seqs SET last_seq = ? WHERE chat_id = ? IF last_seq < ?";
    claim_private: false => "INSERT INTO private_chats (pair, chat_id) VALUES (?, ?) IF NOT EXISTS";
    select_private: true => "SELECT chat_id FROM private_chats WHERE pair = ?";
    insert_member: false => concat!("INSERT INTO members (", member_columns!(), ") \
         VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS");
    insert_chat_of_user: true => "INSERT INTO chats_by_user (user_id, chat_id, kind, joined_at) VALUES (?, ?, ?, ?)";
    // The lease of `MEMBER_LOCK_TTL` (see `ScyllaStore::lock_members`).
    lock_members: false => "INSERT INTO member_locks (chat_id, holder) VALUES (?, ?) IF NOT EXISTS USING TTL 15";
    unlock_members: false => "DELETE FROM member_locks WHERE chat_id = ? IF holder = ?";
    select_member: true =>
        concat!("SELECT ", member_columns!(), " FROM members WHERE chat_id = ? AND user_id = ?");
    select_members: true => concat!("SELECT ", member_columns!(), " FROM members WHERE chat_id = ?");
    member_ids: true => "SELECT user_id FROM members WHERE chat_id = ?";
    delete_member: false => "DELETE FROM members WHERE chat_id = ? AND user_id = ? IF EXISTS";
    delete_chat_of_user: true => "DELETE FROM chats_by_user WHERE user_id = ? AND chat_id = ?";
    set_member_role: false => "UPDATE members SET role = ? WHERE chat_id = ? AND user_id = ? IF EXISTS";
    set_member_flags: false =>
        "UPDATE members SET is_pinned = ?, is_muted = ? WHERE chat_id = ? AND user_id = ? IF EXISTS";
    raise_read_marker: false =>
        "UPDATE members SET last_read_seq = ? WHERE chat_id = ? AND user_id = ? IF last_read_seq < ?";
    chats_of_user: true => "SELECT chat_id, kind FROM chats_by_user WHERE user_id = ?";
    chat_ids_of_user: true => "SELECT chat_id FROM chats_by_user WHERE user_id = ?";

    // ---- messages ----
    claim_client_id: false => "INSERT INTO client_message_ids (sender_id, client_message_id, message_id) \
         VALUES (?, ?, ?) IF NOT EXISTS";
    select_client_id: true =>
        "SELECT message_id FROM client_message_ids WHERE sender_id = ? AND client_message_id = ?";
    release_client_id: false =>
        "DELETE FROM client_message_ids WHERE sender_id = ? AND client_message_id = ? IF message_id = ?";
    // The claim of a seq: a taken one is refused, never overwritten.
    insert_message: false => "INSERT INTO messages (chat_id, bucket, seq, id, sender_id, client_message_id, kind, \
         content, file_name, file_size, file_url, thumbnail, reply_to_id, forward_from, ttl, expires_at, send_at, \
         is_silent, is_edited, is_deleted, is_pinned, created_at, updated_at, media) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    point_message_id: true => "INSERT INTO message_ids (id, chat_id, seq) VALUES (?, ?, ?)";
    claim_message_id: false => "INSERT INTO message_ids (id, chat_id, seq) VALUES (?, ?, ?) IF NOT EXISTS";
    delete_message_id: true => "DELETE FROM message_ids WHERE id = ?";
    select_message_id: true => "SELECT chat_id, seq FROM message_ids WHERE id = ?";
    select_message: true =>
        concat!("SELECT ", message_columns!(), " FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?");
    // Pages of a partition, newest first or oldest first, between two
    // exclusive bounds.
    page_down: true => concat!("SELECT ", message_columns!(), " FROM messages \
         WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq DESC");
    page_up: true => concat!("SELECT ", message_columns!(), " FROM messages \
         WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC");
    // The newest row of a bucket (clustering is seq DESC).
    top_of_bucket: true => "SELECT seq, created_at FROM messages WHERE chat_id = ? AND bucket = ? LIMIT 1";
    edit_message: true => "UPDATE messages SET content = ?, is_edited = ?, updated_at = ? \
         WHERE chat_id = ? AND bucket = ? AND seq = ?";
    erase_message: true => "UPDATE messages SET content = ?, file_name = ?, file_size = ?, file_url = ?, \
         thumbnail = ?, is_deleted = ?, is_pinned = ?, deleted_at = ?, updated_at = ? \
         WHERE chat_id = ? AND bucket = ? AND seq = ?";
    pin_message: true => "UPDATE messages SET is_pinned = ?, updated_at = ? WHERE chat_id = ? AND bucket = ? AND seq = ?";
    insert_pin: true => "INSERT INTO pinned_messages (chat_id, seq, message_id) VALUES (?, ?, ?)";
    delete_pin: true => "DELETE FROM pinned_messages WHERE chat_id = ? AND seq = ?";
    select_pins: true => "SELECT seq FROM pinned_messages WHERE chat_id = ?";
    insert_file_message: true => "INSERT INTO file_messages (file_url, chat_id, message_id) VALUES (?, ?, ?)";
    delete_file_message: true => "DELETE FROM file_messages WHERE file_url = ? AND chat_id = ? AND message_id = ?";
    file_chats: true => "SELECT chat_id, message_id FROM file_messages WHERE file_url = ?";

    // ---- scheduled messages ----
    insert_scheduled: true => concat!("INSERT INTO scheduled_by_id (", scheduled_columns!(), ") \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert_due: true => "INSERT INTO scheduled_messages (shard, send_at, id, chat_id) VALUES (?, ?, ?, ?)";
    select_scheduled: true => concat!("SELECT ", scheduled_columns!(), " FROM scheduled_by_id WHERE id = ?");
    select_due: true => "SELECT send_at, id FROM scheduled_messages WHERE shard = ? AND send_at <= ? LIMIT ?";
    delete_scheduled: true => "DELETE FROM scheduled_by_id WHERE id = ?";
    delete_due: true => "DELETE FROM scheduled_messages WHERE shard = ? AND send_at = ? AND id = ?";

    // ---- reactions ----
    insert_reaction: false => "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES (?, ?, ?, ?) \
         IF NOT EXISTS";
    delete_reaction: false => "DELETE FROM reactions WHERE message_id = ? AND user_id = ? AND emoji = ? IF EXISTS";
    delete_reactions: true => "DELETE FROM reactions WHERE message_id = ?";
    select_reactions: true =>
        "SELECT message_id, user_id, emoji, created_at FROM reactions WHERE message_id = ?";

    // ---- files ----
    insert_file: true => "INSERT INTO files (id, owner_id, name, size, mime, kind, sha256, thumbnail_sha256, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    insert_file_hash: true => "INSERT INTO files_by_hash (sha256, file_id) VALUES (?, ?)";
    select_file: true => "SELECT id, owner_id, name, size, mime, kind, sha256, thumbnail_sha256, created_at \
         FROM files WHERE id = ?";
    delete_file: true => "DELETE FROM files WHERE id = ?";
    delete_file_hash: true => "DELETE FROM files_by_hash WHERE sha256 = ? AND file_id = ?";
    files_of_hash: true => "SELECT file_id FROM files_by_hash WHERE sha256 = ?";

    // ---- notifications ----
    insert_notification: true => "INSERT INTO notifications (user_id, id, kind, content, is_read, \
         related_resource_type, related_resource_id, created_at, title, data) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
    select_notifications: true => "SELECT user_id, id, kind, content, is_read, related_resource_type, \
         related_resource_id, created_at, title, data FROM notifications WHERE user_id = ? AND id < ? LIMIT ?";
    delete_notification: false => "DELETE FROM notifications WHERE user_id = ? AND id = ? IF EXISTS";
    unread_notifications: true => "SELECT id, is_read FROM notifications WHERE user_id = ?";
    read_notification: false => "UPDATE notifications SET is_read = ? WHERE user_id = ? AND id = ? IF EXISTS";
    read_notification_plain: true => "UPDATE notifications SET is_read = ? WHERE user_id = ? AND id = ?";
}
