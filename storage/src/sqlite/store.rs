//! [`Store`] for [`SqliteStore`]: every write goes through the writer
//! thread's group commit, every read through the read pool.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, named_params, params, params_from_iter};

use std::sync::Arc;

use super::SqliteStore;
use super::context_cache::{ChatEntry, SenderEntry};
use super::rows::{
    self, CHAT_SELECT, CHAT_WIDTH, CONTACT_COLUMNS, FILE_COLUMNS, MEMBER_COLUMNS, MESSAGE_COLUMNS, MESSAGE_VISIBLE,
    NOTIFICATION_COLUMNS, USER_COLUMNS,
};
use super::{keys, last_seqs, seen};
use crate::model::{
    Appended, Chat, ChatId, ChatKind, ChatSummary, ChatUpdate, Contact, ContactUpdate, Cursor, FileId, FileMeta,
    GroupInvites, Joining, Member, MemberRole, Message, MessageId, MessageQuery, Millis, NewChat, NewFile, NewMessage,
    NewNotification, NewUser, Notification, Reaction, RefreshRotation, RefreshToken, SendContext, Seq, User, UserId,
    UserUpdate,
};
use crate::{
    AccountStore, ChatStore, ContactStore, FileStore, MessageStore, NotificationStore, QueuedAppend, Store, StoreError,
    StoreResult, Written,
};

mod accounts;
mod chats;
mod contacts;
mod files;
mod messages;
mod notifications;
mod pairs;

/// The message of a violated constraint, if that is what `error` is.
fn constraint_message(error: &rusqlite::Error) -> Option<&str> {
    match error {
        rusqlite::Error::SqliteFailure(failure, message)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(message.as_deref().unwrap_or(""))
        }
        _ => None,
    }
}

/// Search shorter than a trigram cannot use the FTS index.
const TRIGRAM: usize = 3;

fn user_by(conn: &Connection, column: &str, value: &dyn rusqlite::ToSql) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([value], rows::user).optional()?)
}

fn missing_user(conn: &Connection, ids: &[UserId]) -> StoreResult<Option<UserId>> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
    for &id in ids {
        if !exists.exists([id])? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn chat_by_id(conn: &Connection, id: ChatId) -> StoreResult<Option<Chat>> {
    let sql = format!("{CHAT_SELECT} WHERE c.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::chat).optional()?)
}

fn members_of(conn: &Connection, chat_id: ChatId) -> StoreResult<Vec<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ?1 ORDER BY joined_at, user_id");
    let members = conn.prepare_cached(&sql)?.query_map([chat_id], rows::member)?.collect::<Result<_, _>>()?;
    Ok(members)
}

/// Everyone who has blocked `sender`.
fn blocked_by(conn: &Connection, sender: UserId) -> StoreResult<Vec<UserId>> {
    Ok(conn
        .prepare_cached("SELECT user_id FROM contacts WHERE contact_id = ?1 AND is_blocked = 1")?
        .query_map([sender], |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The users among `among` who have blocked `sender`.
fn blockers_among(conn: &Connection, sender: UserId, among: &[UserId]) -> StoreResult<Vec<UserId>> {
    Ok(blocked_by(conn, sender)?.into_iter().filter(|user| among.contains(user)).collect())
}

fn member_of(conn: &Connection, chat_id: ChatId, user_id: UserId) -> StoreResult<Option<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ?1 AND user_id = ?2");
    Ok(conn.prepare_cached(&sql)?.query_row([chat_id, user_id], rows::member).optional()?)
}

fn message_by_id(conn: &Connection, id: MessageId) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::message).optional()?)
}

/// The message `sender_id` sent with `client_message_id`, if it exists:
/// the held keys first, then the full index, each only a hint until the
/// message it names is read and is that key's (see `keys`).
fn message_by_client(conn: &Connection, sender_id: UserId, client_message_id: &str) -> StoreResult<Option<Message>> {
    let is_it = |message: &Message| {
        message.sender_id == sender_id && message.client_message_id.as_deref() == Some(client_message_id)
    };
    if let Some(id) = keys::held(sender_id, client_message_id)
        && let Some(message) = message_by_id(conn, id)?.filter(is_it)
    {
        return Ok(Some(message));
    }
    match keys::merged(conn, sender_id, client_message_id)? {
        Some(id) => Ok(message_by_id(conn, id)?.filter(is_it)),
        None => Ok(None),
    }
}

fn latest_visible(conn: &Connection, chat_id: ChatId, now: Millis) -> StoreResult<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = :chat AND {MESSAGE_VISIBLE} \
         ORDER BY m.seq DESC LIMIT 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(named_params! {":chat": chat_id, ":now": now}, rows::message).optional()?)
}

fn unread(conn: &Connection, chat_id: ChatId, user_id: UserId, now: Millis) -> StoreResult<u64> {
    let sql = format!(
        "SELECT COUNT(*) FROM messages m WHERE m.chat_id = :chat AND m.seq > \
         (SELECT last_read_seq FROM members WHERE chat_id = :chat AND user_id = :user) \
         AND m.sender_id != :user AND m.is_deleted = 0 AND {MESSAGE_VISIBLE}"
    );
    let count: i64 = conn
        .prepare_cached(&sql)?
        .query_row(named_params! {":chat": chat_id, ":user": user_id, ":now": now}, |row| row.get(0))?;
    Ok(count as u64)
}

fn insert_member(
    conn: &Connection,
    chat_id: ChatId,
    user_id: UserId,
    role: MemberRole,
    at: Millis,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("INSERT OR IGNORE INTO members (chat_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![chat_id, user_id, role.as_str(), at])?;
    Ok(changed == 1)
}

/// The SQL for a page of history, and its parameters.
fn page_sql(chat_id: ChatId, query: &MessageQuery) -> (String, Vec<(&'static str, Value)>) {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.chat_id = :chat AND {MESSAGE_VISIBLE}");
    let mut values: Vec<(&'static str, Value)> = vec![(":chat", chat_id.into()), (":now", query.now.into())];
    let cursor = |name: &'static str, cursor: Cursor, values: &mut Vec<(&'static str, Value)>| match cursor {
        Cursor::Seq(seq) => {
            values.push((name, (seq as i64).into()));
            name.to_owned()
        }
        Cursor::Id(id) => {
            values.push((name, id.into()));
            format!("(SELECT seq FROM messages WHERE id = {name} AND chat_id = :chat)")
        }
    };
    if let Some(before) = query.before {
        let bound = cursor(":before", before, &mut values);
        sql.push_str(" AND m.seq < ");
        sql.push_str(&bound);
    }
    if let Some(after) = query.after {
        let bound = cursor(":after", after, &mut values);
        sql.push_str(" AND m.seq > ");
        sql.push_str(&bound);
    }
    if let Some(kind) = query.kind {
        sql.push_str(" AND m.kind = :kind");
        values.push((":kind", kind.as_str().to_owned().into()));
    }
    if let Some(search) = query.search.as_deref().filter(|text| !text.is_empty()) {
        sql.push_str(" AND m.is_deleted = 0");
        let escaped = search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        values.push((":pattern", format!("%{escaped}%").into()));
        if search.chars().count() >= TRIGRAM {
            // A quoted FTS5 string is a phrase: the trigram tokenizer makes
            // that a substring match, CJK included. Rows queued past the
            // index's mark (new, edited or deleted since) are matched by
            // LIKE, and what the index still holds for them is ignored.
            sql.push_str(
                " AND (m.id IN (SELECT rowid FROM search.messages_fts WHERE messages_fts MATCH :search) \
                 AND m.id NOT IN (SELECT message_id FROM fts_pending WHERE pos > (SELECT pos FROM search.indexed_upto)) \
                 OR m.id IN (SELECT message_id FROM fts_pending WHERE pos > (SELECT pos FROM search.indexed_upto)) \
                 AND m.content LIKE :pattern ESCAPE '\\')",
            );
            values.push((":search", format!("\"{}\"", search.replace('"', "\"\"")).into()));
        } else {
            sql.push_str(" AND m.content LIKE :pattern ESCAPE '\\'");
        }
    }
    // Anchored at the newest end unless only `after` is given.
    let ascending = query.after.is_some() && query.before.is_none();
    sql.push_str(if ascending { " ORDER BY m.seq ASC" } else { " ORDER BY m.seq DESC" });
    sql.push_str(" LIMIT :limit OFFSET :offset");
    values.push((":limit", i64::from(query.limit).into()));
    values.push((":offset", i64::from(query.offset).into()));
    (sql, values)
}

/// Selects scheduled messages in the shape of [`MESSAGE_COLUMNS`] (seq 0).
const SCHEDULED_SELECT: &str = "SELECT m.id, m.chat_id, 0, m.sender_id, m.client_message_id, m.kind, m.content, \
     m.file_name, m.file_size, m.file_url, m.thumbnail, m.reply_to_id, m.forward_from, m.ttl, NULL, m.send_at, \
     m.is_silent, 0, 0, 0, m.created_at, m.created_at, NULL, m.media FROM scheduled_messages m";

fn scheduled_by_id(conn: &Connection, id: MessageId) -> StoreResult<Option<Message>> {
    let sql = format!("{SCHEDULED_SELECT} WHERE m.id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id], rows::message).optional()?)
}

/// The message or scheduled message this sender already sent with this key.
fn original_of(conn: &Connection, sender_id: UserId, client_id: Option<&str>) -> StoreResult<Option<Message>> {
    let Some(client_id) = client_id else { return Ok(None) };
    // A key the writer's filters never saw names nothing (see `seen`).
    if !seen::may_have_seen(sender_id, client_id) {
        return Ok(None);
    }
    if let Some(original) = message_by_client(conn, sender_id, client_id)? {
        return Ok(Some(original));
    }
    scheduled_by_client(conn, sender_id, client_id)
}

/// The scheduled message this sender holds with this key. The table holds
/// only messages not yet due, so the probe stays in a few hot pages.
fn scheduled_by_client(conn: &Connection, sender_id: UserId, client_id: &str) -> StoreResult<Option<Message>> {
    let held: Option<MessageId> = conn
        .prepare_cached("SELECT id FROM scheduled_messages WHERE sender_id = ?1 AND client_message_id = ?2")?
        .query_row(params![sender_id, client_id], |row| row.get(0))
        .optional()?;
    match held {
        Some(id) => scheduled_by_id(conn, id),
        None => Ok(None),
    }
}

fn schedule(conn: &Connection, ids: &crate::IdGenerator, new: &NewMessage) -> StoreResult<Appended> {
    let send_at = new.due_at()?;
    if let Some(original) = original_of(conn, new.sender_id, new.client_message_id.as_deref())? {
        return Ok(Appended::Duplicate(original));
    }
    if chat_by_id(conn, new.chat_id)?.is_none() {
        return Err(StoreError::ChatNotFound(new.chat_id));
    }
    let id = ids.next_id();
    if let Some(key) = new.client_message_id.as_deref() {
        seen::writing(new.sender_id, key);
    }
    conn.prepare_cached(
        "INSERT INTO scheduled_messages (id, chat_id, sender_id, client_message_id, kind, content, file_name, \
         file_size, file_url, thumbnail, reply_to_id, forward_from, ttl, send_at, is_silent, created_at, media) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        id,
        new.chat_id,
        new.sender_id,
        new.client_message_id,
        new.kind.as_str(),
        new.content,
        new.file_name,
        new.file_size as i64,
        new.file_url,
        new.thumbnail,
        new.reply_to_id,
        new.forward_from,
        new.ttl as i64,
        send_at,
        new.is_silent,
        new.created_at,
        new.media,
    ])?;
    scheduled_by_id(conn, id)?.map(Appended::New).ok_or(StoreError::MessageNotFound(id))
}

fn release(conn: &Connection, id: MessageId, now: Millis) -> StoreResult<Option<Message>> {
    let Some(held) = scheduled_by_id(conn, id)? else { return Ok(None) };
    conn.prepare_cached("DELETE FROM scheduled_messages WHERE id = ?1")?.execute([id])?;
    let new = held.release(now);
    Ok(Some(append_with_id(conn, id, new)?.into_message()))
}

fn append(conn: &Connection, ids: &crate::IdGenerator, new: NewMessage) -> StoreResult<Appended> {
    Ok(try_append(conn, ids, new)?)
}

/// How an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Before anything of the message was written: it alone failed.
    Refused(StoreError),
    /// After part of it was written: its transaction (or savepoint) must
    /// be rolled back.
    Broken(StoreError),
}

impl From<AppendError> for StoreError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Refused(error) | AppendError::Broken(error) => error,
        }
    }
}

/// Appends `new` unless its sender already sent it (same client id): the
/// scheduled messages and both tiers of the sent ones' keys (see `keys`)
/// are probed first, which only reads; then the insert writes.
pub(crate) fn try_append(
    conn: &Connection,
    ids: &crate::IdGenerator,
    new: NewMessage,
) -> Result<Appended, AppendError> {
    let original = original_of(conn, new.sender_id, new.client_message_id.as_deref()).map_err(AppendError::Refused)?;
    if let Some(original) = original {
        return Ok(Appended::Duplicate(original));
    }
    let id = ids.next_id();
    append_with_id(conn, id, new)
}

/// Appends `new` as message `id`. Everything that can refuse it (no such
/// chat, a constraint of the insert) does so before the first write: the
/// insert is one row with no trigger, so SQLite checks it whole before
/// writing and needs no statement journal for it.
fn append_with_id(conn: &Connection, id: MessageId, new: NewMessage) -> Result<Appended, AppendError> {
    let seq = insert_message(conn, id, &new)?;
    Ok(Appended::New(new.into_stored(id, seq)))
}

/// Writes `new` as message `id` and returns its seq (see `append_with_id`).
fn insert_message(conn: &Connection, id: MessageId, new: &NewMessage) -> Result<u64, AppendError> {
    let refused = |error: rusqlite::Error| AppendError::Refused(error.into());
    let broken = |error: rusqlite::Error| AppendError::Broken(error.into());
    // The chat's last seq: as the writer last wrote it (see `last_seqs`),
    // or the last entry of its `(chat_id, seq)` index (migration 012),
    // which the insert below writes to anyway: the chat's row is only
    // read, so no append rewrites it.
    let held = last_seqs::get(new.chat_id);
    let last_seq = match held {
        Some(seq) => seq,
        None => conn
            .prepare_cached(concat!("SELECT ", last_seq_of!("?1"), " FROM chats WHERE id = ?1"))
            .and_then(|mut statement| statement.query_row([new.chat_id], |row| row.get::<_, i64>(0)).optional())
            .map_err(refused)?
            .ok_or(AppendError::Refused(StoreError::ChatNotFound(new.chat_id)))? as u64,
    };
    // The write transaction holds the file: no other writer, in this
    // process or another, reads the chat's last seq until it commits.
    let seq = last_seq + 1;
    let expires_at = new.expires_at();
    conn.prepare_cached(
        "INSERT INTO messages (id, chat_id, seq, sender_id, client_message_id, kind, content, file_name, \
         file_size, file_url, thumbnail, reply_to_id, forward_from, ttl, expires_at, send_at, is_silent, \
         created_at, updated_at, media) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18, ?19)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            id,
            new.chat_id,
            seq as i64,
            new.sender_id,
            new.client_message_id,
            new.kind.as_str(),
            new.content,
            new.file_name,
            new.file_size as i64,
            new.file_url,
            new.thumbnail,
            new.reply_to_id,
            new.forward_from,
            new.ttl as i64,
            expires_at,
            new.send_at,
            new.is_silent,
            new.created_at,
            new.media,
        ])
    })
    .map_err(|error| {
        // Refused (were the held seq ever behind, by `UNIQUE (chat_id,
        // seq)`): the chat's next append asks the index again.
        if held.is_some() {
            last_seqs::forget(new.chat_id);
        }
        refused(error)
    })?;
    last_seqs::wrote(new.chat_id, seq);
    if let Some(key) = new.client_message_id.as_deref() {
        seen::writing(new.sender_id, key);
        keys::wrote(conn, new.sender_id, key, id).map_err(broken)?;
    }
    // Queued for the search index in commit order (see search_index.rs).
    if !new.content.is_empty() {
        conn.prepare_cached("INSERT INTO fts_pending (message_id) VALUES (?1)")
            .and_then(|mut statement| statement.execute([id]))
            .map_err(broken)?;
    }
    Ok(seq)
}

/// Whether `fresh` (users not yet members) may join a chat of `members`
/// members on `joining`'s terms: each accepts its `by` (has not blocked
/// them; their group-invite setting lets them in), and the cap holds.
fn admit(conn: &Connection, joining: Joining, members: usize, fresh: &[UserId]) -> StoreResult<()> {
    if let Some(by) = joining.by {
        let mut consent = conn.prepare_cached(
            "SELECT u.group_invites, c.is_blocked FROM users u \
             LEFT JOIN contacts c ON c.user_id = u.id AND c.contact_id = ?2 WHERE u.id = ?1",
        )?;
        for &user in fresh.iter().filter(|&&user| user != by) {
            let (setting, blocked): (String, Option<bool>) =
                consent.query_row([user, by], |row| Ok((row.get(0)?, row.get(1)?)))?;
            let setting = GroupInvites::parse(&setting).unwrap_or_default();
            if !setting.accepts(blocked) {
                return Err(StoreError::NotAccepted(user));
            }
        }
    }
    match joining.max_members {
        Some(max) if members + fresh.len() > max as usize => Err(StoreError::ChatFull(max)),
        _ => Ok(()),
    }
}

fn create_chat_in(conn: &Connection, new: &NewChat) -> StoreResult<(Chat, bool)> {
    let private_key = new.private_key()?;
    let others = new.others();
    if let Some(missing) = missing_user(conn, &[new.created_by])?.or(missing_user(conn, &others)?) {
        return Err(StoreError::UserNotFound(missing));
    }
    if let Some(key) = &private_key {
        let existing: Option<ChatId> = conn
            .prepare_cached("SELECT id FROM chats WHERE private_key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            // Asking for it again brings the creator back; the other side,
            // if they left, only when `rejoin_others` says so.
            insert_member(conn, id, new.created_by, MemberRole::Member, new.created_at)?;
            for &user in others.iter().filter(|_| new.rejoin_others) {
                insert_member(conn, id, user, MemberRole::Member, new.created_at)?;
            }
            let chat = chat_by_id(conn, id)?.ok_or(StoreError::ChatNotFound(id))?;
            return Ok((chat, false));
        }
    }
    if new.kind == ChatKind::Group {
        admit(conn, Joining { by: new.added_by, max_members: None }, 1, &others)?;
    }
    conn.prepare_cached(
        "INSERT INTO chats (kind, name, description, avatar, created_by, private_key, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        new.kind.as_str(),
        new.name,
        new.description,
        new.avatar,
        new.created_by,
        private_key,
        new.created_at
    ])?;
    let chat_id = conn.last_insert_rowid();
    insert_member(conn, chat_id, new.created_by, MemberRole::Owner, new.created_at)?;
    for &user in &others {
        insert_member(conn, chat_id, user, MemberRole::Member, new.created_at)?;
    }
    let chat = chat_by_id(conn, chat_id)?.ok_or(StoreError::ChatNotFound(chat_id))?;
    Ok((chat, true))
}

fn rotate(
    conn: &Connection,
    presented: &str,
    next_hash: &str,
    next_expires_at: Millis,
    now: Millis,
    grace_since: Millis,
) -> StoreResult<RefreshRotation> {
    type Row = (UserId, String, Millis, Millis, Option<Millis>, Option<Millis>);
    let found: Option<Row> = conn
        .prepare_cached(
            "SELECT user_id, family_id, expires_at, created_at, used_at, revoked_at FROM refresh_tokens \
             WHERE token_hash = ?1",
        )?
        .query_row([presented], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
        })
        .optional()?;
    let Some((user_id, family_id, expires_at, created_at, used_at, revoked_at)) = found else {
        return Ok(RefreshRotation::Unknown);
    };
    if let (None, Some(used_at)) = (revoked_at, used_at)
        && used_at >= grace_since
    {
        return Ok(RefreshRotation::Recent { user_id, family_id, used_at });
    }
    if used_at.is_some() || revoked_at.is_some() {
        conn.prepare_cached("UPDATE refresh_tokens SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL")?
            .execute(params![now, family_id])?;
        return Ok(RefreshRotation::Reused { user_id, family_id });
    }
    if expires_at <= now {
        return Ok(RefreshRotation::Expired);
    }
    conn.prepare_cached("UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2")?
        .execute(params![now, presented])?;
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![next_hash, user_id, family_id, next_expires_at, now])?;
    Ok(RefreshRotation::Rotated {
        previous: RefreshToken { token_hash: presented.to_owned(), user_id, family_id, expires_at, created_at },
    })
}

impl SqliteStore {
    /// The highest seq stored in the chat (0 for none), for checks of the
    /// file after a crash or a restart.
    pub async fn max_seq(&self, chat_id: ChatId) -> StoreResult<Seq> {
        self.read(move |conn| {
            let max: i64 =
                conn.prepare_cached(concat!("SELECT ", last_seq_of!("?1")))?.query_row([chat_id], |row| row.get(0))?;
            Ok(max as u64)
        })
        .await
    }

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.readers.read(work).await
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.inner.writer.write(work).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        if self.inner.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn shutdown(&self) -> StoreResult<()> {
        self.close().await
    }

    /// From memory when this process is the only one on the file (see
    /// [`super::context_cache`]); what is not held (or everything, when the
    /// file is shared) in one trip to a reader connection.
    async fn send_context(&self, chat_id: ChatId, sender: UserId) -> StoreResult<Option<SendContext>> {
        let cache = self.inner.cache.clone();
        let held_chat = cache.as_ref().and_then(|cache| cache.chat(chat_id));
        let held_sender = cache.as_ref().and_then(|cache| cache.sender(sender));
        if let (Some(chat), Some(who)) = (&held_chat, &held_sender) {
            return Ok(Some(context_of(chat, who, sender)));
        }
        // Taken before the read: what it finds is kept only if no commit came since.
        let keep = cache.map(|cache| {
            let epoch = cache.epoch();
            (cache, epoch)
        });
        let (chat_missing, sender_missing) = (held_chat.is_none(), held_sender.is_none());
        let read = self
            .read(move |conn| {
                let chat = match held_chat {
                    Some(chat) => chat,
                    None => match read_chat_entry(conn, chat_id)? {
                        Some(chat) => Arc::new(chat),
                        None => return Ok(None),
                    },
                };
                let who = match held_sender {
                    Some(who) => who,
                    None => Arc::new(read_sender_entry(conn, sender)?),
                };
                Ok(Some((chat, who)))
            })
            .await?;
        let Some((chat, who)) = read else { return Ok(None) };
        if let Some((cache, epoch)) = keep {
            if chat_missing {
                cache.put_chat(epoch, &chat);
            }
            if sender_missing {
                cache.put_sender(epoch, sender, &who);
            }
        }
        Ok(Some(context_of(&chat, &who, sender)))
    }
}

fn read_chat_entry(conn: &Connection, chat_id: ChatId) -> StoreResult<Option<ChatEntry>> {
    let Some(chat) = chat_by_id(conn, chat_id)? else { return Ok(None) };
    Ok(Some(ChatEntry { chat: Arc::new(chat), members: members_of(conn, chat_id)?.into() }))
}

fn read_sender_entry(conn: &Connection, sender: UserId) -> StoreResult<SenderEntry> {
    Ok(SenderEntry { user: user_by(conn, "id", &sender)?.map(Arc::new), blocked_by: blocked_by(conn, sender)? })
}

/// A send's context from its chat and its sender: the blockers are those of
/// the other members who block the sender.
fn context_of(chat: &ChatEntry, who: &SenderEntry, sender: UserId) -> SendContext {
    let blockers = chat
        .members
        .iter()
        .map(|member| member.user_id)
        .filter(|&user| user != sender && who.blocked_by.contains(&user))
        .collect();
    SendContext { chat: Arc::clone(&chat.chat), members: Arc::clone(&chat.members), blockers, sender: who.user.clone() }
}
